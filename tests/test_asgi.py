"""The ASGI adapter in-process: the shared table over a marker app and over
Starlette's FileResponse (pathsend), with servers offering no extension,
pathsend or zerocopysend; then the streaming guarantees (bounded body, file
closed exactly once, client disconnects)."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_driver import PATHSEND, ZEROCOPY, ClientGone, Message, call, scope_for
from cases import CASES, CONTENT, request_headers, validators
from conftest import Media, TableFailures, open_fds
from starlette.responses import FileResponse

from xaccel_middleware import Settings, XAccelMiddleware, asgi
from xaccel_middleware.decide import Stream
from xaccel_middleware.sources.local import LocalFile, TruncatedFile

EXTENSIONS = {"none": (), "pathsend": (PATHSEND,), "zerocopysend": (ZEROCOPY,), "both": (PATHSEND, ZEROCOPY)}


def marker_app(marker: str, headers: list[tuple[bytes, bytes]] | None = None, status: int = 200) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        start = [
            (b"content-type", b"text/plain"),
            *(headers or []),
            (b"x-accel-source", marker.encode("latin-1")),
        ]
        await send({"type": "http.response.start", "status": status, "headers": start})
        await send({"type": "http.response.body", "body": b"discarded", "more_body": True})
        await send({"type": "http.response.body", "body": b" too"})

    return app


def file_response_app(path: Path, status: int = 200) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await FileResponse(path, status_code=status)(scope, receive, send)

    return app


def values_of(response_headers: Mapping[str, str]) -> dict[str, str]:
    """The table's placeholders, from what a plain GET answered (the app may set its own ETag)."""
    mtime = email.utils.parsedate_to_datetime(response_headers["last-modified"]).timestamp()
    return validators(response_headers["etag"], mtime)


async def run_table(app: Any, extensions: tuple[str, ...]) -> None:
    failures = TableFailures()
    before = open_fds()
    probe = await call(app, extensions=extensions)
    assert probe.status == 200, probe
    values = values_of(probe.headers)
    for case in CASES:
        response = await call(app, case.method, headers=request_headers(case, values), extensions=extensions)
        assert response.status is not None
        assert response.complete, case.id
        assert "x-accel-source" not in response.headers
        failures.check(case, response.status, response.headers, response.body)
    assert open_fds() == before
    failures.done(len(CASES))


# Small files are read in one go (prefetch), whatever the server offers; with
# prefetch off, the chunked, pathsend and zerocopysend paths of large files run.
VARIANTS = {
    "prefetch": (True, "none"),
    "chunked": (False, "none"),
    "pathsend": (False, "pathsend"),
    "zerocopysend": (False, "zerocopysend"),
}


@pytest.fixture(params=VARIANTS)
def variant(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[str, ...]:
    prefetch, server = VARIANTS[request.param]
    if not prefetch:
        monkeypatch.setattr(Stream, "prefetch", lambda self, limit: None)
    return EXTENSIONS[server]


async def test_table_marker_app(variant: tuple[str, ...], table_media: Media) -> None:
    await run_table(XAccelMiddleware(marker_app(str(table_media.file)), table_media.settings()), variant)


# Starlette speaks pathsend only: with zerocopysend it runs as "chunked" does.
@pytest.mark.parametrize("variant", ["prefetch", "chunked", "pathsend"], indirect=True)
async def test_table_starlette_file_response(variant: tuple[str, ...], table_media: Media) -> None:
    app = XAccelMiddleware(file_response_app(table_media.file), table_media.settings())
    await run_table(app, variant)


async def test_table_through_httpx(table_media: Media) -> None:
    app = XAccelMiddleware(marker_app(str(table_media.file)), table_media.settings())
    failures = TableFailures()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        values = values_of((await client.get("/")).headers)
        for case in CASES:
            response = await client.request(case.method, "/", headers=request_headers(case, values))
            headers = {k.lower(): v for k, v in response.headers.items()}
            failures.check(case, response.status_code, headers, response.content)
    failures.done(len(CASES))


async def test_pathsend_is_advertised_to_the_app_whatever_the_server_offers(media: Media) -> None:
    offered: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        offered.append(dict(scope["extensions"]))
        await FileResponse(media.file)(scope, receive, send)

    middleware = XAccelMiddleware(app, media.settings())
    response = await call(middleware, extensions=())
    assert PATHSEND in offered[0]
    assert response.kinds == ["http.response.start", "http.response.body"]
    assert response.body == CONTENT


@pytest.mark.parametrize("server", ["none", "pathsend"])
async def test_file_response_with_other_status_passes_through(server: str, media: Media) -> None:
    """A FileResponse with status 404 (an error page) is not ours to plan; its
    pathsend must still reach a server that does not offer pathsend as bytes."""
    app = XAccelMiddleware(file_response_app(media.file, status=404), media.settings())
    response = await call(app, extensions=EXTENSIONS[server])
    assert response.status == 404
    assert response.body == CONTENT
    assert response.complete
    assert (PATHSEND in response.kinds) == (server == "pathsend")


async def test_file_response_outside_roots_is_streamed_not_offloaded(media: Media) -> None:
    app = XAccelMiddleware(file_response_app(media.private), media.settings(mode="offload"))
    response = await call(app)
    assert response.status == 200
    assert response.body == media.private.read_bytes()
    assert "x-accel-redirect" not in response.headers


async def test_file_response_inside_roots_is_offloaded(media: Media) -> None:
    app = XAccelMiddleware(file_response_app(media.file), media.settings(mode="offload"))
    response = await call(app, extensions=(PATHSEND,))
    assert response.status == 200
    assert response.body == b""
    assert response.headers["x-accel-redirect"] == "/protected/file.txt"
    assert response.headers["content-length"] == "0"  # the empty body, not the file
    assert response.headers["content-type"].startswith("text/plain")


async def test_plain_responses_pass_untouched(media: Media) -> None:
    sent = [
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]},
        {"type": "http.response.body", "body": b"<p>", "more_body": True},
        {"type": "http.response.body", "body": b"hi</p>", "more_body": False},
    ]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for message in sent:
            await send(message)

    response = await call(XAccelMiddleware(app, media.settings()))
    assert response.status == 200
    assert response.raw_headers == [(b"content-type", b"text/html")]
    assert response.body == b"<p>hi</p>"
    assert response.kinds == [m["type"] for m in sent]


