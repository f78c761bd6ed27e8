"""The S3 part of ``xaccel config``: what it pins, clears and hides, and that
nginx and Caddy accept it (HTTPS endpoints included). The end-to-end proof is
tests/test_e2e_s3.py; this is about the text."""

from __future__ import annotations

import contextlib
import re
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from servers import free_port, require

from xaccel_middleware import ConfigError, Settings
from xaccel_middleware.proxyconf import KINDS, ProxyKind, render, render_tutor
from xaccel_middleware.proxyconf.s3 import S3Upstream
from xaccel_middleware.proxyrun import find_binary, started_proxy, write_proxy_files
from xaccel_middleware.sources.s3 import S3_LOCATION, S3_URI_HEADER, endpoint_url

SECRET = "0123456789abcdef-secret"
UP, LISTEN = ("127.0.0.1", 8000), ("127.0.0.1", 8080)


def s3_settings(**changes: str) -> Settings:
    values = {
        "proxy_secret": SECRET,
        "s3_buckets": "media,course-assets",
        "s3_region": "eu-west-1",
        **changes,
    }
    return Settings(**values)  # type: ignore[arg-type]


def test_upstream_is_the_clients_endpoint() -> None:
    aws = S3Upstream.from_settings(s3_settings())
    assert aws is not None and aws.url == "https://s3.eu-west-1.amazonaws.com" and aws.port == 443
    local = S3Upstream.from_settings(s3_settings(s3_endpoint_url="http://127.0.0.1:9000"))
    assert local is not None and local.host_header == "127.0.0.1:9000"
    ipv6 = S3Upstream.from_settings(s3_settings(s3_endpoint_url="http://[::1]:9000"))
    assert ipv6 is not None and ipv6.host_header == "[::1]:9000"
    # SigV4 signs the Host without the scheme's default port.
    explicit = S3Upstream.from_settings(s3_settings(s3_endpoint_url="https://minio.example.org:443"))
    assert explicit is not None and explicit.host_header == "minio.example.org"
    assert S3Upstream.from_settings(Settings()) is None
    # botocore signs the Host as the endpoint spells it: the proxy must send that one.
    mixed = s3_settings(s3_endpoint_url="http://MinIO:9000")
    upstream = S3Upstream.from_settings(mixed)
    assert upstream is not None and upstream.url == endpoint_url(mixed) == "http://minio:9000"


def test_nginx_pins_the_host_and_clears_credentials() -> None:
    text = render("nginx", s3_settings(), upstream=UP, listen=LISTEN)
    assert "upstream xaccel_s3 {\n    server s3.eu-west-1.amazonaws.com:443;" in text
    assert "proxy_pass https://xaccel_s3$xaccel_s3_uri;" in text
    assert "set $xaccel_s3_uri $upstream_http_x_accel_s3_uri;" in text
    assert "proxy_set_header Host s3.eu-west-1.amazonaws.com;" in text
    for line in ('proxy_set_header Authorization "";', 'proxy_set_header Cookie "";', "proxy_ssl_verify on;"):
        assert line in text
    for name in ("x-amz-request-id", "x-amz-id-2", "Content-Type", "Content-Disposition"):
        assert f"proxy_hide_header {name};" in text
    assert "proxy_buffering on;" in text and "proxy_max_temp_file_size 0;" in text
    # The app's headers that nginx drops are read before S3's answer replaces them.
    assert "set $xaccel_app_content_security_policy $upstream_http_content_security_policy;" in text
    assert "add_header Content-Security-Policy $xaccel_app_content_security_policy always;" in text
    assert SECRET not in text


@pytest.mark.parametrize("tutor", [False, True], ids=["reverse_proxy", "intercept"])
def test_caddy_pins_the_host_and_clears_credentials(tutor: bool) -> None:
    settings = s3_settings()
    text = render_tutor(settings) if tutor else render("caddy", settings, upstream=UP, listen=LISTEN)
    assert "reverse_proxy https://s3.eu-west-1.amazonaws.com {" in text
    assert "header_up Host s3.eu-west-1.amazonaws.com" in text
    for line in ("header_up -Authorization", "header_up -Cookie", "header_down -X-Amz*"):
        assert line in text
    assert "{resp.header.X-Accel-S3-Uri}" in text if tutor else "{rp.header.X-Accel-S3-Uri}" in text
    # The S3 handler comes before the one for files, which matches any redirect.
    assert text.index("@xaccel_s3 header") < text.index("@xaccel_redirect header")
    assert "@xaccel_internal path /_xaccel_s3/*" in text


def nginx_error_pages(text: str) -> dict[int, str]:
    """Each status code of the S3 location's error_page directives, and its target."""
    location = text[text.index(f"location {S3_LOCATION} {{") :]
    location = location[: location.index("\n    }")]
    pages = {}
    for codes, target in re.findall(r"error_page ([\d\s]+?) = (@\w+);", location):
        pages.update({int(code): target for code in codes.split()})
    return pages


def test_nginx_answers_every_s3_error_itself() -> None:
    pages = nginx_error_pages(render("nginx", s3_settings(), upstream=UP, listen=LISTEN))
    # nginx's error_page refuses 499 (its own code for a client that left).
    assert set(pages) == set(range(400, 600)) - {499}
    assert {pages[code] for code in range(400, 499) if code not in (412, 416)} == {"@xaccel_s3_missing"}
    assert {pages[code] for code in range(500, 600)} == {"@xaccel_s3_failed"}
    assert (pages[412], pages[416]) == ("@xaccel_s3_412", "@xaccel_s3_416")


