"""Real server processes on loopback: start, wait, stop, and read their CPU and
memory from /proc (the process and every descendant: workers, threads)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
_PAGE = os.sysconf("SC_PAGE_SIZE")


def find_binary(name: str, fallback: str | None = None) -> str | None:
    """A program from this environment's bin folder, then PATH, then ``fallback``."""
    local = BIN / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found:
        return found
    if fallback and os.access(fallback, os.X_OK):
        return fallback
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """One server process group, started with its own session."""

    name: str
    argv: Sequence[str]
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                list(self.argv),
                env={**os.environ, **self.env},
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_text()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on {self.port} within {timeout}s:\n{self.log_text()}")

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def cpu_snapshot(self) -> dict[int, int]:
        return cpu_snapshot(self.pid)

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                parent = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    return children


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children = _children_map()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def cpu_snapshot(pid: int) -> dict[int, int]:
    """Run time in ns of every thread of ``pid`` and its descendants, by thread id.

    From /proc/*/task/*/schedstat: exact, where /proc/*/stat counts 10 ms ticks,
    too coarse for an app that spends a few ms serving a second of offloads.
    """
    found = {}
    for member in tree(pid):
        try:
            tasks = os.listdir(f"/proc/{member}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{member}/task/{tid}/schedstat", "rb") as f:
                    found[int(tid)] = int(f.read().split()[0])
            except (OSError, IndexError, ValueError):
                continue
    return found


def cpu_between(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds used between two snapshots by the threads alive at the second
    (a thread that ended in between is not counted: thread pools keep theirs)."""
    return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e9


def rss_bytes(pid: int, members: Sequence[int] | None = None) -> int:
    """Resident memory of ``pid`` and its descendants."""
    total = 0
    for member in members if members is not None else tree(pid):
        try:
            with open(f"/proc/{member}/statm", "rb") as f:
                total += int(f.read().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total
