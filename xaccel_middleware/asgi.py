"""The ASGI adapter: a pure ASGI 3 middleware around :mod:`decide` and :mod:`plan`.

Like Starlette's ``GZipMiddleware``, it holds back ``http.response.start`` until
the first body message shows what the response is: an ``X-Accel-Source``
marker, a ``http.response.pathsend`` (which it advertises to the app), or an
ordinary body that passes through untouched.

The decision (resolve, open, stat, plan) runs on the event loop, as nginx opens
and stats files in its own: it touches metadata only. A read runs on the loop
too when ``preadv2(RWF_NOWAIT)`` finds its first and last page in the page
cache; otherwise it goes to the loop's thread pool, so a read that waits for
the disk does not block the loop. A thread hop costs more than reading 1 MiB
from the cache (benchmarks/NOTES.md). A small body is read whole, a large one
``XACCEL_CHUNK_SIZE`` bytes at a time. Where the server offers ``pathsend`` or
``zerocopysend``, the server sends the bytes itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from . import lifespan
from .decide import Decider, Offload, Outcome, Refuse, Request, S3Stream, Stream
from .plan import ByteSpan, Plan, plan_head
from .settings import Settings
from .sources.local import LocalFile
from .trust import PROXY_SECRET, SENDFILE_TYPE, offload_method

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_PATHSEND = "http.response.pathsend"
_ZEROCOPY = "http.response.zerocopysend"
_MARKER = b"x-accel-source"
_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)  # Linux 4.14+
# Request headers the middleware owns: the app never sees them.
_HIDDEN = frozenset({SENDFILE_TYPE.encode(), PROXY_SECRET.encode(), b"range", b"if-range"})
_CONDITIONAL = frozenset(
    {b"range", b"if-range", b"if-match", b"if-none-match", b"if-modified-since", b"if-unmodified-since"}
)
_OWNED = _HIDDEN | _CONDITIONAL


class XAccelMiddleware:
    """Wrap an ASGI application: ``app = XAccelMiddleware(app)``."""

    def __init__(self, app: ASGIApp, settings: Settings | None = None) -> None:
        self.app = app
        self.settings = settings if settings is not None else Settings.from_env()
        self.decider = Decider(self.settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan.run(self.app, scope, receive, send, self.decider.aclose)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Most responses are not files: keep this path to a few lookups, and read
        # the request's own headers only when a file is served.
        # Servers send lower-case names, as the spec asks; the spec does not insist.
        headers = scope["headers"]
        owned = [(name.lower(), value) for name, value in headers if name.lower() in _OWNED]
        inner = dict(scope)
        if owned:
            inner["headers"] = [(name, value) for name, value in headers if name.lower() not in _HIDDEN]
        server = scope.get("extensions") or {}
        if _PATHSEND not in server:
            inner["extensions"] = {**server, _PATHSEND: {}}
        response = _Response(self, scope, owned, receive, send, server)
        await self.app(inner, receive, response.send)
        if not response.passing:
            await response.finish()


class _Response:
    """One response's interception: the held start message and what follows it."""

    __slots__ = (
        "_request",
        "_send",
        "done",
        "marker",
        "middleware",
        "owned",
        "passing",
        "receive",
        "scope",
        "server",
        "start",
    )

    def __init__(
        self,
        middleware: XAccelMiddleware,
        scope: Scope,
        owned: list[tuple[bytes, bytes]],
        receive: Receive,
        send: Send,
        server: Mapping[str, Any],
    ) -> None:
        self.middleware = middleware
        self.scope = scope
        self.owned = owned
        self.receive = receive
        self._send = send
        self.server = server
        self.start: Message | None = None
        self.marker: bytes | None = None
        self.passing = False
        self.done = False
        self._request: Request | None = None

    @property
    def request(self) -> Request:
        """What the decision needs, parsed once, and only for a file."""
        if self._request is None:
            self._request = self._parse_request()
        return self._request

    def _parse_request(self) -> Request:
        conditional: dict[str, str] = {}
        own: dict[bytes, str] = {}
        for name, value in self.owned:
            text = value.decode("latin-1")
            if name in _CONDITIONAL:
                key = name.decode()
                conditional[key] = f"{conditional[key]}, {text}" if key in conditional else text
            if name in _HIDDEN:
                own[name] = text
        client = self.scope.get("client")
        offload_with = offload_method(
            self.middleware.settings,
            client[0] if client else None,
            own.get(b"x-sendfile-type"),
            own.get(b"x-accel-proxy-secret"),
        )
        return Request(self.scope["method"], conditional, offload_with)

    async def send(self, message: Message) -> None:
        if self.passing:
            if message["type"] == _PATHSEND and _PATHSEND not in self.server:
                # Advertised to the app, not offered by the server (say, a
                # FileResponse with status 404): send the file's bytes instead.
                await _send_path(self, message["path"])
                return
            await self._send(message)
            return
        if self.done:
            return  # the rest of a body that a file replaced
        kind = message["type"]
        if (
            kind == "http.response.body"
            and self.start is not None
            and self.marker is None
            and not (self.owned and self.scope["method"] == "HEAD")
        ):
            # The common case, an ordinary body: let the held start go, inline.
            self.passing = True
            await self._send(self.start)
            await self._send(message)
            return
        if kind == "http.response.start":
            if message["status"] == 200:
                # Held until the first body message shows what the answer is.
                self.start = message
                for name, value in message.get("headers", ()):
                    if name.lower() == _MARKER:
                        self.marker = value
                        break
                return
            await self._on_start(message)
        elif self.start is None:
            # Not a response yet (a test client's http.response.debug, say):
            # forward it and keep watching for the start.
            await self._send(message)
        elif self.marker is not None:
            if kind == _PATHSEND or not message.get("more_body", False):
                await self._serve(
                    lambda: self.middleware.decider.for_marker(
                        self.marker or b"", self.request, self.app_headers
                    )
                )
        elif kind == _PATHSEND:
            path = message["path"]
            await self._serve(
                lambda: self.middleware.decider.for_file(path, None, self.request, self.app_headers)
            )
        elif self.scope["method"] == "HEAD" and self.request.headers:
            await self._head(message)
        else:
            await self._pass(message)  # a message of a later ASGI version

    async def _head(self, message: Message) -> None:
        """A HEAD the app answered itself still gets its 304 or 412."""
        plan = plan_head(self.request.headers, self.app_headers)
        if plan is None:
            await self._pass(message)
            return
        self.done = True
        await self._send(
            {"type": "http.response.start", "status": plan.status, "headers": _encode(plan.headers)}
        )
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def finish(self) -> None:
        """The app returned: a marker whose body never ended is served now."""
        if self.start is not None and not self.passing and not self.done:
            if self.marker is not None:
                await self._serve(
                    lambda: self.middleware.decider.for_marker(
                        self.marker or b"", self.request, self.app_headers
                    )
                )
            else:
                await self._pass({"type": "http.response.body", "body": b"", "more_body": False})

    async def _on_start(self, message: Message) -> None:
        """Any status but 200 goes out as the app sent it, less a marker."""
        headers = message.get("headers", [])
        if any(name.lower() == _MARKER for name, _ in headers):
            message = dict(message, headers=[(k, v) for k, v in headers if k.lower() != _MARKER])
        self.passing = True
        await self._send(message)

    async def _pass(self, message: Message) -> None:
        self.passing = True
        if self.start is not None:
            await self._send(self.start)
        await self._send(message)

    @property
    def app_headers(self) -> list[tuple[str, str]]:
        assert self.start is not None
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.start.get("headers", [])]

    async def _serve(self, decide: Callable[[], Outcome]) -> None:
        self.done = True
        limit = self.middleware.settings.chunk_size
        loop = asyncio.get_running_loop()
        # An S3 marker is awaited here, on the server's loop, never in a thread.
        early = None
        if self.marker is not None:
            early = await self.middleware.decider.for_s3_marker(self.marker, self.request, self.app_headers)
        # Deciding costs a realpath, an open and a stat of cached metadata: far
        # less than the thread hop that would carry them.
        outcome = early if early is not None else decide()
        chunks = None
        if isinstance(outcome, Stream) and outcome.plan.content_length <= limit:
            # Read before the start goes out, so that a failed read is still a 500.
            if all(_cached(outcome.file.fd, s) for s in outcome.plan.body if isinstance(s, ByteSpan)):
                chunks = _prefetch(outcome, limit)
            else:
                chunks = await loop.run_in_executor(None, _prefetch, outcome, limit)
        if isinstance(outcome, S3Stream):
            await _send_s3(self, outcome)
            return
        if isinstance(outcome, Stream):
            await _StreamSender(self, outcome, loop).run(chunks)
            return
        status = 200 if isinstance(outcome, Offload) else outcome.status
        body = outcome.body if isinstance(outcome, Refuse) else b""
        await self._send(
            {"type": "http.response.start", "status": status, "headers": _encode(outcome.headers)}
        )
        await self._send({"type": "http.response.body", "body": body, "more_body": False})


