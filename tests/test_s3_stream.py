"""Streaming an S3 object without a proxy: the shared edge-case table (cases.py)
over an object whose key needs percent-encoding, in-process (ASGI and WSGI)
and through real uvicorn and gunicorn; and the faults seen by a real client.
"""

from __future__ import annotations

import asyncio
import time
import wsgiref.validate
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import s3_app
from cases import CASES, CONTENT, Case, check, request_headers, validators
from s3server import BUCKET, CLIENT_ENV, FakeS3, S3Server, shared
from servers import binary, free_port, running

from xaccel_middleware import XAccelMiddleware, XAccelWSGIMiddleware
from xaccel_middleware.sources import loop

KEY = "dir/a b ü%#?.bin"
PATH = "/s3/" + quote(KEY)
BIG_KEY = "big.bin"
BIG = bytes(i % 253 for i in range(300 * 1024))
TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CLIENT_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def s3() -> S3Server:
    server = shared()
    server.put(KEY, CONTENT, ContentType="text/plain")
    server.put(BIG_KEY, BIG)
    return server


@pytest.fixture(scope="module")
def values(s3: S3Server) -> dict[str, str]:
    head = s3.client().head_object(Bucket=BUCKET, Key=KEY)
    return validators(head["ETag"], head["LastModified"].timestamp())


def assert_case(case: Case, response: httpx.Response) -> None:
    headers = {k.lower(): v for k, v in response.headers.items()}
    check(case, response.status_code, headers, response.content, CONTENT)
    if case.status in (200, 206):
        assert headers["content-disposition"] == s3_app.DISPOSITION


# -- in process ------------------------------------------------------------


@pytest.fixture(scope="module")
def wsgi_app(s3: S3Server) -> XAccelWSGIMiddleware:
    return XAccelWSGIMiddleware(s3_app._wsgi_inner, s3.settings(mode="stream"))


@pytest.fixture(scope="module")
def wsgi_client(wsgi_app: XAccelWSGIMiddleware) -> Iterator[httpx.Client]:
    transport = httpx.WSGITransport(wsgiref.validate.validator(wsgi_app))
    with httpx.Client(transport=transport, base_url="http://test") as client:
        yield client


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_table_wsgi(
    case: Case, wsgi_app: XAccelWSGIMiddleware, wsgi_client: httpx.Client, values: dict[str, str]
) -> None:
    client = wsgi_client
    if case.status in (412, 416):
        # wsgiref.validate wants a Content-Type even on an empty 412/416, which
        # the core (plan._empty) leaves out for local files and objects alike.
        client = httpx.Client(transport=httpx.WSGITransport(wsgi_app), base_url="http://test")
    response = client.request(case.method, PATH, headers=request_headers(case, values))
    assert_case(case, response)


