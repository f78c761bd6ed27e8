"""``xaccel demo``: an example app wrapped in the middleware, with sample media.

The app only checks permissions and answers with an ``X-Accel-Source`` header;
the middleware streams the file (no proxy) or hands it to the proxy (``--proxy``).
It runs on the standard library's WSGI server, so it needs nothing installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable
from http.cookies import SimpleCookie
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .settings import Root, Settings, parse_networks
from .sources import marker_for_path
from .wsgi import XAccelWSGIMiddleware

VIDEO = "lecture.mp4"
PDF = "exam-solutions.pdf"
VIDEO_SIZE = 8 * 1024 * 1024


def make_media(folder: str) -> dict[str, str]:
    """Write the sample files (once) and return their paths by name."""
    os.makedirs(folder, exist_ok=True)
    video = os.path.join(folder, VIDEO)
    if not _is_file_of_size(video, VIDEO_SIZE):
        # Deterministic bytes: every 32-byte block is a hash of its offset, so
        # any seek can be checked against what a Range request returns.
        _write_new(
            video,
            (
                b"".join(hashlib.sha256(str(block + i).encode()).digest() for i in range(0, 32 * 2048, 32))
                for block in range(0, VIDEO_SIZE, 32 * 2048)
            ),
        )
    pdf = os.path.join(folder, PDF)
    if not _is_file_of_size(pdf, None):
        _write_new(pdf, [_minimal_pdf("Exam solutions: unlocked for logged-in students.")])
    return {VIDEO: video, PDF: pdf}


def _is_file_of_size(path: str, size: int | None) -> bool:
    """A regular file (a symlink does not count), of ``size`` bytes if given."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(st.st_mode) and (size is None or st.st_size == size)


def _write_new(path: str, blocks: Iterable[bytes]) -> None:
    """Write a new file under a fresh name, then rename it over ``path``: a
    symlink someone planted at ``path`` is replaced, never followed."""
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".xaccel-demo-")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o644)
            for block in blocks:
                out.write(block)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _minimal_pdf(text: str) -> bytes:
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


StartResponse = Callable[..., Any]


def make_app(media: dict[str, str]) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The example app: permission checks and headers, no file handling at all."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        cookie = SimpleCookie(environ.get("HTTP_COOKIE", ""))
        logged_in = "session" in cookie and cookie["session"].value == "student"
        if path == "/media/" + VIDEO:
            start_response(
                "200 OK", [("Content-Type", "video/mp4"), ("X-Accel-Source", marker_for_path(media[VIDEO]))]
            )
            return []
        if path == "/media/" + PDF:
            if not logged_in:
                start_response("403 Forbidden", [("Content-Type", "text/plain")])
                return [b"Log in first: /login\n"]
            start_response(
                "200 OK",
                [
                    ("Content-Type", "application/pdf"),
                    ("Content-Disposition", f'inline; filename="{PDF}"'),
                    ("Cache-Control", "private, max-age=60"),
                    ("X-Accel-Source", marker_for_path(media[PDF])),
                ],
            )
            return []
        if path in ("/login", "/logout"):
            value = "session=student; Path=/; HttpOnly" if path == "/login" else "session=; Path=/; Max-Age=0"
            start_response("303 See Other", [("Location", "/"), ("Set-Cookie", value)])
            return []
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [_index(logged_in).encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found\n"]

    return app


def _index(logged_in: bool) -> str:
    state = (
        "logged in (<a href='/logout'>log out</a>)"
        if logged_in
        else "not logged in (<a href='/login'>log in</a>)"
    )
    return (
        "<!doctype html><title>xaccel demo</title><h1>xaccel-middleware demo</h1>"
        f"<p>You are {state}.</p>"
        f"<ul><li><a href='/media/{VIDEO}'>{VIDEO}</a>: seekable with Range</li>"
        f"<li><a href='/media/{PDF}'>{PDF}</a>: for logged-in users only</li></ul>"
    )


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def demo_settings(settings: Settings, media_dir: str, proxy: str | None) -> Settings:
    """The user's settings, plus the media folder as a root and, behind a proxy,
    loopback as the trusted peer."""
    roots = (*settings.roots, Root(os.path.realpath(media_dir), "/_protected"))
    changes: dict[str, Any] = {"roots": roots}
    if proxy is not None:
        changes["trusted_proxies"] = settings.trusted_proxies + parse_networks("127.0.0.1/32,::1/128")
    return dataclasses.replace(settings, **changes)


def run(settings: Settings, port: int, proxy: str | None, proxy_port: int, media: str | None) -> int:
    if media is not None:
        return _serve(settings, port, proxy, proxy_port, media)
    # A private folder of this run's own: a fixed name in the shared temporary
    # folder could be made first by another user, with links planted in it.
    media_dir = tempfile.mkdtemp(prefix="xaccel-demo-")
    # A plain kill must clean up too: turn SIGTERM into the Ctrl-C path.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _serve(settings, port, proxy, proxy_port, media_dir)
    except KeyboardInterrupt:
        return 0
    finally:
        shutil.rmtree(media_dir, ignore_errors=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _serve(settings: Settings, port: int, proxy: str | None, proxy_port: int, media_dir: str) -> int:
    files = make_media(media_dir)
    settings = demo_settings(settings, media_dir, proxy)
    app = XAccelWSGIMiddleware(make_app(files), settings)
    server = make_server("127.0.0.1", port, app, server_class=_Server, handler_class=_QuietHandler)
    app_url = f"http://127.0.0.1:{server.server_port}"
    if proxy is None:
        _print_guide(app_url, files, behind=None)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
        return 0
    from .proxyrun import run_behind_proxy

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return run_behind_proxy(
        proxy, settings, server, proxy_port, lambda url: _print_guide(url, files, behind=proxy)
    )


def _print_guide(url: str, files: dict[str, str], behind: str | None) -> None:
    video, pdf = f"{url}/media/{VIDEO}", f"{url}/media/{PDF}"
    where = f"through {behind}" if behind else "streamed by the middleware (no proxy)"
    print(
        f"xaccel demo: serving on {url}, {where}\n"
        f"  media folder: {os.path.dirname(files[VIDEO])}\n\n"
        f"  {video}   {os.path.getsize(files[VIDEO])} bytes, seekable\n"
        f"  {pdf}   403 unless logged in\n\n"
        "Try:\n"
        f"  curl -s -o /dev/null -D - -r 0-99 {video}          # 206 Partial Content\n"
        f"  curl -s -o /dev/null -D - -r 0-9,-10 {video}       # multipart/byteranges\n"
        f"  curl -sI {video}                                   # HEAD: headers only\n"
        f"  etag=$(curl -sI {video} | tr -d '\\r' | sed -n 's/^etag: //Ip')\n"
        f'  curl -s -o /dev/null -D - -H "If-None-Match: $etag" {video}   # 304\n'
        f"  curl -s -o /dev/null -D - {pdf}                    # 403\n"
        f"  curl -s -o /dev/null -D - -b session=student {pdf}   # 200 after login\n",
        flush=True,
    )
