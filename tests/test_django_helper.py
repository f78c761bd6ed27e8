"""The Django helper: stored files turned into ``X-Accel-Source`` values that the
middleware serves, for Django's FileSystemStorage and django-storages' S3
backend (against the test S3 server, through the storage's own upload)."""

from __future__ import annotations

import os
import wsgiref.validate
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

django = pytest.importorskip("django")
from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(USE_TZ=True)
    django.setup()

from django.core.files.base import ContentFile  # noqa: E402
from django.core.files.storage import FileSystemStorage  # noqa: E402
from django.db.models.fields.files import FieldFile, FileField  # noqa: E402
from s3server import BUCKET, CLIENT_ENV, shared  # noqa: E402

from xaccel_middleware import Settings, XAccelWSGIMiddleware  # noqa: E402
from xaccel_middleware.django import accel_response, accel_source  # noqa: E402
from xaccel_middleware.sources import parse_marker  # noqa: E402

NAME = "course/a b ü%#?.pdf"
DATA = b"%PDF-1.4 lecture notes\n"


def field_file(storage: Any, name: str) -> FieldFile:
    return FieldFile(None, FileField(storage=storage), name)


def serve(file: FieldFile, settings: Settings, **options: Any) -> httpx.Response:
    """The helper's response, as a view would return it, through the WSGI middleware."""

    def view(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        response = accel_response(file, **options)
        start_response("200 OK", list(response.items()))
        return [response.content]

    app = XAccelWSGIMiddleware(view, settings)
    with httpx.Client(
        transport=httpx.WSGITransport(wsgiref.validate.validator(app)), base_url="http://t"
    ) as c:
        return c.get("/download", headers={"range": "bytes=5-"})


def test_file_system_storage(tmp_path: Path) -> None:
    storage = FileSystemStorage(location=tmp_path / "media")
    name = storage.save(NAME, ContentFile(DATA))
    file = field_file(storage, name)
    marker = accel_source(file)
    assert marker.startswith("file:///") and " " not in marker and "?" not in marker
    assert parse_marker(marker.encode("latin-1")) == os.path.realpath(storage.path(name))
    response = serve(file, Settings(roots={str(tmp_path / "media"): "/protected"}), as_attachment=True)
    assert response.status_code == 206 and response.content == DATA[5:]
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert "filename*=utf-8''a%20b%20%C3%BC%25%23%3F.pdf" in response.headers["content-disposition"]


def test_django_storages_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("storages.backends.s3")
    from storages.backends.s3 import S3Storage

    s3 = shared()
    for key, value in CLIENT_ENV.items():
        monkeypatch.setenv(key, value)
    storage = S3Storage(
        bucket_name=BUCKET,
        location="courses/v1",
        endpoint_url=s3.endpoint,
        region_name="us-east-1",
        access_key=CLIENT_ENV["AWS_ACCESS_KEY_ID"],
        secret_key=CLIENT_ENV["AWS_SECRET_ACCESS_KEY"],
        addressing_style="path",
        file_overwrite=True,
    )
    name = storage.save(NAME, ContentFile(DATA))
    file = field_file(storage, name)
    marker = accel_source(file)
    assert marker == "s3://media/courses/v1/course/a%20b%20%C3%BC%25%23%3F.pdf"
    # The key the storage wrote is the one the marker names.
    assert s3.client().get_object(Bucket=BUCKET, Key="courses/v1/" + NAME)["Body"].read() == DATA
    response = serve(file, s3.settings(mode="stream"), filename="notes.pdf")
    assert response.status_code == 206 and response.content == DATA[5:]
    assert response.headers["content-disposition"] == 'inline; filename="notes.pdf"'


def test_unsupported_storage_is_refused() -> None:
    class Remote:
        def path(self, name: str) -> str:
            raise NotImplementedError

    with pytest.raises(ValueError, match="cannot be offloaded"):
        accel_source(field_file(Remote(), "x.bin"))
    with pytest.raises(ValueError, match="no name"):
        accel_source(field_file(FileSystemStorage(), ""))