@pytest.fixture
async def asgi_client(s3: S3Server) -> AsyncIterator[httpx.AsyncClient]:
    app = XAccelMiddleware(s3_app._asgi_inner, s3.settings(mode="stream"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
        yield client
    await app.decider.aclose()


async def test_table_asgi(asgi_client: httpx.AsyncClient, values: dict[str, str]) -> None:
    # One loop and one client for the whole table, as a server would have.
    for case in CASES:
        response = await asgi_client.request(case.method, PATH, headers=request_headers(case, values))
        assert_case(case, response)


async def call_asgi(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    """The messages the app sends for one request, kept one by one."""
    sent: list[dict[str, Any]] = []
    scope = {"type": "http", "method": "GET", "path": path, "headers": headers, "query_string": b""}

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    return sent


async def test_body_goes_out_in_bounded_chunks(s3: S3Server) -> None:
    app = XAccelMiddleware(s3_app._asgi_inner, s3.settings(mode="stream", chunk_size=8192))
    try:
        sent = await call_asgi(app, "/s3/" + BIG_KEY, [])
        bodies = [m["body"] for m in sent if m["type"] == "http.response.body"]
        assert b"".join(bodies) == BIG
        assert max(len(b) for b in bodies) <= 8192
        assert len(bodies) >= len(BIG) // 8192
        # Several ranges: one ranged read each, framed, same cap as local files.
        sent = await call_asgi(app, "/s3/" + BIG_KEY, [(b"range", b"bytes=0-9,100000-100009,-10")])
        assert sent[0]["status"] == 206
        body = b"".join(m["body"] for m in sent[1:])
        assert body.count(b"content-range: bytes") == 3 and BIG[100000:100010] in body
    finally:
        await app.decider.aclose()


async def test_too_many_ranges_get_the_whole_object(s3: S3Server) -> None:
    app = XAccelMiddleware(s3_app._asgi_inner, s3.settings(mode="stream", max_ranges=3))
    try:
        ranges = ",".join(f"{i * 10}-{i * 10 + 1}" for i in range(4)).encode()
        sent = await call_asgi(app, "/s3/" + KEY, [(b"range", b"bytes=" + ranges)])
        assert sent[0]["status"] == 200
        assert b"".join(m.get("body", b"") for m in sent[1:]) == CONTENT
    finally:
        await app.decider.aclose()


async def test_lifespan_shutdown_closes_the_client(s3: S3Server) -> None:
    app = XAccelMiddleware(s3_app._asgi_inner, s3.settings(mode="stream"))
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    replies: list[str] = []
    for kind in ("lifespan.startup", "lifespan.shutdown"):
        events.put_nowait({"type": kind})

    async def send(message: Any) -> None:
        replies.append(message["type"])

    await call_asgi(app, "/s3/" + KEY, [])
    (client,) = [f.result() for f in app.decider.s3.clients.by_loop.values()]
    http = client._endpoint.http_session
    assert http._sessions is not None
    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, events.get, send)
    assert replies == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert http._sessions is None and not app.decider.s3.clients.by_loop


def test_wsgi_requests_share_one_loop_thread_and_client(s3: S3Server, wsgi_client: httpx.Client) -> None:
    for _ in range(3):
        assert wsgi_client.get(PATH).content == CONTENT
    thread = loop.current()
    assert thread is not None
    for _ in range(3):
        assert wsgi_client.get(PATH, headers={"range": "bytes=1-2"}).content == b"12"
    assert loop.current() is thread


# -- real servers ------------------------------------------------------------


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeS3]]:
    made = {mode: FakeS3(mode) for mode in ("cut", "blackhole", "stall-body")}
    yield made
    for fake in made.values():
        fake.close()


def server_env(s3: S3Server, fakes: dict[str, FakeS3]) -> dict[str, str]:
    env = {
        **CLIENT_ENV,
        "XACCEL_MODE": "stream",
        "XACCEL_S3_ENDPOINT_URL": s3.endpoint,
        "XACCEL_S3_REGION": "us-east-1",
        "XACCEL_S3_BUCKETS": BUCKET,
        "XACCEL_TEST_FAULT_DOWN": f"http://127.0.0.1:{free_port()}",
    }
    for mode, fake in fakes.items():
        env[f"XACCEL_TEST_FAULT_{mode.upper().replace('-', '_')}"] = fake.endpoint
    return env


def argv(kind: str, port: int) -> list[str]:
    if kind == "uvicorn":
        return [binary("uvicorn"), "--app-dir", str(TESTS), "s3_app:asgi_app", "--host", "127.0.0.1",
                "--port", str(port), "--no-access-log", "--lifespan", "on"]  # fmt: skip
    return [binary("gunicorn"), "--chdir", str(TESTS), "-b", f"127.0.0.1:{port}", "-w", "1",
            "s3_app:wsgi_app"]  # fmt: skip


@pytest.fixture(scope="module", params=["uvicorn", "gunicorn"])
def server(request: pytest.FixtureRequest, s3: S3Server, fakes: dict[str, FakeS3]) -> Iterator[str]:
    port = free_port()
    with running(argv(request.param, port), port, env=server_env(s3, fakes)):
        yield f"http://127.0.0.1:{port}"