class _StreamSender:
    def __init__(self, response: _Response, stream: Stream, loop: asyncio.AbstractEventLoop) -> None:
        self.response, self.stream, self.loop = response, stream, loop
        self.send = response._send

    async def run(self, chunks: list[bytes] | None) -> None:
        plan, file = self.stream.plan, self.stream.file
        try:
            await self.send(
                {"type": "http.response.start", "status": plan.status, "headers": _encode(plan.headers)}
            )
            if chunks is not None:
                await self.send({"type": "http.response.body", "body": b"".join(chunks), "more_body": False})
            elif _ZEROCOPY in self.response.server and len(plan.body) == 1:
                # Preferred to pathsend: it sends from the fd that was planned,
                # with a count, so a file that grows since cannot overrun.
                span = plan.body[0]
                assert not isinstance(span, bytes)
                # The extension wants a file object; this one leaves the fd to LocalFile.
                with open(file.fd, "rb", buffering=0, closefd=False) as fileobj:
                    await self.send(
                        {
                            "type": _ZEROCOPY,
                            "file": fileobj,
                            "offset": span.start,
                            "count": span.length,
                            "more_body": False,
                        }
                    )
            elif _PATHSEND in self.response.server and plan.status == 200 and len(plan.body) == 1:
                await self.send({"type": _PATHSEND, "path": file.path})
            else:
                await self._read_and_send()
        finally:
            file.close()

    async def _read_and_send(self) -> None:
        # uvicorn drops sends after a disconnect silently; watch for it so that a
        # gone client does not cost the rest of the file's reads.
        gone = asyncio.Event()
        watcher = asyncio.ensure_future(self._watch(gone))
        chunk_size = self.response.middleware.settings.chunk_size
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
                    if _cached(self.stream.file.fd, ByteSpan(position, position + count)):
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

    async def _watch(self, gone: asyncio.Event) -> None:
        await _watch(self.response.receive, gone)


