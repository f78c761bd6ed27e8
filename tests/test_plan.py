"""``plan_response``: the shared table run on the pure core, the headers each
status must and must not carry, and properties over arbitrary requests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise

import pytest
from cases import CASES, CONTENT, SIZE, Case, check, parse_multipart, request_headers, validators
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_ranges import range_headers, reference_parse

from xaccel_middleware.conditions import format_http_date
from xaccel_middleware.plan import FileMeta, Plan, plan_head, plan_response
from xaccel_middleware.ranges import UNSATISFIABLE, ByteSpan

MTIME = 1_000_000_000.75  # a fraction: Last-Modified has whole seconds
META = FileMeta(SIZE, MTIME, '"v1-abc"', "text/plain; charset=utf-8")
VALUES = validators(META.etag, META.mtime)

# What a framework's file response carries (Starlette, Django): mixed-case
# names, its own validators, and headers a 206 or 304 must repeat.
FRAMEWORK = [
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Content-Length", str(SIZE)),
    ("ETag", META.etag),
    ("Last-Modified", format_http_date(MTIME)),
    ("Cache-Control", "private, max-age=60"),
    ("Vary", "Cookie"),
    ("Set-Cookie", "a=1"),
    ("Set-Cookie", "b=2"),
]


def render(plan: Plan, content: bytes = CONTENT) -> bytes:
    """The body the adapters would send: framing bytes and file spans in order."""
    return b"".join(s if isinstance(s, bytes) else content[s.start : s.stop] for s in plan.body)


def single(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Lower-case names; the headers the table checks must not be repeated."""
    out: dict[str, str] = {}
    for name, value in headers:
        lower = name.lower()
        if lower in out and lower not in ("set-cookie", "vary", "link"):
            raise AssertionError(f"repeated {name}")
        out.setdefault(lower, value)
    return out


def values(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name]


# --- The shared table ----------------------------------------------------------


