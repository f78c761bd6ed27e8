"""ASGI contenders, all on Starlette so that routing costs the same everywhere.

- ``starlette_app``: Starlette's own ``FileResponse``.
- ``xaccel_app``: the same route answers with an ``X-Accel-Source`` header only,
  wrapped in ``XAccelMiddleware`` (settings from ``XACCEL_*``). It streams, or
  offloads when a trusted proxy asks; ``/hello`` is its non-file endpoint.
- ``overhead_app``: a bare ASGI "hello" at ``/bare`` and the same app wrapped in
  the middleware at ``/wrapped``, in one process, so that the two differ only by
  the middleware.
"""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from xaccel_middleware import Settings, XAccelMiddleware, marker_for_path

MEDIA = os.environ.get("BENCH_MEDIA", "")
FILES = {name: os.path.join(MEDIA, name) for name in os.listdir(MEDIA)} if MEDIA else {}


async def _hello(request: Request) -> Response:
    return PlainTextResponse("hello")


async def _file_response(request: Request) -> Response:
    path = FILES.get(request.path_params["name"])
    if path is None:
        return PlainTextResponse("not found", status_code=404)
    return FileResponse(path)


async def _marker(request: Request) -> Response:
    path = FILES.get(request.path_params["name"])
    if path is None:
        return PlainTextResponse("not found", status_code=404)
    return Response(headers={"x-accel-source": marker_for_path(path)})


starlette_app = Starlette(routes=[Route("/f/{name}", _file_response), Route("/hello", _hello)])
xaccel_app = XAccelMiddleware(
    Starlette(routes=[Route("/f/{name}", _marker), Route("/hello", _hello)]),
    Settings.from_env(),
)

_HELLO_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"5")],
}
_HELLO_BODY = {"type": "http.response.body", "body": b"hello"}


async def _bare_hello(scope: Any, receive: Any, send: Any) -> None:
    await send(_HELLO_START)
    await send(_HELLO_BODY)


_wrapped_hello = XAccelMiddleware(_bare_hello, Settings())


async def overhead_app(scope: Any, receive: Any, send: Any) -> None:
    app = _wrapped_hello if scope.get("path") == "/wrapped" else _bare_hello
    await app(scope, receive, send)