async def _watch(receive: Receive, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


async def _send_s3(response: _Response, stream: S3Stream) -> None:
    """An S3 body on the server's loop; an S3 failure now aborts the connection."""
    plan, obj, send = stream.plan, stream.file, response._send
    gone = asyncio.Event()
    watcher = asyncio.ensure_future(_watch(response.receive, gone))
    try:
        await send({"type": "http.response.start", "status": plan.status, "headers": _encode(plan.headers)})
        async with contextlib.aclosing(obj.chunks()) as chunks:
            async for chunk in chunks:
                if gone.is_set():
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watcher.cancel()
        await obj.aclose()


def _prefetch(stream: Stream, limit: int) -> list[bytes] | None:
    try:
        return stream.prefetch(limit)
    except BaseException:
        stream.file.close()
        raise


def _cached(fd: int, span: ByteSpan) -> bool:
    """Whether the span's first and last byte are in the page cache: then reading
    it will not wait for the disk. False where RWF_NOWAIT is not supported."""
    if _NOWAIT is None or not span.length:
        return _NOWAIT is not None
    probe = [bytearray(1)]
    try:
        first = os.preadv(fd, probe, span.start, _NOWAIT)
        return first == 1 and os.preadv(fd, probe, span.stop - 1, _NOWAIT) == 1
    except OSError:  # EAGAIN: on disk. Any other error is raised by the threaded read.
        return False


def _encode(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def _send_path(response: _Response, path: str) -> None:
    """The body of a passed-through pathsend, read here for a server without it."""
    loop = asyncio.get_running_loop()
    file = await loop.run_in_executor(None, functools.partial(LocalFile.open, path, follow=True))
    size = file.meta.size
    stream = Stream(file, Plan(200, [], (ByteSpan(0, size),) if size else ()))
    try:
        await _StreamSender(response, stream, loop)._read_and_send()
    finally:
        file.close()