@pytest.mark.parametrize("app_headers", [[], FRAMEWORK], ids=["bare", "framework"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_table(case: Case, app_headers: list[tuple[str, str]]) -> None:
    plan = plan_response(case.method, request_headers(case, VALUES), META, app_headers)
    headers = single(plan.headers)
    body = render(plan)
    check(case, plan.status, headers, body if case.method != "HEAD" else b"")
    if plan.status in (200, 206) and case.method != "HEAD":
        assert int(headers["content-length"]) == plan.content_length == len(body)
    if case.method == "HEAD":
        assert plan.body == ()
        # §9.3.2: the headers of the GET, which ignores Range only for HEAD's sake here.
        as_get = {k: v for k, v in request_headers(case, VALUES).items() if k not in ("range", "if-range")}
        assert plan_response("GET", as_get, META, app_headers).headers == plan.headers
    if app_headers:
        kept = ("set-cookie", "cache-control", "vary", "etag")
        for name in kept:
            assert values(plan.headers, name) == values(app_headers, name), name


# --- Empty representation (cannot live in the 11-byte table) -----------------

EMPTY = FileMeta(0, MTIME, '"empty"', "text/plain")


@pytest.mark.parametrize(
    "header", ["bytes=0-0", "bytes=0-", "bytes=-1", "bytes=-0", "bytes=0-1,3-4", "bytes=5-"]
)
def test_range_on_empty_file_is_200_empty(header: str) -> None:
    plan = plan_response("GET", {"range": header}, EMPTY)
    assert plan.status == 200
    assert plan.body == ()
    assert single(plan.headers)["content-length"] == "0"
    assert "content-range" not in single(plan.headers)


def test_empty_file_conditionals() -> None:
    assert plan_response("GET", {"if-none-match": '"empty"'}, EMPTY).status == 304
    assert plan_response("GET", {"if-match": '"other"'}, EMPTY).status == 412
    head = plan_response("HEAD", {}, EMPTY)
    assert (head.status, head.body, single(head.headers)["content-length"]) == (200, (), "0")


# --- Headers per status ----------------------------------------------------------

ALL_EXTRA = [
    *FRAMEWORK,
    ("Expires", "Thu, 01 Dec 2094 16:00:00 GMT"),
    ("Content-Location", "/files/a.txt"),
    ("Content-Disposition", 'attachment; filename="a.txt"'),
    ("Content-Language", "en"),
    ("Link", "</a>; rel=preload"),
    ("Link", "</b>; rel=preload"),
]


def test_206_repeats_what_a_200_carries() -> None:
    # RANGE.md 10 and §15.3.7: ETag, Cache-Control, Expires, Vary, Content-Location.
    full = plan_response("GET", {}, META, ALL_EXTRA)
    part = plan_response("GET", {"range": "bytes=1-2"}, META, ALL_EXTRA)
    multi = plan_response("GET", {"range": "bytes=1-2,5-6"}, META, ALL_EXTRA, boundary="B")
    for name in ("etag", "last-modified", "cache-control", "expires", "vary", "content-location", "link"):
        assert values(part.headers, name) == values(full.headers, name), name
        assert values(multi.headers, name) == values(full.headers, name), name
    assert values(part.headers, "content-type") == ["text/plain; charset=utf-8"]
    assert values(multi.headers, "content-type") == ["multipart/byteranges; boundary=B"]
    assert values(multi.headers, "content-range") == []


def test_304_carries_what_15_4_5_requires_and_no_representation_metadata() -> None:
    plan = plan_response("GET", {"if-none-match": META.etag}, META, ALL_EXTRA)
    assert plan.status == 304 and plan.body == ()
    names = {k.lower() for k, _ in plan.headers}
    assert {"etag", "cache-control", "expires", "vary", "content-location"} <= names
    assert values(plan.headers, "set-cookie") == ["a=1", "b=2"]
    for name in (
        "content-type",
        "content-length",
        "content-disposition",
        "content-language",
        "content-range",
    ):
        assert name not in names, name


@pytest.mark.parametrize(("request_", "status"), [({"if-match": '"x"'}, 412), ({"range": "bytes=50-"}, 416)])
def test_412_and_416_have_empty_bodies(request_: dict[str, str], status: int) -> None:
    plan = plan_response("GET", request_, META, ALL_EXTRA)
    headers = single(plan.headers)
    assert plan.status == status and plan.body == ()
    assert headers["content-length"] == "0"
    assert "content-type" not in headers and "content-disposition" not in headers
    assert ("content-range" in headers) is (status == 416)


def test_app_framing_headers_are_replaced() -> None:
    app = [
        ("Content-Length", "999"),
        ("Content-Range", "bytes 0-1/2"),
        ("Transfer-Encoding", "chunked"),
        ("Accept-Ranges", "none"),
        ("X-Accel-Source", "/secret/path"),
        ("X-Custom", "kept"),
    ]
    for request in ({}, {"range": "bytes=0-1"}, {"range": "bytes=0-1,4-5"}):
        plan = plan_response("GET", request, META, app)
        assert values(plan.headers, "content-length") == [str(plan.content_length)]
        assert values(plan.headers, "accept-ranges") == ["bytes"]
        assert values(plan.headers, "x-custom") == ["kept"]
        assert not values(plan.headers, "transfer-encoding")
        assert not values(plan.headers, "x-accel-source")
        assert values(plan.headers, "content-range") in ([], ["bytes 0-1/11"])


def test_app_validators_win() -> None:
    app = [("ETag", '"app-tag"'), ("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")]
    assert plan_response("GET", {"if-none-match": '"app-tag"'}, META, app).status == 304
    assert plan_response("GET", {"if-none-match": META.etag}, META, app).status == 200
    assert plan_response("GET", {"if-range": '"app-tag"', "range": "bytes=0-0"}, META, app).status == 206
    since = {"if-modified-since": "Sun, 06 Nov 1994 08:49:37 GMT"}
    assert plan_response("GET", since, META, app).status == 304
    assert plan_response("GET", since, META).status == 200
    plan = plan_response("GET", {}, META, app)
    assert values(plan.headers, "etag") == ['"app-tag"']
    assert values(plan.headers, "last-modified") == ["Sun, 06 Nov 1994 08:49:37 GMT"]


def test_file_validators_are_added() -> None:
    headers = single(plan_response("GET", {}, META).headers)
    assert headers["etag"] == META.etag
    assert headers["last-modified"] == "Sun, 09 Sep 2001 01:46:40 GMT"
    assert headers["content-type"] == META.content_type
    assert headers["accept-ranges"] == "bytes"


# --- multipart/byteranges (§14.6) ----------------------------------------------


def test_multipart_framing_is_exact() -> None:
    plan = plan_response("GET", {"range": "bytes=0-1,4-5"}, META, boundary="XYZ")
    body = render(plan)
    assert body == (
        b"--XYZ\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-range: bytes 0-1/11\r\n\r\n01"
        b"\r\n--XYZ\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-range: bytes 4-5/11\r\n\r\n45"
        b"\r\n--XYZ--\r\n"
    )
    assert single(plan.headers)["content-length"] == str(len(body))
    assert [s for s in plan.body if isinstance(s, ByteSpan)] == [ByteSpan(0, 2), ByteSpan(4, 6)]


def test_multipart_part_type_is_the_app_type_even_with_percent_signs() -> None:
    app = [("Content-Type", 'text/plain; name="100%d%s"')]
    plan = plan_response("GET", {"range": "bytes=0-0,2-2"}, META, app, boundary="b")
    assert b'content-type: text/plain; name="100%d%s"\r\n' in render(plan)
    assert parse_multipart(single(plan.headers)["content-type"], render(plan)) == [
        ("bytes 0-0/11", b"0"),
        ("bytes 2-2/11", b"2"),
    ]


def test_boundary_is_random_with_at_least_96_bits() -> None:
    seen = set()
    for _ in range(20):
        content_type = single(plan_response("GET", {"range": "bytes=0-0,2-2"}, META).headers)["content-type"]
        boundary = content_type.split("boundary=", 1)[1]
        assert len(boundary) >= 24 and all(c in "0123456789abcdef" for c in boundary)
        seen.add(boundary)
    assert len(seen) == 20


def test_many_parts() -> None:
    big = FileMeta(100_000, MTIME, '"big"')
    header = "bytes=" + ",".join(f"{i * 10}-{i * 10 + 4}" for i in reversed(range(100)))
    plan = plan_response("GET", {"range": header}, big)
    content = bytes(i % 251 for i in range(big.size))
    parts = parse_multipart(single(plan.headers)["content-type"], render(plan, content))
    starts = [i * 10 for i in reversed(range(100))]
    assert parts == [(f"bytes {a}-{a + 4}/100000", content[a : a + 5]) for a in starts]
    assert int(single(plan.headers)["content-length"]) == plan.content_length == len(render(plan, content))


def test_max_ranges() -> None:
    big = FileMeta(1000, MTIME, '"big"')
    ranges = [f"{i * 2}-{i * 2}" for i in range(101)]
    assert plan_response("GET", {"range": "bytes=" + ",".join(ranges)}, big, max_ranges=100).status == 200
    plan = plan_response("GET", {"range": "bytes=" + ",".join(ranges[:100])}, big, max_ranges=100)
    assert plan.status == 206
    assert sum(isinstance(s, ByteSpan) for s in plan.body) == 100
    assert plan_response("GET", {"range": "bytes=0-0,2-2"}, big, max_ranges=1).status == 200
    assert plan_response("GET", {"range": "bytes=0-0"}, big, max_ranges=1).status == 206


# --- Properties over arbitrary requests --------------------------------------

VALIDATOR_VALUES = [
    '"v1"',
    'W/"v1"',
    '"other"',
    '"other", "v1"',
    "*",
    "",
    "garbage",
    format_http_date(int(MTIME)),
    format_http_date(int(MTIME) - 1),
    format_http_date(int(MTIME) + 1),
]
header_text = st.sampled_from(VALIDATOR_VALUES) | st.text(st.characters(codec="latin-1"), max_size=30)
conditional_headers = st.dictionaries(
    st.sampled_from(["if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "if-range"]),
    header_text,
    max_size=3,
)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, str]:
    request = draw(conditional_headers)
    choice = draw(st.integers(0, 4))
    if choice:
        request["range"] = draw(range_headers() if choice > 1 else st.text(st.characters(codec="latin-1")))
    return request


def assert_plan_invariants(method: str, request: Mapping[str, str], meta: FileMeta, content: bytes) -> Plan:
    plan = plan_response(method, request, meta, boundary=None)
    headers = single(plan.headers)
    size = meta.size
    assert plan.status in (200, 206, 304, 412, 416)
    assert "transfer-encoding" not in headers
    body = render(plan, content)
    if plan.status == 304:
        assert method in ("GET", "HEAD") and plan.body == ()
        assert "content-length" not in headers and "content-type" not in headers
        assert headers["etag"] == meta.etag
        return plan
    if plan.status in (412, 416):
        assert plan.body == () and headers["content-length"] == "0"
    elif method == "HEAD":
        assert plan.body == () and headers["content-length"] == str(size)
    else:
        assert headers["content-length"] == str(plan.content_length)
    if method != "HEAD":
        assert plan.content_length == len(body)
    if plan.status == 200:
        assert headers["accept-ranges"] == "bytes"
        assert method == "HEAD" or body == content
    elif plan.status == 416:
        assert method == "GET" and size > 0
        assert headers["content-range"] == f"bytes */{size}"
        assert reference_parse(request["range"], size, 100) is UNSATISFIABLE
    elif plan.status == 206:
        assert method == "GET" and "range" in request
        spans = [s for s in plan.body if isinstance(s, ByteSpan)]
        assert spans and all(0 <= s.start < s.stop <= size for s in spans)
        ordered = sorted(spans)
        assert all(a.stop < b.start for a, b in pairwise(ordered))  # coalesced
        assert sum(s.length for s in spans) <= size
        assert [(s.start, s.stop) for s in spans] == reference_parse(request["range"], size, 100)
        if len(spans) == 1:
            assert headers["content-range"] == spans[0].content_range(size)
            assert body == content[spans[0].start : spans[0].stop]
        else:
            assert "content-range" not in headers
            parts = parse_multipart(headers["content-type"], body)
            assert parts == [(s.content_range(size), content[s.start : s.stop]) for s in spans]
    return plan


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["GET", "GET", "GET", "HEAD", "POST", "PUT"]),
    requests(),
    st.integers(0, 40),
)
@example("GET", {"range": "bytes=0-0", "if-range": '"v1"'}, 5)
@example("GET", {"range": "bytes=-0"}, 5)
@example("HEAD", {"range": "bytes=0-0,2-2"}, 5)
def test_any_request(method: str, request: dict[str, str], size: int) -> None:
    meta = FileMeta(size, MTIME, '"v1"', "application/octet-stream")
    content = bytes((i * 7) % 256 for i in range(size))
    plan = assert_plan_invariants(method, request, meta, content)
    if method in ("POST", "PUT"):
        assert plan.status == 200  # §13.2.1 and §14.2: neither applies here
    if method == "GET" and "range" in request and not (request.keys() - {"range"}):
        # Without conditionals, the status is the parser's verdict, nothing else.
        expected = reference_parse(request["range"], size, 100)
        status = 200 if expected is None else 416 if expected is UNSATISFIABLE else 206
        assert plan.status == status
    if method == "HEAD":
        as_get = {k: v for k, v in request.items() if k not in ("range", "if-range")}
        assert plan_response("GET", as_get, meta).headers == plan.headers


def test_plan_head_uses_the_apps_own_validators() -> None:
    app = [
        ("content-type", "text/plain"),
        ("etag", '"v1"'),
        ("content-length", "11"),
        ("set-cookie", "a=b"),
        ("accept-ranges", "bytes"),
    ]
    not_modified = plan_head({"if-none-match": 'W/"v1"'}, app)
    assert not_modified is not None and not_modified.status == 304
    names = [k for k, _ in not_modified.headers]
    assert "etag" in names and "set-cookie" in names
    assert "content-type" not in names and "content-length" not in names
    failed = plan_head({"if-match": '"v2"'}, app)
    assert failed is not None and failed.status == 412
    assert plan_head({"if-none-match": '"v2"'}, app) is None
    assert plan_head({"if-none-match": '"v1"'}, [("content-type", "text/plain")]) is None
    # A page that is no file keeps HEAD and GET alike: the app's answer stands.
    page = [(k, v) for k, v in app if k != "accept-ranges"]
    assert plan_head({"if-none-match": '"v1"'}, page) is None
