"""Sending a planned body over ASGI: the whole small file at once, a large one
chunk by chunk (on the loop when the page cache holds it, in the thread pool
otherwise), or through the server's ``zerocopysend`` (from the planned
descriptor) or ``pathsend`` (the server opens the real path again); an S3
body as it arrives. A client that goes away stops the reads."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from .decide import S3Stream, Stream
from .plan import ByteSpan, Plan
from .sources.local import LocalFile

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PATHSEND = "http.response.pathsend"
ZEROCOPY = "http.response.zerocopysend"
NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)  # Linux 4.14+


@dataclass(frozen=True)
class Exchange:
    """What sending needs of one request: the server's channels and extensions."""

    send: Send
    receive: Receive
    server: Mapping[str, Any]
    chunk_size: int


class StreamSender:
    """A local file's planned answer, by the cheapest means the server offers."""

    def __init__(self, exchange: Exchange, stream: Stream, loop: asyncio.AbstractEventLoop) -> None:
        self.exchange, self.stream, self.loop = exchange, stream, loop
        self.send = exchange.send

    async def run(self, chunks: list[bytes] | None) -> None:
        plan, file = self.stream.plan, self.stream.file
        try:
            await self.send(
                {"type": "http.response.start", "status": plan.status, "headers": encode(plan.headers)}
            )
            if chunks is not None:
                await self.send({"type": "http.response.body", "body": b"".join(chunks), "more_body": False})
            elif ZEROCOPY in self.exchange.server and len(plan.body) == 1:
                # Preferred to pathsend: it sends from the fd that was planned,
                # with a count, so a file that grows since cannot overrun.
                span = plan.body[0]
                assert not isinstance(span, bytes)
                # The extension wants a file object; this one leaves the fd to LocalFile.
                with open(file.fd, "rb", buffering=0, closefd=False) as fileobj:
                    await self.send(
                        {
                            "type": ZEROCOPY,
                            "file": fileobj,
                            "offset": span.start,
                            "count": span.length,
                            "more_body": False,
                        }
                    )
            elif PATHSEND in self.exchange.server and plan.status == 200 and len(plan.body) == 1:
                # The server opens the checked real path again itself, after this
                # send returns (granian): it cannot be handed the descriptor.
                await self.send({"type": PATHSEND, "path": file.path})
            else:
                await self.read_and_send()
        finally:
            file.close()

    async def read_and_send(self) -> None:
        # uvicorn drops sends after a disconnect silently; watch for it so that a
        # gone client does not cost the rest of the file's reads.
        gone = asyncio.Event()
        watcher = asyncio.ensure_future(watch(self.exchange.receive, gone))
        chunk_size = self.exchange.chunk_size
        read_at = self.stream.file.read_at
        try:
            for segment in self.stream.plan.body:
                if isinstance(segment, bytes):
                    await self.send({"type": "http.response.body", "body": segment, "more_body": True})
                    continue
                position = segment.start
                while position < segment.stop:
                    if gone.is_set():
                        return
                    count = min(chunk_size, segment.stop - position)
                    if cached(self.stream.file.fd, ByteSpan(position, position + count)):
                        data = read_at(position, count)
                        # A send need not yield (uvicorn's does not once the client is
                        # gone): yield here, so other requests and the watcher run.
                        await asyncio.sleep(0)
                    else:
                        data = await self.loop.run_in_executor(None, read_at, position, count)
                    position += len(data)
                    await self.send({"type": "http.response.body", "body": data, "more_body": True})
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()


async def watch(receive: Receive, gone: asyncio.Event) -> None:
    """Set ``gone`` when the client disconnects."""
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


async def send_s3(exchange: Exchange, stream: S3Stream) -> None:
    """An S3 body on the server's loop; an S3 failure now aborts the connection."""
    plan, obj, send = stream.plan, stream.file, exchange.send
    gone = asyncio.Event()
    watcher = asyncio.ensure_future(watch(exchange.receive, gone))
    try:
        await send({"type": "http.response.start", "status": plan.status, "headers": encode(plan.headers)})
        async with contextlib.aclosing(obj.chunks()) as chunks:
            async for chunk in chunks:
                if gone.is_set():
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watcher.cancel()
        await obj.aclose()


def prefetch(stream: Stream, limit: int) -> list[bytes] | None:
    try:
        return stream.prefetch(limit)
    except BaseException:
        stream.file.close()
        raise


def cached(fd: int, span: ByteSpan) -> bool:
    """Whether the span's first and last byte are in the page cache: then reading
    it will not wait for the disk. False where RWF_NOWAIT is not supported."""
    if NOWAIT is None or not span.length:
        return NOWAIT is not None
    probe = [bytearray(1)]
    try:
        first = os.preadv(fd, probe, span.start, NOWAIT)
        return first == 1 and os.preadv(fd, probe, span.stop - 1, NOWAIT) == 1
    except OSError:  # EAGAIN: on disk. Any other error is raised by the threaded read.
        return False


def encode(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def send_path(exchange: Exchange, path: str) -> None:
    """The body of a passed-through pathsend, read here for a server without it."""
    loop = asyncio.get_running_loop()
    # Opened on the loop, as every decision is: in a thread, a cancelled
    # request would leave the file open.
    file = LocalFile.open(path, follow=True)
    size = file.meta.size
    stream = Stream(file, Plan(200, [], (ByteSpan(0, size),) if size else ()))
    try:
        await StreamSender(exchange, stream, loop).read_and_send()
    finally:
        file.close()
