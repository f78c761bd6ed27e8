"""Where files come from. A marker names a local path or an S3 object; a source
gives the core its metadata and the adapters its bytes."""

from __future__ import annotations

import email.errors
import email.header
import os
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from ..errors import SourceError


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str


Marker = str | S3Location


def marker_for_path(path: str | os.PathLike[str]) -> str:
    """An ``X-Accel-Source`` value for a local path: a ``file://`` URI, so that any
    name (non-ASCII, spaces, ``%``) fits in a latin-1 header unchanged."""
    return "file://" + quote(os.fsencode(os.path.abspath(path)), safe="/")


def parse_marker(raw: bytes) -> Marker:
    """Read an ``X-Accel-Source`` value: an absolute path, ``file://`` or ``s3://``.

    A header carries bytes. Bytes that are valid UTF-8 are taken as they are;
    any other bytes are latin-1 text (how Django, Starlette and PEP 3333 write a
    ``str`` header value) and are encoded for the file system. Percent-escapes
    in a URI give exact bytes, so ``marker_for_path`` reaches any file.
    Anything else, and any NUL, CR or LF, is refused with a 404: a marker is
    the app's word, but a bad one must never turn into a path we open.
    """
    # Django MIME-encodes header values that are not latin-1 (RFC 2047).
    raw = _decode_rfc2047(raw) if raw.startswith(b"=?") else _file_system_bytes(raw)
    if b"\x00" in raw or b"\r" in raw or b"\n" in raw:
        raise SourceError(404, "marker holds NUL, CR or LF")
    # URIs are split by hand: urlsplit() drops tabs and newlines, and would
    # turn a name holding one into another file's.
    scheme = raw[:5].lower()
    if scheme == b"s3://":
        bucket, _, key = raw[5:].partition(b"/")
        key = unquote_to_bytes(key.lstrip(b"/"))
        if not bucket or not key or b"?" in raw or b"#" in raw:
            raise SourceError(404, "s3 marker needs s3://bucket/key")
        return S3Location(bucket.decode("latin-1"), key.decode("utf-8", "surrogateescape"))
    if scheme == b"file:":
        rest = raw[5:]
        if rest.startswith(b"//"):
            host, slash, path = rest[2:].partition(b"/")
            if host not in (b"", b"localhost"):
                raise SourceError(404, "file marker must be file:///absolute/path")
            rest = slash + path
        if b"?" in rest or b"#" in rest:
            raise SourceError(404, "file marker must be file:///absolute/path")
        raw = unquote_to_bytes(rest)
        if b"\x00" in raw or b"\r" in raw or b"\n" in raw:
            raise SourceError(404, "marker holds NUL, CR or LF")
    if not raw.startswith(b"/"):
        raise SourceError(404, "marker is not an absolute path")
    return os.fsdecode(raw)


def _file_system_bytes(raw: bytes) -> bytes:
    if raw.isascii():
        return raw
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return os.fsencode(raw.decode("latin-1"))
    return raw


def _decode_rfc2047(raw: bytes) -> bytes:
    try:
        text = "".join(
            part.decode(charset or "latin-1") if isinstance(part, bytes) else part
            for part, charset in email.header.decode_header(raw.decode("latin-1"))
        )
    except (LookupError, UnicodeError, email.errors.HeaderParseError, ValueError):
        raise SourceError(404, "marker is not valid RFC 2047") from None
    try:
        return os.fsencode(text)
    except UnicodeError:
        raise SourceError(404, "marker cannot be a file name here") from None
