"""``parse_range`` and ``coalesce`` (RFC 9110 §14.1-14.2): examples, then
properties against a small reference written straight from the grammar."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from itertools import pairwise

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from xaccel_middleware.ranges import UNSATISFIABLE, ByteSpan, RangeResult, coalesce, parse_range

SIZE = 11

# --- A reference, slow and plain ---------------------------------------------

_REFERENCE_SPEC = re.compile(r"([0-9]+)[ \t]*-[ \t]*([0-9]*)|-[ \t]*([0-9]+)")


def reference_coalesce(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """O(n²): merge any two spans that overlap or touch until none do; a merged
    span takes the request position of its earliest member."""
    groups = [(i, start, stop) for i, (start, stop) in enumerate(spans)]
    merged = True
    while merged:
        merged = False
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                (i, s1, e1), (j, s2, e2) = groups[a], groups[b]
                if s1 <= e2 and s2 <= e1:
                    groups[a] = (min(i, j), min(s1, s2), max(e1, e2))
                    del groups[b]
                    merged = True
                    break
            if merged:
                break
    return [(start, stop) for _, start, stop in sorted(groups)]


def reference_parse(header: str, size: int, max_ranges: int) -> RangeResult | list[tuple[int, int]]:
    """One spec at a time with exact integers; the same contract as parse_range."""
    unit, sep, range_set = header.partition("=")
    if not sep or unit.strip(" \t").lower() != "bytes":
        return None
    elements = [e.strip(" \t") for e in range_set.split(",")]
    elements = [e for e in elements if e]
    if not elements or len(elements) > max_ranges:
        return None
    spans = []
    for element in elements:
        match = _REFERENCE_SPEC.fullmatch(element)
        if match is None:
            return None
        first, last, suffix = match.groups()
        if suffix is not None:
            start, stop = max(size - int(suffix), 0), size if int(suffix) else 0
        else:
            if last and int(last) < int(first):
                return None
            start, stop = int(first), min(int(last) + 1, size) if last else size
        if start < stop:
            spans.append((start, stop))
    if not spans:
        return UNSATISFIABLE if size else None
    if len(spans) > 1 and sum(b - a for a, b in spans) > size:
        return None
    return reference_coalesce(spans)


def as_pairs(spans: Iterable[ByteSpan]) -> list[tuple[int, int]]:
    return [(s.start, s.stop) for s in spans]


def as_lists(result: RangeResult) -> RangeResult | list[tuple[int, int]]:
    """Spans as plain pairs, to compare with the reference (UNSATISFIABLE is a tuple too)."""
    if result is None or result is UNSATISFIABLE:
        return result
    return as_pairs(result)


# --- Examples ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", [(0, 1)]),
        ("bytes=-1", [(10, 11)]),
        ("bytes=5-", [(5, 11)]),
        ("bytes=0-4,2-6", [(0, 7)]),
        ("bytes=-1,20-100,0-1,2-3", [(10, 11), (0, 4)]),  # range-parser's "retain order"
        ("bytes=0-1,20-,5-6", [(0, 2), (5, 7)]),
        ("bytes=-0", UNSATISFIABLE),
        ("bytes=11-", UNSATISFIABLE),
        ("bytes=-0,11-", UNSATISFIABLE),
        ("bytes=5-4", None),
        ("bytes=", None),
        ("bytes=,", None),
        ("items=0-1", None),
        ("bytes 0-1", None),
        (" bytes = 1-2", [(1, 3)]),
    ],
)
def test_examples(header: str, expected: RangeResult | list[tuple[int, int]]) -> None:
    assert as_lists(parse_range(header, SIZE, 100)) == expected


@pytest.mark.parametrize(
    "header",
    [
        "bytes=\uff11-2",  # FULLWIDTH DIGIT ONE
        "bytes=\u0661-2",  # ARABIC-INDIC DIGIT ONE
        "bytes=1-\u00b2",  # SUPERSCRIPT TWO: str.isdigit() says yes, int() says no
        "bytes=\u00b9\u00b2-",
        "bytes=1-2\u00a0",  # NO-BREAK SPACE is not OWS
        "bytes=\u30001-2",
        "bytes=1-2,\x0b3-4",
        "bytes=1-2,\x0c3-4",
        "bytes=1-2,\x853-4",
        "bytes=1-2\r\n",
        "bytes=1-2\x00",
        "bytes\u00a0=1-2",
        "bytes\u200b=1-2",  # ZERO WIDTH SPACE
    ],
)
def test_only_ascii_digits_and_ows(header: str) -> None:
    assert parse_range(header, SIZE, 100) is None


def test_result_types() -> None:
    spans = parse_range("bytes=0-1,4-5", SIZE, 100)
    assert isinstance(spans, tuple)
    assert all(type(s) is ByteSpan for s in spans)
    assert [(s.start, s.stop, s.length) for s in spans] == [(0, 2, 2), (4, 6, 2)]
    assert spans[0].content_range(SIZE) == "bytes 0-1/11"
    merged = parse_range("bytes=4-5,0-1,2-3", SIZE, 100)
    assert isinstance(merged, tuple)
    assert all(type(s) is ByteSpan for s in merged)


def test_max_ranges_counts_specs_not_empty_elements() -> None:
    header = "bytes=" + ",".join(f"{i}-{i}" for i in range(0, 10, 2))  # five specs
    assert isinstance(parse_range(header, SIZE, 5), tuple)
    assert parse_range(header, SIZE, 4) is None
    assert isinstance(parse_range(header + ",,, ,", SIZE, 5), tuple)
    # Unsatisfiable specs count too: the cap is on the work a header asks for.
    assert parse_range(header + ",50-60", SIZE, 5) is None


def test_wasteful_multi_range_is_ignored() -> None:
    assert parse_range("bytes=0-5,0-5", SIZE, 100) is None  # 12 bytes of 11
    assert as_lists(parse_range("bytes=0-4,0-4", SIZE, 100)) == [(0, 5)]  # 10 bytes
    assert as_lists(parse_range("bytes=0-10", SIZE, 100)) == [(0, 11)]  # one range may be whole


@pytest.mark.parametrize(
    "header", ["bytes=0-0", "bytes=-5", "bytes=0-", "bytes=5-", "bytes=-0", "bytes=0-1,3-"]
)
def test_empty_representation_ignores_ranges(header: str) -> None:
    # §14.1.1: nothing can overlap an empty representation; Go answers 200 (issue 54794).
    assert parse_range(header, 0, 100) is None


def test_huge_numbers_are_exact_where_it_matters() -> None:
    big = "1" + "0" * 40
    assert parse_range(f"bytes={big}-{big}", SIZE, 100) is UNSATISFIABLE
    assert parse_range(f"bytes={big}1-{big}", SIZE, 100) is None  # last < first
    assert parse_range(f"bytes={big[:-1]}9-{big}", SIZE, 100) is None
    assert parse_range(f"bytes={big}-{big[:-1]}9", SIZE, 100) is UNSATISFIABLE
    assert as_lists(parse_range(f"bytes=3-{big}", SIZE, 100)) == [(3, 11)]
    assert as_lists(parse_range(f"bytes=-{big}", SIZE, 100)) == [(0, 11)]
    assert as_lists(parse_range("bytes=" + "0" * 50 + "3-" + "0" * 50 + "4", SIZE, 100)) == [(3, 5)]
    digits = "9" * 5000  # past int()'s default 4300-digit limit
    assert as_lists(parse_range(f"bytes=0-{digits}", SIZE, 100)) == [(0, 11)]
    assert parse_range(f"bytes={digits}-", SIZE, 100) is UNSATISFIABLE


@pytest.mark.parametrize(
    "header",
    [
        "bytes=" + "1" * 200_000 + "x",
        "bytes=" + "1-" * 100_000 + "x",
        "bytes=" + ",-1" * 60_000 + "x",
        "bytes=" + " - " * 60_000 + "x",
        "bytes=" + "1 -  " * 40_000 + "x",
        "bytes=" + "1-1," * 50_000 + "1-",
        "bytes=" + " " * 200_000 + "x",
        "bytes=" + ", " * 100_000 + "x",
        "bytes=" + "\t,\t" * 60_000 + "1 2",
    ],
)
def test_long_malformed_headers_fail_fast(header: str) -> None:
    """The regular expressions give each element one parse: no backtracking blow-up."""
    began = time.perf_counter()
    assert parse_range(header, SIZE, 10**6) is None
    assert time.perf_counter() - began < 0.5


def test_coalesce_examples() -> None:
    spans = [ByteSpan(*s) for s in [(8, 10), (0, 2), (2, 4), (9, 11)]]
    assert coalesce(spans) == (ByteSpan(8, 11), ByteSpan(0, 4))
    assert coalesce([]) == ()
    assert coalesce([ByteSpan(3, 4)]) == (ByteSpan(3, 4),)
    assert coalesce([ByteSpan(5, 6), ByteSpan(0, 1)]) == (ByteSpan(5, 6), ByteSpan(0, 1))
    assert coalesce([ByteSpan(0, 1), ByteSpan(1, 2), ByteSpan(2, 3)]) == (ByteSpan(0, 3),)


# --- Properties --------------------------------------------------------------

digits = st.integers(0, 40).map(str) | st.integers(0, 10**25).map(str) | st.just("0" * 20 + "7")
ows = st.sampled_from(["", "", "", " ", "\t", "  "])


@st.composite
def specs(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["closed", "open", "suffix", "empty", "junk"]))
    if kind == "closed":
        body = f"{draw(digits)}{draw(ows)}-{draw(ows)}{draw(digits)}"
    elif kind == "open":
        body = f"{draw(digits)}{draw(ows)}-"
    elif kind == "suffix":
        body = f"-{draw(ows)}{draw(digits)}"
    elif kind == "empty":
        body = ""
    else:
        body = draw(
            st.sampled_from(["-", "x", "1-2-3", "+1-2", "1_0-2", "0x1-2", "1 2-3", "--1", "\u00b2-3"])
        )
    return f"{draw(ows)}{body}{draw(ows)}"


@st.composite
def range_headers(draw: st.DrawFn) -> str:
    unit = draw(
        st.sampled_from(["bytes", "bytes", "bytes", "Bytes", "BYTES", " bytes ", "items", "byte", ""])
    )
    elements = draw(st.lists(specs(), min_size=0, max_size=12))
    if draw(st.integers(0, 20)) == 0:
        return f"{unit}{','.join(elements)}"  # no "="
    return f"{unit}={','.join(elements)}"


sizes = st.integers(0, 60) | st.integers(0, 10**12)


@settings(max_examples=600, deadline=None)
@given(range_headers(), sizes, st.integers(1, 12))
@example("bytes=0-4,2-6", 11, 100)
@example("bytes=-0,0-1", 11, 100)
@example("bytes=" + "9" * 30 + "-" + "9" * 29, 11, 100)
def test_matches_reference(header: str, size: int, max_ranges: int) -> None:
    assert as_lists(parse_range(header, size, max_ranges)) == reference_parse(header, size, max_ranges)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(codec="latin-1"), max_size=60) | range_headers(), sizes)
def test_any_text_gives_spans_416_or_nothing(header: str, size: int) -> None:
    result = parse_range(header, size, 100)
    if result is None:
        return
    if result is UNSATISFIABLE:
        assert size > 0
        return
    assert isinstance(result, tuple) and result
    assert all(isinstance(s, ByteSpan) for s in result)
    assert all(0 <= s.start < s.stop <= size for s in result)
    ordered = sorted(result)
    # Coalesced: neither overlapping nor touching.
    assert all(a.stop < b.start for a, b in pairwise(ordered))
    if len(result) > 1:
        assert sum(s.length for s in result) <= size


span_lists = st.lists(
    st.tuples(st.integers(0, 60), st.integers(1, 20)).map(lambda t: ByteSpan(t[0], t[0] + t[1])),
    max_size=25,
)


@settings(max_examples=500, deadline=None)
@given(span_lists)
def test_coalesce_matches_quadratic_reference(spans: list[ByteSpan]) -> None:
    result = coalesce(spans)
    assert as_pairs(result) == reference_coalesce(as_pairs(spans))
    assert all(type(s) is ByteSpan for s in result)
    # Same bytes covered, and the order is the request's: by first member.
    covered = {b for s in spans for b in range(s.start, s.stop)}
    assert {b for s in result for b in range(s.start, s.stop)} == covered
    firsts = [min(i for i, s in enumerate(spans) if m.start <= s.start and s.stop <= m.stop) for m in result]
    assert firsts == sorted(firsts)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 10**4)), min_size=2, max_size=300))
def test_coalesce_matches_reference_on_long_lists(pairs: list[tuple[int, int]]) -> None:
    spans = [ByteSpan(a, a + n) for a, n in pairs]
    result = coalesce(spans)
    assert as_pairs(result) == reference_coalesce(as_pairs(spans))
