"""What to do with a file response: offload it, stream it, or refuse it.

Shared by both adapters, so each decision is made in one place. File system
metadata calls happen here (no reads); the ASGI adapter runs them on its loop.
"""

from __future__ import annotations

import asyncio
import http
import importlib.util
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import ConfigError, SourceError
from .offload import offload_headers
from .plan import Plan, plan_response
from .settings import OffloadHeader, Root, Settings
from .sources import Marker, S3Location, parse_marker
from .sources.local import LocalFile, confine, find_root, guess_type, offload_target, open_confined, real_path
from .sources.s3 import S3Object, S3Source, check_bucket, s3_offload_target

log = logging.getLogger("xaccel_middleware")

Headers = list[tuple[str, str]]

# Markers already warned about; bounded so that a flood cannot grow memory.
_WARNED_LIMIT = 1024


@dataclass(frozen=True)
class Offload:
    headers: Headers


@dataclass(frozen=True)
class Stream:
    file: LocalFile
    plan: Plan

    def prefetch(self, limit: int) -> list[bytes] | None:
        """The whole body when it is at most ``limit`` bytes, read now, so that a
        small file costs one thread hop in all."""
        if self.plan.content_length > limit:
            return None
        # read() raises if the file shrank: a short body must never go out
        # under the planned Content-Length.
        return [
            s if isinstance(s, bytes) else b"".join(self.file.read(s.start, s.stop, limit))
            for s in self.plan.body
        ]


@dataclass(frozen=True)
class Refuse:
    status: int

    @property
    def headers(self) -> Headers:
        return [("content-type", "text/plain; charset=utf-8"), ("content-length", str(len(self.body)))]

    @property
    def body(self) -> bytes:
        return http.HTTPStatus(self.status).phrase.encode()


@dataclass(frozen=True)
class S3Stream:
    """An S3 object streamed: its body is async (``S3Object.chunks``), and its
    first chunk is already read."""

    file: S3Object
    plan: Plan


Outcome = Offload | Stream | S3Stream | Refuse


@dataclass(frozen=True)
class Request:
    """What the decision needs from a request, whichever adapter carries it."""

    method: str
    headers: Mapping[str, str]  # lower-case names; only the conditional ones matter
    offload_with: OffloadHeader | None


