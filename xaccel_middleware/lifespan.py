"""The ASGI lifespan, as the middleware needs it: S3 clients live on the
server's loop and are closed when the lifespan ends.

The app's own lifespan runs as usual, and the clients are closed just before
its ``lifespan.shutdown.complete`` goes out. An app without one (Django's
``ASGIHandler`` refuses the scope at once) would leave the server running with
no lifespan at all, and the clients open until the loop is gone; so when the
app fails before it has even asked for the first lifespan message, the
middleware answers the protocol itself.

If closing the clients fails, the error is logged and the server gets
``lifespan.shutdown.failed`` with its text instead of
``lifespan.shutdown.complete``: one of the two must always go out, or the
server waits for it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

log = logging.getLogger("xaccel_middleware")
_ENDED = frozenset({"lifespan.shutdown.complete", "lifespan.shutdown.failed"})


async def run(
    app: App,
    scope: MutableMapping[str, Any],
    receive: Receive,
    send: Send,
    on_shutdown: Callable[[], Awaitable[None]],
) -> None:
    asked = False

    async def receive_() -> Message:
        nonlocal asked
        asked = True
        return await receive()

    async def send_(message: Message) -> None:
        if message["type"] in _ENDED:
            failure = await _shut_down(on_shutdown)
            # An app that failed already says so with its own message.
            if failure is not None and message["type"] == "lifespan.shutdown.complete":
                message = {"type": "lifespan.shutdown.failed", "message": failure}
        await send(message)

    try:
        await app(scope, receive_, send_)
    except Exception as exc:
        if asked:
            raise
        log.debug("the app has no lifespan (%s): the middleware answers it", exc)
        await _answer(receive, send, on_shutdown)


async def _answer(receive: Receive, send: Send, on_shutdown: Callable[[], Awaitable[None]]) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            failure = await _shut_down(on_shutdown)
            if failure is None:
                await send({"type": "lifespan.shutdown.complete"})
            else:
                await send({"type": "lifespan.shutdown.failed", "message": failure})
            return


async def _shut_down(on_shutdown: Callable[[], Awaitable[None]]) -> str | None:
    """Run ``on_shutdown``; on failure, log it and return the message to send."""
    try:
        await on_shutdown()
    except Exception as exc:
        log.exception("closing the middleware's S3 clients failed")
        return f"xaccel_middleware: closing the S3 clients failed: {exc!r}"
    return None
