"""The S3 source against a real S3-compatible server (ministack, which checks
SigV4), and against a loopback stand-in that fails on purpose.

The server proves the presigned URLs: it refuses a tampered signature, an
expired URL and a URL signed for another method, so the ones it accepts are
really right.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator

import pytest
from s3server import BUCKET, CLIENT_ENV, FakeS3, S3Server, shared

from xaccel_middleware import ConfigError, Settings
from xaccel_middleware.decide import Decider, Refuse, Request, S3Stream
from xaccel_middleware.errors import SourceError
from xaccel_middleware.ranges import ByteSpan
from xaccel_middleware.sources import S3Location
from xaccel_middleware.sources.s3 import S3Source, object_meta, translate

KEY = "dir/a b ü%#?.bin"
CONTENT = b"0123456789\n"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CLIENT_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def s3() -> S3Server:
    server = shared()
    server.put(KEY, CONTENT, ContentType="video/mp4")
    server.put("typeless.pdf", b"%PDF-1.4\n")
    server.put("x%41y.bin", b"literal percent")
    return server


@pytest.fixture
async def source(s3: S3Server) -> AsyncIterator[S3Source]:
    source = S3Source(s3.settings())
    yield source
    await source.aclose()


def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# -- metadata -------------------------------------------------------------


async def test_metadata_comes_from_head_object(source: S3Source) -> None:
    obj = await source.stat(S3Location(BUCKET, KEY))
    assert obj.meta.size == len(CONTENT)
    assert obj.meta.content_type == "video/mp4"
    assert obj.meta.etag.startswith('"') and obj.meta.etag == obj.etag
    assert abs(obj.meta.mtime - time.time()) < 300
    assert obj.path == "s3://media/dir/a%20b%20%C3%BC%25%23%3F.bin"


async def test_vague_content_type_is_guessed_from_the_key(source: S3Source) -> None:
    obj = await source.stat(S3Location(BUCKET, "typeless.pdf"))
    assert obj.meta.content_type == "application/pdf"


def test_a_missing_or_weak_etag_is_replaced_by_a_strong_one() -> None:
    from datetime import datetime, timezone

    head = {"ContentLength": 5, "LastModified": datetime(2025, 1, 1, tzinfo=timezone.utc), "ETag": 'W/"x"'}
    meta, if_match = object_meta(head, S3Location("b", "k"))
    assert if_match is None and meta.etag.startswith('"s3-') and not meta.etag.startswith("W/")
    meta2, _ = object_meta({**head, "ContentLength": 6}, S3Location("b", "k"))
    assert meta2.etag != meta.etag


# -- reads ----------------------------------------------------------------


async def test_ranged_reads_in_bounded_chunks_with_framing(source: S3Source) -> None:
    obj = await source.stat(S3Location(BUCKET, KEY))
    await obj.open([b"<a>", ByteSpan(0, 3), b"<b>", ByteSpan(5, 11), b"<end>"], chunk_size=4)
    chunks = [chunk async for chunk in obj.chunks()]
    await obj.aclose()
    assert b"".join(chunks) == b"<a>012<b>56789\n<end>"
    # Framing rides with the data after it; data chunks never exceed chunk_size.
    assert chunks[0] == b"<a>012"
    assert all(len(c.lstrip(b"<ab>")) <= 4 for c in chunks[:-1])


async def test_literal_percent_in_a_key(source: S3Source) -> None:
    obj = await source.stat(S3Location(BUCKET, "x%41y.bin"))
    await obj.open([ByteSpan(0, obj.meta.size)], 1024)
    assert obj.first == b"literal percent"
    await obj.aclose()


# -- presigned URLs, proven by a server that checks them -------------------


async def test_presigned_get_works_with_range(s3: S3Server, source: S3Source) -> None:
    uri = await source.presign(S3Location(BUCKET, KEY), "GET", {})
    assert uri.startswith("/media/dir/a%20b%20%C3%BC%25%23%3F.bin?")
    assert fetch(s3.endpoint + uri) == (200, CONTENT)
    assert fetch(s3.endpoint + uri, headers={"Range": "bytes=2-4"}) == (206, b"234")


async def test_server_rejects_a_tampered_signature(s3: S3Server, source: S3Source) -> None:
    uri = await source.presign(S3Location(BUCKET, KEY), "GET", {})
    head, signature = uri.rsplit("X-Amz-Signature=", 1)
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    status, body = fetch(s3.endpoint + head + "X-Amz-Signature=" + flipped)
    assert status == 403 and b"SignatureDoesNotMatch" in body
    # Another key under the same signature is refused too.
    other = uri.replace("/media/dir/", "/media/dix/", 1)
    assert fetch(s3.endpoint + other)[0] == 403


async def test_head_needs_a_url_signed_for_head(s3: S3Server, source: S3Source) -> None:
    location = S3Location(BUCKET, KEY)
    for_get = await source.presign(location, "GET", {})
    for_head = await source.presign(location, "HEAD", {})
    assert fetch(s3.endpoint + for_head, method="HEAD")[0] == 200
    assert fetch(s3.endpoint + for_get, method="HEAD")[0] == 403


async def test_presigned_response_overrides(s3: S3Server, source: S3Source) -> None:
    overrides = {"ResponseContentDisposition": 'attachment; filename="x.bin"'}
    uri = await source.presign(S3Location(BUCKET, KEY), "GET", overrides)
    request = urllib.request.Request(s3.endpoint + uri)
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["Content-Disposition"] == 'attachment; filename="x.bin"'


async def test_server_rejects_an_expired_url(s3: S3Server) -> None:
    source = S3Source(s3.settings(s3_url_lifetime=1))
    try:
        uri = await source.presign(S3Location(BUCKET, KEY), "GET", {})
    finally:
        await source.aclose()
    assert fetch(s3.endpoint + uri)[0] == 200
    await asyncio.sleep(2.1)
    status, body = fetch(s3.endpoint + uri)
    assert status == 403 and b"expired" in body.lower()


# -- errors translated at the boundary --------------------------------------


async def test_missing_key_is_404(source: S3Source) -> None:
    with pytest.raises(SourceError) as caught:
        await source.stat(S3Location(BUCKET, "no/such/key"))
    assert caught.value.status == 404


async def test_bucket_outside_the_allowlist_is_404_and_warned(
    s3: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    decider = Decider(s3.settings())
    request = Request("GET", {}, None)
    with caplog.at_level(logging.WARNING, logger="xaccel_middleware"):
        outcome = await decider.for_marker_async(b"s3://other-bucket/key", request, [])
    await decider.aclose()
    assert outcome == Refuse(404)
    assert "XACCEL_S3_BUCKETS" in caplog.text
    # Nothing was asked of S3: no client was even made.
    assert decider._s3 is None or not decider._s3.clients.by_loop


def test_a_bucket_outside_the_allowlist_costs_no_thread_under_wsgi() -> None:
    import threading

    before = {t.name for t in threading.enumerate()}
    decider = Decider(Settings())
    outcome = decider.for_marker(b"s3://bucket/key", Request("GET", {}, None), [])
    assert outcome == Refuse(404)
    assert decider._s3 is None  # no S3 source, so no client and no loop thread
    assert {t.name for t in threading.enumerate()} == before


async def test_access_refused_is_404_with_a_hint(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unknown-key")
    source = S3Source(s3.settings())
    with caplog.at_level(logging.WARNING, logger="xaccel_middleware"), pytest.raises(SourceError) as caught:
        await source.stat(S3Location(BUCKET, KEY))
    await source.aclose()
    assert caught.value.status == 404
    assert "s3:GetObject" in caplog.text


def test_translation_table() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

    def client_error(status: int, code: str) -> ClientError:
        return ClientError(
            {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "HeadObject"
        )

    assert translate(client_error(404, "NoSuchKey"), "x").status == 404
    assert translate(client_error(403, "AccessDenied"), "x").status == 404
    assert translate(client_error(500, "InternalError"), "x").status == 502
    assert translate(client_error(503, "SlowDown"), "x").status == 502
    assert translate(client_error(412, "PreconditionFailed"), "x").status == 502
    assert translate(EndpointConnectionError(endpoint_url="http://x"), "x").status == 502
    assert translate(ReadTimeoutError(endpoint_url="http://x"), "x").status == 504
    assert translate(asyncio.TimeoutError(), "x").status == 504
    assert translate(NoCredentialsError(), "x").status == 502


def test_buckets_without_aiobotocore_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "aiobotocore" else real(name, *a)
    )
    from xaccel_middleware import Settings

    with pytest.raises(ConfigError, match="aiobotocore"):
        Decider(Settings(s3_buckets="media"))


def test_aiobotocore_is_not_imported_until_s3_is_used() -> None:
    code = (
        "import sys, xaccel_middleware, xaccel_middleware.asgi, xaccel_middleware.wsgi;"
        "from xaccel_middleware import Settings, XAccelMiddleware, XAccelWSGIMiddleware;"
        "XAccelWSGIMiddleware(lambda e, s: [], Settings(s3_buckets='media'));"
        "print(sorted(m for m in sys.modules if 'botocore' in m or m == 'aiohttp'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- faults: S3 down, slow, or cut ------------------------------------------


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> Iterator[FakeS3]:
    server = FakeS3(request.param)
    yield server
    server.close()


@pytest.fixture
async def decider(request: pytest.FixtureRequest) -> AsyncIterator[Decider]:
    """A Decider on the fake's (or a dead port's) endpoint, closed after the test."""
    endpoint = request.getfixturevalue("fake").endpoint if "fake" in request.fixturenames else dead_endpoint()
    decider = Decider(FakeS3.settings(type("Endpoint", (), {"endpoint": endpoint})()))  # type: ignore[arg-type]
    yield decider
    await decider.aclose()


def dead_endpoint() -> str:
    """A loopback port that refuses connections: bound by a socket that never listens."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _keep.append(sock)
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


