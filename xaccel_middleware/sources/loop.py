"""One long-lived event loop in a daemon thread: how WSGI reaches async S3 code.

Why not ``asgiref.sync.async_to_sync``: called from a thread with no running
loop (every WSGI worker thread), it runs each call on a fresh event loop. An
aiobotocore client keeps an aiohttp connection pool bound to the loop it was
made on, so a per-call loop means a new client, a new TLS handshake and a new
pool for every request, and a client that is never closed. Here all WSGI
threads submit coroutines to one loop with
:func:`asyncio.run_coroutine_threadsafe`; the loop, and the one client it
holds, live until the process exits. A worker thread blocks on a future with a
deadline, so it never waits forever even if a coroutine does.

A forked child (gunicorn ``--preload``) inherits the object but not the thread;
the loop is rebuilt in the child on first use.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import AsyncGenerator, Awaitable, Iterator
from typing import TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_current: LoopThread | None = None


class LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="xaccel-s3-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, awaitable: Awaitable[T], timeout: float) -> T:
        """Await ``awaitable`` on the loop, waiting at most ``timeout`` seconds."""
        future = asyncio.run_coroutine_threadsafe(_await(awaitable), self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer within {timeout:g}s") from None

    def iterate(self, agen: AsyncGenerator[T, None], timeout: float) -> Iterator[T]:
        """A blocking iterator over ``agen``; each item is awaited on the loop."""
        while True:
            try:
                item = self.run(anext(agen), timeout)
            except StopAsyncIteration:
                return
            yield item

    def alive(self) -> bool:
        return self.pid == os.getpid() and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        if self.alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)


async def _await(awaitable: Awaitable[T]) -> T:
    # run_coroutine_threadsafe takes coroutines only, not any awaitable.
    return await awaitable


def loop_thread() -> LoopThread:
    """The process's loop thread, started on first use (again after a fork)."""
    global _current
    with _lock:
        if _current is None or _current.pid != os.getpid():
            _current = LoopThread()
        return _current


def current() -> LoopThread | None:
    """The loop thread if this process has started one."""
    thread = _current
    return thread if thread is not None and thread.alive() else None
