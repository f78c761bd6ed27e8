"""The ASGI lifespan around the app: a failure while closing the S3 clients
must still end the lifespan with a message the server waits for."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from xaccel_middleware import lifespan


async def run_lifespan(app: Any) -> list[dict[str, Any]]:
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for kind in ("lifespan.startup", "lifespan.shutdown"):
        events.put_nowait({"type": kind})
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(dict(message))

    async def failing_shutdown() -> None:
        raise OSError("connection pool already torn down")

    await asyncio.wait_for(
        lifespan.run(
            app, {"type": "lifespan", "asgi": {"version": "3.0"}}, events.get, send, failing_shutdown
        ),
        timeout=5,
    )
    return sent


async def app_with_lifespan(scope: Any, receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app_without_lifespan(scope: Any, receive: Any, send: Any) -> None:
    raise ValueError("Django can only handle ASGI/HTTP connections, not lifespan.")


@pytest.mark.parametrize("app", [app_with_lifespan, app_without_lifespan], ids=["app's", "middleware's"])
async def test_a_failing_shutdown_is_reported_not_swallowed(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="xaccel_middleware"):
        sent = await run_lifespan(app)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.failed"]
    assert "connection pool already torn down" in sent[-1]["message"]
    assert [r.name for r in caplog.records] == ["xaccel_middleware"]
    assert caplog.records[0].exc_info is not None


async def test_an_apps_own_failure_message_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.failed", "message": "the app's own"})

    with caplog.at_level(logging.ERROR, logger="xaccel_middleware"):
        sent = await run_lifespan(app)
    assert sent[-1] == {"type": "lifespan.shutdown.failed", "message": "the app's own"}
    assert len(caplog.records) == 1
