"""A framework-free WSGI app (the ``wsgi.file_wrapper`` of Flask's ``send_file``),
served by gunicorn for the streaming-limit tests: it starts faster than Django
and leaves nothing between the server and the middleware."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http.cookies import SimpleCookie
from typing import Any

from xaccel_middleware import XAccelWSGIMiddleware, marker_for_path

from . import HELLO, media_dir, outside_path

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def _marker(start_response: StartResponse, target: object) -> Iterable[bytes]:
    start_response("200 OK", [("X-Accel-Source", marker_for_path(str(target)))])
    return []


def _name(environ: Environ, prefix: str) -> str:
    # PEP 3333: PATH_INFO holds the decoded bytes as latin-1.
    path: str = environ["PATH_INFO"]
    return path[len(prefix) :].encode("latin-1").decode("utf-8", "surrogateescape")


def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path.startswith("/marker/"):
        return _marker(start_response, media_dir() / _name(environ, "/marker/"))
    if path.startswith("/file/"):
        handle = open(media_dir() / _name(environ, "/file/"), "rb")  # noqa: SIM115
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](handle, 65536)  # type: ignore[no-any-return]
    if path == "/outside":
        return _marker(start_response, outside_path())
    if path.startswith("/gated/"):
        cookie = SimpleCookie(environ.get("HTTP_COOKIE", ""))
        if "session" not in cookie or cookie["session"].value != "ok":
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"log in first\n"]
        return _marker(start_response, media_dir() / _name(environ, "/gated/"))
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Hello", "1")])
        return [HELLO]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


application = XAccelWSGIMiddleware(app)