class Decider:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._warned: set[bytes] = set()
        self._s3: S3Source | None = None
        if settings.s3_buckets and importlib.util.find_spec("aiobotocore") is None:
            raise ConfigError(
                "XACCEL_S3_BUCKETS is set but aiobotocore is missing: install xaccel-middleware[s3]"
            )

    def for_marker(self, raw: bytes, request: Request, app_headers: Sequence[tuple[str, str]]) -> Outcome:
        """An ``X-Accel-Source`` answer (WSGI). A marker outside the roots is a 404
        that reveals nothing, and is logged once as a warning."""
        marker = self._parse(raw)
        if isinstance(marker, Refuse):
            return marker
        if isinstance(marker, S3Location):
            try:
                check_bucket(self.settings, marker)  # before any S3 client or thread is made
            except SourceError as exc:
                self._warn(raw, exc)
                return Refuse(exc.status)
            # The whole decision is one hop to the S3 loop thread.
            try:
                return self.s3.run(self.for_s3(marker, raw, request, app_headers))
            except TimeoutError:
                log.warning("%s: no answer from S3 within %g s", raw[:200], self.s3.deadline + 5)
                return Refuse(504)
        return self._for_path(marker, raw, request, app_headers)

    async def for_marker_async(
        self, raw: bytes, request: Request, app_headers: Sequence[tuple[str, str]]
    ) -> Outcome:
        """``for_marker`` on the caller's loop (ASGI): S3 calls are awaited there."""
        marker = self._parse(raw)
        if isinstance(marker, Refuse):
            return marker
        if isinstance(marker, S3Location):
            return await self.for_s3(marker, raw, request, app_headers)
        return self._for_path(marker, raw, request, app_headers)

    def _parse(self, raw: bytes) -> Marker | Refuse:
        try:
            return parse_marker(raw)
        except SourceError as exc:
            self._warn(raw, exc)
            return Refuse(exc.status)

    def _for_path(
        self, path: str, raw: bytes, request: Request, app_headers: Sequence[tuple[str, str]]
    ) -> Outcome:
        try:
            if request.offload_with is not None:
                real, root = confine(path, self.settings.roots)
                offload = self._offload(real, root, request, app_headers)
                if offload is not None:
                    return offload
            return self._stream(open_confined(path, self.settings.roots), request, app_headers)
        except SourceError as exc:
            self._warn(raw, exc)
            return Refuse(exc.status)

    async def for_s3(
        self, location: S3Location, raw: bytes, request: Request, app_headers: Sequence[tuple[str, str]]
    ) -> Outcome:
        """Offload with a presigned URL (no S3 round trip), or stream: HeadObject,
        plan, then the first chunk, so that an S3 failure is still a clean answer.

        The whole decision, both S3 calls included, gets one deadline: connect
        plus read timeout."""
        try:
            check_bucket(self.settings, location)
            return await asyncio.wait_for(
                self._s3_outcome(location, raw, request, app_headers), self.s3.deadline
            )
        except asyncio.TimeoutError:
            log.warning("%s: no answer from S3 within %g s", raw[:200], self.s3.deadline)
            return Refuse(504)
        except SourceError as exc:
            if exc.status == 404:
                self._warn(raw, exc)
            return Refuse(exc.status)

    async def _s3_outcome(
        self, location: S3Location, raw: bytes, request: Request, app_headers: Sequence[tuple[str, str]]
    ) -> Outcome:
        if request.offload_with == "X-Accel-Redirect":
            target = await s3_offload_target(self.s3, location, request.method, app_headers, self.settings)
            log.debug("offload %s through the S3 location", raw[:200])
            return Offload(offload_headers(app_headers, target))
        obj = await self.s3.stat(location)
        plan = plan_response(request.method, request.headers, obj.meta, app_headers, self.settings.max_ranges)
        if plan.body:
            await obj.open(plan.body, self.settings.chunk_size)
        log.debug("stream %s: %d", obj.path, plan.status)
        return S3Stream(obj, plan)

    @property
    def s3(self) -> S3Source:
        if self._s3 is None:
            self._s3 = S3Source(self.settings)
        return self._s3

    async def aclose(self) -> None:
        """Close the S3 client of the running loop (ASGI lifespan shutdown)."""
        if self._s3 is not None:
            await self._s3.aclose()

    def for_file(
        self, path: str, fd: int | None, request: Request, app_headers: Sequence[tuple[str, str]]
    ) -> Outcome:
        """A file the framework handed over (pathsend, ``wsgi.file_wrapper``). Inside
        a root it may be offloaded; outside, it is streamed as the app meant."""
        real = real_path(path)
        root = find_root(real, self.settings.roots)
        if root is not None and request.offload_with is not None and _same_file(fd, real):
            offload = self._offload(real, root, request, app_headers)
            if offload is not None:
                return offload
        try:
            file = LocalFile.from_fd(fd, real) if fd is not None else LocalFile.open(real, follow=True)
        except SourceError as exc:
            log.warning("cannot stream %r: %s", path, exc.reason)
            return Refuse(exc.status)
        except OSError as exc:
            log.warning("cannot stream %r: %s", path, exc)
            return Refuse(404)
        return self._stream(file, request, app_headers)

    def _offload(
        self, real: str, root: Root, request: Request, app_headers: Sequence[tuple[str, str]]
    ) -> Offload | None:
        assert request.offload_with is not None
        target = offload_target(real, root, request.offload_with, self.settings)
        if target is None:
            log.debug("stream %r: its name cannot go in an offload header", real)
            return None
        log.debug("offload %s as %s", real, target.name)
        return Offload(offload_headers(app_headers, target, guess_type(real)))

    def _stream(self, file: LocalFile, request: Request, app_headers: Sequence[tuple[str, str]]) -> Stream:
        plan = plan_response(
            request.method, request.headers, file.meta, app_headers, self.settings.max_ranges
        )
        log.debug("stream %s: %d", file.path, plan.status)
        return Stream(file, plan)

    def _warn(self, raw: bytes, exc: SourceError) -> None:
        if raw in self._warned:
            return
        if len(self._warned) < _WARNED_LIMIT:
            self._warned.add(raw)
        log.warning("refused X-Accel-Source %r: %s", raw[:200], exc.reason)


def _same_file(fd: int | None, path: str) -> bool:
    """Whether the proxy, opening ``path``, would find the file the app opened:
    not replaced since, nor deleted (a temporary file), so offloading by name is
    right. Without an fd (pathsend) the path is all there is."""
    if fd is None:
        return True
    try:
        opened, named = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return opened.st_nlink > 0 and (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)
