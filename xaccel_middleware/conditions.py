"""Conditional requests (RFC 9110 §13): validators, and the order they are checked in.

Pure functions over header strings; nothing here touches a file or a socket.
"""

from __future__ import annotations

import calendar
import email.utils
import re
import time
from collections.abc import Mapping
from typing import NamedTuple


class EntityTag(NamedTuple):
    weak: bool
    opaque: str  # with its quotes, as on the wire

    def __str__(self) -> str:
        return f"W/{self.opaque}" if self.weak else self.opaque


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


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAY = "(?:mon|tue|wed|thu|fri|sat|sun)"
_LONG_DAY = "(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_MONTH = f"(?P<month>{'|'.join(_MONTHS)})"
_TIME = "(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
# §5.6.7: the three formats, nothing else. Names are matched case-insensitively
# (as Go's http.ParseTime does); the structure is not negotiable.
_HTTP_DATES = [
    re.compile(p, re.IGNORECASE | re.ASCII)
    for p in (
        rf"{_DAY}, (?P<day>[0-9]{{2}}) {_MONTH} (?P<year>[0-9]{{4}}) {_TIME} GMT",  # IMF-fixdate
        rf"{_LONG_DAY}, (?P<day>[0-9]{{2}})-{_MONTH}-(?P<yy>[0-9]{{2}}) {_TIME} GMT",  # rfc850-date
        rf"{_DAY} {_MONTH} (?P<day>[0-9]{{2}}| [0-9]) {_TIME} (?P<year>[0-9]{{4}})",  # asctime
    )
]


def parse_http_date(value: str) -> int | None:
    """An HTTP-date (§5.6.7) to a Unix time; ``None`` unless it is one of the
    three formats with a real calendar date and time, so that an invalid
    If-Modified-Since or If-Unmodified-Since is ignored as §13.1.3-4 require."""
    value = value.strip(" \t")
    for pattern in _HTTP_DATES:
        match = pattern.fullmatch(value)
        if match:
            break
    else:
        return None
    fields = match.groupdict()
    if fields.get("yy") is not None:
        # §5.6.7: a two-digit year more than 50 years ahead is in the past century.
        this_year = time.gmtime().tm_year
        year = this_year - this_year % 100 + int(fields["yy"])
        if year > this_year + 50:
            year -= 100
    else:
        year = int(fields["year"])
    month = _MONTHS.index(fields["month"].lower()) + 1
    day, hour = int(fields["day"]), int(fields["hour"])
    minute, second = int(fields["minute"]), int(fields["second"])
    if not (year and 1 <= day <= calendar.monthrange(year, month)[1]):
        return None
    if hour > 23 or minute > 59 or second > 60:  # 60: a leap second
        return None
    return calendar.timegm((year, month, day, hour, minute, second))


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
