"""The bodies the WSGI adapter returns: a file's or an S3 object's planned bytes,
never more, with the file or connection closed exactly once; and the app's own
body once its first item has been taken."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator

from .decide import S3Stream, Stream
from .plan import Segment
from .sources.local import TruncatedFile


class SpanReader:
    """One span of a file for gunicorn's wrapper: sendfile(2) starts at the fd's
    offset; the read() fallback stops at the span's end."""

    def __init__(self, stream: Stream, start: int, stop: int) -> None:
        self._stream, self._position, self._stop = stream, start, stop
        os.lseek(stream.file.fd, start, os.SEEK_SET)

    def fileno(self) -> int:
        return self._stream.file.fd

    def read(self, size: int = -1) -> bytes:
        left = self._stop - self._position
        if left <= 0:
            return b""
        data = self._stream.file.read_at(self._position, left if size < 0 else min(size, left))
        self._position += len(data)
        return data

    def seek(self, position: int, whence: int = os.SEEK_SET) -> int:
        # socket.sendfile() seeks to where it stopped: close() learns from it
        # whether the whole span went out.
        if whence != os.SEEK_SET:
            raise OSError("only absolute seeks are supported")
        self._position = position
        return position

    def close(self) -> None:
        file = self._stream.file
        try:
            # gunicorn ignores a short sendfile(2) and, with keep-alive, waits on
            # a connection whose body never ends. Failing here makes it close it.
            if self._position < self._stop and file.fd >= 0 and os.fstat(file.fd).st_size < self._stop:
                raise TruncatedFile(f"{file.path} shrank below byte {self._stop} while it was sent")
        finally:
            file.close()


class StreamBody:
    """The planned body, read chunk by chunk; the file is closed exactly once."""

    def __init__(self, stream: Stream, chunk_size: int) -> None:
        self._stream, self._chunk_size = stream, chunk_size

    def __iter__(self) -> Iterator[bytes]:
        segment: Segment
        for segment in self._stream.plan.body:
            if isinstance(segment, bytes):
                yield segment
            else:
                yield from self._stream.file.read(segment.start, segment.stop, self._chunk_size)

    def close(self) -> None:
        self._stream.file.close()


class S3Body:
    """An S3 body, each chunk awaited on the S3 loop thread; closed exactly once."""

    def __init__(self, stream: S3Stream) -> None:
        self._obj = stream.file

    def __iter__(self) -> Iterator[bytes]:
        return self._obj.iterate()

    def close(self) -> None:
        self._obj.close()


def close_body(body: Iterable[bytes]) -> None:
    close = getattr(body, "close", None)
    if close is not None:
        close()


class Chained:
    """The app's body with its first item already taken; close() still reaches the app."""

    def __init__(self, first: bytes | None, rest: Iterator[bytes], body: Iterable[bytes]) -> None:
        self._items = rest if first is None else itertools.chain((first,), rest)
        self._body = body

    def __iter__(self) -> Iterator[bytes]:
        return self._items

    def close(self) -> None:
        close_body(self._body)
