"""The WSGI adapter in-process, under ``wsgiref.validate``: the shared table over a
marker app and over a ``wsgi.file_wrapper`` app (what Django's FileResponse
and Flask's send_file make), then PEP 3333 corners (lazy start_response,
write(), passthrough) and the streaming guarantees."""

from __future__ import annotations

import email.utils
import io
import os
import wsgiref.util
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from cases import CASES, CONTENT, request_headers, validators
from conftest import Media, TableFailures, open_fds, run_wsgi, wsgi_environ

from xaccel_middleware import XAccelWSGIMiddleware
from xaccel_middleware.sources.local import TruncatedFile

# gunicorn's wrapper is used for single spans only; wsgiref's FileWrapper
# stands in for it (both read the file-like until it returns b"").
SERVERS = {"wsgiref": "WSGIServer/0.2", "gunicorn": "gunicorn/23.0.0"}


def marker_app(marker: str, status: str = "200 OK", body: Iterable[bytes] = (b"discarded",)) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response(status, [("Content-Type", "text/plain"), ("X-Accel-Source", marker)])
        return list(body)

    return app


def file_wrapper_app(path: Path, status: str = "200 OK", headers: list[tuple[str, str]] | None = None) -> Any:
    """Like Django's FileResponse under a WSGI server."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response(status, headers or [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](open(path, "rb"), 8192)

    return app


def values_of(headers: Mapping[str, str]) -> dict[str, str]:
    mtime = email.utils.parsedate_to_datetime(headers["last-modified"]).timestamp()
    return validators(headers["etag"], mtime)


def run_table(app: Any, **environ_args: Any) -> None:
    failures = TableFailures()
    before = open_fds()
    values = values_of(run_wsgi(app, wsgi_environ(**environ_args)).headers)
    for case in CASES:
        result = run_wsgi(
            app, wsgi_environ(case.method, headers=request_headers(case, values), **environ_args)
        )
        assert "x-accel-source" not in result.headers
        failures.check(case, result.status, result.headers, result.body)
    assert open_fds() == before
    failures.done(len(CASES))


@pytest.mark.parametrize("server", SERVERS)
def test_table_marker_app(server: str, table_media: Media) -> None:
    app = XAccelWSGIMiddleware(marker_app(str(table_media.file)), table_media.settings())
    run_table(app, server_software=SERVERS[server])


@pytest.mark.parametrize("server", [*SERVERS, "no-server-wrapper"])
def test_table_file_wrapper_app(server: str, table_media: Media) -> None:
    app = XAccelWSGIMiddleware(file_wrapper_app(table_media.file), table_media.settings())
    if server == "no-server-wrapper":
        run_table(app, file_wrapper=None)
    else:
        run_table(app, server_software=SERVERS[server])


def test_table_through_httpx(table_media: Media) -> None:
    app = XAccelWSGIMiddleware(marker_app(str(table_media.file)), table_media.settings())
    failures = TableFailures()
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://test") as client:
        values = values_of(client.get("/").headers)
        for case in CASES:
            response = client.request(case.method, "/", headers=request_headers(case, values))
            headers = {k.lower(): v for k, v in response.headers.items()}
            failures.check(case, response.status_code, headers, response.content)
    failures.done(len(CASES))


# --- PEP 3333 corners -------------------------------------------------------


def test_plain_response_returns_the_same_iterable(media: Media) -> None:
    body = [b"<p>", b"hi</p>"]

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        return body

    returned = XAccelWSGIMiddleware(app, media.settings())(wsgi_environ(), lambda s, h, e=None: None)
    assert returned is body


def test_plain_response_under_validator(media: Media) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("201 Created", [("Content-Type", "text/html"), ("Set-Cookie", "a=1")])
        return [b"made"]

    result = run_wsgi(XAccelWSGIMiddleware(app, media.settings()), wsgi_environ())
    assert (result.status, result.body) == (201, b"made")
    assert result.raw_headers == [("Content-Type", "text/html"), ("Set-Cookie", "a=1")]


def test_lazy_start_response_with_a_marker(media: Media) -> None:
    """start_response may come with the first item of the body (PEP 3333)."""
    closed: list[bool] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        try:
            start_response("200 OK", [("Content-Type", "text/plain"), ("X-Accel-Source", str(media.file))])
            yield b"discarded"
        finally:
            closed.append(True)

    result = run_wsgi(XAccelWSGIMiddleware(app, media.settings()), wsgi_environ())
    assert (result.status, result.body) == (200, CONTENT)
    assert closed == [True]


def test_lazy_start_response_without_a_marker(media: Media) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"one "
        yield b"two"

    result = run_wsgi(XAccelWSGIMiddleware(app, media.settings()), wsgi_environ())
    assert (result.status, result.body) == (200, b"one two")


def test_lazy_app_that_fails_on_first_item_is_closed(media: Media) -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            raise RuntimeError("boom")

        def close(self) -> None:
            closed.append(True)

    with pytest.raises(RuntimeError, match="boom"):
        XAccelWSGIMiddleware(lambda e, s: Body(), media.settings())(wsgi_environ(), lambda *a: None)
    assert closed == [True]


def test_write_callable(media: Media) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        write = start_response(
            "200 OK", [("Content-Type", "text/plain"), ("X-Accel-Source", str(media.file))]
        )
        write(b"written ")
        return [b"returned"]

    result = run_wsgi(XAccelWSGIMiddleware(app, media.settings()), wsgi_environ())
    assert result.status == 200
    assert result.writes == [b"written "]
    assert result.body == b"written returned"
    assert "x-accel-source" not in result.headers


def test_app_sees_its_own_file_wrapper_and_server_gets_its_own_back(media: Media) -> None:
    seen: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        seen.append(environ["wsgi.file_wrapper"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"x"]

    environ = wsgi_environ()
    run_wsgi(XAccelWSGIMiddleware(app, media.settings()), environ)
    assert seen[0] is not wsgiref.util.FileWrapper
    assert environ["wsgi.file_wrapper"] is wsgiref.util.FileWrapper


def test_file_wrapper_with_other_status_uses_the_server_wrapper(media: Media) -> None:
    app = XAccelWSGIMiddleware(file_wrapper_app(media.file, status="404 Not Found"), media.settings())
    before = open_fds()
    result = run_wsgi(app, wsgi_environ())
    assert (result.status, result.body) == (404, CONTENT)
    assert open_fds() == before


def test_file_wrapper_without_fileno_is_sent_as_the_app_meant(media: Media) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"in memory"))

    result = run_wsgi(XAccelWSGIMiddleware(app, media.settings()), wsgi_environ())
    assert (result.status, result.body) == (200, b"in memory")


def test_file_wrapper_outside_roots_is_streamed_not_offloaded(media: Media) -> None:
    app = XAccelWSGIMiddleware(file_wrapper_app(media.private), media.settings(mode="offload"))
    result = run_wsgi(app, wsgi_environ())
    assert (result.status, result.body) == (200, media.private.read_bytes())
    assert "x-accel-redirect" not in result.headers


def test_file_wrapper_inside_roots_is_offloaded(media: Media) -> None:
    headers = [("Content-Type", "text/plain"), ("Content-Length", "11"), ("Content-Disposition", "inline")]
    app = XAccelWSGIMiddleware(file_wrapper_app(media.file, headers=headers), media.settings(mode="offload"))
    before = open_fds()
    result = run_wsgi(app, wsgi_environ())
    assert open_fds() == before
    assert (result.status, result.body) == (200, b"")
    assert result.headers["x-accel-redirect"] == "/protected/file.txt"
    assert result.headers["content-disposition"] == "inline"
    assert result.headers["content-length"] == "0"  # the app said 11; the body is empty


# --- Streaming guarantees ---------------------------------------------------


def _big_file(media: Media, size: int) -> Path:
    path = media.root / "big.bin"
    path.write_bytes(os.urandom(size))
    return path


@pytest.mark.parametrize("server", SERVERS)
def test_iterator_closed_early_closes_the_file_once(media: Media, server: str) -> None:
    big = _big_file(media, 1 << 20)
    app = XAccelWSGIMiddleware(marker_app(str(big)), media.settings(chunk_size=4096))
    before = open_fds()
    iterable = app(wsgi_environ(server_software=SERVERS[server]), lambda s, h, e=None: None)
    first = next(iter(iterable))
    assert len(first) > 0
    assert open_fds() == before + 1
    iterable.close()  # type: ignore[attr-defined]
    assert open_fds() == before
    iterable.close()  # type: ignore[attr-defined]  # a second close is harmless
    assert open_fds() == before


@pytest.mark.parametrize("server", SERVERS)
def test_file_that_grows_sends_no_more_than_content_length(media: Media, server: str) -> None:
    big = _big_file(media, 100_000)
    original = big.read_bytes()
    app = XAccelWSGIMiddleware(marker_app(str(big)), media.settings(chunk_size=4096))
    got: dict[str, Any] = {}
    iterable = app(wsgi_environ(server_software=SERVERS[server]), lambda s, h, e=None: got.update(h=dict(h)))
    with open(big, "ab") as f:
        f.write(b"x" * 50_000)
    try:
        body = b"".join(iterable)
    finally:
        iterable.close()  # type: ignore[attr-defined]
    assert got["h"]["content-length"] == str(len(original))
    assert body == original


def test_file_that_shrinks_aborts_and_never_pads(media: Media) -> None:
    big = _big_file(media, 100_000)
    app = XAccelWSGIMiddleware(marker_app(str(big)), media.settings(chunk_size=4096))
    before = open_fds()
    iterable = app(wsgi_environ(), lambda s, h, e=None: None)
    iterator = iter(iterable)
    received = next(iterator)
    os.truncate(big, 10_000)
    with pytest.raises(TruncatedFile):
        for chunk in iterator:
            received += chunk
    assert len(received) <= 10_000
    iterable.close()  # type: ignore[attr-defined]
    assert open_fds() == before


def test_the_app_file_is_closed_when_the_middleware_takes_over(media: Media) -> None:
    opened: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        opened.append(open(media.file, "rb"))  # noqa: SIM115
        return environ["wsgi.file_wrapper"](opened[0])

    result = run_wsgi(XAccelWSGIMiddleware(app, media.settings()), wsgi_environ())
    assert result.body == CONTENT
    assert opened[0].closed


def test_file_wrapper_of_a_file_read_into_is_sent_from_there(media: Media) -> None:
    """An app may hand over a file it has seeked into (Django's FileResponse
    then sets Content-Length from that position): that is what it meant."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        f = open(media.file, "rb")  # noqa: SIM115 (closed by the wrapper)
        f.seek(4)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(CONTENT) - 4))])
        return environ["wsgi.file_wrapper"](f)

    before = open_fds()
    result = run_wsgi(XAccelWSGIMiddleware(app, media.settings(mode="offload")), wsgi_environ())
    assert (result.status, result.body) == (200, CONTENT[4:])
    assert "x-accel-redirect" not in result.headers
    assert open_fds() == before


