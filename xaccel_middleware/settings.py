"""One frozen settings object, read from ``XACCEL_*`` variables and validated once.

Every check happens when a :class:`Settings` is built, so a typo surfaces as a
:class:`ConfigError` naming the variable at start-up, never mid-request. Each
variable's parser is in :mod:`variables`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from .variables import (
    MODES,
    OFFLOAD_HEADERS,
    PARSERS,
    Mode,
    Network,
    OffloadHeader,
    Root,
    parse_networks,
    parse_roots,
)


@dataclass(frozen=True)
class Settings:
    """The middleware's configuration; ``from_env`` reads the ``XACCEL_*`` variables.

    String values are accepted for every field and parsed as the matching
    variable would be, so ``Settings(roots="/srv/media=/protected")`` works.
    """

    mode: Mode = "auto"
    roots: tuple[Root, ...] = ()
    trusted_proxies: tuple[Network, ...] = ()
    proxy_secret: str | None = None
    offload_header: OffloadHeader = "X-Accel-Redirect"
    max_ranges: int = 100
    accel_buffering: bool | None = None
    accel_limit_rate: int | None = None
    accel_expires: str | None = None
    chunk_size: int = 1024 * 1024
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_buckets: frozenset[str] = field(default_factory=frozenset)
    s3_url_lifetime: int = 60
    s3_connect_timeout: float = 5.0
    s3_read_timeout: float = 30.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            parse = PARSERS.get(f.name)
            if parse is not None:
                object.__setattr__(self, f.name, parse(getattr(self, f.name)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Build settings from ``XACCEL_*`` variables; unset ones keep their default."""
        given = {name: environ[var] for name, var in VARIABLES.items() if environ.get(var, "").strip() != ""}
        return cls(**given)  # type: ignore[arg-type]

    def describe(self) -> list[tuple[str, str]]:
        """The effective value of every variable, secrets masked, for ``xaccel check``."""
        rows = []
        for name, var in VARIABLES.items():
            value = getattr(self, name)
            if name == "proxy_secret":
                text = "(set)" if value else "(unset)"
            elif name == "roots":
                text = ",".join(f"{r.directory}={r.prefix}" for r in value) or "(none)"
            elif isinstance(value, (tuple, frozenset)):
                text = ",".join(sorted(str(v) for v in value)) or "(none)"
            else:
                text = (
                    "(unset)"
                    if value is None
                    else str(value).lower()
                    if isinstance(value, bool)
                    else str(value)
                )
            rows.append((var, text))
        return rows


VARIABLES: dict[str, str] = {
    "mode": "XACCEL_MODE",
    "roots": "XACCEL_ROOTS",
    "trusted_proxies": "XACCEL_TRUSTED_PROXIES",
    "proxy_secret": "XACCEL_PROXY_SECRET",
    "offload_header": "XACCEL_OFFLOAD_HEADER",
    "max_ranges": "XACCEL_MAX_RANGES",
    "accel_buffering": "XACCEL_BUFFERING",
    "accel_limit_rate": "XACCEL_LIMIT_RATE",
    "accel_expires": "XACCEL_EXPIRES",
    "chunk_size": "XACCEL_CHUNK_SIZE",
    "s3_endpoint_url": "XACCEL_S3_ENDPOINT_URL",
    "s3_region": "XACCEL_S3_REGION",
    "s3_buckets": "XACCEL_S3_BUCKETS",
    "s3_url_lifetime": "XACCEL_S3_URL_LIFETIME",
    "s3_connect_timeout": "XACCEL_S3_CONNECT_TIMEOUT",
    "s3_read_timeout": "XACCEL_S3_READ_TIMEOUT",
}


__all__ = [
    "MODES",
    "OFFLOAD_HEADERS",
    "VARIABLES",
    "Mode",
    "Network",
    "OffloadHeader",
    "Root",
    "Settings",
    "parse_networks",
    "parse_roots",
]
