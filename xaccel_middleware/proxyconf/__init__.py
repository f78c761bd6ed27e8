"""nginx and Caddy configuration generated from the settings (``xaccel config``).

:class:`~.model.ProxySetup` checks what will be written; :mod:`.nginx` and
:mod:`.caddy` format it. The same text is what ``deploy/`` ships, what the
demo runs and what the end-to-end tests run.
"""

from __future__ import annotations

from typing import Literal

from ..settings import Settings
from . import caddy, nginx
from .model import Address, ProxySetup

ProxyKind = Literal["nginx", "caddy"]
KINDS: tuple[ProxyKind, ...] = ("nginx", "caddy")


def render(kind: str, settings: Settings, upstream: Address, listen: Address) -> str:
    """A complete nginx ``server {}`` block or Caddyfile site block.

    Raises :class:`~xaccel_middleware.ConfigError` when the settings cannot
    give a working configuration (no roots, no way to trust the proxy, a
    directory that cannot be written safely).
    """
    setup = ProxySetup.from_settings(settings, upstream, listen)
    if kind == "nginx":
        return nginx.render(setup)
    if kind == "caddy":
        return caddy.render(setup)
    raise ValueError(f"unknown proxy {kind!r}: use one of {', '.join(KINDS)}")


# Tutor's LMS: the app is the `lms` service, Caddy listens on port 80.
TUTOR_UPSTREAM: Address = ("lms", 8000)
TUTOR_LISTEN: Address = ("0.0.0.0", 80)


def render_tutor(settings: Settings) -> str:
    """Caddyfile lines for Tutor's ``caddyfile-lms`` patch: an ``intercept``,
    since Tutor's own ``reverse_proxy`` to the LMS cannot be edited."""
    return caddy.render_intercept(ProxySetup.from_settings(settings, TUTOR_UPSTREAM, TUTOR_LISTEN))


__all__ = ["KINDS", "ProxyKind", "ProxySetup", "render", "render_tutor"]
