"""Real processes for end-to-end tests: free ports, readiness polling, cleanup.

Under ``CI=true`` a missing binary or package fails the test instead of skipping
it, so that a green CI run always means the real parts took part.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from xaccel_middleware.proxyrun import stop_group

IN_CI = os.environ.get("CI", "").lower() == "true"
BIN = Path(sys.executable).parent


def require(what: str, found: bool) -> None:
    """Skip locally, fail in CI, when a real part is missing."""
    if found:
        return
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true but is missing")
    pytest.skip(f"{what} is not installed")


def binary(name: str) -> str:
    """A program from the test environment's bin folder, or from PATH."""
    local = BIN / name
    path = str(local) if local.exists() else shutil.which(name)
    require(name, path is not None)
    assert path is not None
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on port {port} within {timeout}s")


@contextlib.contextmanager
def running(
    argv: Sequence[str],
    port: int,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 20.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv``, wait until ``port`` accepts connections, stop it afterwards.

    The process gets its own session so that its workers die with it; its output
    goes to a log file that is shown when start-up fails.
    """
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"xaccel-test-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            list(argv),
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        try:
            wait_for_port(port, process, timeout)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}\n--- {argv[0]} log ---\n{log.read_text(errors='replace')}") from None
        yield process
    finally:
        stop_group(process)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and all its descendants, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for child in [pid, *_descendants(pid)]:
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[11:13] are utime and stime (fields 14 and 15 of proc(5)).
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _descendants(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            found.append(int(entry.name))
            found.extend(_descendants(int(entry.name)))
    return found


# --- App servers (uvicorn, granian, gunicorn) serving the apps in tests/apps ---

TESTS = Path(__file__).resolve().parent
# x86_64 and aarch64 numbers of sendfile(2), as /proc/PID/syscall shows them.
SENDFILE_SYSCALLS = {"x86_64": 40, "aarch64": 71}


class AppServer:
    """A running app server: its base URL and its processes (all workers)."""

    def __init__(self, kind: str, port: int, process: subprocess.Popen[bytes]) -> None:
        self.kind, self.port, self.process = kind, port, process
        self.url = f"http://127.0.0.1:{port}"

    def pids(self) -> list[int]:
        return [self.process.pid, *_descendants(self.process.pid)]


def app_server_argv(kind: str, port: int, wsgi_module: str = "apps.django_app") -> list[str]:
    """uvicorn and granian (ASGI, with pathsend) serve the Starlette app; gunicorn
    (``gunicorn``: sync worker, ``gthread``: threads and keep-alive) serves
    ``wsgi_module``. One worker each, so /proc shows it all."""
    host = ["--host", "127.0.0.1", "--port", str(port)]
    if kind == "uvicorn":
        quiet = ["--no-access-log", "--log-level", "warning"]
        return [binary("uvicorn"), *host, *quiet, "apps.starlette_app:app"]
    if kind == "granian":
        return [
            binary("granian"), "--interface", "asgi", *host, "--workers", "1", "--no-ws",
            "--log-level", "warning", "apps.starlette_app:app",
        ]  # fmt: skip
    if kind in ("gunicorn", "gthread"):
        # gthread keeps connections alive (10 s here), which the sync worker never does.
        worker = (
            ["--worker-class", "sync"]
            if kind == "gunicorn"
            else ["--worker-class", "gthread", "--keep-alive", "10"]
        )
        argv = [binary("gunicorn"), *worker, "--workers", "1", "--bind", f"127.0.0.1:{port}"]
        # gunicorn 27 adds a control socket at a fixed path that parallel runs would share.
        if _major_version("gunicorn") >= 27:
            argv.append("--no-control-socket")
        return [*argv, "--log-level", "warning", f"{wsgi_module}:application"]
    raise ValueError(kind)


def _major_version(distribution: str) -> int:
    import importlib.metadata

    return int(importlib.metadata.version(distribution).split(".")[0])


def require_modules(*names: str) -> None:
    """Skip locally, fail in CI, when a package an app needs is missing."""
    import importlib.util

    for name in names:
        require(f"the {name} package", importlib.util.find_spec(name) is not None)


@contextlib.contextmanager
def app_server(kind: str, env: dict[str, str], wsgi_module: str = "apps.django_app") -> Iterator[AppServer]:
    """Start an app server on a free port with ``tests/`` importable, stop it afterwards."""
    port = free_port()
    argv = app_server_argv(kind, port, wsgi_module)
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    with running(argv, port, env={**env, "PYTHONPATH": path}, cwd=TESTS) as process:
        server = AppServer(kind, port, process)
        # Listening is not serving: granian and gunicorn bind before their worker runs.
        wait_for_http(f"{server.url}/hello", process)
        yield server


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Poll ``url`` (on 127.0.0.1) until it answers 200."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=5)
        try:
            connection.request("GET", parts.path)
            if connection.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {timeout}s")
        time.sleep(0.05)


def rss_bytes(pids: Sequence[int]) -> int:
    """Resident memory of ``pids`` together, from /proc/PID/status."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def open_files(pids: Sequence[int]) -> list[str]:
    """What the open fds of ``pids`` point at (paths, ``socket:[...]``, ...)."""
    targets = []
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return targets


def bytes_read(pids: Sequence[int]) -> int:
    """Bytes that ``pids`` read with read(2), pread(2) and sendfile(2): /proc/PID/io rchar."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/io").read_text().splitlines():
                if line.startswith("rchar:"):
                    total += int(line.split()[1])
    return total


def current_syscalls(pids: Sequence[int]) -> list[int]:
    """The system call each thread of ``pids`` is blocked in (-1 when running)."""
    calls = []
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    fields = Path(f"/proc/{pid}/task/{task}/syscall").read_text().split()
                    calls.append(int(fields[0]) if fields[0] != "running" else -1)
    return calls
