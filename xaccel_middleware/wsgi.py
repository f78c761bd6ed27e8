"""The WSGI adapter (PEP 3333): a thin shell around :mod:`decide` and :mod:`plan`.

A single span goes to the server's own ``wsgi.file_wrapper`` where that is known
to be safe: gunicorn sends exactly Content-Length bytes from the file's current
offset with sendfile(2). uWSGI's wrapper ignores the offset, and other servers'
wrappers read to EOF, so everywhere else a bounded iterator sends the bytes.
"""

from __future__ import annotations

import http
import io
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .decide import Decider, Offload, Outcome, Refuse, Request, S3Stream
from .settings import Settings
from .trust import offload_method
from .wsgi_body import Chained, S3Body, SpanReader, StreamBody, close_body

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

Headers = list[tuple[str, str]]

# Request headers the middleware owns: the app never sees them.
_HIDDEN = ("HTTP_X_SENDFILE_TYPE", "HTTP_X_ACCEL_PROXY_SECRET", "HTTP_RANGE", "HTTP_IF_RANGE")
_CONDITIONAL = {
    "range": "HTTP_RANGE",
    "if-range": "HTTP_IF_RANGE",
    "if-match": "HTTP_IF_MATCH",
    "if-none-match": "HTTP_IF_NONE_MATCH",
    "if-modified-since": "HTTP_IF_MODIFIED_SINCE",
    "if-unmodified-since": "HTTP_IF_UNMODIFIED_SINCE",
}


_PLAIN_FILES = (io.FileIO, io.BufferedReader, io.BufferedRandom)


class FileBody:
    """The ``wsgi.file_wrapper`` the app sees: a marker for "this body is a file"."""

    def __init__(self, filelike: Any, block_size: int = 8192) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self) -> Iterator[bytes]:
        return iter(lambda: self.filelike.read(self.block_size), b"")

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


class _Captured:
    """Holds back start_response until the body shows what to do."""

    status: str | None = None
    headers: Headers = []

    def __init__(self, start_response: StartResponse) -> None:
        self._start_response = start_response
        self.started = False

    def __call__(
        self, status: str, headers: Headers, exc_info: OptExcInfo | None = None
    ) -> Callable[[bytes], object]:
        if self.started:
            # Already passed on: only the server may still replace it (PEP 3333).
            return self._start_response(status, headers, exc_info)
        self.status, self.headers = status, headers
        return self._write

    def _write(self, data: bytes) -> object:
        # Legacy write(): the app streams by itself, so nothing is intercepted.
        if not self.started:
            self.start(self.status or "500 Internal Server Error", _without_marker(self.headers))
        return self._real_write(data)

    def start(self, status: str, headers: Headers) -> None:
        self.started = True
        self._real_write = self._start_response(status, headers)


def _without_marker(headers: Headers) -> Headers:
    return [(k, v) for k, v in headers if k.lower() != "x-accel-source"]


def _header_bytes(value: str) -> bytes:
    # PEP 3333 values are latin-1; an app that broke that rule meant text.
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")


def _marker(headers: Headers) -> str | None:
    for name, value in headers:
        if name.lower() == "x-accel-source":
            return value
    return None


