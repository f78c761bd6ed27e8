"""Parsing the ``Range`` request header (RFC 9110 §14.1-14.2). Pure functions, no I/O.

Spans are half-open ``(start, stop)``; inclusive positions appear only when a
``Content-Range`` is written.
"""

from __future__ import annotations

from typing import NamedTuple, Union


class ByteSpan(NamedTuple):
    """Bytes ``start`` up to, not including, ``stop``."""

    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.stop - 1}/{size}"


class Unsatisfiable(NamedTuple):
    """The header was valid but no range overlaps the representation: 416."""


UNSATISFIABLE = Unsatisfiable()

# None: ignore the header and send the whole representation (200).
RangeResult = Union[tuple[ByteSpan, ...], Unsatisfiable, None]

# More digits than this cannot be a real offset; treating them as "huge" keeps
# int() away from Python's 4300-digit guard and from big-number arithmetic.
_MAX_DIGITS = 18
_HUGE = 10**_MAX_DIGITS


def _decimal(text: str) -> int | None:
    """Strict 1*DIGIT: no sign, no underscores, no Unicode digits, no spaces."""
    if not text or not text.isascii() or not text.isdigit():
        return None
    text = text.lstrip("0") or "0"
    return _HUGE if len(text) > _MAX_DIGITS else int(text)


def parse_range(header: str, size: int, max_ranges: int) -> RangeResult:
    """Turn a ``Range`` value into the spans to send for a representation of ``size`` bytes.

    - An unknown unit, a syntax error or an empty set gives ``None`` (§14.2:
      the server ignores the field), never an error.
    - Unsatisfiable specs are dropped; if none is left, ``UNSATISFIABLE`` (416).
    - More than ``max_ranges`` specs, or specs asking for more bytes than the
      file holds (CVE-2011-3192), give ``None``: the whole file is cheaper.
    - Overlapping and adjacent spans are coalesced in O(n log n), keeping the
      order of the request.
    """
    unit, sep, range_set = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    specs = [s.strip() for s in range_set.split(",")]
    # §5.6.1.2: empty list elements are allowed and do not count.
    specs = [s for s in specs if s]
    if not specs or len(specs) > max_ranges:
        return None
    spans: list[ByteSpan] = []
    requested = 0
    for spec in specs:
        first, dash, last = spec.partition("-")
        if not dash:
            return None
        first, last = first.rstrip(), last.lstrip()
        if first:
            start = _decimal(first)
            end = _decimal(last) if last else _HUGE
            if start is None or end is None or end < start:
                return None
            stop = min(end + 1, size)
        else:
            suffix = _decimal(last)
            if suffix is None:
                return None
            start, stop = max(size - suffix, 0), size if suffix else 0
        if start < stop:
            spans.append(ByteSpan(start, stop))
            requested += stop - start
    if not spans:
        return UNSATISFIABLE if size else None
    if requested > size and len(spans) > 1:
        return None
    return coalesce(spans)


def coalesce(spans: list[ByteSpan]) -> tuple[ByteSpan, ...]:
    """Merge overlapping and adjacent spans; each merged span keeps the request
    position of its earliest member (jshttp/range-parser's ``combine``)."""
    if len(spans) < 2:
        return tuple(spans)
    order = sorted(range(len(spans)), key=lambda i: spans[i])
    merged: list[list[int]] = []  # [start, stop, first request index]
    for i in order:
        start, stop = spans[i]
        if merged and start <= merged[-1][1]:
            last = merged[-1]
            last[1] = max(last[1], stop)
            last[2] = min(last[2], i)
        else:
            merged.append([start, stop, i])
    merged.sort(key=lambda m: m[2])
    return tuple(ByteSpan(m[0], m[1]) for m in merged)
