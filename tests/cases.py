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

CASES: list[Case] = [
    *GO_VECTORS,
    Case("range:first-byte", 206, {"range": "bytes=0-0"}, ((0, 1),)),
    Case("range:last-byte", 206, {"range": "bytes=-1"}, ((SIZE - 1, SIZE),)),
    Case("range:unknown-unit", 200, {"range": "items=0-1"}),
    Case("range:garbage", 200, {"range": "bytes=abc"}),
    Case("range:head-ignores", 200, {"range": "bytes=0-1"}, method="HEAD"),
    Case("cond:if-none-match", 304, {"if-none-match": "{etag}"}),
    Case("cond:if-match-fails", 412, {"if-match": '"nope"'}),
    Case("cond:if-range-match", 206, {"range": "bytes=0-1", "if-range": "{etag}"}, ((0, 2),)),
    Case("cond:if-range-stale", 200, {"range": "bytes=0-1", "if-range": '"old"'}),
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


def check(case: Case, status: int, headers: Mapping[str, str], body: bytes, content: bytes = CONTENT) -> None:
    """Assert a response (``headers`` with lower-case names) against the table."""
    size = len(content)
    assert status == case.status, (case.id, status)
    if case.method == "HEAD" or status in (304, 412, 416):
        assert body == b"", case.id
    if status in (200, 206) and case.method == "GET":
        assert int(headers["content-length"]) == len(body), case.id
    if status == 200:
        assert headers.get("accept-ranges") == "bytes"
        assert int(headers["content-length"]) == size
        if case.method == "GET":
            assert body == content, case.id
    elif status == 416:
        assert headers["content-range"] == f"bytes */{size}"
    elif status == 206 and len(case.spans) == 1:
        (start, stop) = case.spans[0]
        assert headers["content-range"] == f"bytes {start}-{stop - 1}/{size}"
        assert body == content[start:stop]
    elif status == 206:
        assert "content-range" not in headers
        parts = parse_multipart(headers["content-type"], body)
        assert [r for r, _ in parts] == [f"bytes {a}-{b - 1}/{size}" for a, b in case.spans]
        assert [d for _, d in parts] == [content[a:b] for a, b in case.spans]
    elif status == 304:
        assert "content-length" not in headers or headers["content-length"] == "0"
        assert "etag" in headers
