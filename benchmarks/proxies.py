"""nginx and Caddy in front of the app (offload) or alone (serving files directly).

The offload configurations are the library's own (``xaccel config``), run by the
same launcher as the demo and the end-to-end tests, so the benchmark measures
what users deploy. nginx serving the files directly runs in the same main
configuration, as the physical reference. One change: ``tcp_nopush off``
(see ``_server``).
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
    if kind == "nginx":
        # On loopback (MSS 64 KiB) tcp_nopush stalls each sendfile'd Range answer for
        # the 40 ms delayed ACK: 400 req/s for 64 KiB ranges instead of 30,000.
        # Real networks do not see it; the benchmark must not measure it.
        files.config.write_text(files.config.read_text().replace("tcp_nopush on;", "tcp_nopush off;"))
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
