"""The Caddyfile site block for the current settings (Caddy 2.8 or later).

What it does:

- ``reverse_proxy`` to the app with ``header_up`` for the trust headers,
  which replaces whatever the client sent. The secret is the runtime
  placeholder ``{env.XACCEL_PROXY_SECRET}``: Caddy reads it from its own
  environment on each request, so it is in no file, and ``caddy adapt`` does
  not copy it into the JSON either.
- ``handle_response`` on an answer carrying ``X-Accel-Redirect``:

  - ``method GET``: an offloaded POST must be sent as a GET of the file. The
    Go server still sends no body to a HEAD request.
  - ``rewrite`` to the redirect. Caddy 2.11 percent-decodes it, as nginx does
    (2.6 did not), so any file name reaches the file.
  - ``copy_response_headers``: Caddy keeps none of the app's headers unless
    listed (without it, not even Content-Type). ETag, Last-Modified and
    Accept-Ranges come from ``file_server``, which also answers Range and
    conditional requests.
  - one ``handle_path`` per ``XACCEL_ROOTS`` prefix, with ``root`` on its
    directory.

- Caddy has no ``internal``: a ``respond ... 404`` on the prefixes stops a
  client from asking for them directly. It does not apply to the rewrite
  above, which runs inside the proxy's own response handling.

Tutor's Caddyfile has no patch point inside its ``reverse_proxy``; there the
same ``handle_response`` goes in an ``intercept`` (see ``deploy/tutor/``).
"""

from __future__ import annotations

import re

from ..sources.s3 import S3_LOCATION
from .model import PARITY_HEADERS, SECRET_VARIABLE, ProxySetup, header_comment, host_port
from .s3 import caddy_handle_response

_BARE = re.compile(r"^[A-Za-z0-9._~/:\-\[\]*]+$")


def quote(value: str) -> str:
    """A Caddyfile token: bare when plain, else double-quoted. ``"``, ``\\``
    and braces never get here (:func:`model.check_root`)."""
    return value if _BARE.match(value) else f'"{value}"'


def render(setup: ProxySetup) -> str:
    host, port = setup.listen
    lines = header_comment("caddy", setup)
    if setup.uses_secret:
        lines += ["#", f"# Caddy must run with {SECRET_VARIABLE} in its environment, set as for the app."]
    lines += [
        f"http://:{port} {{",
        f"\tbind {host}",
        "",
        *_internal(setup, "\t"),
        "",
        f"\treverse_proxy {host_port(setup.upstream)} {{",
        "\t\t# Set on every request, replacing what the client sent: only this proxy",
        "\t\t# can ask the app to offload.",
        "\t\theader_up X-Sendfile-Type X-Accel-Redirect",
        "\t\t" + _secret_line(setup, "header_up"),
        "",
        *(caddy_handle_response(setup.s3, "\t\t", "rp") if setup.s3 else []),
        "\t\t@xaccel_redirect header X-Accel-Redirect *",
        "\t\thandle_response @xaccel_redirect {",
        *_offload(setup, "\t\t\t", "rp"),
        "\t\t}",
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _secret_line(setup: ProxySetup, directive: str) -> str:
    if setup.uses_secret:
        return f"{directive} X-Accel-Proxy-Secret {{env.{SECRET_VARIABLE}}}"
    return f"{directive} -X-Accel-Proxy-Secret  # trust by address: drop a client's"


def render_intercept(setup: ProxySetup) -> str:
    """Lines for a site block whose ``reverse_proxy`` is defined elsewhere, such
    as Tutor's LMS (its ``caddyfile-lms`` patch): ``intercept`` takes the app's
    answers. It keeps all of the app's headers, so the redirect is deleted."""
    title = (
        f"xaccel-middleware: Caddyfile lines for a site block that proxies to {host_port(setup.upstream)}",
        "with a reverse_proxy of its own (Tutor's LMS: the caddyfile-lms patch);",
        "`intercept` takes the app's answers.",
    )
    lines = header_comment("caddy", setup, title)
    lines += ["", "# Set on every request, replacing what the client sent."]
    if setup.uses_secret:
        lines += [
            "# Caddy can scope a header to one upstream only inside its reverse_proxy,",
            "# which Tutor's LMS one does not let a plugin edit: every reverse_proxy of",
            "# this site receives the secret. Give any other one (a plugin's, in",
            "# caddyfile-lms) the line `header_up -X-Accel-Proxy-Secret`.",
        ]
    lines += [
        "request_header X-Sendfile-Type X-Accel-Redirect",
        _secret_line(setup, "request_header"),
        "",
        *_internal(setup, ""),
        "",
        "intercept {",
        *(caddy_handle_response(setup.s3, "\t", "resp") if setup.s3 else []),
        "\t@xaccel_redirect header X-Accel-Redirect *",
        "\thandle_response @xaccel_redirect {",
        "\t\t# intercept keeps every app header, the X-Accel-* ones included.",
        "\t\theader -X-Accel-*",
        *_offload(setup, "\t\t", "resp"),
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _internal(setup: ProxySetup, indent: str) -> list[str]:
    prefixes = " ".join(quote(root.prefix + "/*") for root in setup.roots)
    if setup.s3 is not None:
        prefixes = f"{prefixes} {S3_LOCATION}*".strip()
    return [
        f"{indent}# Caddy has no `internal`: a client asking for a prefix directly gets 404.",
        f"{indent}@xaccel_internal path {prefixes}",
        f"{indent}respond @xaccel_internal 404",
    ]


def _offload(setup: ProxySetup, indent: str, response: str) -> list[str]:
    """The body of ``handle_response``. ``response`` names the placeholder
    namespace: ``rp`` inside ``reverse_proxy``, ``resp`` inside ``intercept``."""
    lines = [
        "# An offloaded POST is sent as a GET of the file.",
        "method GET",
        f"rewrite * {{{response}.header.X-Accel-Redirect}}",
    ]
    if response == "rp":
        lines += [
            "# Caddy keeps no app header unless listed; file_server adds ETag,",
            "# Last-Modified and Accept-Ranges, and answers Range and conditionals.",
            "copy_response_headers {",
            *(f"\tinclude {name}" for name in PARITY_HEADERS),
            "}",
        ]
    for root in setup.roots:
        lines += [
            f"handle_path {quote(root.prefix + '/*')} {{",
            f"\troot * {quote(root.directory)}",
            "\tfile_server",
            "}",
        ]
    lines += ["handle {", "\trespond 404", "}"]
    return [indent + line for line in lines]
