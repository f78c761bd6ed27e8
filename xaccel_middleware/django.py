"""Django: the ``X-Accel-Source`` value for a stored file, and a response that uses it.

A view checks permissions and returns ``accel_response(obj.attachment)``; the
middleware then offloads the file or streams it with Range support::

    from xaccel_middleware.django import accel_response

    def download(request, pk):
        doc = get_object_or_404(Document, pk=pk, owner=request.user)
        return accel_response(doc.attachment, as_attachment=True)

Storages understood:

- django-storages' S3 backend (``S3Storage``, formerly ``S3Boto3Storage``):
  ``s3://BUCKET/KEY``, where KEY includes the storage's ``location`` prefix,
  exactly as the storage itself names the object. The bucket must be listed
  in ``XACCEL_S3_BUCKETS``.
- any storage with a local ``path()`` (``FileSystemStorage``): a ``file://``
  URI. The file must lie under one of ``XACCEL_ROOTS``.

Anything else raises ``ValueError``: there is no safe guess. Django is imported
only when these functions run, so the package does not depend on it.
"""

from __future__ import annotations

import importlib
import mimetypes
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from .sources import marker_for_path

if TYPE_CHECKING:
    from django.http import HttpResponse


class StoredFile(Protocol):
    """A ``FieldFile`` or anything else that knows its name and its storage."""

    name: str | None
    storage: Any


def accel_source(file: StoredFile) -> str:
    """The ``X-Accel-Source`` value for a stored file."""
    if not file.name:
        raise ValueError("the file has no name: nothing was stored")
    storage = file.storage
    if _is_s3(storage):
        return _s3_marker(storage, file.name)
    try:
        path = storage.path(file.name)
    except NotImplementedError:
        raise ValueError(
            f"{type(storage).__name__} has neither a local path nor an S3 bucket: it cannot be offloaded"
        ) from None
    return marker_for_path(path)


def accel_response(
    file: StoredFile,
    *,
    content_type: str | None = None,
    as_attachment: bool = False,
    filename: str | None = None,
) -> HttpResponse:
    """An empty 200 response that names the file; the middleware sends it.

    Content-Type is guessed from the name unless given; Content-Disposition is
    Django's own (RFC 6266, with ``filename*`` for non-ASCII names).
    """
    from django.http import HttpResponse
    from django.utils.http import content_disposition_header

    name = filename or (file.name or "").rsplit("/", 1)[-1]
    response = HttpResponse(
        content_type=content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    )
    response["X-Accel-Source"] = accel_source(file)
    disposition = content_disposition_header(as_attachment, name)
    if disposition:
        response["Content-Disposition"] = disposition
    return response


def _is_s3(storage: Any) -> bool:
    for module, name in (
        ("storages.backends.s3", "S3Storage"),
        ("storages.backends.s3boto3", "S3Boto3Storage"),
    ):
        try:
            backend = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        return isinstance(storage, backend)
    return False


def _s3_marker(storage: Any, name: str) -> str:
    """The object key as the storage computes it (location prefix included)."""
    from storages.utils import clean_name

    key = storage._normalize_name(clean_name(name))
    return f"s3://{storage.bucket_name}/{quote(key.encode('utf-8'), safe='/')}"
