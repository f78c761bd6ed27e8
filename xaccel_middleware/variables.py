"""How the text of each ``XACCEL_*`` variable is read and checked.

Each parser takes the variable's text (or an already typed value, when
:class:`~xaccel_middleware.settings.Settings` is built in code) and returns the
value, or raises a :class:`ConfigError` that names the variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from .errors import ConfigError

Mode = Literal["auto", "stream", "offload"]
OffloadHeader = Literal["X-Accel-Redirect", "X-Sendfile"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Parser = Callable[[object], object]

MODES: tuple[Mode, ...] = ("auto", "stream", "offload")
OFFLOAD_HEADERS: tuple[OffloadHeader, ...] = ("X-Accel-Redirect", "X-Sendfile")

# A prefix is a plain URI path: it must survive nginx's location matching and
# Caddy's path matchers unescaped.
_PREFIX = re.compile(r"^/[A-Za-z0-9._~!$&'()*+;=:@/-]*$")


@dataclass(frozen=True)
class Root:
    """A directory whose files may be served, and its internal URI prefix."""

    directory: str
    prefix: str
    # The directory with its separator: what a path inside it starts with.
    base: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", self.directory.rstrip(os.sep) + os.sep)


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _choice(var: str, choices: Iterable[str]) -> Parser:
    table = {c.lower(): c for c in choices}

    def parse(value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in table:
            return table[value.strip().lower()]
        raise ConfigError(f"{var}={value!r} is invalid: use one of {', '.join(table.values())}")

    return parse


def _integer(var: str, minimum: int, maximum: int = 10**15, optional: bool = False) -> Parser:
    def parse(value: object) -> object:
        if value is None and optional:
            return None
        text = str(value).strip()
        # The length bound keeps int() clear of its 4300-digit ValueError, which
        # would not name the variable.
        if not (text.isascii() and text.isdigit() and len(text) <= 16) or not minimum <= int(text) <= maximum:
            raise ConfigError(f"{var}={value!r} is invalid: use a whole number from {minimum} to {maximum}")
        return int(text)

    return parse


def _seconds(var: str) -> Parser:
    def parse(value: object) -> object:
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = -1.0
        if not 0 < number < 86400:
            raise ConfigError(f"{var}={value!r} is invalid: use a number of seconds > 0")
        return number

    return parse


def parse_roots(value: object) -> tuple[Root, ...]:
    """Parse ``DIR=/internal/prefix`` pairs; each DIR must be an existing directory."""
    if isinstance(value, tuple) and all(isinstance(r, Root) for r in value):
        pairs = [(r.directory, r.prefix) for r in value]
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, str):
        pairs = []
        for item in _split(value):
            directory, sep, prefix = item.rpartition("=")
            if not sep or not directory:
                raise ConfigError(
                    f"XACCEL_ROOTS item {item!r} is invalid: use DIR=/internal/prefix pairs, comma-separated"
                )
            pairs.append((directory.strip(), prefix.strip()))
    else:
        raise ConfigError(f"XACCEL_ROOTS={value!r} is invalid: use DIR=/internal/prefix pairs")
    roots = []
    for directory, prefix in pairs:
        if not isinstance(directory, str) or not os.path.isabs(directory):
            raise ConfigError(f"XACCEL_ROOTS directory {directory!r} is invalid: use an absolute path")
        real = os.path.realpath(directory)
        if not os.path.isdir(real):
            raise ConfigError(
                f"XACCEL_ROOTS directory {directory!r} is invalid: it is not an existing directory"
            )
        # Every path on the machine lies inside "/": confinement would mean nothing.
        if os.path.dirname(real) == real:
            raise ConfigError(
                f"XACCEL_ROOTS directory {directory!r} is invalid: it is the file system's root; "
                "name the directory that holds the files"
            )
        if not isinstance(prefix, str):
            raise ConfigError(f"XACCEL_ROOTS prefix {prefix!r} is invalid: use an absolute URI path")
        prefix = prefix.rstrip("/")
        # "/" alone would make the whole site internal; "//" and dot segments are
        # normalised differently by nginx and Caddy.
        if (
            not prefix
            or not _PREFIX.match(prefix + "/")
            or any(part in ("", ".", "..") for part in prefix[1:].split("/"))
        ):
            raise ConfigError(
                f"XACCEL_ROOTS prefix {prefix!r} is invalid: use an absolute URI path such as /protected"
            )
        roots.append(Root(real, prefix))
    _check_prefixes(roots)
    # Nested roots: the longest directory must win, so try it first.
    return tuple(sorted(roots, key=lambda r: len(r.directory), reverse=True))


def _check_prefixes(roots: list[Root]) -> None:
    """Two roots behind one internal location would let the proxy serve a file
    of one root for the other's URI: prefixes must be distinct and not nested."""
    for i, a in enumerate(roots):
        for b in roots[i + 1 :]:
            shorter, longer = sorted((a.prefix + "/", b.prefix + "/"), key=len)
            if longer.startswith(shorter):
                raise ConfigError(
                    f"XACCEL_ROOTS prefixes {a.prefix!r} and {b.prefix!r} overlap: "
                    "give each directory a prefix of its own"
                )