def test_table_real_server(server: str, values: dict[str, str]) -> None:
    with httpx.Client(base_url=server, timeout=10) as client:
        for case in CASES:
            response = client.request(case.method, PATH, headers=request_headers(case, values))
            assert_case(case, response)
        big = client.get("/s3/" + BIG_KEY, headers={"range": "bytes=1000-"})
        assert big.status_code == 206 and big.content == BIG[1000:]


def test_missing_key_real_server(server: str) -> None:
    assert httpx.get(server + "/s3/no/such/key.bin", timeout=10).status_code == 404


def test_s3_down_real_server(server: str) -> None:
    started = time.monotonic()
    assert httpx.get(server + "/fault/down/big.bin", timeout=10).status_code == 502
    assert time.monotonic() - started < 1.0


def test_s3_silent_real_server(server: str) -> None:
    started = time.monotonic()
    assert httpx.get(server + "/fault/blackhole/big.bin", timeout=10).status_code == 504
    assert time.monotonic() - started < 1.5 + 1.0  # connect + read timeouts, and margin


@pytest.mark.parametrize("mode", ["cut", "stall-body"])
def test_failure_mid_body_aborts_the_connection(server: str, mode: str) -> None:
    """Never a short 200: the status went out, so the connection is dropped."""
    started = time.monotonic()
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", f"{server}/fault/{mode}/big.bin") as response,
    ):
        assert response.status_code == 200
        assert int(response.headers["content-length"]) == 256 * 1024
        received = bytearray()
        with pytest.raises(httpx.RemoteProtocolError):
            for chunk in response.iter_bytes():
                received += chunk
    assert len(received) < 256 * 1024
    assert time.monotonic() - started < 1.0 + 1.5  # the read timeout, and margin


async def _lifespan(app: Any, fail_startup: bool = False) -> list[str]:
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for kind in ("lifespan.startup", "lifespan.shutdown"):
        events.put_nowait({"type": kind})
    replies: list[str] = []

    async def send(message: Any) -> None:
        replies.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, events.get, send)
    return replies


async def test_an_app_without_lifespan_still_gets_the_client_closed(s3: S3Server) -> None:
    async def django_like(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError("Django can only handle ASGI/HTTP connections, not lifespan.")
        await s3_app._asgi_inner(scope, receive, send)

    app = XAccelMiddleware(django_like, s3.settings(mode="stream"))
    await call_asgi(app, "/s3/" + KEY, [])
    (client,) = [f.result() for f in app.decider.s3.clients.by_loop.values()]
    assert await _lifespan(app) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert client._endpoint.http_session._sessions is None


async def test_a_failing_startup_is_the_apps_failure(s3: S3Server) -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        raise RuntimeError("the database is down")

    with pytest.raises(RuntimeError, match="database"):
        await _lifespan(XAccelMiddleware(broken, s3.settings()))


EXIT_SCRIPT = """
import asyncio, sys
from xaccel_middleware import Settings, XAccelMiddleware, XAccelWSGIMiddleware
sys.path.insert(0, sys.argv[2])
import s3_app
settings = Settings(s3_endpoint_url=sys.argv[1], s3_region="us-east-1", s3_buckets="media", mode="stream")
path = "/s3/" + sys.argv[3]
if sys.argv[4] == "wsgi":
    app = XAccelWSGIMiddleware(s3_app._wsgi_inner, settings)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path.encode().decode("latin-1"), "wsgi.input": None}
    body = app(environ, lambda status, headers, exc_info=None: print(status))
    print(b"".join(body)); body.close()
else:
    app = XAccelMiddleware(s3_app._asgi_inner, settings)
    async def main():
        sent = []
        async def send(m): sent.append(m)
        async def receive(): await asyncio.sleep(60)
        await app({"type": "http", "method": "GET", "path": path, "headers": []}, receive, send)
        print(sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]))
    loop = asyncio.new_event_loop()
    loop.run_until_complete(main())  # a server that ran no lifespan; the loop is left open
"""


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_clients_are_closed_at_exit(s3: S3Server, kind: str) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, s3.endpoint, str(TESTS), KEY, kind],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert repr(CONTENT) in done.stdout
    assert "Unclosed" not in done.stderr, done.stderr