def test_without_buckets_nothing_of_s3_is_written(tmp_path: Path) -> None:
    settings = Settings(roots=f"{tmp_path}=/_protected", proxy_secret=SECRET)
    for kind in KINDS:
        assert "s3" not in render(kind, settings, upstream=UP, listen=LISTEN).lower()


def test_s3_alone_needs_no_roots() -> None:
    assert "xaccel_s3" in render("nginx", s3_settings(), upstream=UP, listen=LISTEN)
    with pytest.raises(ConfigError, match="XACCEL_ROOTS is empty"):
        render("nginx", Settings(proxy_secret=SECRET), upstream=UP, listen=LISTEN)


@pytest.mark.parametrize("endpoint", ["https://127.0.0.1:9443", "http://127.0.0.1:9000", "http://[::1]:9000"])
@pytest.mark.parametrize("kind", KINDS)
def test_the_proxy_accepts_it(tmp_path: Path, kind: ProxyKind, endpoint: str) -> None:
    # An address, not a name: nginx resolves upstream names when it loads.
    (tmp_path / "media").mkdir()
    settings = s3_settings(s3_endpoint_url=endpoint, roots=f"{tmp_path / 'media'}=/_protected")
    program = find_binary(kind)
    require(kind, program is not None)
    assert program is not None
    run = tmp_path / "run"
    run.mkdir()
    files = write_proxy_files(kind, render(kind, settings, upstream=UP, listen=LISTEN), run, SECRET)
    checked = subprocess.run(
        files.argv(program, check=True), env=files.env(SECRET), capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr + checked.stdout


def test_the_docs_show_what_the_generator_prints() -> None:
    """The README's S3 section: its configuration excerpts, for the settings it names."""
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = readme.index("## S3 objects")
    doc = readme[start : readme.index("\n## ", start + 1)]
    settings = Settings(proxy_secret=SECRET, s3_buckets="course-media", s3_region="eu-west-1")
    printed = {kind: render(kind, settings, upstream=UP, listen=("0.0.0.0", 80)) for kind in KINDS}
    blocks = re.findall(r"```(nginx|caddy)\n(.*?)```", doc, re.S)
    assert len(blocks) >= 3
    for kind, block in blocks:
        assert block in printed[kind], block


# --- a live run against a stand-in S3 that answers any status ------------------

ERROR_DOCUMENT = b"<Error><Code>ExpiredToken</Code><SignatureProvided>abc</SignatureProvided></Error>"


class StandInS3(BaseHTTPRequestHandler):
    """Answers ``/bucket/STATUS``: an error document for an error, and a
    Content-Range on a 416 unless the path asks for none (``STATUS-bare``)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        name = self.path.split("?")[0].rsplit("/", 1)[1]
        status = int(name.split("-")[0])
        body = b"object" if status == 200 else b"" if status == 304 else ERROR_DOCUMENT
        self.send_response(status)
        if status == 416 and not name.endswith("-bare"):
            self.send_header("Content-Range", "bytes */6")
        self.send_header("Content-Type", "application/xml")
        self.send_header("x-amz-request-id", "0123")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


class OffloadingApp(BaseHTTPRequestHandler):
    """What the middleware answers for an S3 offload, for the key in the path."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("X-Accel-Redirect", S3_LOCATION)
        self.send_header(S3_URI_HEADER, "/media" + self.path + "?X-Amz-Signature=abc")
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


# S3's status, and what the client must get: S3's error document never.
STATUSES = {
    "200": 200,
    "304": 304,
    "400": 404,  # ExpiredToken, InvalidToken, AuthorizationQueryParametersError
    "403": 404,
    "404": 404,
    "405": 404,
    "409": 404,
    "412": 412,
    "416": 416,
    "416-bare": 416,
    "429": 404,
    "500": 502,
    "501": 502,
    "503": 502,
    "599": 502,
}


@pytest.mark.parametrize("name", ["nginx", "caddy", "tutor"])
def test_s3_errors_never_reach_the_client(name: str) -> None:
    kind: ProxyKind = "nginx" if name == "nginx" else "caddy"
    program = find_binary(kind)
    require(kind, program is not None)
    port = free_port()
    with serving(StandInS3) as s3_port, serving(OffloadingApp) as app_port:
        settings = s3_settings(s3_endpoint_url=f"http://127.0.0.1:{s3_port}")
        if name == "tutor":
            snippet = "".join(
                f"\t{line}" if line.strip() else line for line in render_tutor(settings).splitlines(True)
            )
            site = (
                f"http://:{port} {{\n\tbind 127.0.0.1\n\treverse_proxy 127.0.0.1:{app_port}\n\n{snippet}}}\n"
            )
        else:
            site = render(kind, settings, upstream=("127.0.0.1", app_port), listen=("127.0.0.1", port))
        with started_proxy(kind, site, port, SECRET, program) as proxy, httpx.Client() as client:
            answers = {
                (method, key): client.request(method, f"{proxy.url}/{key}")
                for key in STATUSES
                for method in ("GET", "HEAD")
            }
    for (method, key), answer in answers.items():
        assert answer.status_code == STATUSES[key], (method, key)
        assert b"Error" not in answer.content and b"Signature" not in answer.content, (method, key)
        assert not any(h.lower().startswith("x-amz") for h in answer.headers), (method, key)
        if STATUSES[key] in (412, 416):
            assert answer.content == b"", (method, key)
    assert answers["GET", "200"].content == b"object"
    assert answers["GET", "416"].headers["content-range"] == "bytes */6"
    assert "content-range" not in answers["GET", "416-bare"].headers
