"""``xaccel demo --proxy nginx|caddy``: it starts the proxy from the generated
configuration, shows the offload with the app's CPU time and the bytes served,
keeps serving, and stops the proxy on Ctrl-C."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from servers import free_port, require

from xaccel_middleware.demo import VIDEO, VIDEO_SIZE
from xaccel_middleware.proxyconf import ProxyKind
from xaccel_middleware.proxyrun import DOWNLOADS, find_binary


def read_until(process: subprocess.Popen[str], marker: str, timeout: float = 60) -> str:
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"the demo ended before {marker!r}:\n{seen}")
        seen += line
        assert time.monotonic() < deadline, seen
    return seen


@pytest.mark.parametrize("kind", ["nginx", "caddy"])
def test_demo_behind_a_proxy(tmp_path: Path, kind: ProxyKind) -> None:
    require(kind, find_binary(kind) is not None)
    port = free_port()
    argv = [sys.executable, "-m", "xaccel_middleware", "demo", "--proxy", kind]
    argv += ["--port", "0", "--proxy-port", str(port), "--media", str(tmp_path)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        shown = read_until(process, "until Ctrl-C")
        answer = httpx.get(f"http://127.0.0.1:{port}/media/{VIDEO}", headers={"range": "bytes=0-99"})
        assert answer.status_code == 206 and len(answer.content) == 100
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert f"through {kind}" in shown
    sent = [int(mib) for mib in re.findall(r"(\d+) MiB sent, app CPU +[\d.]+ ms", shown)]
    assert sent == [DOWNLOADS * VIDEO_SIZE >> 20] * 2, shown
    # The proxy went with the demo: nothing listens on its port any more.
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
