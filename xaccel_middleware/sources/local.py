"""Local files: confinement to ``XACCEL_ROOTS``, metadata, internal URIs and reads.

Security: a path is served only when its *resolved* real path lies inside a
root's real directory. That one check rules out ``..``, symlinks leading out,
and a sibling sharing the prefix (``/x/media`` vs ``/x/media-private``): the
comparison is made on whole path components (django-sendfile2
GHSA-6r3c-8xf3-ggrr).
"""

from __future__ import annotations

import errno
import mimetypes
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import SourceError
from ..offload import OffloadTarget, header_text, internal_uri, nginx_extras
from ..plan import FileMeta
from ..settings import OffloadHeader, Root, Settings

# open() errors that mean "no file to serve here": a 404, as for any refusal.
# ELOOP is O_NOFOLLOW meeting a symlink; ENXIO and EAGAIN come from special
# files (a socket, or a FIFO or device opened without blocking). Any other error
# (EMFILE, ENFILE, EIO, ENOMEM) is the server failing, not the file missing: a
# 503, which no cache keeps, so the outage shows.
_NOT_FOUND_ERRORS = frozenset(
    {
        errno.ENOENT,
        errno.ENOTDIR,
        errno.ENAMETOOLONG,
        errno.ELOOP,
        errno.EACCES,
        errno.EPERM,
        errno.EISDIR,
        errno.ENXIO,
        errno.EAGAIN,
    }
)


class TruncatedFile(OSError):
    """The file shrank while it was sent: the connection must be aborted, not padded."""


def find_root(real: str, roots: tuple[Root, ...]) -> Root | None:
    """The root holding the real path ``real``; roots are sorted longest first."""
    for root in roots:
        base = root.directory.rstrip(os.sep) + os.sep
        if real.startswith(base):
            return root
    return None


def confine(path: str, roots: tuple[Root, ...]) -> tuple[str, Root]:
    """Resolve ``path`` and return it with its root, or refuse with a 404."""
    if not os.path.isabs(path) or "\x00" in path:
        raise SourceError(404, "not an absolute path")
    real = os.path.realpath(path)
    root = find_root(real, roots)
    if root is None:
        raise SourceError(404, "outside every configured root")
    return real, root


def offload_target(real: str, root: Root, method: OffloadHeader, settings: Settings) -> OffloadTarget | None:
    """X-Accel-Redirect gets the internal URI; X-Sendfile the absolute path, or
    ``None`` when that path cannot be written in a header (stream it instead)."""
    if method == "X-Sendfile":
        text = header_text(real)
        return None if text is None else OffloadTarget("x-sendfile", text)
    relative = real[len(root.directory.rstrip(os.sep)) + 1 :]
    return OffloadTarget("x-accel-redirect", internal_uri(root.prefix, relative), nginx_extras(settings))


def guess_type(path: str) -> str:
    return mimetypes.guess_type(path, strict=False)[0] or "application/octet-stream"


def file_meta(st: os.stat_result, path: str) -> FileMeta:
    """A strong ETag from (inode, mtime in ns, size): any change to the file changes it."""
    etag = f'"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"'
    return FileMeta(st.st_size, st.st_mtime, etag, guess_type(path))


@dataclass
class LocalFile:
    """An open regular file. ``close`` is safe to call more than once."""

    path: str
    fd: int
    meta: FileMeta

    @classmethod
    def open(cls, path: str, follow: bool = False) -> LocalFile:
        # A confined path is already resolved: O_NOFOLLOW refuses a symlink
        # swapped in for its last component since. O_NONBLOCK: opening a FIFO
        # would otherwise wait for a writer forever; it is refused just below.
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
        if not follow:
            flags |= getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            status = 404 if exc.errno in _NOT_FOUND_ERRORS else 503
            raise SourceError(status, f"cannot open: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SourceError(404, "not a regular file")
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, file_meta(st, path))

    @classmethod
    def from_fd(cls, fd: int, path: str) -> LocalFile:
        """Adopt an fd opened by the app (``wsgi.file_wrapper``); a dup, so each side closes its own."""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SourceError(404, "not a regular file")
        return cls(path, os.dup(fd), file_meta(st, path))

    def read(self, start: int, stop: int, chunk_size: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``stop`` in chunks; never past ``stop``, even if the file grew."""
        position = start
        while position < stop:
            data = self.read_at(position, min(chunk_size, stop - position))
            position += len(data)
            yield data

    def read_at(self, position: int, count: int) -> bytes:
        # pread: no shared file position, so a dup'ed fd cannot disturb it.
        data = os.pread(self.fd, count, position)
        if not data:
            raise TruncatedFile(f"{self.path} shrank below byte {position}")
        return data

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
