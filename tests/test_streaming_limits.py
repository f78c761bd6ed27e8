"""The body is bounded, through real servers (RANGE.md item 11): memory stays
flat on a big file, a gone client releases the file, a growing file never sends
more than Content-Length, and a shrinking one aborts the connection rather than
pad or end "complete".

uvicorn and granian serve the Starlette app; gunicorn serves the framework-free
WSGI app, with its sync worker (a connection per request) and its gthread worker
(keep-alive). Single spans go to gunicorn's sendfile(2).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from apps import make_media, server_env
from cases import CONTENT
from servers import AppServer, app_server, bytes_read, open_files, require_modules, rss_bytes

MiB = 1024 * 1024
HUGE_SIZE = 256 * MiB
GROWTH_LIMIT = 32 * MiB
TARGETS = [
    (kind, route) for kind in ("uvicorn", "granian", "gunicorn", "gthread") for route in ("marker", "file")
]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("limits") / "media"
    make_media(folder, CONTENT, 4 * MiB)
    yield folder
    for big in folder.glob("*.bin"):
        big.unlink()  # pytest keeps the folders of the last runs; not these files


@pytest.fixture(scope="module")
def huge(media: Path) -> tuple[Path, int]:
    """A 256 MiB file of written (not sparse) bytes, so that every read is real,
    and its CRC-32. Each MiB starts with its own index."""
    path = media / "huge.bin"
    block = bytearray(os.urandom(MiB))
    crc = 0
    with open(path, "wb") as out:
        for index in range(HUGE_SIZE // MiB):
            block[:8] = index.to_bytes(8, "big")
            out.write(block)
            crc = zlib.crc32(block, crc)
    return path, crc


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
    with app_server("gunicorn", server_env(media), wsgi_module="apps.wsgi_app") as server:
        yield server


@pytest.fixture(scope="module")
def gthread_server(media: Path) -> Iterator[AppServer]:
    with app_server("gthread", server_env(media), wsgi_module="apps.wsgi_app") as server:
        yield server


def server_for(request: pytest.FixtureRequest, kind: str) -> AppServer:
    server = request.getfixturevalue(f"{kind}_server")
    assert isinstance(server, AppServer)
    return server


def small_socket(port: int) -> socket.socket:
    """A connection with a small receive buffer: the server cannot run far ahead
    of what the client has read, so "mid-stream" really is mid-stream."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


def open_response(
    port: int, path: str, headers: dict[str, str] | None = None, keep_alive: bool = False
) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.sock = small_socket(port)
    connection.request(
        "GET", path, headers={**({} if keep_alive else {"connection": "close"}), **(headers or {})}
    )
    return connection.getresponse()


def download(port: int, path: str) -> bytes:
    response = open_response(port, path)
    assert response.status == 200
    return response.read()


class PeakMemory:
    """Samples the resident memory of a server's processes in the background."""

    def __init__(self, pids: list[int]) -> None:
        self.pids, self.peak = pids, rss_bytes(pids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes(self.pids))

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- Memory ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "route", "range_header"),
    [
        ("uvicorn", "marker", None),
        ("uvicorn", "file", None),
        ("gunicorn", "marker", None),  # sendfile(2)
        ("gunicorn", "file", "bytes=0-0,2-"),  # multipart: read through Python
    ],
)
def test_memory_stays_flat(
    request: pytest.FixtureRequest,
    media: Path,
    huge: tuple[Path, int],
    kind: str,
    route: str,
    range_header: str | None,
) -> None:
    """A 256 MiB download read at a modest pace grows the server by < 32 MiB."""
    server = server_for(request, kind)
    pids = server.pids()
    path, crc = huge
    assert download(server.port, f"/{route}/big.bin") == (media / "big.bin").read_bytes()  # warm up
    baseline = rss_bytes(pids)
    headers = {"range": range_header} if range_header else {}
    received, running_crc, tail = 0, 0, b""
    with PeakMemory(pids) as memory:
        response = open_response(server.port, f"/{route}/{path.name}", headers)
        length = int(response.headers["content-length"])
        while chunk := response.read(256 * 1024):
            received += len(chunk)
            running_crc = zlib.crc32(chunk, running_crc)
            tail = (tail + chunk)[-2 * MiB :]
            time.sleep(0.001)
    assert received == length
    if range_header is None:
        assert response.status == 200
        assert (length, running_crc) == (HUGE_SIZE, crc)
    else:
        assert response.status == 206
        with open(path, "rb") as file:
            file.seek(-MiB, os.SEEK_END)
            assert file.read() in tail
    growth = memory.peak - baseline
    assert growth < GROWTH_LIMIT, f"{kind} grew by {growth / MiB:.1f} MiB"


