"""Validators and preconditions (RFC 9110 §8.8, §13): entity-tags, HTTP-dates,
the §13.2.2 evaluation order and If-Range."""

from __future__ import annotations

import calendar
import email.utils
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xaccel_middleware.conditions import (
    EntityTag,
    evaluate_preconditions,
    format_http_date,
    if_range_allows,
    parse_etag,
    parse_etag_list,
    parse_http_date,
    strong_match,
    weak_match,
)

ETAG = EntityTag(False, '"abc"')
MTIME = 1_000_000_000  # Sun, 09 Sep 2001 01:46:40 GMT
SAME = format_http_date(MTIME)
BEFORE = format_http_date(MTIME - 1)
AFTER = format_http_date(MTIME + 1)


# --- Entity-tags (§8.8.3) ----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"abc"', EntityTag(False, '"abc"')),
        ('W/"abc"', EntityTag(True, '"abc"')),
        ('""', EntityTag(False, '""')),
        ('  "a,b"  ', EntityTag(False, '"a,b"')),
        ("abc", None),
        ('"abc', None),
        ('w/"abc"', None),  # §8.8.3: the weak indicator is case-sensitive
        ('W/ "abc"', None),
        ('"a"b"', None),
        ('"', None),
        ("", None),
    ],
)
def test_parse_etag(value: str, expected: EntityTag | None) -> None:
    assert parse_etag(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"a", W/"b" ,"c"', [EntityTag(False, '"a"'), EntityTag(True, '"b"'), EntityTag(False, '"c"')]),
        ('"a,b", "c"', [EntityTag(False, '"a,b"'), EntityTag(False, '"c"')]),
        (' , "a",, ', [EntityTag(False, '"a"')]),  # §5.6.1.2: empty elements
        ("", []),
        ('"a" "b"', None),
        ('"a", b', None),
        ('"a', None),
        ("W/", None),
        ("*", None),  # "*" stands alone; callers check it first
    ],
)
def test_parse_etag_list(value: str, expected: list[EntityTag] | None) -> None:
    assert parse_etag_list(value) == expected


def test_str_round_trips() -> None:
    for text in ('"x"', 'W/"x"', '""'):
        tag = parse_etag(text)
        assert tag is not None and str(tag) == text


def test_comparison_functions() -> None:
    # The §8.8.3.2 table.
    w1, w2, s1, s2 = (
        EntityTag(True, '"1"'),
        EntityTag(True, '"2"'),
        EntityTag(False, '"1"'),
        EntityTag(False, '"2"'),
    )
    assert (strong_match(w1, w1), weak_match(w1, w1)) == (False, True)
    assert (strong_match(w1, w2), weak_match(w1, w2)) == (False, False)
    assert (strong_match(w1, s1), weak_match(w1, s1)) == (False, True)
    assert (strong_match(s1, s1), weak_match(s1, s1)) == (True, True)
    assert (strong_match(s1, s2), weak_match(s1, s2)) == (False, False)


tags = st.builds(EntityTag, st.booleans(), st.sampled_from(['"a"', '"b"', '""', '"a,b"']))


@given(tags, tags)
def test_strong_implies_weak_and_both_symmetric(a: EntityTag, b: EntityTag) -> None:
    assert strong_match(a, b) == strong_match(b, a)
    assert weak_match(a, b) == weak_match(b, a)
    assert not strong_match(a, b) or weak_match(a, b)


# --- HTTP-date (§5.6.7) ------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850
        "Sun Nov  6 08:49:37 1994",  # asctime
        "Sun Nov 06 08:49:37 1994",
        "sun, 06 nov 1994 08:49:37 gmt",  # robust about the case of names, like Go
        " Sun, 06 Nov 1994 08:49:37 GMT\t",
    ],
)
def test_three_formats(value: str) -> None:
    assert parse_http_date(value) == 784111777


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "784111777",
        "06 Nov 1994 08:49:37 GMT",  # no day name
        "Sun, 06 Nov 1994 08:49:37",  # no zone
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 +0000",
        "Sun, 06 Nov 1994 08:49 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",
        "Sun, 29 Feb 1900 08:49:37 GMT",  # 1900 is not a leap year
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 0000 08:49:37 GMT",
        "Foo, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nox 1994 08:49:37 GMT",
        "Sonday, 06-Nov-94 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",  # §13.1.3: one member only
        "Sun, 06 Nov 1994 08:49:37 GMT junk",
        "Sun, \uff10\uff16 Nov 1994 08:49:37 GMT",
    ],
)
def test_invalid_dates(value: str) -> None:
    assert parse_http_date(value) is None


def test_leap_day_and_leap_second() -> None:
    assert parse_http_date("Thu, 29 Feb 1996 00:00:00 GMT") == calendar.timegm((1996, 2, 29, 0, 0, 0))
    assert parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT") == calendar.timegm((2017, 1, 1, 0, 0, 0))


def test_two_digit_years_follow_the_fifty_year_rule() -> None:
    # §5.6.7: a two-digit year more than 50 years in the future is in the past.
    year = time.gmtime().tm_year
    for ahead in (0, 1, 49, 50, 51, 99):
        candidate = year + ahead
        expected = candidate if ahead <= 50 else candidate - 100
        value = f"Monday, 01-Jan-{candidate % 100:02d} 00:00:00 GMT"
        assert parse_http_date(value) == calendar.timegm((expected, 1, 1, 0, 0, 0)), value


@given(st.integers(-(10**10), 2**37))
def test_format_parse_round_trip(timestamp: int) -> None:
    text = format_http_date(timestamp)
    assert text == email.utils.formatdate(timestamp, usegmt=True)
    assert parse_http_date(text) == timestamp


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_parse_http_date_never_raises(value: str) -> None:
    result = parse_http_date(value)
    assert result is None or isinstance(result, int)


