"""A real S3-compatible server on loopback: ministack, which checks presigned
SigV4 signatures (a tampered or expired URL gets 403), Range included.

ministack pins its own botocore, so it lives in a virtualenv of its own, made
on first use in the user's cache folder and kept there (``XACCEL_TEST_S3_VENV``
overrides the place). One server per test process, started on a free port on
first use and stopped at exit. Locally a failure to get it skips the S3 tests;
under ``CI=true`` it fails them.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servers import IN_CI, free_port, require, running

from xaccel_middleware import Settings

PACKAGE = "ministack==1.5.33"
REGION = "us-east-1"
ACCESS_KEY = "xaccel-test"
SECRET_KEY = "xaccel-test-secret-0123456789"
BUCKET = "media"

# The client side's environment: the test credentials, and no look-ups
# beyond loopback (instance metadata) or the user's own AWS files.
CLIENT_ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def venv_dir() -> Path:
    given = os.environ.get("XACCEL_TEST_S3_VENV")
    if given:
        return Path(given)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "xaccel-middleware" / PACKAGE.replace("==", "-")


def ensure_venv() -> Path:
    """The server's program, installing it once (a lock keeps parallel runs apart)."""
    venv = venv_dir()
    program = venv / "bin" / "ministack"
    stamp = venv / ".installed"
    if stamp.exists():
        return program
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{venv}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            for argv in ([sys.executable, "-m", "venv", "--clear", str(venv)], [*pip, PACKAGE]):
                done = subprocess.run(argv, capture_output=True, text=True)
                if done.returncode:
                    raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
            stamp.write_text(PACKAGE + "\n")
    return program


@dataclass
class S3Server:
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self, **changes: Any) -> Settings:
        values: dict[str, Any] = {
            "s3_endpoint_url": self.endpoint,
            "s3_region": REGION,
            "s3_buckets": BUCKET,
            "s3_connect_timeout": 2.0,
            "s3_read_timeout": 5.0,
        }
        values.update(changes)
        return Settings(**values)

    def client(self) -> Any:
        """A plain (sync) botocore client, to put the objects the tests read."""
        import botocore.session
        from botocore.config import Config

        session = botocore.session.get_session()
        return session.create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def put(self, key: str, body: bytes, **extra: Any) -> None:
        self.client().put_object(Bucket=BUCKET, Key=key, Body=body, **extra)


_server: S3Server | None = None
_failure: str | None = None


def shared() -> S3Server:
    """The process's server, started on first use; the S3 tests' entry point."""
    global _server, _failure
    if _server is None and _failure is None:
        try:
            _server = _start()
        except Exception as exc:
            _failure = f"{type(exc).__name__}: {exc}"
    require(f"the test S3 server ({PACKAGE}) [{_failure}]", _server is not None)
    assert _server is not None
    return _server


def _start() -> S3Server:
    program = ensure_venv()
    port = free_port()
    env = {
        **CLIENT_ENV,
        "GATEWAY_PORT": str(port),
        "BIND_HOST": "127.0.0.1",
        "MINISTACK_HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "SERVICES": "s3",
        "S3_PERSIST": "0",
        "AUTH": "true",  # unknown access keys get 403
    }
    stack = contextlib.ExitStack()
    stack.enter_context(running([str(program)], port, env=env, timeout=60))
    atexit.register(stack.close)
    server = S3Server(port)
    _wait_ready(server)
    server.client().create_bucket(Bucket=BUCKET)
    os.environ.update(CLIENT_ENV)
    return server


def _wait_ready(server: S3Server, timeout: float = 30.0) -> None:
    """The port opens before the S3 handler answers; wait for an S3 reply."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{server.endpoint}/{BUCKET}-probe", timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # an S3 error document: the server is up
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class FakeS3:
    """A loopback S3 stand-in that misbehaves on purpose, for the fault tests.

    ``mode``: ``blackhole`` accepts and never answers; ``stall-get`` answers
    HeadObject but never GetObject; ``slow-head`` answers HeadObject after
    ``head_delay`` seconds, then never GetObject; ``stall-body`` and ``cut`` answer GetObject
    with ``cut_at`` bytes of the range, then stall, or close the connection.
    """

    ETAG = '"fake-etag"'

    def __init__(
        self, mode: str, size: int = 256 * 1024, cut_at: int = 100 * 1024, head_delay: float = 1.0
    ) -> None:
        import socketserver
        import threading

        self.mode, self.size, self.cut_at, self.head_delay = mode, size, cut_at, head_delay
        self.content = bytes(i % 251 for i in range(size))
        self.released = threading.Event()
        self.gets = 0
        fake = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                fake._handle(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self, **changes: Any) -> Settings:
        values: dict[str, Any] = {
            "s3_endpoint_url": self.endpoint,
            "s3_region": REGION,
            "s3_buckets": BUCKET,
            "s3_connect_timeout": 0.5,
            "s3_read_timeout": 1.0,
            "chunk_size": 16 * 1024,
        }
        values.update(changes)
        return Settings(**values)

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, sock: Any) -> None:
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                more = sock.recv(65536)
                if not more:
                    return
                data += more
            head, _, data = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method = lines[0].split(" ", 1)[0]
            fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            fields = {k.lower(): v for k, v in fields.items()}
            if self.mode == "blackhole" or (self.mode in ("stall-get", "slow-head") and method == "GET"):
                self.released.wait(30)
                return
            if method == "HEAD":
                if self.mode == "slow-head":
                    self.released.wait(self.head_delay)
                sock.sendall(self._head(200, self.size, []))
                continue
            self.gets += 1
            start, _, end = fields.get("range", f"bytes=0-{self.size - 1}")[6:].partition("-")
            first, last = int(start), min(int(end), self.size - 1)
            extra = [f"Content-Range: bytes {first}-{last}/{self.size}"]
            sock.sendall(self._head(206, last - first + 1, extra) + self.content[first : first + self.cut_at])
            if self.mode == "stall-body":
                self.released.wait(30)
            return  # "cut": closing now leaves the body short

    def _head(self, status: int, length: int, extra: list[str]) -> bytes:
        lines = [
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Partial Content'}",
            f"Content-Length: {length}",
            f"ETag: {self.ETAG}",
            "Last-Modified: Wed, 01 Jan 2025 00:00:00 GMT",
            "Content-Type: application/octet-stream",
            *extra,
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


__all__ = [
    "ACCESS_KEY",
    "BUCKET",
    "CLIENT_ENV",
    "IN_CI",
    "REGION",
    "SECRET_KEY",
    "FakeS3",
    "S3Server",
    "shared",
]
