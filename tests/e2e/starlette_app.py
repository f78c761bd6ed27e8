"""tests/apps' Starlette app with the ``/parity`` route (uvicorn, granian)."""

from __future__ import annotations

from apps import INTERNAL_PREFIX, media_dir
from apps.starlette_app import routes
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from xaccel_middleware import XAccelMiddleware, marker_for_path

from . import PARITY, SHADOW


async def parity(request: Request) -> Response:
    response = Response(b"")
    for name, value in PARITY:
        response.headers.append(name, value)
    response.headers["X-Accel-Source"] = marker_for_path(media_dir() / request.path_params["name"])
    return response


async def shadow(request: Request) -> Response:
    return Response(SHADOW, media_type="text/plain")


extra = [
    Route("/parity/{name:path}", parity, methods=["GET", "HEAD", "POST"]),
    Route(INTERNAL_PREFIX + "/{rest:path}", shadow),
]
app = XAccelMiddleware(Starlette(routes=[*routes, *extra]))