def test_file_wrapper_of_a_pipe_is_sent_as_the_app_meant(media: Media) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"from a pipe")
    os.close(write_end)

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        pipe = open(read_end, "rb", closefd=True, buffering=0)  # noqa: SIM115 (closed by the wrapper)
        pipe.name = "/dev/pipe"  # type: ignore[misc]  # a str name, as open(path) gives a FIFO
        return environ["wsgi.file_wrapper"](pipe)

    result = run_wsgi(XAccelWSGIMiddleware(app, media.settings()), wsgi_environ())
    assert (result.status, result.body) == (200, b"from a pipe")


def _wrapped(filelike: Any) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](filelike)  # type: ignore[no-any-return]

    return app


def test_a_compressed_file_object_is_sent_as_the_app_meant(media: Media) -> None:
    # gzip.open() has a name and an fd, but reads the decompressed text.
    import gzip

    packed = media.root / "text.gz"
    with gzip.open(packed, "wb") as out:
        out.write(CONTENT * 100)
    settings = media.settings(mode="offload")
    compressed = gzip.open(packed, "rb")  # noqa: SIM115 (the body owns it)
    result = run_wsgi(XAccelWSGIMiddleware(_wrapped(compressed), settings), wsgi_environ())
    assert (result.status, result.body) == (200, CONTENT * 100)
    assert "x-accel-redirect" not in result.headers


