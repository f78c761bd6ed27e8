"""Conditional requests (RFC 9110 §13): validators, and the order they are checked in.

Pure functions over header strings; nothing here touches a file or a socket.
"""

from __future__ import annotations

import calendar
import email.utils
from collections.abc import Mapping
from typing import NamedTuple


class EntityTag(NamedTuple):
    weak: bool
    opaque: str  # with its quotes, as on the wire

    def __str__(self) -> str:
        return f'W/{self.opaque}' if self.weak else self.opaque


def parse_etag(value: str) -> EntityTag | None:
    """One ``entity-tag``; ``None`` when malformed."""
    value = value.strip()
    weak = value.startswith("W/")
    opaque = value[2:] if weak else value
    if len(opaque) < 2 or opaque[0] != '"' or opaque[-1] != '"' or '"' in opaque[1:-1]:
        return None
    return EntityTag(weak, opaque)


def parse_etag_list(value: str) -> list[EntityTag] | None:
    """``#entity-tag`` (commas may sit inside the quotes); ``None`` when malformed."""
    tags = []
    i, n = 0, len(value)
    while i < n:
        while i < n and value[i] in " \t,":
            i += 1
        if i == n:
            break
        start = i
        if value.startswith("W/", i):
            i += 2
        if i >= n or value[i] != '"':
            return None
        close = value.find('"', i + 1)
        if close < 0:
            return None
        tags.append(EntityTag(start != i, value[i : close + 1]))
        i = close + 1
        while i < n and value[i] in " \t":
            i += 1
        if i < n and value[i] != ",":
            return None
    return tags


def strong_match(a: EntityTag, b: EntityTag) -> bool:
    """§8.8.3.2: both strong and character-for-character equal."""
    return not a.weak and not b.weak and a.opaque == b.opaque


def weak_match(a: EntityTag, b: EntityTag) -> bool:
    """§8.8.3.2: equal opaque tags, whatever their weakness."""
    return a.opaque == b.opaque


def parse_http_date(value: str) -> int | None:
    """IMF-fixdate, RFC 850 or asctime (§5.6.7) to a Unix time; ``None`` when invalid."""
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    try:
        return calendar.timegm(parsed[:9]) - (parsed[9] or 0)  # type: ignore[arg-type]
    except (OverflowError, ValueError, TypeError):
        return None


def format_http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


def _list_matches(value: str, etag: EntityTag | None, strong: bool) -> bool:
    if value.strip() == "*":
        return True
    if etag is None:
        return False
    tags = parse_etag_list(value)
    if tags is None:
        return False
    compare = strong_match if strong else weak_match
    return any(compare(tag, etag) for tag in tags)


def evaluate_preconditions(
    method: str,
    headers: Mapping[str, str],
    etag: EntityTag | None,
    last_modified: int | None,
) -> int | None:
    """Return 412 or 304 when a precondition decides the answer, else ``None``.

    The order is §13.2.2's: If-Match, If-Unmodified-Since, If-None-Match,
    If-Modified-Since. Each date header is ignored when its partner ETag header
    is present or when the date is invalid.
    """
    if_match = headers.get("if-match")
    if if_match is not None:
        if not _list_matches(if_match, etag, strong=True):
            return 412
    else:
        since = headers.get("if-unmodified-since")
        date = parse_http_date(since) if since is not None else None
        if date is not None and last_modified is not None and last_modified > date:
            return 412
    safe = method in ("GET", "HEAD")
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        if _list_matches(if_none_match, etag, strong=False):
            return 304 if safe else 412
    elif safe:
        since = headers.get("if-modified-since")
        date = parse_http_date(since) if since is not None else None
        if date is not None and last_modified is not None and last_modified <= date:
            return 304
    return None


def if_range_allows(value: str, etag: EntityTag | None, last_modified: int | None) -> bool:
    """§13.1.5: the Range applies only if the validator matches exactly (strongly)."""
    value = value.strip()
    if value.startswith(('"', 'W/"')):
        tag = parse_etag(value)
        return tag is not None and etag is not None and strong_match(tag, etag)
    date = parse_http_date(value)
    return date is not None and last_modified is not None and date == last_modified
