"""S3 objects (``s3://bucket/key``), through aiobotocore.

Configuration: ``XACCEL_S3_ENDPOINT_URL``, ``XACCEL_S3_REGION`` and
``XACCEL_S3_BUCKETS``; credentials come from the standard chain (``AWS_*``
variables, shared files, instance roles). Only buckets in the allowlist are
served: any other gets a 404 and a warning. aiobotocore is imported on the
first S3 request, never at import time.

The client: one per event loop, made on first use and closed at the end
(:mod:`.s3_clients`). WSGI threads reach theirs through one loop thread
(:mod:`.loop`, which says why not ``async_to_sync``).

Addressing is path-style on one endpoint (``https://s3.REGION.amazonaws.com``
when none is set), so that every presigned URL has the same host, and the
proxy configuration can pin it.

Metadata comes from ``HeadObject``: size, ETag, Last-Modified, Content-Type.
Each ranged ``GetObject`` carries ``If-Match`` with that ETag, so the bytes of
one answer (several ranges included) all come from one version of the object.

Errors are translated here, at the boundary, into :class:`SourceError`:

- a missing key or bucket: 404;
- an access refusal (403): also 404, with a warning naming the permission.
  S3 itself answers 403 for a missing key when the caller lacks
  ``s3:ListBucket``, so with the minimal policy (``s3:GetObject`` alone) a 403
  usually *is* a missing key; and a client must not learn whether a key it may
  not read exists;
- a timeout: 504; a refused connection, an S3 5xx, or any other failure: 502.
  Each is logged. Each call has a deadline of connect + read timeout, retries
  included, and so has a whole decision (``Decider.for_s3``), so a worker never
  hangs on a dead endpoint.

Once the response has started, a failure can no longer change its status: the
error propagates and the server aborts the connection, so a client never takes
a short body for a whole one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from ..conditions import parse_etag
from ..errors import SourceError
from ..offload import OffloadTarget, nginx_extras
from ..plan import FileMeta, Segment
from ..settings import Settings
from . import S3Location, loop
from .local import guess_type
from .s3_clients import S3Clients

log = logging.getLogger("xaccel_middleware")

T = TypeVar("T")

# Offload: X-Accel-Redirect to this internal location, with the presigned
# path and query in this header. The proxy adds its pinned S3 host.
S3_LOCATION = "/_xaccel_s3/"
# Written as Go canonicalises it: Caddy's {rp.header.*} placeholders match case.
S3_URI_HEADER = "X-Accel-S3-Uri"
# S3's default Content-Type tells nothing; the key's extension tells more.
_VAGUE_TYPES = frozenset({"", "binary/octet-stream", "application/octet-stream"})


def region(settings: Settings) -> str:
    return settings.s3_region or "us-east-1"


def endpoint_url(settings: Settings) -> str:
    """The one S3 endpoint that both the client and the proxy use."""
    if settings.s3_endpoint_url:
        return settings.s3_endpoint_url
    return f"https://s3.{region(settings)}.amazonaws.com"


def object_meta(head: dict[str, Any], location: S3Location) -> tuple[FileMeta, str | None]:
    """FileMeta from a HeadObject answer, and the ETag to send as If-Match.

    S3's ETag is strong and changes with the content. One that is missing or
    malformed (some S3-compatible servers) is replaced by one derived from
    (key, mtime, size), as for local files.
    """
    size = int(head["ContentLength"])
    mtime = head["LastModified"].timestamp()
    etag = head.get("ETag")
    parsed = parse_etag(etag) if isinstance(etag, str) else None
    if parsed is None or parsed.weak:
        digest = hashlib.sha256(f"{location.bucket}/{location.key}".encode("utf-8", "surrogateescape"))
        made = f'"s3-{digest.hexdigest()[:16]}-{int(mtime * 1e6):x}-{size:x}"'
        return FileMeta(size, mtime, made, _type(head, location)), None
    return FileMeta(size, mtime, parsed.opaque, _type(head, location)), parsed.opaque


def _type(head: dict[str, Any], location: S3Location) -> str:
    given = str(head.get("ContentType") or "")
    if given.split(";")[0].strip().lower() not in _VAGUE_TYPES:
        return given
    return guess_type(location.key)


def check_bucket(settings: Settings, location: S3Location) -> None:
    """Only the buckets of ``XACCEL_S3_BUCKETS``: any other is a 404."""
    if location.bucket not in settings.s3_buckets:
        raise SourceError(404, f"bucket {location.bucket!r} is not in XACCEL_S3_BUCKETS")


def translate(exc: BaseException, what: str) -> SourceError:
    """An exception from botocore, aiohttp or asyncio as the answer to give."""
    from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError

    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if status == 404 or code in ("NoSuchKey", "NoSuchBucket", "NotFound", "404"):
            return SourceError(404, f"{what}: not found")
        if status == 403 or code in ("AccessDenied", "403"):
            log.warning("%s: S3 refused access (%s): grant s3:GetObject, check credentials", what, code)
            return SourceError(404, f"{what}: access denied")
        if status == 412:
            return _logged(502, f"{what}: the object changed while it was being read")
        return _logged(502, f"{what}: S3 answered {status} {code}")
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError, asyncio.TimeoutError, TimeoutError)):
        return _logged(504, f"{what}: S3 timed out ({exc})")
    return _logged(502, f"{what}: S3 failed: {type(exc).__name__}: {exc}")


def _logged(status: int, reason: str) -> SourceError:
    log.warning("%s", reason)
    return SourceError(status, reason)


class S3Source:
    """The S3 side of one middleware: its clients, metadata, reads and presigning."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.endpoint = endpoint_url(settings)
        self.clients = S3Clients(settings, self.endpoint, region(settings))
        # Metadata calls: connect + read, whatever retries happen inside.
        self.deadline = settings.s3_connect_timeout + settings.s3_read_timeout

    async def client(self) -> Any:
        return await self.clients.get()

    async def aclose(self) -> None:
        """Close the client of the running loop (ASGI lifespan shutdown)."""
        await self.clients.aclose()

    def bridge(self) -> loop.LoopThread:
        """The loop thread that WSGI requests run this source's coroutines on."""
        return loop.loop_thread()

    def run(self, awaitable: Awaitable[T]) -> T:
        """Await on the loop thread, from a WSGI worker thread."""
        return self.bridge().run(awaitable, self.deadline + 5)

    # -- requests ----------------------------------------------------------

    async def _call(self, what: str, operation: str, **params: Any) -> dict[str, Any]:
        try:
            result = await asyncio.wait_for(self._attempts(operation, params), self.deadline)
        except Exception as exc:
            raise translate(exc, what) from None
        return dict(result)

    async def _attempts(self, operation: str, params: dict[str, Any]) -> Any:
        """One call, tried again once if a pooled connection turned out closed
        (S3 drops idle keep-alive connections)."""
        from botocore.exceptions import ConnectionClosedError

        client = await self.client()
        try:
            return await getattr(client, operation)(**params)
        except ConnectionClosedError:
            return await getattr(client, operation)(**params)

    async def stat(self, location: S3Location) -> S3Object:
        """The object's metadata, from HeadObject."""
        check_bucket(self.settings, location)
        what = describe(location)
        head = await self._call(what, "head_object", Bucket=location.bucket, Key=location.key)
        meta, etag = object_meta(head, location)
        return S3Object(self, location, meta, etag)

    async def presign(self, location: S3Location, method: str, overrides: dict[str, str]) -> str:
        """A SigV4 presigned URL for GET or HEAD, as origin-form: path and query.

        The proxy adds the scheme and the pinned host. ``overrides`` are
        ``Response*`` parameters (ResponseContentType, ...) for S3 to answer
        with the app's headers.
        """
        check_bucket(self.settings, location)
        operation = "head_object" if method == "HEAD" else "get_object"
        params = {"Bucket": location.bucket, "Key": location.key, **overrides}
        try:
            # Local work (credentials may need a refresh): bounded all the same.
            client = await asyncio.wait_for(self.client(), self.deadline)
            lifetime = self.settings.s3_url_lifetime
            url = await client.generate_presigned_url(operation, Params=params, ExpiresIn=lifetime)
        except Exception as exc:
            raise translate(exc, describe(location)) from None
        parts = urlsplit(url)
        return f"{parts.path}?{parts.query}"