class XAccelWSGIMiddleware:
    """Wrap a WSGI application: ``application = XAccelWSGIMiddleware(application)``."""

    def __init__(self, app: WSGIApplication, settings: Settings | None = None) -> None:
        self.app = app
        self.settings = settings if settings is not None else Settings.from_env()
        self._decider = Decider(self.settings)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        offload_with = offload_method(
            self.settings,
            environ.get("REMOTE_ADDR"),
            environ.get("HTTP_X_SENDFILE_TYPE"),
            environ.get("HTTP_X_ACCEL_PROXY_SECRET"),
        )
        conditional = {name: environ[key] for name, key in _CONDITIONAL.items() if key in environ}
        for key in _HIDDEN:
            environ.pop(key, None)
        server_wrapper = environ.get("wsgi.file_wrapper")
        captured = _Captured(start_response)
        body = self._run_app(environ, captured, server_wrapper)
        if captured.started:
            return body
        status, headers = captured.status or "500 Internal Server Error", captured.headers

        marker = _marker(headers)
        file_body = body if isinstance(body, FileBody) else None
        if status[:3] != "200" or (marker is None and file_body is None):
            if marker is not None:
                headers = _without_marker(headers)
            captured.start(status, headers)
            return _as_meant(body, server_wrapper)

        request = Request(environ["REQUEST_METHOD"], conditional, offload_with)
        outcome: Outcome | None
        try:
            if marker is not None:
                outcome = self._decider.for_marker(_header_bytes(marker), request, headers)
            else:
                assert file_body is not None
                outcome = self._file_outcome(file_body, request, headers)
        except BaseException:
            close_body(body)
            raise
        if outcome is None:
            # A file-like we cannot take over (no fd or name): send it as the app meant.
            captured.start(status, headers)
            return _as_meant(body, server_wrapper)
        close_body(body)  # replaced by the outcome; a file's fd was duplicated first
        return self._send(outcome, captured, environ, server_wrapper)

    def _run_app(self, environ: WSGIEnvironment, captured: _Captured, server_wrapper: Any) -> Iterable[bytes]:
        """The app's body, with start_response called by the time it returns."""
        environ["wsgi.file_wrapper"] = FileBody
        try:
            body: Iterable[bytes] = self.app(environ, captured)
            if captured.status is None:
                # start_response may come with the first item (PEP 3333).
                try:
                    iterator = iter(body)
                    first = next(iterator, None)
                except BaseException:
                    close_body(body)
                    raise
                body = Chained(first, iterator, body)
        finally:
            # gunicorn only uses sendfile(2) when isinstance(body, environ["wsgi.file_wrapper"]),
            # checked after the app returns: it must find its own class there again.
            if server_wrapper is None:
                environ.pop("wsgi.file_wrapper", None)
            else:
                environ["wsgi.file_wrapper"] = server_wrapper
        return body

    def _file_outcome(self, body: FileBody, request: Request, headers: Headers) -> Outcome | None:
        # Only a plain file's bytes are the bytes on disk: gzip.open() and its
        # kin have a name and an fd too, but read something else.
        if not isinstance(body.filelike, _PLAIN_FILES):
            return None
        name = getattr(body.filelike, "name", None)
        try:
            fd = body.filelike.fileno()
            # A file the app has read or seeked into is meant from there on
            # (Django's FileResponse honours it), and a pipe or device is no
            # file to plan: both are sent as the app meant.
            tell = getattr(body.filelike, "tell", None)
            position = tell() if tell is not None else 0
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
        except (AttributeError, OSError, ValueError):
            return None
        if not isinstance(name, str) or position != 0 or not regular:
            return None
        return self._decider.for_file(name, fd, request, headers)

    def _send(
        self,
        outcome: Outcome,
        captured: _Captured,
        environ: WSGIEnvironment,
        server_wrapper: Any,
    ) -> Iterable[bytes]:
        if isinstance(outcome, Offload):
            captured.start("200 OK", outcome.headers)
            return []
        if isinstance(outcome, Refuse):
            captured.start(_status_line(outcome.status), outcome.headers)
            return [outcome.body]
        plan = outcome.plan
        try:
            captured.start(_status_line(plan.status), plan.headers)
        except BaseException:
            outcome.file.close()  # nothing else owns it yet
            raise
        if isinstance(outcome, S3Stream):
            return S3Body(outcome)
        if not plan.body:
            outcome.file.close()
            return []
        if (
            len(plan.body) == 1
            and server_wrapper is not None
            and environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/")
        ):
            span = plan.body[0]
            assert not isinstance(span, bytes)
            return server_wrapper(SpanReader(outcome, span.start, span.stop), self.settings.chunk_size)  # type: ignore[no-any-return]
        return StreamBody(outcome, self.settings.chunk_size)


def _as_meant(body: Iterable[bytes], server_wrapper: Any) -> Iterable[bytes]:
    """The app's own body; a file it wrapped goes to the server's wrapper after all."""
    if isinstance(body, FileBody) and server_wrapper is not None:
        return server_wrapper(body.filelike, body.block_size)  # type: ignore[no-any-return]
    return body


def _status_line(status: int) -> str:
    return f"{status} {http.HTTPStatus(status).phrase}"