async def test_non_http_scopes_pass_through(media: Media) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    await XAccelMiddleware(app, media.settings())({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


async def test_a_second_start_replaces_the_first_and_its_marker(media: Media) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"x-accel-source", str(media.file).encode())],
            }
        )
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"app", "more_body": False})

    response = await call(XAccelMiddleware(app, media.settings()))
    assert (response.status, response.body) == (200, b"app")


async def test_marker_on_non_200_is_stripped_and_body_kept(media: Media) -> None:
    app = XAccelMiddleware(marker_app(str(media.file), status=403), media.settings())
    response = await call(app)
    assert response.status == 403
    assert "x-accel-source" not in response.headers
    assert response.body == b"discarded too"


async def test_zerocopysend_carries_the_span_of_a_range(media: Media) -> None:
    big = _big_file(media, 1 << 20)
    app = XAccelMiddleware(marker_app(str(big)), media.settings(chunk_size=4096))
    response = await call(app, headers={"range": "bytes=1000-200999"}, extensions=(ZEROCOPY, PATHSEND))
    assert response.status == 206
    assert response.kinds == ["http.response.start", ZEROCOPY]
    assert response.body == big.read_bytes()[1000:201000]


# --- Streaming guarantees ---------------------------------------------------


def _big_file(media: Media, size: int) -> Path:
    path = media.root / "big.bin"
    path.write_bytes(os.urandom(size))
    return path


@pytest.mark.parametrize("raise_after", [False, True], ids=["silent", "oserror"])
async def test_client_disconnect_stops_reading_and_closes_the_file(media: Media, raise_after: bool) -> None:
    big = _big_file(media, 1 << 20)
    app = XAccelMiddleware(marker_app(str(big)), media.settings(chunk_size=4096))
    before = open_fds()
    try:
        response = await call(app, disconnect_after=3, raise_after_disconnect=raise_after)
    except ClientGone:
        response = None
    assert open_fds() == before
    if response is not None:
        # 256 chunks in all; the watcher notices the disconnect within a few.
        assert response.body_messages < 20
        assert not response.complete


async def test_file_closed_after_a_full_stream(media: Media) -> None:
    big = _big_file(media, 300_000)
    app = XAccelMiddleware(marker_app(str(big)), media.settings(chunk_size=4096))
    before = open_fds()
    response = await call(app)
    assert open_fds() == before
    assert response.body == big.read_bytes()
    assert int(response.headers["content-length"]) == len(response.body)
    assert response.body_messages > 70  # chunked, not one read


@pytest.mark.parametrize("server", ["none", "zerocopysend"])
async def test_file_that_grows_sends_no_more_than_content_length(media: Media, server: str) -> None:
    big = _big_file(media, 100_000)
    original = big.read_bytes()

    def grow(message: Message) -> None:
        if message["type"] == "http.response.start":
            with open(big, "ab") as f:
                f.write(b"x" * 50_000)

    app = XAccelMiddleware(marker_app(str(big)), media.settings(chunk_size=4096))
    response = await call(app, extensions=EXTENSIONS[server], on_message=grow)
    assert response.headers["content-length"] == str(len(original))
    assert response.body == original


async def test_file_that_shrinks_aborts_and_never_pads(media: Media) -> None:
    big = _big_file(media, 100_000)
    shrunk: list[int] = []

    def shrink(message: Message) -> None:
        if message["type"] == "http.response.body" and not shrunk:
            os.truncate(big, 10_000)
            shrunk.append(1)

    app = XAccelMiddleware(marker_app(str(big)), media.settings(chunk_size=4096))
    before = open_fds()
    with pytest.raises(OSError, match="shrank"):
        await call(app, on_message=shrink)
    assert shrunk
    assert open_fds() == before