async def s3_offload_target(
    source: S3Source,
    location: S3Location,
    method: str,
    app_headers: Sequence[tuple[str, str]],
    settings: Settings,
) -> OffloadTarget:
    """X-Accel-Redirect to the S3 location, with a URL presigned for the method
    the proxy will use: HEAD for HEAD, GET for anything else (nginx and Caddy's
    ``method GET`` turn other methods into GET).

    The proxies send the app's Content-Type, never S3's, so one is always
    named: the app's, or else one guessed from the key (S3's own is unknown
    without a HeadObject, which an offload does not spend).
    """
    uri = await source.presign(location, "HEAD" if method == "HEAD" else "GET", {})
    extra = [(S3_URI_HEADER.lower(), uri), *nginx_extras(settings)]
    if not any(name.lower() == "content-type" for name, _ in app_headers):
        extra.append(("content-type", guess_type(location.key)))
    return OffloadTarget("x-accel-redirect", S3_LOCATION, tuple(extra))


def describe(location: S3Location) -> str:
    return "s3://" + location.bucket + "/" + quote(location.key.encode("utf-8", "surrogateescape"), safe="/")


class S3Object:
    """One object's metadata, and its planned body read by ranged GetObjects."""

    def __init__(self, source: S3Source, location: S3Location, meta: FileMeta, etag: str | None) -> None:
        self.source, self.location, self.meta, self.etag = source, location, meta, etag
        self.path = describe(location)
        self._body: AsyncGenerator[bytes, None] | None = None
        self.first = b""

    async def open(self, segments: Sequence[Segment], chunk_size: int) -> None:
        """Start the body and read its first chunk now: while nothing is sent yet,
        an S3 failure can still become a clean 502 or 504."""
        self._body = self._read(segments, chunk_size)
        try:
            self.first = await self._body.__anext__()
        except StopAsyncIteration:
            self.first = b""

    def iterate(self) -> Iterator[bytes]:
        """The body for a WSGI thread: each chunk awaited on the S3 loop thread."""
        return self.source.bridge().iterate(self.chunks(), self.source.deadline + 5)

    def close(self) -> None:
        """Release the S3 connection from a WSGI thread."""
        if self._body is not None:
            self.source.run(self.aclose())

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """The body: the first chunk, then the rest, never more than planned."""
        if self.first:
            yield self.first
        if self._body is not None:
            async for chunk in self._body:
                yield chunk

    async def aclose(self) -> None:
        """Release the S3 connection; safe to call more than once."""
        body, self._body = self._body, None
        if body is not None:
            await body.aclose()

    async def _read(self, segments: Sequence[Segment], chunk_size: int) -> AsyncGenerator[bytes, None]:
        # Framing bytes travel with the data after them, so the first chunk
        # always holds object bytes and every message carries some.
        pending = b""
        for segment in segments:
            if isinstance(segment, bytes):
                pending += segment
                continue
            async with contextlib.aclosing(self._span(segment.start, segment.stop, chunk_size)) as span:
                async for data in span:
                    yield pending + data if pending else data
                    pending = b""
        if pending:
            yield pending

    async def _span(self, start: int, stop: int, chunk_size: int) -> AsyncGenerator[bytes, None]:
        """Bytes ``start`` to ``stop`` from one ranged GetObject, in chunks of at
        most ``chunk_size``; aiohttp pauses the socket while we wait on the client."""
        params: dict[str, Any] = {"Bucket": self.location.bucket, "Key": self.location.key}
        params["Range"] = f"bytes={start}-{stop - 1}"
        if self.etag is not None:
            params["IfMatch"] = self.etag
        response = await self.source._call(self.path, "get_object", **params)
        body = response["Body"]
        try:
            sent = int(response.get("ContentLength", -1))
            if sent != stop - start:
                raise _logged(502, f"{self.path}: S3 sent {sent} bytes for a range of {stop - start}")
            position = start
            while position < stop:
                try:
                    data = await body.read(min(chunk_size, stop - position))
                except Exception as exc:
                    raise translate(exc, self.path) from None
                if not data:
                    raise _logged(502, f"{self.path}: S3 ended the body at byte {position} of {stop}")
                position += len(data)
                yield data
        finally:
            body.close()
