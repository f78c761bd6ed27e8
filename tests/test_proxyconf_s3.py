"""The S3 part of ``xaccel config``: what it pins, clears and hides, and that
nginx and Caddy accept it (HTTPS endpoints included). The end-to-end proof is
tests/test_e2e_s3.py; this is about the text."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from servers import require

from xaccel_middleware import ConfigError, Settings
from xaccel_middleware.proxyconf import KINDS, ProxyKind, render, render_tutor
from xaccel_middleware.proxyconf.s3 import S3Upstream
from xaccel_middleware.proxyrun import find_binary, write_proxy_files

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
