"""The measurements: workloads run in rounds, contenders alternating inside
each round (A B C A B C ...), and the memory probe."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .contenders import Contender
from .load import PythonLoad, Wrk
from .media import FILES, KIB, MIB
from .procs import cpu_between, rss_bytes, tree


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    file: str
    connections: int
    contenders: tuple[str, ...]
    headers: tuple[tuple[str, str], ...] = ()
    range_size: int = 0
    quick: bool = True  # part of a --quick run
    rounds_factor: int = 1  # more rounds where the difference to resolve is small

    @property
    def file_size(self) -> int:
        return FILES[self.file]


FILE_CONTENDERS = (
    "starlette",
    "xaccel-uvicorn",
    "baseline-uvicorn",  # only with --baseline
    "xaccel-granian",
    "django",
    "whitenoise",
    "xaccel-gunicorn",
    "offload-nginx",
    "offload-caddy",
    "nginx-direct",
)


def _after(keys: tuple[str, ...], key: str, extra: str) -> tuple[str, ...]:
    at = keys.index(key) + 1
    return (*keys[:at], extra, *keys[at:])


WORKLOADS = (
    # 'hello' via nginx right after the offload through the same nginx: the two are compared.
    Workload(
        "4k", "GET 4 KiB file", "small-4k.bin", 16, _after(FILE_CONTENDERS, "offload-nginx", "nginx-hello")
    ),
    Workload("1m", "GET 1 MiB file", "medium-1m.bin", 8, FILE_CONTENDERS, quick=False),
    Workload("100m", "GET 100 MiB file", "large-100m.bin", 4, FILE_CONTENDERS),
    Workload(
        "range", "random 64 KiB ranges of 100 MiB", "large-100m.bin", 16, FILE_CONTENDERS, range_size=64 * KIB
    ),
    Workload(
        "resume",
        "Range: bytes=1048576- of 100 MiB",
        "large-100m.bin",
        4,
        ("starlette", "xaccel-uvicorn", "django", "whitenoise", "xaccel-gunicorn"),
        headers=(("Range", f"bytes={MIB}-"),),
        quick=False,
        rounds_factor=2,
    ),
    Workload(
        "hello",
        "non-file 'hello' response",
        "small-4k.bin",
        16,
        ("asgi-bare", "asgi-wrapped", "wsgi-bare", "wsgi-wrapped"),
        rounds_factor=3,
    ),
)


@dataclass
class Sample:
    workload: str
    contender: str
    round: int
    requests: int
    bytes: int
    seconds: float
    p99_ms: float
    errors: int
    app_cpu: float | None
    front_cpu: float | None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def mbps(self) -> float:
        return self.bytes / self.seconds / 1e6

    @property
    def app_cpu_per_gb(self) -> float | None:
        return None if self.app_cpu is None or not self.bytes else self.app_cpu / (self.bytes / 1e9)


@dataclass
class Probe:
    """Memory while one client downloads the biggest file."""

    contender: str
    file: str
    rss_before: int
    rss_peak: int
    seconds: float
    bytes: int

    @property
    def growth(self) -> int:
        return self.rss_peak - self.rss_before


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def path_for(contender: Contender, workload: Workload) -> str:
    return contender.path or f"/f/{workload.file}"


def run_workloads(
    contenders: dict[str, Contender],
    workloads: list[Workload],
    loader: Wrk | PythonLoad,
    rounds: int,
    seconds: int,
    result: Run,
    say: Callable[[str], None],
) -> None:
    for workload in workloads:
        present = [contenders[k] for k in workload.contenders if k in contenders]
        for number in range(rounds * (workload.rounds_factor if rounds > 1 else 1)):
            # A B C, then C B A: an order effect (warm caches, sockets left in
            # TIME_WAIT by the one before) falls on each contender alike.
            for contender in present if number % 2 == 0 else present[::-1]:
                sample = _measure(contender, workload, loader, seconds, number)
                result.samples.append(sample)
                if sample.errors:
                    where = f"{workload.key} / {contender.key}"
                    result.problems.append(f"{where}: {sample.errors} errors in {sample.requests} requests")
                say(
                    f"{workload.key:>6} r{number} {contender.key:<16} {sample.rps:9.1f} req/s"
                    f" {sample.mbps:9.1f} MB/s p99 {sample.p99_ms:7.1f} ms"
                )


def _measure(
    contender: Contender, workload: Workload, loader: Wrk | PythonLoad, seconds: int, number: int
) -> Sample:
    app_before = contender.app.cpu_snapshot() if contender.app else None
    front_before = contender.front.cpu_snapshot() if contender.front else None
    load = loader.run(
        contender.url + path_for(contender, workload),
        workload.connections,
        seconds,
        headers=dict(workload.headers),
        range_size=workload.range_size,
        file_size=workload.file_size,
    )
    app_cpu = cpu_between(app_before, contender.app.cpu_snapshot()) if contender.app and app_before else None
    front_cpu = (
        cpu_between(front_before, contender.front.cpu_snapshot())
        if contender.front and front_before
        else None
    )
    return Sample(
        workload.key,
        contender.key,
        number,
        load.requests,
        load.bytes,
        load.seconds,
        load.p99_ms,
        load.errors,
        app_cpu,
        front_cpu,
    )


def probe_memory(contender: Contender, file: str, size: int) -> Probe:
    """Download ``file`` once on one connection, sampling the app's RSS."""
    server = contender.app or contender.front
    assert server is not None
    members = tree(server.pid)
    before = rss_bytes(server.pid, members)
    peak = before
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak, members
        ticks = 0
        while not stop.is_set():
            peak = max(peak, rss_bytes(server.pid, members))
            ticks += 1
            if ticks % 25 == 0:
                members = tree(server.pid)
            time.sleep(0.01)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    started = time.monotonic()
    try:
        received = _download(contender.entry.port, f"/f/{file}", size)
    finally:
        stop.set()
        watcher.join()
    peak = max(peak, rss_bytes(server.pid, members))
    return Probe(contender.key, file, before, peak, time.monotonic() - started, received)


