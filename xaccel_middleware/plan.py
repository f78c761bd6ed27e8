"""Planning the answer for a file: the sans-IO heart of the library.

``plan_response`` takes the request's method and headers, the file's metadata
and the headers the app chose, and decides the status (200, 206, 304, 412 or
416), the response headers and the body as a list of segments: literal bytes
(multipart framing) and byte spans of the file. The adapters only carry it out.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter, sub

from .conditions import (
    EntityTag,
    evaluate_preconditions,
    format_http_date,
    if_range_allows,
    parse_etag,
    parse_http_date,
)
from .ranges import UNSATISFIABLE, ByteSpan, parse_range

Headers = list[tuple[str, str]]
Segment = bytes | ByteSpan
# Served files keep their mtime: formatting each date once saves a few µs per answer.
_http_date = functools.lru_cache(maxsize=1024)(format_http_date)


@dataclass(frozen=True)
class FileMeta:
    """What the core needs to know about a file or object."""

    size: int
    mtime: float
    etag: str  # a strong, quoted entity-tag
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class Plan:
    """The answer to send. ``body`` is empty for HEAD, 304, 412 and 416."""

    status: int
    headers: Headers
    body: tuple[Segment, ...]

    @property
    def content_length(self) -> int:
        return sum(len(s) if isinstance(s, bytes) else s.length for s in self.body)


# Replaced by the middleware's own values on every planned answer.
_REPLACED = frozenset(
    {"content-length", "content-range", "transfer-encoding", "accept-ranges", "x-accel-source"}
)
# Representation metadata a 304, 412 or 416 must not describe (§15.4.5).
_REPRESENTATION = frozenset(
    {
        "content-type",
        "content-encoding",
        "content-language",
        "content-disposition",
        "content-md5",
    }
)
_NOT_MODIFIED_KEEPS = frozenset({"etag", "last-modified"})


def plan_response(
    method: str,
    request: Mapping[str, str],
    meta: FileMeta,
    app_headers: Sequence[tuple[str, str]] = (),
    max_ranges: int = 100,
    boundary: str | None = None,
) -> Plan:
    """Decide the answer to ``method`` for ``meta``, following RFC 9110.

    ``request`` maps lower-case header names to values (repeated list headers
    joined with ", "). The app's ETag and Last-Modified, when it set them, are
    the validators; otherwise the file's are used and added.
    """
    base, etag_text, last_modified = _base_headers(app_headers, meta)
    size = meta.size
    whole = (ByteSpan(0, size),) if size else ()
    if method not in ("GET", "HEAD"):
        # Range is defined for GET only (§14.2), and preconditions must be
        # evaluated before the method acts (§13.2.1): too late for a POST whose
        # answer is already this file.
        return _full(base, whole, size, head=False)

    etag = parse_etag(etag_text)
    decided = evaluate_preconditions(method, request, etag, last_modified)
    if decided == 304:
        return _not_modified(base)
    if decided == 412:
        return _empty(412, base, [])

    range_header = request.get("range")
    head = method == "HEAD"
    if range_header is None or head:
        return _full(base, whole, size, head)
    if_range = request.get("if-range")
    if if_range is not None and not if_range_allows(if_range, etag, last_modified):
        return _full(base, whole, size, head)

    spans = parse_range(range_header, size, max_ranges)
    if spans is None:
        return _full(base, whole, size, head)
    if spans is UNSATISFIABLE:
        return _empty(416, base, [("content-range", f"bytes */{size}")])
    assert isinstance(spans, tuple)
    if len(spans) == 1:
        span = spans[0]
        headers = [*base, ("content-range", span.content_range(size)), ("content-length", str(span.length))]
        return Plan(206, headers, spans)
    return _multipart(base, spans, size, boundary or secrets.token_hex(16))


def plan_head(request: Mapping[str, str], app_headers: Sequence[tuple[str, str]]) -> Plan | None:
    """A 304 or 412 for a HEAD the app answered itself, from the app's own validators.

    Starlette's ``FileResponse`` answers HEAD without handing over its path, so
    the file is never seen; its ETag and Last-Modified still decide, as they
    would for the GET. Only an answer that announces ``Accept-Ranges: bytes``
    is taken for a file's: any other page keeps the app's own HEAD semantics,
    the same as its GET. ``None``: the app's answer stands.
    """
    etag = last_modified = None
    ranged = False
    for name, value in app_headers:
        lower = name.lower()
        if lower == "accept-ranges":
            ranged = value.strip().lower() == "bytes"
        elif lower == "etag":
            etag = parse_etag(value)
        elif lower == "last-modified":
            last_modified = parse_http_date(value)
    if not ranged or (etag is None and last_modified is None):
        return None
    decided = evaluate_preconditions("HEAD", request, etag, last_modified)
    base = [(k, v) for k, v in app_headers if k.lower() not in _REPLACED]
    if decided == 304:
        return _not_modified(base)
    return _empty(412, base, []) if decided == 412 else None


def _not_modified(base: Headers) -> Plan:
    kept = [(k, v) for k, v in base if k.lower() not in _REPRESENTATION and k.lower() != "accept-ranges"]
    return Plan(304, kept, ())


def _base_headers(app_headers: Sequence[tuple[str, str]], meta: FileMeta) -> tuple[Headers, str, int]:
    """The app's headers less the ones the middleware owns, completed with the
    file's type and validators; and the validators in force."""
    base = [(k, v) for k, v in app_headers if k.lower() not in _REPLACED]
    names = {k.lower() for k, _ in base}
    etag_text, last_modified = _validators(base, meta)
    if "content-type" not in names:
        base.append(("content-type", meta.content_type))
    if "etag" not in names:
        base.append(("etag", etag_text))
    if "last-modified" not in names:
        base.append(("last-modified", _http_date(last_modified)))
    base.append(("accept-ranges", "bytes"))
    return base, etag_text, last_modified


