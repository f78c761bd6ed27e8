"""nginx and Caddy in front of the app (offload) or alone (direct file serving).

The offload configurations come from the library's own generator when it is
installed (``xaccel_middleware.proxyconf``), so the benchmark measures what
users deploy; otherwise from the minimal blocks below.
"""

from __future__ import annotations

import os
from pathlib import Path

from xaccel_middleware import Settings

from .procs import Server, find_binary

PREFIX = "/protected"

_NGINX_MAIN = """\
worker_processes 1;
daemon off;
master_process on;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
{servers}
}}
"""

_NGINX_OFFLOAD = """\
    upstream xaccel_app {{
        server {upstream};
        keepalive 32;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://xaccel_app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Sendfile-Type X-Accel-Redirect;
        }}
        location {prefix}/ {{
            internal;
            alias {media}/;
        }}
    }}
"""

_NGINX_DIRECT = """\
    server {{
        listen {listen};
        location /f/ {{
            alias {media}/;
        }}
    }}
"""

_CADDY_OFFLOAD = """\
{{
    admin off
    auto_https off
    persist_config off
}}
http://{listen} {{
    log {{
        output discard
    }}
    reverse_proxy {upstream} {{
        header_up X-Sendfile-Type X-Accel-Redirect
        @accel header X-Accel-Redirect *
        handle_response @accel {{
            root * {media}
            rewrite * {{rp.header.X-Accel-Redirect}}
            uri strip_prefix {prefix}
            file_server
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    return find_binary("nginx", "/usr/sbin/nginx")


def caddy_binary() -> str | None:
    return find_binary("caddy")


def _generated(
    kind: str, settings: Settings, upstream: tuple[str, int], listen: tuple[str, int]
) -> str | None:
    try:
        from xaccel_middleware.proxyconf import render  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return str(render(kind, settings, upstream=upstream, listen=listen))


def nginx_server(
    name: str,
    run: Path,
    port: int,
    media: str,
    upstream: int | None,
    settings: Settings | None = None,
) -> Server:
    """nginx offloading for the app at ``upstream``, or serving ``media`` itself."""
    binary = nginx_binary()
    assert binary is not None
    run.mkdir(parents=True, exist_ok=True)
    listen = f"127.0.0.1:{port}"
    if upstream is None:
        servers = _NGINX_DIRECT.format(listen=listen, media=media)
    else:
        generated = None
        if settings is not None:
            generated = _generated("nginx", settings, ("127.0.0.1", upstream), ("127.0.0.1", port))
        servers = generated or _NGINX_OFFLOAD.format(
            listen=listen, upstream=f"127.0.0.1:{upstream}", prefix=PREFIX, media=media
        )
    conf = run / "nginx.conf"
    conf.write_text(_NGINX_MAIN.format(run=run, servers=servers))
    return Server(name, [binary, "-p", str(run), "-c", str(conf)], port, run / "server.log")


def caddy_server(name: str, run: Path, port: int, media: str, upstream: int, settings: Settings) -> Server:
    binary = caddy_binary()
    assert binary is not None
    run.mkdir(parents=True, exist_ok=True)
    generated = _generated("caddy", settings, ("127.0.0.1", upstream), ("127.0.0.1", port))
    text = generated or _CADDY_OFFLOAD.format(
        listen=f"127.0.0.1:{port}", upstream=f"127.0.0.1:{upstream}", prefix=PREFIX, media=media
    )
    conf = run / "Caddyfile"
    conf.write_text(text)
    env = {"XDG_DATA_HOME": str(run / "data"), "XDG_CONFIG_HOME": str(run / "config"), "HOME": str(run)}
    return Server(
        name,
        [binary, "run", "--config", str(conf), "--adapter", "caddyfile"],
        port,
        run / "server.log",
        env=env,
    )


def world_readable(path: str) -> None:
    """nginx's workers run as an unprivileged user when started as root."""
    os.chmod(path, 0o755)
