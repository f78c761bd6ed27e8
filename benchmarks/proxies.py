"""nginx and Caddy in front of the app (offload) or alone (serving files directly).

The offload configurations are the library's own (``xaccel config``), run by the
same launcher as the demo and the end-to-end tests, so the benchmark measures
what users deploy. nginx serving the files directly runs in the same main
configuration, as the physical reference.
"""

from __future__ import annotations

from pathlib import Path

from xaccel_middleware import Settings
from xaccel_middleware.proxyconf import ProxyKind, render
from xaccel_middleware.proxyrun import find_binary, write_proxy_files

from .procs import Server

PREFIX = "/protected"

_NGINX_DIRECT = """\
server {{
    listen 127.0.0.1:{port};
    location /f/ {{
        alias {media}/;
    }}
}}
"""


def binary(kind: ProxyKind) -> str | None:
    return find_binary(kind)


def _server(name: str, kind: ProxyKind, site: str, run: Path, port: int) -> Server:
    program = find_binary(kind)
    assert program is not None
    run.mkdir(parents=True, exist_ok=True)
    files = write_proxy_files(kind, site, run, None)
    env = {k: v for k, v in files.env(None).items() if k.startswith("XDG_")}
    return Server(name, files.argv(program), port, run / "server.log", env=env)


def offload_server(
    name: str, kind: ProxyKind, run: Path, port: int, upstream: int, settings: Settings
) -> Server:
    """``kind`` in front of the app at ``upstream``, offloading its files."""
    site = render(kind, settings, upstream=("127.0.0.1", upstream), listen=("127.0.0.1", port))
    return _server(name, kind, site, run, port)


def nginx_direct(name: str, run: Path, port: int, media: str) -> Server:
    """nginx serving ``media`` under ``/f/`` itself."""
    return _server(name, "nginx", _NGINX_DIRECT.format(port=port, media=media), run, port)
