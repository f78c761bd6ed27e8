"""Load generators: ``wrk`` where it is installed, else a small asyncio client.

Both run ``connections`` keep-alive connections for ``seconds`` against one URL
and report the same figures: completed requests, bytes received (headers
included), wall time, the 99th percentile latency and the error count (socket
errors and statuses other than 2xx/3xx). With ``range_size`` every request asks
for a random ``range_size``-byte range of a ``file_size``-byte file.

The Python client is the documented fallback when ``wrk`` is missing; it spends
more CPU per request than ``wrk``, so its req/s figures for tiny responses are
lower bounds. Pick it with ``--load python``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class LoadResult:
    requests: int
    bytes: int
    seconds: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def mbps(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0


_WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('\\nBENCH {"requests":%d,"bytes":%d,"duration_us":%d,"p99_us":%d,"errors":%d}\\n',
    summary.requests, summary.bytes, summary.duration, latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""

_WRK_RANGES = """
local range_size = tonumber(os.getenv("BENCH_RANGE_SIZE"))
local file_size = tonumber(os.getenv("BENCH_FILE_SIZE"))
local threads = 0
setup = function(thread) threads = threads + 1; thread:set("seed", threads) end
init = function(args) math.randomseed(os.time() * 1000 + (seed or 0)) end
request = function()
  local start = math.random(0, file_size - range_size)
  return wrk.format(nil, nil, {["Range"] = string.format("bytes=%d-%d", start, start + range_size - 1)})
end
"""


def wrk_path() -> str | None:
    return shutil.which("wrk")


class Wrk:
    def __init__(self, binary: str, workdir: str) -> None:
        self.binary = binary
        self.plain = os.path.join(workdir, "done.lua")
        self.ranges = os.path.join(workdir, "ranges.lua")
        with open(self.plain, "w") as f:
            f.write(_WRK_DONE)
        with open(self.ranges, "w") as f:
            f.write(_WRK_RANGES + _WRK_DONE)

    def run(
        self,
        url: str,
        connections: int,
        seconds: int,
        headers: dict[str, str] | None = None,
        range_size: int = 0,
        file_size: int = 0,
    ) -> LoadResult:
        argv = [self.binary, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "60s"]
        for name, value in (headers or {}).items():
            argv += ["-H", f"{name}: {value}"]
        argv += ["-s", self.ranges if range_size else self.plain, url]
        env = dict(os.environ, BENCH_RANGE_SIZE=str(range_size), BENCH_FILE_SIZE=str(file_size))
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 120)
        for line in done.stdout.splitlines():
            if line.startswith("BENCH "):
                data = json.loads(line[6:])
                return LoadResult(
                    data["requests"],
                    data["bytes"],
                    data["duration_us"] / 1e6,
                    data["p99_us"] / 1e3,
                    data["errors"],
                )
        raise RuntimeError(f"wrk gave no summary ({done.returncode}): {done.stdout}\n{done.stderr}")


class PythonLoad:
    """A keep-alive HTTP/1.1 client on asyncio, for machines without ``wrk``."""

    def run(
        self,
        url: str,
        connections: int,
        seconds: int,
        headers: dict[str, str] | None = None,
        range_size: int = 0,
        file_size: int = 0,
    ) -> LoadResult:
        return asyncio.run(self._run(url, connections, seconds, headers or {}, range_size, file_size))

    async def _run(
        self,
        url: str,
        connections: int,
        seconds: int,
        headers: dict[str, str],
        range_size: int,
        file_size: int,
    ) -> LoadResult:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        fixed = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        latencies: list[float] = []
        totals = {"bytes": 0, "errors": 0}
        start = time.monotonic()
        deadline = start + seconds

        def request() -> bytes:
            extra = fixed
            if range_size:
                first = random.randint(0, file_size - range_size)
                extra += f"Range: bytes={first}-{first + range_size - 1}\r\n"
            return f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode("latin-1")

        async def worker() -> None:
            reader = writer = None
            while time.monotonic() < deadline:
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(host, port)
                    assert reader is not None
                    sent = time.monotonic()
                    writer.write(request())
                    status, received, keep = await _read_response(reader)
                    latencies.append(time.monotonic() - sent)
                    totals["bytes"] += received
                    if not 200 <= status < 400:
                        totals["errors"] += 1
                    if not keep:
                        writer.close()
                        reader = writer = None
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    totals["errors"] += 1
                    if writer is not None:
                        writer.close()
                    reader = writer = None
            if writer is not None:
                writer.close()

        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.monotonic() - start
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3 if latencies else 0.0
        return LoadResult(len(latencies), totals["bytes"], elapsed, p99, totals["errors"])


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = None
    keep = True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            keep = False
    received = len(head)
    if length is None:
        while chunk := await reader.read(1 << 20):
            received += len(chunk)
        return status, received, False
    left = length
    while left:
        chunk = await reader.read(min(left, 1 << 20))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", left)
        left -= len(chunk)
        received += len(chunk)
    return status, received, keep


def make_loader(kind: str, workdir: str) -> Wrk | PythonLoad:
    """``wrk``, ``python`` or ``auto`` (wrk when installed)."""
    binary = wrk_path()
    if kind == "wrk" or (kind == "auto" and binary):
        if not binary:
            raise RuntimeError("wrk is not installed (apt-get install wrk), or use --load python")
        return Wrk(binary, workdir)
    return PythonLoad()
