"""tests/apps' Django app with the ``/parity`` route (gunicorn)."""

from __future__ import annotations

from apps import INTERNAL_PREFIX, django_app, media_dir
from django.http import HttpRequest, HttpResponse
from django.urls import path

from xaccel_middleware import XAccelWSGIMiddleware, marker_for_path

from . import PARITY, SHADOW


def parity(request: HttpRequest, name: str) -> HttpResponse:
    single = {k: v for k, v in PARITY if k != "Set-Cookie"}
    response = HttpResponse(b"", headers=single)
    # Django keeps one header per name; Set-Cookie goes through its cookie jar.
    for name_, value in PARITY:
        if name_ == "Set-Cookie":
            cookie, _, _ = value.partition(";")
            key, _, morsel = cookie.partition("=")
            response.set_cookie(key, morsel, path="/", httponly="HttpOnly" in value)
    response["X-Accel-Source"] = marker_for_path(media_dir() / name)
    return response


def shadow(request: HttpRequest, rest: str) -> HttpResponse:
    return HttpResponse(SHADOW, content_type="text/plain")


# The URL configuration is read on the first request, so appending here is enough.
django_app.urlpatterns += [
    path("parity/<path:name>", parity),
    path(INTERNAL_PREFIX.lstrip("/") + "/<path:rest>", shadow),
]

application = XAccelWSGIMiddleware(django_app.application.app)
