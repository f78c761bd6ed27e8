"""End to end through real app servers, no proxy in front: uvicorn and granian
(Starlette; granian offers ``http.response.pathsend``) and gunicorn's sync
worker (Django). Each server starts once for this module.

Every server runs two ways of asking for a file: an ``X-Accel-Source`` marker,
and the framework's own file response, which the middleware takes over.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from apps import (
    AWKWARD_NAMES,
    HELLO,
    INTERNAL_PREFIX,
    PROXY_SECRET,
    awkward_content,
    make_media,
    server_env,
)
from cases import CASES, CONTENT, Case, check, parse_multipart, request_headers, validators
from servers import (
    SENDFILE_SYSCALLS,
    AppServer,
    app_server,
    current_syscalls,
    require,
    require_modules,
)

SERVERS = ("uvicorn", "granian", "gunicorn")
STARLETTE_SERVERS = ("uvicorn", "granian")
ROUTES = ("marker", "file")
TARGETS = [(kind, route) for kind in SERVERS for route in ROUTES]
BIG_SIZE = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("servers") / "media"
    make_media(folder, CONTENT, BIG_SIZE)
    return folder


@pytest.fixture(scope="module")
def uvicorn_server(media: Path) -> Iterator[AppServer]:
    require_modules("starlette")
    with app_server("uvicorn", server_env(media)) as server:
        yield server


@pytest.fixture(scope="module")
def granian_server(media: Path) -> Iterator[AppServer]:
    require_modules("starlette")
    with app_server("granian", server_env(media)) as server:
        yield server


@pytest.fixture(scope="module")
def gunicorn_server(media: Path) -> Iterator[AppServer]:
    require_modules("django")
    with app_server("gunicorn", server_env(media), wsgi_module="apps.django_app") as server:
        yield server


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    # httpx sends the Range and conditional headers exactly as given.
    with httpx.Client(timeout=10, trust_env=False) as client:
        yield client


def server_for(request: pytest.FixtureRequest, kind: str) -> AppServer:
    server = request.getfixturevalue(f"{kind}_server")
    assert isinstance(server, AppServer)
    return server


def lower(headers: httpx.Headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def assert_no_internals(response: httpx.Response) -> None:
    """The marker never reaches a client, and without a trusted proxy nothing is offloaded."""
    for name in ("x-accel-source", "x-accel-redirect", "x-sendfile"):
        assert name not in response.headers, name


# --- The shared table ---------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize(("kind", "route"), TARGETS)
def test_case_table(
    request: pytest.FixtureRequest, client: httpx.Client, media: Path, kind: str, route: str, case: Case
) -> None:
    url = f"{server_for(request, kind).url}/{route}/small.txt"
    values: dict[str, str] = {}
    if any("{" in value for value in case.request.values()):
        # The validators are the ones this server's answer carries: Starlette's
        # FileResponse sets its own ETag, which the middleware keeps.
        etag = client.get(url).headers["etag"]
        values = validators(etag, os.stat(media / "small.txt").st_mtime)
    response = client.request(case.method, url, headers=request_headers(case, values))
    assert_no_internals(response)
    check(case, response.status_code, lower(response.headers), response.content)


@pytest.mark.parametrize("name", AWKWARD_NAMES, ids=ascii)
@pytest.mark.parametrize(("kind", "route"), TARGETS)
def test_awkward_names(
    request: pytest.FixtureRequest, client: httpx.Client, kind: str, route: str, name: str
) -> None:
    """Space, %, #, ?, + and both Unicode normal forms reach their own file."""
    url = f"{server_for(request, kind).url}/{route}/{quote(name)}"
    content = awkward_content(name)
    whole = client.get(url)
    assert whole.status_code == 200
    assert whole.content == content
    assert whole.headers["content-length"] == str(len(content))
    tail = client.get(url, headers={"range": "bytes=5-"})
    assert tail.status_code == 206
    assert tail.headers["content-range"] == f"bytes 5-{len(content) - 1}/{len(content)}"
    assert tail.content == content[5:]
    assert_no_internals(tail)


# --- What the app decides stays the app's ---------------------------------------


@pytest.mark.parametrize("kind", SERVERS)
def test_gated_file_needs_login(request: pytest.FixtureRequest, client: httpx.Client, kind: str) -> None:
    url = f"{server_for(request, kind).url}/gated/small.txt"
    refused = client.get(url, headers={"range": "bytes=0-1"})
    assert refused.status_code == 403
    assert refused.content == b"log in first\n"
    assert "content-range" not in refused.headers
    assert_no_internals(refused)

    login = {"cookie": "session=ok"}
    allowed = client.get(url, headers=login)
    assert allowed.status_code == 200
    assert allowed.content == CONTENT
    part = client.get(url, headers={**login, "range": "bytes=-3"})
    assert part.status_code == 206
    assert part.content == CONTENT[-3:]


@pytest.mark.parametrize("kind", SERVERS)
def test_outside_root_is_404_and_reveals_nothing(
    request: pytest.FixtureRequest, client: httpx.Client, media: Path, kind: str
) -> None:
    """The private sibling shares the root's prefix (``media`` / ``media-private``);
    even a trusted offload request must not reach it or learn its path."""
    url = f"{server_for(request, kind).url}/outside"
    trusted = {"x-sendfile-type": "X-Accel-Redirect", "x-accel-proxy-secret": PROXY_SECRET}
    for headers in ({}, trusted):
        response = client.get(url, headers=headers)
        assert response.status_code == 404
        assert_no_internals(response)
        seen = response.content + "\n".join(f"{k}: {v}" for k, v in response.headers.items()).encode()
        for leak in (b"secret", b"private", os.fsencode(media.parent), b"top secret"):
            assert leak not in seen, leak


