"""The aiobotocore clients of one S3 source: one per event loop, made on
first use, and closed at the end.

One client, and so one connection pool, per loop:

- under ASGI, on the server's loop; closed when the lifespan ends
  (:mod:`..lifespan`), or at exit;
- under WSGI, on the process's one S3 loop thread (:mod:`.loop`); closed at exit.

Each client is closed on the loop it belongs to: at exit for every loop that
still runs or can be run, and as soon as a source is dropped while its loops
run (a middleware replaced). A process shares one botocore data loader, so the
S3 service model is read once, not once per middleware.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import weakref
from typing import Any

from ..settings import Settings
from . import loop

log = logging.getLogger("xaccel_middleware")

# Enough for many concurrent downloads: each holds a connection for its body.
MAX_CONNECTIONS = 64


class S3Clients:
    """The clients of one source, by event loop."""

    def __init__(self, settings: Settings, endpoint: str, region: str) -> None:
        self.settings, self.endpoint, self.region = settings, endpoint, region
        self.by_loop: dict[asyncio.AbstractEventLoop, asyncio.Future[Any]] = {}
        self._session: Any = None
        if not _all:
            atexit.register(_close_all)
        _all.add(self)
        weakref.finalize(self, _close_soon, self.by_loop).atexit = False

    async def get(self) -> Any:
        """This loop's client, made on first use; concurrent first uses share it."""
        running = asyncio.get_running_loop()
        future = self.by_loop.get(running)
        if future is None or (future.done() and _made(future) is None):
            for stale in [lp for lp in self.by_loop if lp.is_closed()]:
                del self.by_loop[stale]
            future = self.by_loop[running] = asyncio.ensure_future(self._make())
        return await asyncio.shield(future)

    async def _make(self) -> Any:
        from aiobotocore.config import AioConfig

        if self._session is None:
            self._session = _new_session()
        config = AioConfig(
            region_name=self.region,
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=self.settings.s3_connect_timeout,
            read_timeout=self.settings.s3_read_timeout,
            # Retries with backoff would outlast the deadline; S3Source retries
            # the one failure that a retry reliably fixes, at once.
            retries={"total_max_attempts": 1},
            max_pool_connections=MAX_CONNECTIONS,
        )
        creator = self._session.create_client("s3", endpoint_url=self.endpoint, config=config)
        return await creator.__aenter__()

    async def aclose(self) -> None:
        """Close the client of the running loop (ASGI lifespan shutdown)."""
        future = self.by_loop.pop(asyncio.get_running_loop(), None)
        client = _made(future) if future is not None and future.done() else None
        if client is not None:
            await client.__aexit__(None, None, None)

    def close_idle(self) -> None:
        """At exit: close the clients of loops that are neither running nor closed."""
        for owner, future in list(self.by_loop.items()):
            client = _made(future) if future.done() else None
            if client is None or owner.is_closed() or owner.is_running():
                continue
            del self.by_loop[owner]
            owner.run_until_complete(client.__aexit__(None, None, None))


_all: weakref.WeakSet[S3Clients] = weakref.WeakSet()
_loader: Any = None


def _new_session() -> Any:
    """A session sharing the process's botocore data loader: the S3 model is
    read and parsed once per process, not once per middleware."""
    global _loader
    from aiobotocore.session import get_session
    from botocore.loaders import create_loader

    session = get_session()
    if _loader is None:
        _loader = create_loader()
    session.register_component("data_loader", _loader)
    return session


def _made(future: asyncio.Future[Any]) -> Any:
    """The client a finished creation made, or None if it failed."""
    if future.cancelled() or future.exception() is not None:
        return None
    return future.result()


def _close_soon(clients: dict[asyncio.AbstractEventLoop, asyncio.Future[Any]]) -> None:
    for owner, future in clients.items():
        client = _made(future) if future.done() else None
        if client is not None and owner.is_running():
            asyncio.run_coroutine_threadsafe(client.__aexit__(None, None, None), owner)


def _close_all() -> None:
    """At exit: close every client, on the loop it belongs to, then stop the thread."""
    thread = loop.current()
    for clients in list(_all):
        if thread is not None:
            try:
                thread.run(clients.aclose(), 5)
            except Exception as exc:
                log.debug("closing the S3 client failed: %s", exc)
        clients.close_idle()
    if thread is not None:
        thread.stop()
