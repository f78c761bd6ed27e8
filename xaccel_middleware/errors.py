"""The library's own exceptions."""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting is invalid. The message names the variable and what is valid.

    Raised when a middleware is built, never while a request is served.
    """


class SourceError(Exception):
    """A file cannot be served; ``status`` is the HTTP answer to give instead."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
