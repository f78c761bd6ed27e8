"""Parsing the ``Range`` request header (RFC 9110 §14.1-14.2). Pure functions, no I/O.

Spans are half-open ``(start, stop)``; inclusive positions appear only when a
``Content-Range`` is written.

A header may carry thousands of ranges (CVE-2025-62727 made Starlette spend
quadratic time on them), so the work is done with C-level primitives (``split``,
one regular expression, ``map``, ``sorted``) rather than a Python loop per
range: parsing is linear and coalescing is O(n log n).
"""

from __future__ import annotations

import re
from itertools import accumulate, compress, count, repeat
from operator import add, gt, itemgetter, lt, not_, sub
from typing import NamedTuple


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
RangeResult = tuple[ByteSpan, ...] | Unsatisfiable | None

# More digits than this cannot be a real offset; treating them as "huge" keeps
# int() away from Python's 4300-digit guard and from big-number arithmetic.
_MAX_DIGITS = 18
_HUGE = 10**_MAX_DIGITS

_OWS = "[ \t]*"
_SPEC = rf"[0-9]+{_OWS}-(?:{_OWS}[0-9]+)?|-{_OWS}[0-9]+"
_ELEMENT = rf"{_OWS}(?:(?:{_SPEC}){_OWS})?"
# §14.1.1 range-set as a list (§5.6.1): possibly empty elements, each
# "first-last", "first-" or "-suffix", OWS around the separators (as Go allows)
# but never inside a number. ASCII digits only: no sign, underscore or Unicode
# digit. Each element has one parse, so a failing match cannot backtrack
# exponentially. _PLAIN_SET is the same without OWS or empty elements, with
# numbers short enough for plain int(): the fast path.
_RANGE_SET = re.compile(rf"{_ELEMENT}(?:,{_ELEMENT})*")
_PLAIN_SPEC = r"[0-9]{1,18}-[0-9]{0,18}|-[0-9]{1,18}"
_PLAIN_SET = re.compile(rf"(?:{_PLAIN_SPEC})(?:,(?:{_PLAIN_SPEC}))*")
_DROP_OWS = str.maketrans("", "", " \t")


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
    if not sep or unit.strip(" \t").lower() != "bytes":
        return None
    texts = _split_specs(range_set, max_ranges)
    if texts is None:
        return None
    firsts, lasts = texts
    if "" in lasts:
        for i in compress(count(), map(not_, lasts)):
            lasts[i] = _HUGE  # "first-": to the end
    if "" in firsts:
        _suffixes_to_spans(firsts, lasts, size)
    starts = list(map(int, firsts))
    ends = list(map(int, lasts))
    if any(map(gt, starts, ends)):
        return None
    stops = list(map(add, ends, repeat(1)))
    for i in compress(count(), map(lt, repeat(size), stops)):
        stops[i] = size  # an end past the file is clamped to it (§14.1.2)
    keep = list(map(lt, starts, stops))
    if not all(keep):  # drop the specs that start at or past the end (§14.1.1)
        starts = list(compress(starts, keep))
        stops = list(compress(stops, keep))
    if not starts:
        return UNSATISFIABLE if size else None
    if len(starts) > 1 and sum(stops) - sum(starts) > size:
        return None
    return _merge(starts, stops)


def _split_specs(range_set: str, max_ranges: int) -> tuple[list[str | int], list[str | int]] | None:
    """The first and last texts of each spec ("" where absent), or ``None`` when
    the set is empty, too long or malformed."""
    compact = range_set.translate(_DROP_OWS)
    plain = len(compact) == len(range_set)
    # §5.6.1.2: empty list elements are allowed and do not count. Counting
    # before validating keeps an oversized header cheap to refuse.
    if ",," in compact or compact.startswith(",") or compact.endswith(","):
        compact = ",".join(filter(None, compact.split(",")))
    specs = compact.count(",") + 1 if compact else 0
    if not specs or specs > max_ranges:
        return None
    plain = plain and _PLAIN_SET.fullmatch(compact) is not None
    if not plain and _RANGE_SET.fullmatch(range_set) is None:
        return None
    # Each element holds exactly one "-": split them all at once into
    # alternating first/last texts.
    flat = compact.replace(",", "-").split("-")
    if plain or max(map(len, flat)) <= _MAX_DIGITS:
        return list(flat[0::2]), list(flat[1::2])
    # §14.1.1: "last < first" makes the header invalid, whatever the size.
    pairs = zip(flat[0::2], flat[1::2], strict=True)
    if any(first and last and _magnitude(last) < _magnitude(first) for first, last in pairs):
        return None
    return [_clip(first) for first in flat[0::2]], [_clip(last) for last in flat[1::2]]


def _magnitude(digits: str) -> tuple[int, str]:
    """An order on decimal texts of any length, without converting them."""
    digits = digits.lstrip("0")
    return len(digits), digits


def _clip(digits: str) -> str | int:
    """A position too large to be real becomes ``_HUGE`` (still past any file)."""
    if not digits:
        return digits
    digits = digits.lstrip("0") or "0"
    return _HUGE if len(digits) > _MAX_DIGITS else digits


def _suffixes_to_spans(firsts: list[str | int], lasts: list[str | int], size: int) -> None:
    """Rewrite each "-n" in place as the equivalent "first-last" (§14.1.3): the
    last n bytes, the whole file when n exceeds it, nothing when n is 0."""
    for i in compress(count(), map(not_, firsts)):
        suffix = int(lasts[i])
        if suffix and size:
            firsts[i], lasts[i] = max(size - suffix, 0), size - 1
        else:
            firsts[i], lasts[i] = size, size  # stop clamps to size: dropped


def coalesce(spans: list[ByteSpan]) -> tuple[ByteSpan, ...]:
    """Merge overlapping and adjacent spans; each merged span keeps the request
    position of its earliest member (jshttp/range-parser's ``combine``)."""
    return _merge(list(map(itemgetter(0), spans)), list(map(itemgetter(1), spans)))


def _merge(starts: list[int], stops: list[int]) -> tuple[ByteSpan, ...]:
    n = len(starts)
    # A gap before each next span (ascending) or after it (descending) means
    # nothing touches: the common case, checked without sorting.
    if n > 1 and not (all(map(lt, stops[:-1], starts[1:])) or all(map(lt, stops[1:], starts[:-1]))):
        order = sorted(range(n), key=starts.__getitem__)
        begin = list(map(starts.__getitem__, order))
        reach = list(accumulate(map(stops.__getitem__, order), max))
        # A new group starts where a span begins past everything before it.
        heads = [0, *compress(range(1, n), map(gt, begin[1:], reach))]
        nexts = [*heads[1:], n]
        # Each group is placed where its earliest member was asked for; only
        # groups of two or more need a look past their head.
        asked = list(map(order.__getitem__, heads))
        for g in compress(count(), map(lt, repeat(1), map(sub, nexts, heads))):
            asked[g] = min(order[heads[g] : nexts[g]])
        placed = sorted(range(len(heads)), key=asked.__getitem__)
        starts = list(map(begin.__getitem__, map(heads.__getitem__, placed)))
        stops = [reach[nexts[g] - 1] for g in placed]
    # tuple.__new__ builds each ByteSpan in C, without NamedTuple's Python __new__.
    return tuple(map(tuple.__new__, repeat(ByteSpan), zip(starts, stops, strict=True)))
