"""The edge-case table shared by the core tests and every adapter run (ASGI, WSGI,
in-process and through real servers). One table, many transports.

Request header values may hold ``{etag}``, ``{last_modified}``, ``{before}`` and
``{after}``: each runner formats them with the file's own validators.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# Go's net/http ServeFileRangeTests use an 11-byte file.
CONTENT = b"0123456789\n"
SIZE = len(CONTENT)


@dataclass(frozen=True)
class Case:
    id: str
    status: int
    request: Mapping[str, str] = field(default_factory=dict)
    spans: tuple[tuple[int, int], ...] = ()  # half-open; for 206
    method: str = "GET"


def validators(etag: str, mtime: float) -> dict[str, str]:
    return {
        "etag": etag,
        "last_modified": email.utils.formatdate(int(mtime), usegmt=True),
        "before": email.utils.formatdate(int(mtime) - 3600, usegmt=True),
        "after": email.utils.formatdate(int(mtime) + 3600, usegmt=True),
    }


def request_headers(case: Case, values: Mapping[str, str]) -> dict[str, str]:
    return {k: v.format(**values) for k, v in case.request.items()}


def _go(r: str, status: int, *spans: tuple[int, int]) -> Case:
    return Case(f"go:{r or 'none'}", status, {"range": r} if r else {}, spans)


# Go src/net/http/fs_test.go, ServeFileRangeTests (22 vectors, 11-byte file).
GO_VECTORS = [
    _go("", 200),
    _go("bytes=0-4", 206, (0, 5)),
    _go("bytes=2-", 206, (2, SIZE)),
    _go("bytes=-5", 206, (SIZE - 5, SIZE)),
    _go("bytes=3-7", 206, (3, 8)),
    _go("bytes=0-0,-2", 206, (0, 1), (SIZE - 2, SIZE)),
    _go("bytes=0-1,5-8", 206, (0, 2), (5, 9)),
    _go("bytes=0-1,5-", 206, (0, 2), (5, SIZE)),
    _go("bytes=5-1000", 206, (5, SIZE)),
    _go("bytes=0-,1-,2-,3-,4-", 200),
    _go("bytes=0-9", 206, (0, SIZE - 1)),
    _go("bytes=0-10", 206, (0, SIZE)),
    _go("bytes=0-11", 206, (0, SIZE)),
    _go("bytes=10-11", 206, (SIZE - 1, SIZE)),
    _go("bytes=10-", 206, (SIZE - 1, SIZE)),
    _go("bytes=11-", 416),
    _go("bytes=11-12", 416),
    _go("bytes=12-12", 416),
    _go("bytes=11-100", 416),
    _go("bytes=12-100", 416),
    _go("bytes=100-", 416),
    _go("bytes=100-1000", 416),
]


def _range(id: str, r: str, status: int, *spans: tuple[int, int], method: str = "GET") -> Case:
    return Case(id, status, {"range": r}, spans, method)


Spans = tuple[tuple[int, int], ...]


def _cond(id: str, status: int, spans: Spans = (), method: str = "GET", **request: str) -> Case:
    """Request headers as keywords: ``if_none_match=...`` is ``If-None-Match``."""
    return Case(id, status, {k.replace("_", "-"): v for k, v in request.items()}, spans, method)


WHOLE = (0, SIZE)
LONG = "9" * 30  # far past 64 bits, and past the parser's "huge" threshold

# jshttp/range-parser with ``combine``: overlapping and adjacent ranges merge,
# each merged range sits where its earliest member was asked (RFC 9110 §14.6:
# "in the same order that the corresponding range-spec appeared").
COALESCING = [
    _range("coalesce:overlap", "bytes=0-4,2-6", 206, (0, 7)),
    _range("coalesce:adjacent", "bytes=0-2,3-5", 206, (0, 6)),
    _range("coalesce:contained", "bytes=1-8,3-4", 206, (1, 9)),
    _range("coalesce:duplicate", "bytes=0-4,0-4", 206, (0, 5)),
    _range("coalesce:suffix-and-open", "bytes=-5,6-", 206, (6, SIZE)),
    _range("coalesce:keep-order", "bytes=8-9,0-1,2-3", 206, (8, 10), (0, 4)),
    _range("coalesce:retain-order", "bytes=-1,2-3,0-0", 206, (SIZE - 1, SIZE), (2, 4), (0, 1)),
    _range("coalesce:reversed", "bytes=10-10,0-0", 206, (10, 11), (0, 1)),
    _range("coalesce:combine", "bytes=0-1,8-9,2-5,10-11,10-10", 206, (0, 6), (8, SIZE)),
    _range("coalesce:gap-of-one", "bytes=0-1,3-4", 206, (0, 2), (3, 5)),
    _range("coalesce:some-unsatisfiable", "bytes=0-1,20-,30-40", 206, (0, 2)),
    _range("coalesce:all-unsatisfiable", "bytes=20-30,40-", 416),
    # More bytes asked than the file holds: the whole file is cheaper (Go, CVE-2011-3192).
    _range("coalesce:wasteful", "bytes=0-5,0-5", 200),
]

# Starlette tests/test_responses.py, test_file_response_range_* (where Starlette
# answers 400 we ignore the header, and we keep the request's order of parts).
STARLETTE = [
    _range("starlette:range", "bytes=0-4", 206, (0, 5)),
    _range("starlette:range-past-end", "bytes=0-12", 206, WHOLE),
    _range("starlette:multi", "bytes=0-1, 5-6", 206, (0, 2), (5, 7)),
    _range("starlette:merge", "bytes=0-3, 2-5", 206, (0, 6)),
    _range("starlette:insert-order", "bytes=5-7, 0-2", 206, (5, 8), (0, 3)),
    _range("starlette:small-chunks", "bytes=0-2,4-6,6-8", 206, (0, 3), (4, 9)),
    _range("starlette:416", "bytes=12-", 416),
    _range("starlette:colon", "bytes: 0-1000", 200),
    _range("starlette:unknown-unit", "items=0-100", 200),
    _range("starlette:empty-set", "bytes=", 200),
    _range("starlette:start-after-end", "bytes=5-0", 200),
    _range("starlette:head", "bytes=0-4", 200, method="HEAD"),
    _range("starlette:head-multi", "bytes=0-1, 5-6", 200, method="HEAD"),
]

# Answers other Python servers get wrong: whitenoise 416s bytes=0-0; werkzeug
# and aiohttp 416 every multi-range request.
PEERS = [
    _range("whitenoise:first-byte", "bytes=0-0", 206, (0, 1)),
    _range("whitenoise:last-byte", "bytes=-1", 206, (SIZE - 1, SIZE)),
    _range("werkzeug:multi", "bytes=0-1,4-5", 206, (0, 2), (4, 6)),
    _range("aiohttp:multi-three", "bytes=0-0,2-2,4-4", 206, (0, 1), (2, 3), (4, 5)),
    _range("multi:six", "bytes=0-0,2-2,4-4,6-6,8-8,10-10", 206, *((i, i + 1) for i in range(0, SIZE, 2))),
]

# §14.1.1 syntax. A header we cannot parse is ignored: 200, never 400 or 416.
# Values stay ASCII so that every HTTP client can send them; Unicode digits and
# non-OWS whitespace are tested on the parser itself (test_ranges.py).
SYNTAX = [
    _range("syntax:open", "bytes=0-", 206, WHOLE),
    _range("syntax:unit-case", "Bytes=1-2", 206, (1, 3)),
    _range("syntax:unit-upper", "BYTES=1-2", 206, (1, 3)),
    _range("syntax:ows-list", "bytes= 0-1 , 3-4", 206, (0, 2), (3, 5)),
    _range("syntax:ows-tab", "bytes=0-1,\t3-4", 206, (0, 2), (3, 5)),
    _range("syntax:ows-in-spec", "bytes=0 - 1", 206, (0, 2)),  # as Go and nginx
    _range("syntax:space-in-number", "bytes=1 0-20", 200),
    _range("syntax:empty-element", "bytes=0-1,,3-4", 206, (0, 2), (3, 5)),
    _range("syntax:leading-comma", "bytes=,0-1", 206, (0, 2)),
    _range("syntax:trailing-comma", "bytes=0-1,", 206, (0, 2)),
    _range("syntax:only-commas", "bytes=,,,", 200),
    _range("syntax:no-equals", "bytes", 200),
    _range("syntax:no-unit", "=0-1", 200),
    _range("syntax:garbage", "bytes=abc", 200),
    _range("syntax:dash-only", "bytes=-", 200),
    _range("syntax:two-dashes", "bytes=1-2-3", 200),
    _range("syntax:double-minus", "bytes=0--1", 200),
    _range("syntax:no-dash", "bytes=5", 200),
    _range("syntax:one-bad-spec", "bytes=0-1,x-2", 200),
    _range("syntax:plus", "bytes=+1-2", 200),
    _range("syntax:minus-suffix-plus", "bytes=-+1", 200),
    _range("syntax:hex", "bytes=0x1-2", 200),
    _range("syntax:underscore", "bytes=1_0-20", 200),
    _range("syntax:decimal-point", "bytes=1.0-2", 200),
    _range("syntax:exponent", "bytes=1e1-20", 200),
    _range("syntax:semicolon", "bytes=0-1;3-4", 200),
    _range("syntax:other-unit-set", "bytes=0-1, items=3-4", 200),
    _range("syntax:last-before-first", "bytes=5-4", 200),
    _range("syntax:one-last-before-first", "bytes=0-1,5-4", 200),
    _range("syntax:huge-last", f"bytes=0-{LONG}", 206, WHOLE),
    _range("syntax:huge-first", f"bytes={LONG}-", 416),
    _range("syntax:huge-both", f"bytes={LONG}-{LONG}9", 416),
    _range("syntax:huge-suffix", f"bytes=-{LONG}", 206, WHOLE),
    _range("syntax:huge-last-before-first", f"bytes={LONG}-1", 200),
    _range("syntax:huge-reversed", f"bytes={LONG}9-{LONG}", 200),
    _range("syntax:leading-zeros", "bytes=" + "0" * 29 + "5-07", 206, (5, 8)),
    _range("syntax:int64-overflow", "bytes=0-9223372036854775808", 206, WHOLE),
    _range("syntax:suffix-zero", "bytes=-0", 416),
    _range("syntax:suffix-zero-and-valid", "bytes=-0,0-1", 206, (0, 2)),
    _range("syntax:suffix-whole", f"bytes=-{SIZE}", 206, WHOLE),
    _range("syntax:suffix-longer", "bytes=-20", 206, WHOLE),
    _range("syntax:end-is-last-byte", f"bytes={SIZE - 1}-{SIZE - 1}", 206, (SIZE - 1, SIZE)),
]

METHODS = [
    Case("method:head", 200, method="HEAD"),
    Case("method:head-if-none-match", 304, {"if-none-match": "{etag}"}, method="HEAD"),
    Case("method:head-if-match-fails", 412, {"if-match": '"nope"'}, method="HEAD"),
    # §14.2: Range is defined for GET only; §13.2.1: a POST has already acted
    # by the time its answer is a file, so its preconditions cannot apply.
    Case("method:post", 200, method="POST"),
    Case("method:post-range", 200, {"range": "bytes=0-1"}, method="POST"),
    Case("method:post-if-none-match", 200, {"if-none-match": "{etag}"}, method="POST"),
    Case("method:post-if-match-fails", 200, {"if-match": '"nope"'}, method="POST"),
]

# RFC 9110 §13.2.2: If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since,
# then If-Range; each date is ignored when its ETag partner is present or invalid.
PRECONDITIONS = [
    _cond("if-match:same", 200, if_match="{etag}"),
    _cond("if-match:star", 200, if_match="*"),
    _cond("if-match:list", 200, if_match='"a", {etag}, "b"'),
    _cond("if-match:fails", 412, if_match='"nope"'),
    _cond("if-match:weak-never-matches", 412, if_match="W/{etag}"),
    _cond("if-match:empty-list", 412, if_match='"a", "b"'),
    _cond("if-match:then-range", 206, ((0, 2),), if_match="{etag}", range="bytes=0-1"),
    _cond("if-match:fails-before-range", 412, if_match='"nope"', range="bytes=0-1"),
    _cond("if-match:fails-before-416", 412, if_match='"nope"', range="bytes=20-"),
    _cond("if-match:ignores-unmodified-since", 200, if_match="{etag}", if_unmodified_since="{before}"),
    _cond("if-match:fails-despite-unmodified", 412, if_match='"nope"', if_unmodified_since="{after}"),
    _cond("if-unmodified-since:before", 412, if_unmodified_since="{before}"),
    _cond("if-unmodified-since:same", 200, if_unmodified_since="{last_modified}"),
    _cond("if-unmodified-since:after", 200, if_unmodified_since="{after}"),
    _cond("if-unmodified-since:invalid", 200, if_unmodified_since="yesterday"),
    _cond("if-unmodified-since:impossible-date", 200, if_unmodified_since="Sun, 32 Nov 1994 08:49:37 GMT"),
    _cond("if-unmodified-since:not-gmt", 200, if_unmodified_since="Sun, 06 Nov 1994 08:49:37 +0100"),
    _cond("if-none-match:same", 304, if_none_match="{etag}"),
    _cond("if-none-match:weak-matches", 304, if_none_match="W/{etag}"),
    _cond("if-none-match:list", 304, if_none_match='"a", W/"b", {etag}'),
    _cond("if-none-match:star", 304, if_none_match="*"),
    _cond("if-none-match:other", 200, if_none_match='"other"'),
    _cond("if-none-match:other-list", 200, if_none_match='"a", W/"b"'),
    _cond("if-none-match:other-then-range", 206, ((0, 2),), if_none_match='"other"', range="bytes=0-1"),
    _cond("if-none-match:before-range", 304, if_none_match="{etag}", range="bytes=0-1"),
    _cond("if-none-match:before-416", 304, if_none_match="{etag}", range="bytes=20-"),
    _cond("if-none-match:ignores-modified-since", 200, if_none_match='"other"', if_modified_since="{after}"),
    _cond("if-none-match:match-despite-modified", 304, if_none_match="{etag}", if_modified_since="{before}"),
    _cond("if-modified-since:same", 304, if_modified_since="{last_modified}"),
    _cond("if-modified-since:after", 304, if_modified_since="{after}"),
    _cond("if-modified-since:before", 200, if_modified_since="{before}"),
    _cond("if-modified-since:invalid", 200, if_modified_since="not a date"),
    _cond("if-modified-since:impossible-date", 200, if_modified_since="Sun, 06 Nov 1994 25:49:37 GMT"),
    _cond("if-modified-since:before-range", 304, if_modified_since="{last_modified}", range="bytes=0-1"),
    _cond(
        "if-modified-since:before-then-range", 206, ((0, 2),), if_modified_since="{before}", range="bytes=0-1"
    ),
    # Order between the pairs: a failed If-Match or If-Unmodified-Since wins over a 304.
    _cond("order:if-match-before-none-match", 412, if_match='"nope"', if_none_match="{etag}"),
    _cond("order:unmodified-before-none-match", 412, if_unmodified_since="{before}", if_none_match="{etag}"),
    _cond(
        "order:unmodified-before-modified", 412, if_unmodified_since="{before}", if_modified_since="{after}"
    ),
    _cond("order:if-match-then-none-match", 304, if_match="{etag}", if_none_match="{etag}"),
    _cond("order:all-pass", 200, if_match="*", if_unmodified_since="{after}", if_none_match='"x"'),
]

# §13.1.5: If-Range is a strong comparison; any mismatch means the whole file.
IF_RANGE = [
    _cond("if-range:etag", 206, ((0, 2),), range="bytes=0-1", if_range="{etag}"),
    _cond("if-range:stale-etag", 200, range="bytes=0-1", if_range='"old"'),
    _cond("if-range:weak-etag", 200, range="bytes=0-1", if_range="W/{etag}"),
    _cond("if-range:exact-date", 206, ((0, 2),), range="bytes=0-1", if_range="{last_modified}"),
    _cond("if-range:earlier-date", 200, range="bytes=0-1", if_range="{before}"),
    _cond("if-range:later-date", 200, range="bytes=0-1", if_range="{after}"),
    _cond("if-range:garbage", 200, range="bytes=0-1", if_range="garbage"),
    _cond("if-range:multi", 206, ((0, 2), (4, 6)), range="bytes=0-1,4-5", if_range="{etag}"),
    _cond("if-range:without-range", 200, if_range="{etag}"),
    _cond("if-range:bad-range", 200, range="bytes=x", if_range="{etag}"),
    _cond("if-range:416", 416, range="bytes=20-", if_range="{etag}"),
    _cond("if-range:stale-no-416", 200, range="bytes=20-", if_range='"old"'),
    _cond("if-range:head", 200, method="HEAD", range="bytes=0-1", if_range="{etag}"),
]

CASES: list[Case] = [
    *GO_VECTORS,
    *COALESCING,
    *STARLETTE,
    *PEERS,
    *SYNTAX,
    *METHODS,
    *PRECONDITIONS,
    *IF_RANGE,
]


def parse_multipart(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """(Content-Range, bytes) of each part of a multipart/byteranges body."""
    match = re.search(r"boundary=([^;\s]+)", content_type)
    assert match, content_type
    delimiter = b"--" + match.group(1).encode()
    assert body.endswith(b"\r\n" + delimiter + b"--\r\n"), body[-80:]
    parts = []
    for chunk in body.split(delimiter)[1:-1]:
        head, _, data = chunk.partition(b"\r\n\r\n")
        fields = dict(
            line.split(": ", 1) for line in head.decode("latin-1").strip("\r\n").split("\r\n") if line
        )
        fields = {k.lower(): v for k, v in fields.items()}
        parts.append((fields["content-range"], data[:-2] if data.endswith(b"\r\n") else data))
    return parts


def check(
    case: Case,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    content: bytes = CONTENT,
    accept_ranges_on_206: bool = True,
) -> None:
    """Assert a response (``headers`` with lower-case names) against the table.

    nginx sends no Accept-Ranges with a 206 (RFC 9110 makes it optional there):
    proxied runs pass ``accept_ranges_on_206=False``.
    """
    size = len(content)
    assert status == case.status, (case.id, status)
    has_body = case.method != "HEAD" and status in (200, 206)
    if not has_body:
        assert body == b"", case.id
    if status == 200 or (status == 206 and accept_ranges_on_206):
        assert headers.get("accept-ranges") == "bytes", case.id
    if status in (200, 206) and has_body:
        assert int(headers["content-length"]) == len(body), case.id
    if status == 200:
        assert int(headers["content-length"]) == size, case.id
        assert "content-range" not in headers, case.id
        if has_body:
            assert body == content, case.id
    elif status == 416:
        assert headers["content-range"] == f"bytes */{size}", case.id
    elif status == 206 and len(case.spans) == 1:
        (start, stop) = case.spans[0]
        assert headers["content-range"] == f"bytes {start}-{stop - 1}/{size}", case.id
        assert not headers.get("content-type", "").startswith("multipart/"), case.id
        assert body == content[start:stop], case.id
    elif status == 206:
        assert len(case.spans) > 1, case.id
        assert "content-range" not in headers, case.id
        assert headers["content-type"].startswith("multipart/byteranges; boundary="), case.id
        parts = parse_multipart(headers["content-type"], body)
        assert [r for r, _ in parts] == [f"bytes {a}-{b - 1}/{size}" for a, b in case.spans], case.id
        assert [d for _, d in parts] == [content[a:b] for a, b in case.spans], case.id
    elif status == 304:
        assert "content-length" not in headers or headers["content-length"] == "0", case.id
        assert "etag" in headers, case.id
