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
# An offload header the app set itself would make a second, conflicting target.
_DROPPED = frozenset(
    {
        "content-length",
        "content-range",
        "transfer-encoding",
        "x-accel-source",
        "x-accel-redirect",
        "x-sendfile",
    }
)


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


def header_text(path: str) -> str | None:
    """A file system path as a header value: its raw bytes, read as latin-1 (PEP 3333).

    ``None`` when the name holds a control character: a file name may contain
    CR or LF, a header value must not (header injection).
    """
    raw = os.fsencode(path)
    if any(b < 0x20 or b == 0x7F for b in raw):
        return None
    return raw.decode("latin-1")


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


def offload_headers(
    app_headers: Sequence[tuple[str, str]], target: OffloadTarget, content_type: str | None = None
) -> Headers:
    """The app's headers without the body's, plus the target's.

    Content-Type, Content-Disposition, Cache-Control and Set-Cookie stay as the
    app set them; the proxy adds the file's length and the validators. ``content_type``
    is added when the app set none: Caddy sends no type of its own.
    An ``X-Accel-*`` control the app set itself wins over the configured one.
    """
    headers = [(k, v) for k, v in app_headers if k.lower() not in _DROPPED]
    names = {k.lower() for k, _ in headers}
    if content_type is not None and "content-type" not in names:
        headers.append(("content-type", content_type))
    headers.append((target.name, target.value))
    headers.extend((k, v) for k, v in target.extra if k not in names)
    # The app's length described the dropped body. An explicit 0 (not chunked)
    # tells nginx the answer is complete, so it keeps the upstream connection
    # alive across an X-Accel-Redirect instead of opening one per request.
    headers.append(("content-length", "0"))
    return headers