def _download(port: int, path: str, size: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        buffer = bytearray(1 << 20)
        view = memoryview(buffer)
        received = 0
        while n := sock.recv_into(view):
            received += n
    if received < size:
        raise RuntimeError(f"downloaded {received} bytes of {path}, expected at least {size}")
    return received


def preflight(contender: Contender, files: dict[str, bytes], large: str) -> list[str]:
    """Check that the contender answers correctly before it is timed."""
    problems = []

    def get(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", contender.entry.port, timeout=60)
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    if contender.path is not None:
        status, _, body = get(contender.path, {})
        if status != 200 or body != b"hello":
            problems.append(f"{contender.key}: {contender.path} gave {status} {body[:40]!r}")
        return problems
    for name, content in files.items():
        status, _, body = get(f"/f/{name}", {})
        if status != 200 or body != content:
            problems.append(f"{contender.key}: GET {name} gave {status} with {len(body)} bytes")
    start = FILES[large] // 3
    status, _, body = get(f"/f/{large}", {"Range": f"bytes={start}-{start + 99}"})
    if contender.key != "django" and (status != 206 or len(body) != 100):
        problems.append(f"{contender.key}: a Range request gave {status} with {len(body)} bytes")
    if contender.front is not None and contender.app is not None:
        # The proxy must really offload: the app, asked as the proxy asks, names the file.
        conn = http.client.HTTPConnection("127.0.0.1", contender.app.port, timeout=10)
        try:
            conn.request("GET", f"/f/{next(iter(files))}", headers={"X-Sendfile-Type": "X-Accel-Redirect"})
            response = conn.getresponse()
            response.read()
            if response.getheader("X-Accel-Redirect") is None:
                problems.append(f"{contender.key}: the app did not offload for the proxy")
        finally:
            conn.close()
    return problems