@pytest.mark.parametrize("kind", SERVERS)
def test_plain_response_passes_untouched(
    request: pytest.FixtureRequest, client: httpx.Client, kind: str
) -> None:
    response = client.get(
        f"{server_for(request, kind).url}/hello",
        headers={
            "range": "bytes=0-1",
            "x-sendfile-type": "X-Accel-Redirect",
            "x-accel-proxy-secret": PROXY_SECRET,
        },
    )
    assert response.status_code == 200
    assert response.content == HELLO
    assert response.headers["x-hello"] == "1"
    assert response.headers["content-type"].startswith("text/plain")
    for added in ("etag", "last-modified", "accept-ranges", "content-range"):
        assert added not in response.headers, added
    assert_no_internals(response)


# --- Trust: a server reached directly is not a proxy -------------------------------


@pytest.mark.parametrize(("kind", "route"), TARGETS)
def test_offload_needs_the_secret(
    request: pytest.FixtureRequest, client: httpx.Client, kind: str, route: str
) -> None:
    base = server_for(request, kind).url
    offload = {"x-sendfile-type": "X-Accel-Redirect", "range": "bytes=0-1"}
    for secret in (None, "", PROXY_SECRET[:-1], PROXY_SECRET + "x", PROXY_SECRET.upper()):
        headers = offload if secret is None else {**offload, "x-accel-proxy-secret": secret}
        streamed = client.get(f"{base}/{route}/small.txt", headers=headers)
        assert streamed.status_code == 206, secret
        assert streamed.content == CONTENT[:2]
        assert_no_internals(streamed)

    trusted = {**offload, "x-accel-proxy-secret": PROXY_SECRET}
    # Offload never goes out as a 206: the proxy does Range itself.
    response = client.get(f"{base}/{route}/small.txt", headers=trusted)
    assert response.status_code == 200
    assert response.headers["x-accel-redirect"] == f"{INTERNAL_PREFIX}/small.txt"
    assert response.content == b""
    assert "content-range" not in response.headers
    assert "x-accel-source" not in response.headers

    for name in AWKWARD_NAMES:
        response = client.get(f"{base}/{route}/{quote(name)}", headers=trusted)
        assert response.status_code == 200
        # nginx percent-decodes the URI: every byte but "/" is escaped, "?" included.
        assert response.headers["x-accel-redirect"] == f"{INTERNAL_PREFIX}/{quote(name.encode(), safe='')}"
        assert response.content == b""


# --- Offsets past 32 bits ------------------------------------------------------

FAR = 5 * 1024**3


@pytest.fixture(scope="module")
def sparse(media: Path) -> tuple[str, bytes]:
    """A 5 GiB sparse file with random bytes near its end: offsets past 2**32."""
    path = media / "sparse.bin"
    tail = os.urandom(4096)
    with open(path, "wb") as out:
        out.truncate(FAR)
        os.pwrite(out.fileno(), tail, FAR - 4096 - 100)
    return path.name, tail


@pytest.mark.parametrize(("kind", "route"), TARGETS)
def test_range_past_4_gib(
    request: pytest.FixtureRequest, client: httpx.Client, sparse: tuple[str, bytes], kind: str, route: str
) -> None:
    name, tail = sparse
    url = f"{server_for(request, kind).url}/{route}/{name}"
    start = FAR - 4096 - 100
    response = client.get(url, headers={"range": f"bytes={start}-{start + 4095}"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start}-{start + 4095}/{FAR}"
    assert response.content == tail
    two = client.get(url, headers={"range": f"bytes={start}-{start + 9},-100"})
    assert two.status_code == 206
    parts = parse_multipart(two.headers["content-type"], two.content)
    assert parts == [
        (f"bytes {start}-{start + 9}/{FAR}", tail[:10]),
        (f"bytes {FAR - 100}-{FAR - 1}/{FAR}", bytes(100)),
    ]
    head = client.head(url)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(FAR)


# --- gunicorn: single spans go to its sendfile(2) --------------------------------


def _read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the headers"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    while chunk := sock.recv(1 << 20):
        body += chunk
    return head, body


@pytest.mark.parametrize("route", ROUTES)
def test_gunicorn_sends_a_range_with_sendfile(
    request: pytest.FixtureRequest, client: httpx.Client, media: Path, route: str
) -> None:
    """A single range of a big file: 206 with the exact bytes at a large offset,
    sent by gunicorn's sendfile(2) (seen blocked in that call while the client
    does not read) rather than read through Python."""
    server = server_for(request, "gunicorn")
    big = (media / "big.bin").read_bytes()
    url = f"{server.url}/{route}/big.bin"
    start, stop = BIG_SIZE - 1_000_003, BIG_SIZE - 17
    response = client.get(url, headers={"range": f"bytes={start}-{stop - 1}"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start}-{stop - 1}/{BIG_SIZE}"
    assert response.content == big[start:stop]

    sendfile = SENDFILE_SYSCALLS.get(platform.machine())
    if sendfile is None:
        pytest.skip(f"sendfile(2)'s number on {platform.machine()} is not known here")
    offset = 1024 * 1024
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(f"GET /{route}/big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes={offset}-\r\n\r\n".encode())
        calls: list[int] = []
        deadline = time.monotonic() + 5
        while sendfile not in calls and time.monotonic() < deadline:
            time.sleep(0.02)
            calls = current_syscalls(server.pids())
        require("/proc/PID/task/TID/syscall", bool(calls))
        assert sendfile in calls, calls
        head, body = _read_response(sock)
    assert head.startswith(b"HTTP/1.1 206 ")
    assert body == big[offset:]