def _validators(headers: Headers, meta: FileMeta) -> tuple[str, int]:
    etag = meta.etag
    last_modified = int(meta.mtime)
    for name, value in headers:
        lower = name.lower()
        if lower == "etag" and parse_etag(value) is not None:
            etag = value.strip()
        elif lower == "last-modified":
            parsed = parse_http_date(value)
            if parsed is not None:
                last_modified = parsed
    return etag, last_modified


def _full(base: Headers, whole: tuple[ByteSpan, ...], size: int, head: bool) -> Plan:
    return Plan(200, [*base, ("content-length", str(size))], () if head else whole)


def _empty(status: int, base: Headers, extra: Headers) -> Plan:
    kept = [(k, v) for k, v in base if k.lower() not in _REPRESENTATION]
    return Plan(status, kept + extra + [("content-length", "0")], ())


def _multipart(base: Headers, spans: tuple[ByteSpan, ...], size: int, boundary: str) -> Plan:
    """multipart/byteranges (§14.6): CRLF framing, per-part Content-Type and
    Content-Range, the exact Content-Length known before the first byte."""
    content_type = next(v for k, v in base if k.lower() == "content-type")
    # One bytes template formatted in C for every part: thousands of ranges
    # (CVE-2025-62727) must not cost a Python-level loop each.
    lead = f"\r\n--{boundary}\r\ncontent-type: {content_type}\r\ncontent-range: bytes "
    template = lead.replace("%", "%%").encode("latin-1") + b"%d-%d/" + f"{size}\r\n\r\n".encode("latin-1")
    starts = list(map(itemgetter(0), spans))
    stops = list(map(itemgetter(1), spans))
    parts = list(map(template.__mod__, zip(starts, map(sub, stops, repeat(1)), strict=True)))
    parts[0] = parts[0][2:]  # the first delimiter needs no leading CRLF
    closing = f"\r\n--{boundary}--\r\n".encode("latin-1")
    body: list[Segment] = [closing] * (2 * len(spans) + 1)
    body[0:-1:2] = parts
    body[1::2] = spans
    length = sum(map(len, parts)) + sum(stops) - sum(starts) + len(closing)
    headers = [(k, v) for k, v in base if k.lower() != "content-type"]
    headers.append(("content-type", f"multipart/byteranges; boundary={boundary}"))
    headers.append(("content-length", str(length)))
    return Plan(206, headers, tuple(body))


__all__ = ["ByteSpan", "EntityTag", "FileMeta", "Plan", "Segment", "plan_response"]
