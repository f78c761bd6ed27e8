"""Apps for the S3 tests, ASGI and WSGI alike: ``/s3/<key>`` answers with
``X-Accel-Source: s3://media/<key>`` and a Content-Disposition, and with the
Content-Type given as ``?type=``, nothing else.

``/fault/<mode>/<key>`` goes to a second middleware whose endpoint is the
loopback stand-in named by ``XACCEL_TEST_FAULT_<MODE>`` (see s3server.FakeS3),
with short timeouts, so that one server process serves both. ``/short/<key>``
presigns URLs that live one second. ``/replay?uri=...`` answers with an S3
offload of the URI given, as an app with a stale or forged one would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, quote

from xaccel_middleware import Settings, XAccelMiddleware, XAccelWSGIMiddleware

BUCKET = "media"
DISPOSITION = "attachment; filename=\"lecture.bin\"; filename*=UTF-8''a%20b%20%C3%BC.bin"


def marker_for(path: str) -> str | None:
    """The marker for a request path (decoded, as servers give it)."""
    for prefix in ("/s3/", "/fault/", "/short/"):
        if path.startswith(prefix):
            key = path[len(prefix) :].split("/", 1)[1] if prefix == "/fault/" else path[len(prefix) :]
            return f"s3://{BUCKET}/{quote(key.encode('utf-8'), safe='/')}"
    return None


def app_headers(marker: str, query: str) -> list[tuple[str, str]]:
    headers = [("X-Accel-Source", marker), ("Content-Disposition", DISPOSITION)]
    given = parse_qs(query).get("type")
    return [*headers, ("Content-Type", given[0])] if given else headers


def replay_headers(query: str) -> list[tuple[str, str]] | None:
    """The raw offload headers for ``/replay?uri=...``: no marker, so the
    middleware passes them on untouched."""
    uri = parse_qs(query).get("uri")
    if not uri:
        return None
    return [("X-Accel-Redirect", "/_xaccel_s3/"), ("X-Accel-S3-Uri", uri[0])]


def fault_settings(mode: str) -> Settings:
    base = Settings.from_env()
    if mode == "short":
        return dataclasses.replace(base, s3_url_lifetime=1)
    return dataclasses.replace(
        base,
        s3_endpoint_url=os.environ[f"XACCEL_TEST_FAULT_{mode.upper().replace('-', '_')}"],
        s3_connect_timeout=0.5,
        s3_read_timeout=1.0,
        chunk_size=16 * 1024,
    )


def _route(path: str) -> str:
    if path.startswith("/short/"):
        return "short"
    return path.split("/")[2] if path.startswith("/fault/") else ""


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def _asgi_inner(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    replay = replay_headers(scope.get("query_string", b"").decode("latin-1"))
    if scope["path"] == "/replay" and replay is not None:
        encoded = [(k.lower().encode(), v.encode()) for k, v in replay]
        await send({"type": "http.response.start", "status": 200, "headers": encoded})
        await send({"type": "http.response.body", "body": b""})
        return
    marker = marker_for(scope["path"])
    if marker is None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"no route"})
        return
    query = scope.get("query_string", b"").decode("latin-1")
    headers = [(k.lower().encode(), v.encode()) for k, v in app_headers(marker, query)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ignored"})


class _ASGIRouter:
    def __init__(self) -> None:
        self.apps: dict[str, XAccelMiddleware] = {"": XAccelMiddleware(_asgi_inner)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _route(scope.get("path", ""))
        if route not in self.apps:
            self.apps[route] = XAccelMiddleware(_asgi_inner, fault_settings(route))
        await self.apps[route](scope, receive, send)


def _wsgi_inner(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    # PEP 3333 gives the bytes as latin-1; httpx's WSGITransport gives UTF-8 text.
    with contextlib.suppress(UnicodeError):
        path = path.encode("latin-1").decode("utf-8")
    replay = replay_headers(environ.get("QUERY_STRING", ""))
    if path == "/replay" and replay is not None:
        start_response("200 OK", replay)
        return [b""]
    marker = marker_for(path)
    if marker is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no route"]
    start_response("200 OK", app_headers(marker, environ.get("QUERY_STRING", "")))
    return [b"ignored"]


class _WSGIRouter:
    def __init__(self) -> None:
        self.apps: dict[str, XAccelWSGIMiddleware] = {"": XAccelWSGIMiddleware(_wsgi_inner)}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        route = _route(environ["PATH_INFO"])
        if route not in self.apps:
            self.apps[route] = XAccelWSGIMiddleware(_wsgi_inner, fault_settings(route))
        return self.apps[route](environ, start_response)


asgi_app = _ASGIRouter()
wsgi_app = _WSGIRouter()
