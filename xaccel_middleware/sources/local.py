"""Local files: confinement to ``XACCEL_ROOTS``, metadata, internal URIs and reads.

Security: a path is served only when its *resolved* real path lies inside a
root's real directory. That one check rules out ``..``, symlinks leading out,
and a sibling sharing the prefix (``/x/media`` vs ``/x/media-private``): the
comparison is made on whole path components (django-sendfile2
GHSA-6r3c-8xf3-ggrr).
"""

from __future__ import annotations

import errno
import functools
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
        if real.startswith(root.base):
            return root
    return None


# On Linux a path is resolved by the kernel itself: an ``O_PATH`` descriptor
# (no read, so no side effect from opening a device) names, through
# /proc/self/fd, the file it really reached. Checking that name and then
# reopening the descriptor leaves no window in which a symlink swapped into the
# path could redirect the open. Elsewhere, ``os.path.realpath`` and
# ``O_NOFOLLOW`` narrow that window to the directories of the path.
_O_PATH = getattr(os, "O_PATH", 0)
_FD_LINKS = "/proc/self/fd/"


@functools.cache
def _pinned() -> bool:
    """Whether the kernel can resolve paths here; asked once, on first use."""
    return bool(_O_PATH) and os.path.isdir(_FD_LINKS)


_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def confine(path: str, roots: tuple[Root, ...]) -> tuple[str, Root]:
    """Resolve ``path`` to a regular file inside a root and return its real path
    and root, or refuse with a 404. Nothing is read, so the app needs no read
    permission for a file the proxy will send."""
    if not _pinned():
        real, root = _resolve_by_name(path, roots)
        try:
            st = os.stat(real)
        except OSError as exc:
            raise _os_error(exc, "stat") from None
        _check_regular(st)
        return real, root
    fd, real, root = _pin(path, roots)
    os.close(fd)
    return real, root


def open_confined(path: str, roots: tuple[Root, ...]) -> LocalFile:
    """``confine``, then open the very file it found, for reading."""
    if not _pinned():
        real, _ = _resolve_by_name(path, roots)
        return LocalFile.open(real)
    pinned, real, _ = _pin(path, roots)
    try:
        return LocalFile.reopen(pinned, real)
    finally:
        os.close(pinned)


def real_path(path: str) -> str:
    """Where ``path`` leads, as the kernel resolves it (``os.path.realpath``,
    without a Python-level ``lstat`` for each component)."""
    if _pinned():
        try:
            fd = os.open(path, _O_PATH | os.O_CLOEXEC)
        except OSError:
            return os.path.realpath(path)
        try:
            return os.readlink(f"{_FD_LINKS}{fd}")
        except OSError:  # a real path longer than PATH_MAX, say
            pass
        finally:
            os.close(fd)
    return os.path.realpath(path)


def _pin(path: str, roots: tuple[Root, ...]) -> tuple[int, str, Root]:
    _check_absolute(path)
    try:
        fd = os.open(path, _O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        raise _os_error(exc, "open") from None
    try:
        try:
            real = os.readlink(f"{_FD_LINKS}{fd}")
            pinned = os.fstat(fd)
            # The name must still lead to the file: the proxy opens it by
            # name, and a deleted one reads "... (deleted)" (with another
            # hard link left, even st_nlink does not tell).
            named = os.stat(real, follow_symlinks=False)
        except OSError as exc:
            raise _os_error(exc, "resolve") from None
        root = find_root(real, roots)
        if root is None:
            raise SourceError(404, "outside every configured root")
        _check_regular(pinned)
        if (named.st_dev, named.st_ino) != (pinned.st_dev, pinned.st_ino):
            raise SourceError(404, "moved or deleted while it was resolved")
    except BaseException:
        os.close(fd)
        raise
    return fd, real, root


def _resolve_by_name(path: str, roots: tuple[Root, ...]) -> tuple[str, Root]:
    _check_absolute(path)
    real = os.path.realpath(path)
    root = find_root(real, roots)
    if root is None:
        raise SourceError(404, "outside every configured root")
    return real, root


def _check_absolute(path: str) -> None:
    if not os.path.isabs(path) or "\x00" in path:
        raise SourceError(404, "not an absolute path")


def _check_regular(st: os.stat_result) -> None:
    # Only a regular file: for a directory nginx would answer with a redirect
    # that shows the internal URI, and a FIFO or device is no file to send.
    if not stat.S_ISREG(st.st_mode):
        raise SourceError(404, "not a regular file")


def _os_error(exc: OSError, doing: str) -> SourceError:
    status = 404 if exc.errno in _NOT_FOUND_ERRORS else 503
    return SourceError(status, f"cannot {doing}: {exc.strerror}")


def offload_target(real: str, root: Root, method: OffloadHeader, settings: Settings) -> OffloadTarget | None:
    """X-Accel-Redirect gets the internal URI; X-Sendfile the absolute path, or
    ``None`` when that path cannot be written in a header (stream it instead)."""
    if method == "X-Sendfile":
        text = header_text(real)
        return None if text is None else OffloadTarget("x-sendfile", text)
    relative = real[len(root.base) :]
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
        """Open ``path`` for reading. Without ``follow``, O_NOFOLLOW: a path
        resolved by name must not have had a symlink swapped in for its last
        component since."""
        flags = _READ_FLAGS if follow else _READ_FLAGS | getattr(os, "O_NOFOLLOW", 0)
        return cls._open(path, flags, path)

    @classmethod
    def reopen(cls, pinned: int, name: str) -> LocalFile:
        """Open for reading the file an ``O_PATH`` descriptor holds, named ``name``."""
        return cls._open(f"{_FD_LINKS}{pinned}", _READ_FLAGS, name)

    @classmethod
    def _open(cls, path: str, flags: int, name: str) -> LocalFile:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever;
        # it is refused just below.
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            raise _os_error(exc, "open") from None
        try:
            st = os.fstat(fd)
            _check_regular(st)
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return cls(name, fd, file_meta(st, name))

    @classmethod
    def from_fd(cls, fd: int, path: str) -> LocalFile:
        """Adopt an fd opened by the app (``wsgi.file_wrapper``); a dup, so each side closes its own."""
        st = os.fstat(fd)
        _check_regular(st)
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