def parse_networks(value: object) -> tuple[Network, ...]:
    """Parse comma-separated CIDRs (IPv4 and IPv6); a bare address is a /32 or /128."""
    if isinstance(value, tuple):
        items: list[object] = list(value)
    elif isinstance(value, str):
        items = list(_split(value))
    else:
        raise ConfigError(f"XACCEL_TRUSTED_PROXIES={value!r} is invalid: use comma-separated CIDRs")
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))  # type: ignore[arg-type]
        except ValueError:
            raise ConfigError(
                f"XACCEL_TRUSTED_PROXIES item {item!r} is invalid: use a CIDR such as 10.0.0.0/8 or ::1/128"
            ) from None
    return tuple(networks)


# The secret is written into nginx's include file and Caddy's header_up: nginx
# would expand "$", end the string at '"' and unescape "\". These characters
# (base64, URL-safe base64 and token_urlsafe's alphabet) need no quoting anywhere.
_SECRET = re.compile(r"[A-Za-z0-9._~+/=-]{16,}")


def _secret(value: object) -> object:
    if value is None:
        return None
    # A proxy's header value arrives with surrounding whitespace trimmed (RFC 9110
    # §5.5), so a secret read with a trailing space or newline could never match.
    value = value.strip() if isinstance(value, str) else value
    if not isinstance(value, str) or not _SECRET.fullmatch(value):
        raise ConfigError(
            "XACCEL_PROXY_SECRET is invalid: use at least 16 characters, only letters, digits and -._~+/= "
            "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return value


def _buffering(value: object) -> object:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("yes", "true", "on", "1"):
        return True
    if text in ("no", "false", "off", "0"):
        return False
    raise ConfigError(f"XACCEL_BUFFERING={value!r} is invalid: use yes or no")


def _expires(value: object) -> object:
    if value is None:
        return None
    text = str(value).strip()
    if text == "off" or re.fullmatch(r"@?[0-9]{1,10}", text):
        return text
    raise ConfigError(f"XACCEL_EXPIRES={value!r} is invalid: use off, seconds, or @seconds-since-midnight")


# The endpoint's host and port are written into nginx and Caddy configurations,
# so nothing but a host name or an address may get through.
_ENDPOINT = re.compile(r"(https?)://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::([0-9]{1,5}))?/?")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def _endpoint(value: object) -> object:
    """``scheme://host[:port]``, the host lower-cased: botocore signs the Host as
    written while ``urlsplit().hostname`` (the proxy configuration) lowers it, so
    both must see one spelling."""
    if value is None:
        return None
    match = _ENDPOINT.fullmatch(str(value).strip().lower())
    if match is None or not _valid_host(match[2]) or not 0 < int(match[3] or 80) < 65536:
        raise ConfigError(
            f"XACCEL_S3_ENDPOINT_URL={value!r} is invalid: use http(s)://host[:port] with no path, "
            "where host is a DNS name, an IPv4 address or an [IPv6] address, and port is 1 to 65535"
        )
    scheme, host, port = match.groups()
    return f"{scheme}://{host}" + (f":{int(port)}" if port else "")


def _valid_host(host: str) -> bool:
    try:
        if host.startswith("["):
            return isinstance(ipaddress.ip_address(host[1:-1]), ipaddress.IPv6Address)
        if host.replace(".", "").isdigit():
            return isinstance(ipaddress.ip_address(host), ipaddress.IPv4Address)
    except ValueError:
        return False
    return len(host) <= 253 and all(_LABEL.fullmatch(label) for label in host.split("."))


def _region(value: object) -> object:
    if value is None:
        return None
    text = str(value).strip()
    if not re.fullmatch(r"[a-z0-9-]{1,64}", text):
        raise ConfigError(f"XACCEL_S3_REGION={value!r} is invalid: use a region name such as us-east-1")
    return text


def _buckets(value: object) -> object:
    if isinstance(value, str):
        items: list[object] = list(_split(value))
    elif isinstance(value, (tuple, list, set, frozenset)):
        items = list(value)
    else:
        raise ConfigError(f"XACCEL_S3_BUCKETS={value!r} is invalid: use comma-separated bucket names")
    for item in items:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", str(item)):
            raise ConfigError(f"XACCEL_S3_BUCKETS item {item!r} is invalid: use S3 bucket names")
    return frozenset(items)


PARSERS: dict[str, Parser] = {
    "mode": _choice("XACCEL_MODE", MODES),
    "roots": parse_roots,
    "trusted_proxies": parse_networks,
    "proxy_secret": _secret,
    "offload_header": _choice("XACCEL_OFFLOAD_HEADER", OFFLOAD_HEADERS),
    # Each range costs work per request; past a few thousand a cap caps nothing.
    "max_ranges": _integer("XACCEL_MAX_RANGES", 1, 10_000),
    "accel_buffering": _buffering,
    "accel_limit_rate": _integer("XACCEL_LIMIT_RATE", 0, optional=True),
    "accel_expires": _expires,
    # A chunk is read into memory whole; 64 MiB per request is already a lot.
    "chunk_size": _integer("XACCEL_CHUNK_SIZE", 4096, 64 * 1024 * 1024),
    "s3_endpoint_url": _endpoint,
    "s3_region": _region,
    "s3_buckets": _buckets,
    # SigV4 presigned URLs are valid for at most seven days.
    "s3_url_lifetime": _integer("XACCEL_S3_URL_LIFETIME", 1, 7 * 24 * 3600),
    "s3_connect_timeout": _seconds("XACCEL_S3_CONNECT_TIMEOUT"),
    "s3_read_timeout": _seconds("XACCEL_S3_READ_TIMEOUT"),
}
