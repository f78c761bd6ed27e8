"""What a proxy configuration must say, checked once, whichever proxy writes it.

:class:`ProxySetup` is built from :class:`~xaccel_middleware.settings.Settings`
and the two addresses. Every value that will be written into a configuration
file is checked here, so the renderers only format: a directory or prefix that
cannot be written safely is a :class:`ConfigError`, never a broken or widened
configuration.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..settings import Root, Settings

if TYPE_CHECKING:
    from .s3 import S3Upstream

Address = tuple[str, int]

# The app's response headers that must reach the client when the proxy sends
# the file. nginx keeps the first group by itself and drops the second unless
# ``add_header`` puts it back; Caddy copies none unless told to. ETag,
# Last-Modified and Accept-Ranges are left out: the proxy computes its own
# from the file it sends, and a second copy would contradict them.
KEPT_BY_NGINX = ("Content-Type", "Content-Disposition", "Cache-Control", "Expires", "Set-Cookie")
DROPPED_BY_NGINX = (
    "Content-Security-Policy",
    "Content-Language",
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Credentials",
    "Access-Control-Expose-Headers",
    "Vary",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "Referrer-Policy",
    "Cross-Origin-Resource-Policy",
)
PARITY_HEADERS = KEPT_BY_NGINX + DROPPED_BY_NGINX

SECRET_VARIABLE = "XACCEL_PROXY_SECRET"  # noqa: S105 (a name, not a value)

# Characters that would change the meaning of a quoted string: nginx expands
# ``$`` in ``alias``, Caddy expands ``{...}`` placeholders, both use ``"`` and
# ``\`` for quoting. Such a directory must be renamed or linked instead.
_UNSAFE_IN_PATH = frozenset('"\\${}')


@dataclass(frozen=True)
class ProxySetup:
    """The facts a configuration is written from."""

    upstream: Address
    listen: Address
    roots: tuple[Root, ...]
    # Whether the app expects a secret: the value itself never goes in the text.
    uses_secret: bool
    # The settings' variables and values, for the header comment (no secrets).
    described: tuple[tuple[str, str], ...] = ()
    # The S3 endpoint when XACCEL_S3_BUCKETS is set (see .s3).
    s3: S3Upstream | None = None

    @classmethod
    def from_settings(cls, settings: Settings, upstream: Address, listen: Address) -> ProxySetup:
        if settings.mode == "auto" and settings.proxy_secret is None and not settings.trusted_proxies:
            raise ConfigError(
                f"{SECRET_VARIABLE} and XACCEL_TRUSTED_PROXIES are both unset: the app would never "
                "trust the proxy, so nothing would be offloaded. Set one of them (the secret is safer)"
            )
        if settings.offload_header != "X-Accel-Redirect":
            raise ConfigError(
                "XACCEL_OFFLOAD_HEADER must be X-Accel-Redirect for nginx and Caddy (X-Sendfile: Apache)"
            )
        from .s3 import S3Upstream
        from .s3 import described as s3_described

        s3 = S3Upstream.from_settings(settings)
        if not settings.roots and s3 is None:
            raise ConfigError("XACCEL_ROOTS is empty: there is no directory for the proxy to serve")
        for root in settings.roots:
            check_root(root)
        shown = ("XACCEL_MODE", "XACCEL_ROOTS", "XACCEL_TRUSTED_PROXIES", SECRET_VARIABLE)
        described = tuple((var, text) for var, text in settings.describe() if var in shown)
        setup = cls(
            check_address(upstream, "--upstream"),
            check_address(listen, "--listen"),
            # Longest prefix first, so that nested prefixes read in matching order.
            tuple(sorted(settings.roots, key=lambda r: (-len(r.prefix), r.prefix))),
            settings.proxy_secret is not None,
            described + (s3_described(settings) if s3 else ()),
            s3,
        )
        return setup


def check_root(root: Root) -> None:
    bad = sorted({c for c in root.directory if c in _UNSAFE_IN_PATH or not c.isprintable()})
    if bad:
        raise ConfigError(
            f"XACCEL_ROOTS directory {root.directory!r} holds {''.join(bad)!r}, which nginx or Caddy "
            "would read as syntax: rename the directory, or bind-mount it elsewhere"
        )
    if "*" in root.prefix:
        raise ConfigError(f"XACCEL_ROOTS prefix {root.prefix!r} holds '*', a Caddy wildcard: choose another")


def check_address(address: Address, option: str) -> Address:
    host, port = address
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not host.replace("-", "").replace(".", "").isalnum():
            raise ConfigError(
                f"{option} host {host!r} is invalid: use an IP address or a host name"
            ) from None
    if not 0 < port < 65536:
        raise ConfigError(f"{option} port {port} is invalid: use 1 to 65535")
    return host, port


def host_port(address: Address) -> str:
    """``host:port``, with IPv6 addresses in brackets."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def header_comment(kind: str, setup: ProxySetup, title: tuple[str, ...] = ()) -> list[str]:
    """The opening comment: how to make this text again, and from which settings."""
    command = (
        f"xaccel config {kind} --upstream {host_port(setup.upstream)} --listen {host_port(setup.listen)}"
    )
    if title:
        lines = [f"# {line}" for line in title]
    else:
        lines = [f"# xaccel-middleware: {kind} configuration, as printed by", f"#   {command}"]
    lines.append("# from these settings (the app must run with the same ones):")
    lines += [f"#   {var}={text}" for var, text in setup.described]
    return lines