# --- §13.2.2: the order of evaluation ------------------------------------------


def decide(method: str = "GET", **headers: str) -> int | None:
    request = {name.replace("_", "-"): value for name, value in headers.items()}
    return evaluate_preconditions(method, request, ETAG, MTIME)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"if_match": '"abc"'}, None),
        ({"if_match": "*"}, None),
        ({"if_match": ' "x" , "abc" '}, None),
        ({"if_match": '"x"'}, 412),
        ({"if_match": 'W/"abc"'}, 412),  # strong comparison
        ({"if_match": "abc"}, 412),  # malformed: no tag can match (as Go)
        ({"if_match": ""}, 412),
        ({"if_match": '"abc"', "if_unmodified_since": BEFORE}, None),  # step 2 skipped
        ({"if_match": '"x"', "if_unmodified_since": AFTER}, 412),
        ({"if_unmodified_since": BEFORE}, 412),
        ({"if_unmodified_since": SAME}, None),
        ({"if_unmodified_since": AFTER}, None),
        ({"if_unmodified_since": "garbage"}, None),
        ({"if_none_match": '"abc"'}, 304),
        ({"if_none_match": 'W/"abc"'}, 304),  # weak comparison
        ({"if_none_match": '"x", W/"abc"'}, 304),
        ({"if_none_match": "*"}, 304),
        ({"if_none_match": '"x"'}, None),
        ({"if_none_match": "abc"}, None),  # malformed: matches nothing
        ({"if_none_match": '"x"', "if_modified_since": AFTER}, None),  # step 4 skipped
        ({"if_none_match": '"abc"', "if_modified_since": BEFORE}, 304),
        ({"if_modified_since": SAME}, 304),
        ({"if_modified_since": AFTER}, 304),
        ({"if_modified_since": BEFORE}, None),
        ({"if_modified_since": "garbage"}, None),
        ({"if_match": '"x"', "if_none_match": '"abc"'}, 412),
        ({"if_unmodified_since": BEFORE, "if_none_match": '"abc"'}, 412),
        ({"if_unmodified_since": BEFORE, "if_modified_since": AFTER}, 412),
        ({"if_match": '"abc"', "if_none_match": '"abc"'}, 304),
    ],
)
def test_get(headers: dict[str, str], expected: int | None) -> None:
    assert decide("GET", **headers) == expected
    assert decide("HEAD", **headers) == expected


def test_unsafe_methods() -> None:
    # §13.1.2: a matching If-None-Match on another method is a 412, and
    # If-Modified-Since only applies to GET and HEAD.
    assert decide("PUT", if_none_match='"abc"') == 412
    assert decide("PUT", if_none_match="*") == 412
    assert decide("PUT", if_modified_since=AFTER) is None
    assert decide("DELETE", if_match='"x"') == 412


def test_missing_validators() -> None:
    assert evaluate_preconditions("GET", {"if-match": "*"}, None, None) is None
    assert evaluate_preconditions("GET", {"if-match": '"abc"'}, None, None) == 412
    assert evaluate_preconditions("GET", {"if-none-match": '"abc"'}, None, None) is None
    assert evaluate_preconditions("GET", {"if-modified-since": AFTER}, ETAG, None) is None
    assert evaluate_preconditions("GET", {"if-unmodified-since": BEFORE}, ETAG, None) is None


header_values = st.one_of(
    st.sampled_from(['"abc"', 'W/"abc"', '"x"', "*", "", "garbage", '"x", "abc"', SAME, BEFORE, AFTER]),
    st.text(max_size=30),
)
requests = st.dictionaries(
    st.sampled_from(["if-match", "if-none-match", "if-modified-since", "if-unmodified-since"]), header_values
)
methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE"])


@settings(max_examples=400)
@given(methods, requests)
def test_preconditions_properties(method: str, request: dict[str, str]) -> None:
    result = evaluate_preconditions(method, request, ETAG, MTIME)
    assert result in (None, 304, 412)
    if result == 304:
        assert method in ("GET", "HEAD")
    # A date header is ignored when its entity-tag partner is present.
    if "if-match" in request:
        without = {k: v for k, v in request.items() if k != "if-unmodified-since"}
        assert evaluate_preconditions(method, without, ETAG, MTIME) == result
    if "if-none-match" in request:
        without = {k: v for k, v in request.items() if k != "if-modified-since"}
        assert evaluate_preconditions(method, without, ETAG, MTIME) == result
    # If-Match and If-Unmodified-Since are decided first: a 412 from them stands
    # whatever the other two say.
    first = {k: v for k, v in request.items() if k in ("if-match", "if-unmodified-since")}
    if evaluate_preconditions(method, first, ETAG, MTIME) == 412:
        assert result == 412


# --- If-Range (§13.1.5) ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ('"abc"', True),
        (' "abc" ', True),
        ('W/"abc"', False),  # a weak tag never matches strongly
        ('"abcd"', False),
        ('"abc', False),
        (SAME, True),
        (BEFORE, False),
        (AFTER, False),  # exact only: a later date is not "unchanged since"
        ("Sunday, 09-Sep-01 01:46:40 GMT", True),  # same instant, obsolete format
        ("garbage", False),
        ("", False),
    ],
)
def test_if_range(value: str, allowed: bool) -> None:
    assert if_range_allows(value, ETAG, MTIME) is allowed


def test_if_range_without_validators() -> None:
    assert not if_range_allows('"abc"', None, MTIME)
    assert not if_range_allows(SAME, ETAG, None)
    weak = EntityTag(True, '"abc"')
    assert not if_range_allows('"abc"', weak, MTIME)
    assert not if_range_allows('W/"abc"', weak, MTIME)
