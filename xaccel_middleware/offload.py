"""Offload answers: the headers that hand a file to nginx, Caddy, Apache or lighttpd.

Pure functions. A proxy that gets an ``X-Accel-Redirect`` percent-decodes it
and treats a raw ``?`` as the start of a query, so internal URIs are encoded
here byte for byte, which lets any file name reach the right file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from .settings import Settings

Headers = list[tuple[str, str]]

# The body is discarded, so headers describing it go too; the proxy writes its own.
_DROPPED = frozenset({"content-length", "content-range", "transfer-encoding", "x-accel-source"})


@dataclass(frozen=True)
class OffloadTarget:
    """A header that makes the proxy send the file, plus any it needs beside it."""

    name: str
    value: str
    extra: tuple[tuple[str, str], ...] = ()


def internal_uri(prefix: str, relative: str) -> str:
    """``prefix`` + the percent-encoded relative path; ``/`` is kept, all else escaped.

    Works on the file system's bytes, so names that are not UTF-8 survive.
    """
    encoded = quote(os.fsencode(relative), safe="/")
    return f"{prefix}/{encoded}"


def header_text(path: str) -> str:
    """A file system path as a header value: its raw bytes, read as latin-1 (PEP 3333)."""
    return os.fsencode(path).decode("latin-1")


def nginx_extras(settings: Settings) -> tuple[tuple[str, str], ...]:
    """The ``X-Accel-*`` controls nginx reads from the app's answer."""
    extra = []
    if settings.accel_buffering is not None:
        extra.append(("x-accel-buffering", "yes" if settings.accel_buffering else "no"))
    if settings.accel_limit_rate is not None:
        extra.append(("x-accel-limit-rate", str(settings.accel_limit_rate)))
    if settings.accel_expires is not None:
        extra.append(("x-accel-expires", settings.accel_expires))
    return tuple(extra)


def offload_headers(app_headers: Sequence[tuple[str, str]], target: OffloadTarget) -> Headers:
    """The app's headers without the body's, plus the target's.

    Content-Type, Content-Disposition, Cache-Control and Set-Cookie stay as the
    app set them; the proxy adds the length and the validators.
    """
    headers = [(k, v) for k, v in app_headers if k.lower() not in _DROPPED]
    headers.append((target.name, target.value))
    headers.extend(target.extra)
    return headers