_keep: list[object] = []


async def _decide(decider: Decider) -> object:
    return await decider.for_marker_async(b"s3://media/big.bin", Request("GET", {}, None), [])


async def test_s3_down_is_502_at_once(decider: Decider) -> None:
    started = time.monotonic()
    outcome = await _decide(decider)
    assert outcome == Refuse(502)
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize("fake", ["blackhole"], indirect=True)
async def test_s3_silent_is_504_within_the_timeouts(fake: FakeS3, decider: Decider) -> None:
    started = time.monotonic()
    outcome = await _decide(decider)
    elapsed = time.monotonic() - started
    assert outcome == Refuse(504)
    # connect 0.5 s + read 1.0 s: the deadline for a metadata call, retries included.
    assert elapsed < 1.5 + 0.5, elapsed


@pytest.mark.parametrize("fake", ["stall-get"], indirect=True)
async def test_s3_stalling_before_the_body_is_a_clean_504(fake: FakeS3, decider: Decider) -> None:
    started = time.monotonic()
    outcome = await _decide(decider)
    assert outcome == Refuse(504)
    assert time.monotonic() - started < 1.5 + 0.5


@pytest.mark.parametrize("fake", ["slow-head"], indirect=True)
async def test_one_deadline_covers_the_whole_decision(fake: FakeS3, decider: Decider) -> None:
    """HeadObject answers within its own deadline (1.0 of 1.5 s), then GetObject
    stalls: the answer still comes within one deadline, not two."""
    started = time.monotonic()
    outcome = await _decide(decider)
    assert outcome == Refuse(504)
    assert time.monotonic() - started < 1.5 + 0.5


