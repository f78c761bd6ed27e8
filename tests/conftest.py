"""Fixtures shared by the in-process adapter tests.

``media``: a root folder holding the table's 11-byte file, and a sibling folder
that shares its name as a prefix (``media-private``) holding a secret.
``exchange``: one request through either adapter, with what the inner app saw
and what the client got, so that one test body covers ASGI and WSGI alike.
"""

from __future__ import annotations

import asyncio
import io
import os
import wsgiref.util
import wsgiref.validate
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from asgi_driver import call
from cases import CONTENT, Case, check

from xaccel_middleware import Settings, XAccelMiddleware, XAccelWSGIMiddleware

PREFIX = "/protected"
SECRET = "s3cret-s3cret-s3cret"


@dataclass(frozen=True)
class Media:
    root: Path  # configured root
    file: Path  # CONTENT, inside the root
    private: Path  # a secret file in a sibling folder sharing the root's name as prefix

    def settings(self, **changes: Any) -> Settings:
        return Settings(roots={str(self.root): PREFIX}, **changes)


@pytest.fixture
def media(tmp_path: Path) -> Media:
    root = tmp_path / "media"
    root.mkdir()
    file = root / "file.txt"
    file.write_bytes(CONTENT)
    sibling = tmp_path / "media-private"
    sibling.mkdir()
    private = sibling / "secret.txt"
    private.write_bytes(b"top secret\n")
    return Media(root, file, private)


@pytest.fixture(scope="session")
def table_media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    """Like ``media``, shared by the table runs, which only read it."""
    base = tmp_path_factory.mktemp("table")
    root = base / "media"
    root.mkdir()
    file = root / "file.txt"
    file.write_bytes(CONTENT)
    (base / "media-private").mkdir()
    private = base / "media-private" / "secret.txt"
    private.write_bytes(b"top secret\n")
    return Media(root, file, private)


class TableFailures:
    """Runs every case of the table in one test and reports all that failed,
    each with its id: thousands of tiny tests would cost more in pytest's own
    overhead than the requests do."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.ran = 0

    def check(self, case: Case, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.ran += 1
        try:
            check(case, status, headers, body)
        except AssertionError as exc:
            self.failed.append(f"{case.id}: {exc!r} (status {status})")

    def done(self, expected: int) -> None:
        assert self.ran == expected > 0, (self.ran, expected)
        assert not self.failed, f"{len(self.failed)} of {self.ran} cases failed:\n" + "\n".join(self.failed)


def open_fds() -> int:
    """How many descriptors this process holds: a leak shows up as a difference."""
    return len(os.listdir("/proc/self/fd"))


# --- WSGI -------------------------------------------------------------------


def wsgi_environ(
    method: str = "GET",
    path: str = "/",
    headers: Mapping[str, str] = {},
    remote_addr: str = "127.0.0.1",
    file_wrapper: Any = wsgiref.util.FileWrapper,
    server_software: str = "WSGIServer/0.2",
) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "REMOTE_ADDR": remote_addr,
        "SERVER_SOFTWARE": server_software,
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
    }
    wsgiref.util.setup_testing_defaults(environ)
    if file_wrapper is not None:
        environ["wsgi.file_wrapper"] = file_wrapper
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
    return environ


@dataclass
class WSGIResult:
    status: int
    raw_headers: list[tuple[str, str]]
    body: bytes
    iterable: Any = None
    writes: list[bytes] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.raw_headers}


_check_content_type = wsgiref.validate.check_content_type


def _lenient_check_content_type(status: str, headers: list[tuple[str, str]]) -> None:
    # wsgiref wants a Content-Type on every status but 204 and 304. The core
    # plans 412 and 416 with no content at all, and RFC 9110 §8.3 asks for the
    # type only of a message that has content: that one case is let through.
    if status[:3] in ("412", "416") and ("content-length", "0") in [(k.lower(), v) for k, v in headers]:
        return
    _check_content_type(status, headers)


def run_wsgi(
    app: Callable[..., Iterable[bytes]], environ: dict[str, Any], validate: bool = True
) -> WSGIResult:
    """Call ``app`` as a server would, under ``wsgiref.validate`` unless told
    otherwise: iterate the body, then close it."""
    got: dict[str, Any] = {}
    writes: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        got["status"], got["headers"] = status, headers
        return writes.append

    wrapped = wsgiref.validate.validator(app) if validate else app
    with mock.patch.object(wsgiref.validate, "check_content_type", _lenient_check_content_type):
        iterable = wrapped(environ, start_response)
        try:
            body = b"".join(iterable)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
    return WSGIResult(int(got["status"][:3]), got["headers"], b"".join(writes) + body, iterable, writes)


# --- One exchange through either adapter ------------------------------------


@dataclass
class Exchange:
    status: int
    raw_headers: list[tuple[str, str]]  # lower-case names
    body: bytes
    seen: set[str]  # lower-case request header names the inner app saw

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.raw_headers)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.raw_headers if k == name]


ExchangeFn = Callable[..., Exchange]


def _asgi_exchange(
    settings: Settings,
    app_headers: list[tuple[str, str]],
    *,
    status: int = 200,
    request_headers: Mapping[str, str] = {},
    client: str = "127.0.0.1",
    method: str = "GET",
    app_body: bytes = b"app body",
) -> Exchange:
    seen: set[str] = set()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(k.decode("latin-1") for k, _ in scope["headers"])
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in app_headers]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": app_body})

    middleware = XAccelMiddleware(app, settings)
    response = asyncio.run(call(middleware, method, "/", request_headers, client=(client, 50000)))
    assert response.status is not None
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers]
    return Exchange(response.status, headers, response.body, seen)


def _wsgi_exchange(
    settings: Settings,
    app_headers: list[tuple[str, str]],
    *,
    status: int = 200,
    request_headers: Mapping[str, str] = {},
    client: str = "127.0.0.1",
    method: str = "GET",
    app_body: bytes = b"app body",
) -> Exchange:
    seen: set[str] = set()

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        seen.update(k[5:].lower().replace("_", "-") for k in environ if k.startswith("HTTP_"))
        start_response(f"{status} X", list(app_headers))
        return [app_body]

    environ = wsgi_environ(method, "/", request_headers, remote_addr=client)
    result = run_wsgi(XAccelWSGIMiddleware(app, settings), environ)
    headers = [(k.lower(), v) for k, v in result.raw_headers]
    return Exchange(result.status, headers, result.body, seen)


@pytest.fixture(params=["asgi", "wsgi"])
def exchange(request: pytest.FixtureRequest) -> ExchangeFn:
    """``exchange(settings, app_headers, status=..., request_headers=..., client=..., method=...)``"""
    return _asgi_exchange if request.param == "asgi" else _wsgi_exchange
