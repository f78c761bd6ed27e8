"""WSGI contenders, all on one minimal Django project.

- ``django_app``: Django's ``FileResponse`` (gunicorn hands it to sendfile(2)
  through ``wsgi.file_wrapper``; Django has no Range support).
- ``whitenoise_app``: whitenoise serving the media folder under ``/f/``.
- ``xaccel_app``: the view answers with an ``X-Accel-Source`` header only,
  wrapped in ``XAccelWSGIMiddleware``.
- ``overhead_app``: a bare WSGI "hello" at ``/bare`` and the same app wrapped in
  the middleware at ``/wrapped``, in one process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    SECRET_KEY="benchmark-only-not-secret",
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    USE_TZ=True,
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import FileResponse, HttpRequest, HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from whitenoise import WhiteNoise  # noqa: E402

from xaccel_middleware import Settings, XAccelWSGIMiddleware, marker_for_path  # noqa: E402

MEDIA = os.environ.get("BENCH_MEDIA", "")
FILES = {name: os.path.join(MEDIA, name) for name in os.listdir(MEDIA)} if MEDIA else {}


def _hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"hello", content_type="text/plain; charset=utf-8")


def _file_response(request: HttpRequest, name: str) -> HttpResponse:
    file = FILES.get(name)
    if file is None:
        return HttpResponse(b"not found", status=404)
    return FileResponse(open(file, "rb"))  # type: ignore[return-value]


def _marker(request: HttpRequest, name: str) -> HttpResponse:
    file = FILES.get(name)
    if file is None:
        return HttpResponse(b"not found", status=404)
    response = HttpResponse()
    response["X-Accel-Source"] = marker_for_path(file)
    return response


urlpatterns = [
    path("f/<str:name>", _file_response),
    path("x/<str:name>", _marker),
    path("hello", _hello),
]

django_app = get_wsgi_application()
whitenoise_app = WhiteNoise(django_app, root=MEDIA or None, prefix="f/", autorefresh=False)


def _rewrite(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """Serve ``/f/NAME`` from the marker view, so every contender has the same URLs."""

    def rewritten(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ["PATH_INFO"].startswith("/f/"):
            environ["PATH_INFO"] = "/x/" + environ["PATH_INFO"][3:]
        return app(environ, start_response)

    return rewritten


xaccel_app = XAccelWSGIMiddleware(_rewrite(django_app), Settings.from_env())

_HELLO_HEADERS = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5")]


def _bare_hello(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", list(_HELLO_HEADERS))
    return [b"hello"]


_wrapped_hello = XAccelWSGIMiddleware(_bare_hello, Settings())


def overhead_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    app = _wrapped_hello if environ.get("PATH_INFO") == "/wrapped" else _bare_hello
    return app(environ, start_response)
