"""A small ASGI "server" for in-process tests.

httpx's ``ASGITransport`` cannot follow ``http.response.pathsend`` or
``zerocopysend``; this driver can. It offers the extensions a test asks for,
checks the order of the messages the app sends (as a strict server would),
and assembles status, headers and body: for ``pathsend`` it reads the path, for
``zerocopysend`` the file at ``offset`` for ``count`` bytes. It can play a client
that disconnects after a number of body messages.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Message = MutableMapping[str, Any]
ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]

PATHSEND = "http.response.pathsend"
ZEROCOPY = "http.response.zerocopysend"
BODY_TYPES = ("http.response.body", PATHSEND, ZEROCOPY)


class ClientGone(OSError):
    """What a server raises from send() once the client has gone (ASGI 2.4)."""


@dataclass
class Response:
    status: int | None = None
    raw_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    kinds: list[str] = field(default_factory=list)  # the type of every message sent
    complete: bool = False  # a final body message arrived

    @property
    def body_messages(self) -> int:
        return sum(kind in BODY_TYPES for kind in self.kinds)

    @property
    def headers(self) -> dict[str, str]:
        """Lower-case names; a repeated header keeps its last value."""
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in self.raw_headers}

    def all(self, name: str) -> list[str]:
        return [v.decode("latin-1") for k, v in self.raw_headers if k.decode("latin-1") == name.lower()]


def _read(fd: int, offset: int, count: int | None) -> bytes:
    chunks = []
    while count is None or count > 0:
        data = os.pread(fd, 1 << 20 if count is None else min(count, 1 << 20), offset)
        if not data:
            # A server's sendfile(2) would come up short; the test sees that in the length.
            break
        chunks.append(data)
        offset += len(data)
        if count is not None:
            count -= len(data)
    return b"".join(chunks)


def scope_for(
    method: str = "GET",
    path: str = "/",
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    client: tuple[str, int] | None = ("127.0.0.1", 50000),
    extensions: Iterable[str] = (),
) -> dict[str, Any]:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs],
        "client": client,
        "server": ("127.0.0.1", 8000),
        "extensions": {name: {} for name in extensions},
    }


async def call(
    app: ASGIApp,
    method: str = "GET",
    path: str = "/",
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    client: tuple[str, int] | None = ("127.0.0.1", 50000),
    extensions: Iterable[str] = (),
    disconnect_after: int | None = None,
    raise_after_disconnect: bool = False,
    on_message: Callable[[Message], None] | None = None,
) -> Response:
    """Run one request through ``app`` and return what a client would have got.

    ``disconnect_after=n``: the client goes after n body messages: receive()
    then returns ``http.disconnect``; with ``raise_after_disconnect`` later
    sends raise :class:`ClientGone` as ASGI 2.4 servers do, otherwise they are
    dropped silently, as uvicorn does. ``on_message`` runs after each message
    has been taken in (a test can change the file there).
    """
    scope = scope_for(method, path, headers, client, extensions)
    offered = set(scope["extensions"])
    response = Response()
    gone = asyncio.Event()
    request_sent = False

    async def receive() -> Message:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        take(message)
        if on_message is not None:
            on_message(message)

    def take(message: Message) -> None:
        kind = message["type"]
        if gone.is_set() and not response.complete:
            response.kinds.append(kind)
            if raise_after_disconnect:
                raise ClientGone("client disconnected")
            return
        assert not response.complete, f"{kind} after the response was complete"
        response.kinds.append(kind)
        if kind == "http.response.start":
            assert response.status is None, "second http.response.start"
            assert isinstance(message["status"], int)
            for name, value in message.get("headers", []):
                assert isinstance(name, bytes) and isinstance(value, bytes), (name, value)
                assert name == name.lower(), f"header name {name!r} is not lower-case"
                assert b"\r" not in value and b"\n" not in value, value
            response.status = message["status"]
            response.raw_headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
            return
        assert response.status is not None, f"{kind} before http.response.start"
        assert kind in BODY_TYPES, f"unexpected message {kind}"
        if kind == PATHSEND:
            assert PATHSEND in offered, "pathsend sent to a server that does not offer it"
            with open(message["path"], "rb") as f:
                response.body += f.read()
            more = False
        elif kind == ZEROCOPY:
            assert ZEROCOPY in offered, "zerocopysend sent to a server that does not offer it"
            # The extension asks for a file object, not a bare descriptor.
            fd = message["file"].fileno()
            offset = message.get("offset")
            if offset is None:
                offset = os.lseek(fd, 0, os.SEEK_CUR)
            response.body += _read(fd, offset, message.get("count"))
            more = bool(message.get("more_body", False))
        else:
            body = message.get("body", b"")
            assert isinstance(body, bytes)
            response.body += body
            more = bool(message.get("more_body", False))
        if not more:
            response.complete = True
            gone.set()  # a finished exchange: later receive() calls see the end
        elif disconnect_after is not None and response.body_messages >= disconnect_after:
            gone.set()

    await app(scope, receive, send)
    return response