def test_a_deleted_temporary_file_is_streamed_not_offloaded(media: Media) -> None:
    # The proxy would open the name after the app closed and removed the file.
    scratch = media.root / "scratch.txt"
    scratch.write_bytes(CONTENT)
    handle = open(scratch, "rb")  # noqa: SIM115 (the body owns it)
    scratch.unlink()
    app = XAccelWSGIMiddleware(_wrapped(handle), media.settings(mode="offload"))
    result = run_wsgi(app, wsgi_environ())
    assert (result.status, result.body) == (200, CONTENT)
    assert "x-accel-redirect" not in result.headers


def test_a_replaced_file_is_streamed_from_what_the_app_opened(media: Media) -> None:
    handle = open(media.file, "rb")  # noqa: SIM115 (the body owns it)
    replacement = media.root / "new.txt"
    replacement.write_bytes(b"replaced!!\n")
    os.replace(replacement, media.file)
    result = run_wsgi(XAccelWSGIMiddleware(_wrapped(handle), media.settings(mode="offload")), wsgi_environ())
    assert (result.status, result.body) == (200, CONTENT)


def test_exc_info_after_the_start_goes_to_the_server(media: Media) -> None:
    seen: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial"
        try:
            raise ValueError("late")
        except ValueError:
            import sys

            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        yield b""

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen.append((status, exc_info is not None))
        return lambda data: None

    body = XAccelWSGIMiddleware(app, media.settings())(wsgi_environ(), start_response)
    assert b"".join(body) == b"partial"
    assert seen == [("200 OK", False), ("500 Internal Server Error", True)]
