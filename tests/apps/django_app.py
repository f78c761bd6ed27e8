"""The Django app, served by gunicorn: settings in code, no project folder."""

from __future__ import annotations

from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="xaccel-test-only",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    USE_TZ=True,
)

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import FileResponse, HttpRequest, HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

from xaccel_middleware import XAccelWSGIMiddleware, marker_for_path  # noqa: E402

from . import HELLO, media_dir, outside_path  # noqa: E402


def _marker(target: object) -> HttpResponse:
    response = HttpResponse(b"", headers={"X-Accel-Source": marker_for_path(str(target))})
    # Django always sets text/html; without it the middleware guesses from the name.
    del response["Content-Type"]
    return response


def marker(request: HttpRequest, name: str) -> HttpResponse:
    return _marker(media_dir() / name)


def file(request: HttpRequest, name: str) -> FileResponse:
    return FileResponse(open(media_dir() / name, "rb"))


def outside(request: HttpRequest) -> HttpResponse:
    return _marker(outside_path())


def gated(request: HttpRequest, name: str) -> HttpResponse:
    if request.COOKIES.get("session") != "ok":
        return HttpResponse(b"log in first\n", status=403, content_type="text/plain")
    return _marker(media_dir() / name)


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(HELLO, content_type="text/plain", headers={"X-Hello": "1"})


urlpatterns = [
    path("marker/<path:name>", marker),
    path("file/<path:name>", file),
    path("outside", outside),
    path("gated/<path:name>", gated),
    path("hello", hello),
]

application = XAccelWSGIMiddleware(get_wsgi_application())