async def test_small_file_that_vanished_is_a_404(media: Media) -> None:
    app = XAccelMiddleware(marker_app(str(media.root / "gone.txt")), media.settings())
    response = await call(app)
    assert response.status == 404
    assert response.body == b"Not Found"


def test_settings_from_env_when_none_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XACCEL_MODE", "stream")
    assert XAccelMiddleware(marker_app("/x")).settings == Settings(mode="stream")


@pytest.mark.parametrize(
    ("offered", "used"),
    [((ZEROCOPY, PATHSEND), ZEROCOPY), ((PATHSEND,), PATHSEND), ((), "http.response.body")],
)
async def test_large_file_goes_by_the_best_extension_offered(
    media: Media, offered: tuple[str, ...], used: str
) -> None:
    """zerocopysend first: it sends from the planned fd with a count, so the
    body stays bounded; pathsend makes the server open the path again."""
    big = _big_file(media, 200_000)
    app = XAccelMiddleware(marker_app(str(big)), media.settings(chunk_size=4096))
    before = open_fds()
    response = await call(app, extensions=offered)
    assert open_fds() == before
    assert response.kinds[1] == used
    assert response.body == big.read_bytes()


async def test_a_file_the_app_handed_over_by_name_goes_back_by_pathsend(media: Media) -> None:
    big = _big_file(media, 200_000)
    outside = media.private.parent / "big.bin"
    outside.write_bytes(big.read_bytes())
    app = XAccelMiddleware(file_response_app(outside), media.settings(chunk_size=4096))
    response = await call(app, extensions=(PATHSEND,))
    assert response.kinds == ["http.response.start", PATHSEND]
    assert response.body == big.read_bytes()


async def test_a_failed_read_before_the_answer_closes_the_file(
    media: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(self: Stream, limit: int) -> None:
        raise TruncatedFile("shrank")

    monkeypatch.setattr(Stream, "prefetch", fail)
    app = XAccelMiddleware(marker_app(str(media.file)), media.settings())
    before = open_fds()
    with pytest.raises(TruncatedFile):
        await call(app)
    assert open_fds() == before


async def test_a_request_cancelled_while_the_pool_reads_leaves_no_descriptor(
    media: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = threading.Event(), threading.Event()
    prefetch = Stream.prefetch

    def slow(self: Stream, limit: int) -> list[bytes] | None:
        entered.set()
        release.wait(5)
        return prefetch(self, limit)

    monkeypatch.setattr(Stream, "prefetch", slow)
    monkeypatch.setattr(asgi, "cached", lambda fd, span: False)  # as if on disk: read in the pool
    app = XAccelMiddleware(marker_app(str(media.file)), media.settings())
    before = open_fds()
    task = asyncio.ensure_future(call(app))
    while not entered.is_set():
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    assert open_fds() == before


async def test_a_request_cancelled_while_a_passed_pathsend_opens_leaves_no_descriptor(
    media: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FileResponse with another status than 200, on a server without pathsend:
    the middleware reads the file itself, and a cancel while it opens the file
    must not lose the descriptor."""
    opened = LocalFile.open.__func__  # type: ignore[attr-defined]

    def slow_open(cls: type[LocalFile], path: str, follow: bool = False) -> LocalFile:
        time.sleep(0.2)
        return opened(cls, path, follow)  # type: ignore[no-any-return]

    monkeypatch.setattr(LocalFile, "open", classmethod(slow_open))
    app = XAccelMiddleware(file_response_app(media.file, status=404), media.settings())
    before = open_fds()
    task = asyncio.ensure_future(call(app))
    await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.3)  # any open still running elsewhere has finished
    assert open_fds() == before


async def test_upper_case_header_names_are_still_owned(media: Media) -> None:
    seen: list[list[tuple[bytes, bytes]]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["headers"])
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"x-accel-source", str(media.file).encode())],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    settings = media.settings(proxy_secret="s" * 20)
    scope = scope_for(headers={"Range": "bytes=0-1", "X-Sendfile-Type": "X-Accel-Redirect"})
    scope["headers"] += [(b"X-Accel-Proxy-Secret", b"s" * 20), (b"RANGE", b"bytes=0-1")]
    messages: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        messages.append(message)

    await XAccelMiddleware(app, settings)(scope, receive, send)
    assert [
        n for n, _ in seen[0] if n.lower() in (b"range", b"x-accel-proxy-secret", b"x-sendfile-type")
    ] == []
    assert (b"x-accel-redirect", b"/protected/file.txt") in messages[0]["headers"]


async def test_a_message_before_the_start_does_not_disarm_the_marker(media: Media) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.debug", "info": {}})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"x-accel-source", str(media.file).encode())],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    messages: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        messages.append(message)

    await XAccelMiddleware(app, media.settings(mode="stream"))(scope_for(), receive, send)
    assert messages[0]["type"] == "http.response.debug"
    start = messages[1]
    assert all(name != b"x-accel-source" for name, _ in start["headers"])
    assert b"".join(m.get("body", b"") for m in messages[2:]) == CONTENT
