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
from the cache (benchmarks/NOTES.md). :mod:`asgi_body` sends the bodies.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from . import lifespan
from .asgi_body import (
    PATHSEND,
    Exchange,
    Message,
    Receive,
    Send,
    StreamSender,
    cached,
    encode,
    prefetch,
    send_path,
    send_s3,
)
from .decide import Decider, Offload, Outcome, Refuse, Request, S3Stream, Stream
from .plan import ByteSpan, plan_head
from .settings import Settings
from .trust import PROXY_SECRET, SENDFILE_TYPE, offload_method

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_MARKER = b"x-accel-source"
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
        if PATHSEND not in server:
            inner["extensions"] = {**server, PATHSEND: {}}
        response = _Response(self, scope, owned, receive, send, server)
        await self.app(inner, receive, response.send)
        if not response.passing:
            await response.finish()


class _Response:
    """One response's interception: the held start message and what follows it."""

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

    @property
    def exchange(self) -> Exchange:
        """What the body senders need; made only for a file."""
        return Exchange(self._send, self.receive, self.server, self.middleware.settings.chunk_size)

    @functools.cached_property
    def request(self) -> Request:
        """What the decision needs, parsed only for a file."""
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
            if message["type"] == PATHSEND and PATHSEND not in self.server:
                # Advertised to the app, not offered by the server (say, a
                # FileResponse with status 404): send the file's bytes instead.
                await send_path(self.exchange, message["path"])
                return
            await self._send(message)
            return
        if self.done:
            return  # the rest of a body that a file replaced
        kind = message["type"]
        if kind == "http.response.start":
            if message["status"] == 200:
                # Held until the first body message shows what the answer is.
                self.start, self.marker = message, None
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
            if kind == PATHSEND or not message.get("more_body", False):
                await self._serve_marker(self.marker)
        elif kind == PATHSEND:
            self.done = True
            await self._serve(
                self.middleware.decider.for_file(message["path"], None, self.request, self.app_headers)
            )
        elif self.scope["method"] == "HEAD" and self.request.headers:
            await self._head(message)
        else:
            await self._pass(message)  # an ordinary body: the held start goes with it

    async def _head(self, message: Message) -> None:
        """A HEAD the app answered itself still gets its 304 or 412."""
        plan = plan_head(self.request.headers, self.app_headers)
        if plan is None:
            await self._pass(message)
            return
        self.done = True
        await self._send(
            {"type": "http.response.start", "status": plan.status, "headers": encode(plan.headers)}
        )
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def finish(self) -> None:
        """The app returned: a marker whose body never ended is served now."""
        if self.start is not None and not self.passing and not self.done:
            if self.marker is not None:
                await self._serve_marker(self.marker)
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

    async def _serve_marker(self, marker: bytes) -> None:
        self.done = True
        # Deciding costs an open, a readlink and a stat of cached metadata, far
        # less than the thread hop that would carry them; S3 calls are awaited.
        decider = self.middleware.decider
        await self._serve(await decider.for_marker_async(marker, self.request, self.app_headers))

    async def _serve(self, outcome: Outcome) -> None:
        limit = self.middleware.settings.chunk_size
        loop = asyncio.get_running_loop()
        chunks = None
        if isinstance(outcome, Stream) and outcome.plan.content_length <= limit:
            # Read before the start goes out, so that a failed read is still a 500.
            if all(cached(outcome.file.fd, s) for s in outcome.plan.body if isinstance(s, ByteSpan)):
                chunks = prefetch(outcome, limit)
            else:
                try:
                    chunks = await loop.run_in_executor(None, prefetch, outcome, limit)
                except BaseException:  # cancelled: nothing else will close it
                    outcome.file.close()
                    raise
        if isinstance(outcome, S3Stream):
            await send_s3(self.exchange, outcome)
            return
        if isinstance(outcome, Stream):
            await StreamSender(self.exchange, outcome, loop).run(chunks)
            return
        status = 200 if isinstance(outcome, Offload) else outcome.status
        body = outcome.body if isinstance(outcome, Refuse) else b""
        await self._send(
            {"type": "http.response.start", "status": status, "headers": encode(outcome.headers)}
        )
        await self._send({"type": "http.response.body", "body": body, "more_body": False})