@pytest.mark.parametrize("fake", ["cut"], indirect=True)
async def test_a_cut_mid_body_raises_never_ends_short(fake: FakeS3, decider: Decider) -> None:
    outcome = await _decide(decider)
    assert isinstance(outcome, S3Stream) and outcome.plan.status == 200
    received = len(outcome.file.first)
    with pytest.raises(SourceError) as caught:
        async for chunk in outcome.file.chunks():
            received += len(chunk) if chunk is not outcome.file.first else 0
    await outcome.file.aclose()
    assert caught.value.status == 502
    assert received < fake.size


@pytest.mark.parametrize("fake", ["stall-body"], indirect=True)
async def test_a_stall_mid_body_raises_after_the_read_timeout(fake: FakeS3, decider: Decider) -> None:
    outcome = await _decide(decider)
    assert isinstance(outcome, S3Stream)
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        async for _ in outcome.file.chunks():
            pass
    await outcome.file.aclose()
    assert caught.value.status == 504
    assert time.monotonic() - started < 1.0 + 0.5


# -- the client: made once, closed at the end -------------------------------


async def test_one_client_per_loop_reused_and_closed(s3: S3Server) -> None:
    source = S3Source(s3.settings())
    first = await asyncio.gather(*(source.client() for _ in range(5)))
    assert len({id(c) for c in first}) == 1
    await source.stat(S3Location(BUCKET, KEY))
    assert await source.client() is first[0]
    http = first[0]._endpoint.http_session
    sessions = list(http._sessions.values())
    assert sessions and not any(s.closed for s in sessions)
    await source.aclose()
    assert http._sessions is None and all(s.closed for s in sessions)
    assert not source.clients.by_loop


def test_wsgi_threads_share_one_loop_and_one_client(s3: S3Server) -> None:
    import threading

    source = S3Source(s3.settings())
    clients: list[object] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            obj = source.run(source.stat(S3Location(BUCKET, KEY)))
            assert obj.meta.size == len(CONTENT)
            clients.append(source.run(source.client()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len({id(c) for c in clients}) == 1
    assert list(source.clients.by_loop) == [source.bridge().loop]
    source.run(source.aclose())
