"""Who may ask for an offload (DESIGN.md's trust model). Pure functions.

A request is offloaded in ``auto`` mode only when its ``X-Sendfile-Type`` names
a supported header *and* it comes from a trusted peer or carries the proxy's
secret. The request never chooses a location or a mapping: those come from
``XACCEL_ROOTS`` alone (the lesson of Rack's CVE-2025-61780).
"""

from __future__ import annotations

import functools
import hmac
import ipaddress

from .settings import OFFLOAD_HEADERS, Network, OffloadHeader, Settings

# The trust headers: removed from every request before the app sees it.
SENDFILE_TYPE = "x-sendfile-type"
PROXY_SECRET = "x-accel-proxy-secret"  # noqa: S105 (a header name)

_SUPPORTED = {h.lower(): h for h in OFFLOAD_HEADERS}


@functools.lru_cache(maxsize=4096)
def peer_is_trusted(host: str | None, networks: tuple[Network, ...]) -> bool:
    if not host or not networks:
        return False
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    # A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d: match it
    # against IPv4 networks as well as against IPv6 ones written that way.
    mapped = getattr(address, "ipv4_mapped", None)
    return any(address in network or (mapped is not None and mapped in network) for network in networks)


def offload_method(
    settings: Settings,
    peer: str | None,
    sendfile_type: str | None,
    secret: str | None,
) -> OffloadHeader | None:
    """The header to offload with, or ``None`` to stream."""
    if settings.mode == "stream":
        return None
    if settings.mode == "offload":
        return settings.offload_header
    if sendfile_type is None:
        return None
    method = _SUPPORTED.get(sendfile_type.strip().lower())
    if method is None:
        return None
    if peer_is_trusted(peer, settings.trusted_proxies):
        return method
    expected = settings.proxy_secret
    # compare_digest: the time taken must not reveal how much of it matched.
    if (
        expected is not None
        and secret is not None
        and hmac.compare_digest(secret.strip().encode("latin-1", "replace"), expected.encode())
    ):
        return method
    return None
