"""The Starlette app, served by uvicorn and granian."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from xaccel_middleware import XAccelMiddleware, marker_for_path

from . import HELLO, media_dir, outside_path


def _marker(path: object) -> Response:
    return Response(b"", headers={"X-Accel-Source": marker_for_path(str(path))})


async def marker(request: Request) -> Response:
    return _marker(media_dir() / request.path_params["name"])


async def file(request: Request) -> Response:
    return FileResponse(media_dir() / request.path_params["name"])


async def outside(request: Request) -> Response:
    return _marker(outside_path())


async def gated(request: Request) -> Response:
    if request.cookies.get("session") != "ok":
        return PlainTextResponse("log in first\n", status_code=403)
    return _marker(media_dir() / request.path_params["name"])


async def hello(request: Request) -> Response:
    return Response(HELLO, media_type="text/plain", headers={"X-Hello": "1"})


routes = [
    Route("/marker/{name:path}", marker, methods=["GET", "HEAD", "POST"]),
    Route("/file/{name:path}", file, methods=["GET", "HEAD", "POST"]),
    Route("/outside", outside),
    Route("/gated/{name:path}", gated),
    Route("/hello", hello),
]

app = XAccelMiddleware(Starlette(routes=routes))
