"""Where files come from. A marker names a local path or an S3 object; a source
gives the core its metadata and the adapters its bytes."""

from __future__ import annotations

import email.header
import os
from dataclasses import dataclass
from typing import Union
from urllib.parse import quote, unquote_to_bytes, urlsplit

from ..errors import SourceError


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str


Marker = Union[str, S3Location]


def marker_for_path(path: str | os.PathLike[str]) -> str:
    """An ``X-Accel-Source`` value for a local path: a ``file://`` URI, so that any
    name (non-ASCII, spaces, ``%``) fits in a latin-1 header unchanged."""
    return "file://" + quote(os.fsencode(os.path.abspath(path)), safe="/")


def parse_marker(raw: bytes) -> Marker:
    """Read an ``X-Accel-Source`` value: an absolute path, ``file://`` or ``s3://``.

    Anything else, and any NUL, CR or LF, is refused with a 404: a marker is
    the app's word, but a bad one must never turn into a path we open.
    """
    if raw.startswith(b"=?"):
        # Django MIME-encodes header values that are not latin-1 (RFC 2047).
        raw = b"".join(
            part if isinstance(part, bytes) else part.encode()
            for part, _ in email.header.decode_header(raw.decode("latin-1"))
        )
    if b"\x00" in raw or b"\r" in raw or b"\n" in raw:
        raise SourceError(404, "marker holds NUL, CR or LF")
    if raw.startswith(b"s3://"):
        parts = urlsplit(raw.decode("latin-1"))
        key = unquote_to_bytes(parts.path.lstrip("/"))
        if not parts.netloc or not key or parts.query or parts.fragment:
            raise SourceError(404, "s3 marker needs s3://bucket/key")
        return S3Location(parts.netloc, key.decode("utf-8", "surrogateescape"))
    if raw.startswith(b"file:"):
        parts = urlsplit(raw.decode("latin-1"))
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise SourceError(404, "file marker must be file:///absolute/path")
        raw = unquote_to_bytes(parts.path)
        if b"\x00" in raw or b"\r" in raw or b"\n" in raw:
            raise SourceError(404, "marker holds NUL, CR or LF")
    if not raw.startswith(b"/"):
        raise SourceError(404, "marker is not an absolute path")
    return os.fsdecode(raw)
