"""The nginx ``server {}`` block for the current settings.

What it does:

- ``location /`` proxies to the app and sets the trust headers on every
  request with ``proxy_set_header``, which replaces whatever the client sent.
- Each ``XACCEL_ROOTS`` prefix becomes ``location /prefix/ { internal; alias
  DIR/; }``: only an ``X-Accel-Redirect`` from the app reaches it, a client
  asking for it directly gets 404. nginx percent-decodes the redirect, which
  is why the middleware percent-encodes every byte of the file name.
- nginx keeps the app's Content-Type, Content-Disposition, Cache-Control,
  Expires and Set-Cookie on an internal redirect, and adds its own ETag,
  Last-Modified and Accept-Ranges from the file. It drops the rest, so the
  internal location puts the security and CORS headers back from
  ``$upstream_http_*``. It answers Range and conditional requests itself, and
  turns an offloaded POST into a GET of the file.

How the secret reaches nginx: nginx cannot read an environment variable in a
directive (``env`` only passes variables to modules such as perl or lua, which
Debian's nginx-light lacks). So the secret lives in a file of its own, which
the server block includes::

    include xaccel-secret.conf;

A relative include is read from nginx's configuration folder (``/etc/nginx/``
on Debian). That file holds one line, ``proxy_set_header X-Accel-Proxy-Secret
"...";``, is written from ``XACCEL_PROXY_SECRET`` (:func:`secret_include`, or
the shell line printed in the header comment) and is readable by root only:
the nginx master reads its configuration as root before dropping privileges.
The server block itself holds no secret, so it can be shared, committed and
compared with ``deploy/nginx.conf``. ``XACCEL_PROXY_SECRET`` allows only
letters, digits and ``-._~+/=``, which nginx reads as written;
:func:`secret_include` refuses ``$``, ``"`` and ``\\`` on its own too, since
nginx would expand or unquote them.

Without a secret the app must trust nginx by address (``XACCEL_TRUSTED_PROXIES``)
and the block clears any ``X-Accel-Proxy-Secret`` a client sent.
"""

from __future__ import annotations

import re

from ..errors import ConfigError
from .model import DROPPED_BY_NGINX, SECRET_VARIABLE, ProxySetup, header_comment, host_port
from .s3 import nginx_location, nginx_upstream

UPSTREAM = "xaccel_app"
SECRET_FILE = "xaccel-secret.conf"  # noqa: S105 (a file name)
_BARE = re.compile(r"^[A-Za-z0-9._~/:\-\[\]]+$")


def quote(value: str) -> str:
    """A configuration token: bare when plain, else double-quoted."""
    if _BARE.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def secret_include(secret: str) -> str:
    """The text of ``xaccel-secret.conf``: one ``proxy_set_header`` line."""
    bad = sorted(set(secret) & set('$"\\'))
    if bad or not secret.isprintable() or not secret.isascii():
        raise ConfigError(
            f"{SECRET_VARIABLE} holds {''.join(bad)!r}, which nginx would expand or unquote: "
            "use letters, digits and -._~+/= (python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return f'proxy_set_header X-Accel-Proxy-Secret "{secret}";\n'


def render(setup: ProxySetup) -> str:
    lines = header_comment("nginx", setup)
    if setup.uses_secret:
        lines += [
            "#",
            f"# The proxy secret is not in this file: nginx reads it from {SECRET_FILE}",
            "# in its configuration folder (/etc/nginx/ on Debian). Write that file as root,",
            f"# readable by root only, with the app's {SECRET_VARIABLE} set:",
            "#   (umask 077; printf 'proxy_set_header X-Accel-Proxy-Secret \"%s\";\\n' \\",
            f'#     "${SECRET_VARIABLE}" > /etc/nginx/{SECRET_FILE})',
        ]
    lines += [
        "",
        "# Kept-alive connections to the app: a new one per request would cost the",
        "# app more CPU than deciding the offload does.",
        f"upstream {UPSTREAM} {{",
        f"    server {host_port(setup.upstream)};",
        "    keepalive 16;",
        "}",
        "",
    ]
    if setup.s3 is not None:
        lines += nginx_upstream(setup.s3)
    lines += ["server {", f"    listen {host_port(setup.listen)};", ""]
    lines += _app_location(setup)
    for root in setup.roots:
        lines += _internal_location(root.prefix, root.directory)
    if setup.s3 is not None:
        lines += nginx_location(setup.s3)
    lines[-1] = "}"
    return "\n".join(lines) + "\n"


def _app_location(setup: ProxySetup) -> list[str]:
    if setup.uses_secret:
        secret = [f"        include {SECRET_FILE};  # sets X-Accel-Proxy-Secret"]
    else:
        secret = ['        proxy_set_header X-Accel-Proxy-Secret "";  # trust by address: drop a client\'s']
    return [
        "    # The app. proxy_set_header replaces whatever the client sent in these",
        "    # headers, so only this proxy can ask the app to offload.",
        "    location / {",
        f"        proxy_pass http://{UPSTREAM};",
        "        proxy_http_version 1.1;",
        '        proxy_set_header Connection "";  # keep the upstream connection alive',
        "        proxy_pass_request_headers on;",
        "        proxy_set_header Host $http_host;",
        "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "        proxy_set_header X-Forwarded-Proto $scheme;",
        "        proxy_set_header X-Sendfile-Type X-Accel-Redirect;",
        *secret,
        "    }",
        "",
    ]


def _internal_location(prefix: str, directory: str) -> list[str]:
    lines = [
        f"    # Files under {directory}, sent when the app answers X-Accel-Redirect: {prefix}/...",
        "    # internal: a client asking for this prefix directly gets 404.",
        f"    location {quote(prefix + '/')} {{",
        "        internal;",
        f"        alias {quote(directory.rstrip('/') + '/')};",
        "        # The app sends the file's real path, so a symlink on it was swapped in",
        "        # after the app's check: refuse it rather than follow it out of the root.",
        "        disable_symlinks on;",
        "        # nginx drops these app headers on an internal redirect; put them back.",
    ]
    for name in DROPPED_BY_NGINX:
        variable = "$upstream_http_" + name.lower().replace("-", "_")
        lines.append(f"        add_header {name} {variable} always;")
    return [*lines, "    }", ""]