# --- A client that goes away ------------------------------------------------------


def _leftovers(pids: list[int], path: Path, baseline: int) -> list[str]:
    """Why the server has not let go yet: fds still on the file, or more fds than before."""
    files = open_files(pids)
    held = [f for f in files if f == str(path)]
    return held + ([f"{len(files)} fds, {baseline} before"] if len(files) > baseline else [])


@pytest.mark.parametrize(("kind", "route"), TARGETS)
def test_disconnect_releases_the_file(
    request: pytest.FixtureRequest, huge: tuple[Path, int], kind: str, route: str
) -> None:
    """The client reads a few KiB of 256 MiB and hangs up: within seconds the file
    is closed, the fd count is back where it was, and reading has stopped."""
    server = server_for(request, kind)
    pids = server.pids()
    path, _ = huge
    download(server.port, "/marker/small.txt")
    baseline = len(open_files(pids))
    before = bytes_read(pids)
    for _ in range(3):
        with small_socket(server.port) as sock:
            sock.sendall(f"GET /{route}/{path.name} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            received = b""
            while len(received) < 16384:
                chunk = sock.recv(16384)
                assert chunk, received
                received += chunk
            assert received.startswith(b"HTTP/1.1 200 ")
            # Unread data at close makes the kernel reset the connection.
    deadline = time.monotonic() + 5
    while (left := _leftovers(pids, path, baseline)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, left
    time.sleep(0.2)
    read = bytes_read(pids) - before
    # Socket buffers and a chunk or two in flight, per download; not the file.
    assert read < 3 * 24 * MiB, f"{kind} read {read / MiB:.0f} MiB for 3 dropped downloads"


# --- A file that changes under a download ---------------------------------------


def _changing_file(media: Path, name: str) -> tuple[Path, bytes]:
    path = media / name
    # Not a multiple of any chunk size: a read that forgets where the span stops
    # would pick up the appended bytes.
    original = os.urandom(8 * MiB + 12345)
    path.write_bytes(original)
    return path, original


@pytest.mark.parametrize(("kind", "route"), TARGETS)
def test_growing_file_sends_content_length_bytes(
    request: pytest.FixtureRequest, media: Path, kind: str, route: str
) -> None:
    """Appended bytes never follow the promised body; the client sees exactly
    Content-Length bytes, then the end of the connection."""
    server = server_for(request, kind)
    path, original = _changing_file(media, f"grow-{kind}-{route}.bin")
    with small_socket(server.port) as sock:
        sock.sendall(f"GET /{route}/{path.name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data or len(data) < 128 * 1024:
            chunk = sock.recv(65536)
            assert chunk, data[:200]
            data += chunk
        with open(path, "ab") as out:
            out.write(b"X" * (2 * MiB))
        with contextlib.suppress(TimeoutError):
            # Connection: close, so the end of the body is the end of the stream;
            # a server that kept the connection open shows as a timeout.
            sock.settimeout(3)
            while chunk := sock.recv(1 << 20):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert f"content-length: {len(original)}".encode() in head.lower()
    assert len(body) == len(original), f"{len(body)} body bytes for a Content-Length of {len(original)}"
    assert body == original


@pytest.mark.parametrize(("kind", "route"), TARGETS)
def test_shrinking_file_aborts_the_connection(
    request: pytest.FixtureRequest, media: Path, kind: str, route: str
) -> None:
    """Truncated mid-stream: the client gets a true prefix of the file and then an
    incomplete read, never padding and never a response that looks complete."""
    server = server_for(request, kind)
    path, original = _changing_file(media, f"shrink-{kind}-{route}.bin")
    # Keep-alive: a server that took the short body for a complete one would wait
    # on the connection (gthread: 10 s) instead of closing it.
    response = open_response(server.port, f"/{route}/{path.name}", keep_alive=True)
    assert response.status == 200
    assert response.headers["content-length"] == str(len(original))
    first = response.read(64 * 1024)
    os.truncate(path, len(original) // 2)
    started = time.monotonic()
    with pytest.raises((http.client.IncompleteRead, ConnectionError)) as failure:
        response.read()
    assert time.monotonic() - started < 5, "the server stalled instead of aborting"
    partial = failure.value.partial if isinstance(failure.value, http.client.IncompleteRead) else b""
    body = first + partial
    assert len(body) < len(original)
    assert body == original[: len(body)]
