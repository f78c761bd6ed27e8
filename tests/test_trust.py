"""Who may offload, and what an offload answer looks like (DESIGN.md's trust
model), through both adapters: the same test body runs over ASGI and WSGI."""

from __future__ import annotations

import hmac
import inspect
import ipaddress
import logging
from typing import Any

import pytest
from cases import CONTENT
from conftest import PREFIX, SECRET, ExchangeFn, Media

from xaccel_middleware import Settings, trust
from xaccel_middleware.trust import offload_method, peer_is_trusted

ACCEL = {"x-sendfile-type": "X-Accel-Redirect"}
APP_HEADERS = [
    ("Content-Type", "application/pdf"),
    ("Content-Disposition", 'attachment; filename="a.pdf"'),
    ("Cache-Control", "private, max-age=60"),
    ("Set-Cookie", "a=1; Path=/"),
    ("Set-Cookie", "b=2; Path=/"),
    ("Content-Length", "9999"),
]


def marker(path: Any) -> list[tuple[str, str]]:
    return [*APP_HEADERS, ("X-Accel-Source", str(path))]


# --- offload_method, the pure decision ---------------------------------------


def networks(text: str) -> Settings:
    return Settings(trusted_proxies=text)


@pytest.mark.parametrize(
    ("cidrs", "peer", "trusted"),
    [
        ("127.0.0.1/32", "127.0.0.1", True),
        ("10.0.0.0/8", "10.200.3.4", True),
        ("10.0.0.0/8", "11.0.0.1", False),
        ("10.0.0.0/8", "::ffff:10.1.2.3", True),  # dual-stack socket, IPv4 peer
        ("::ffff:10.0.0.0/104", "::ffff:10.1.2.3", True),  # the same, written as IPv6
        ("::ffff:10.0.0.0/104", "10.1.2.3", False),
        ("::1/128", "::1", True),
        ("::1", "::2", False),
        ("2001:db8::/32", "2001:db8:1::5", True),
        ("2001:db8::/32", "2001:db9::5", False),
        ("fe80::/10", "fe80::1%eth0", True),  # a scope id is not part of the address
        ("127.0.0.1", "not-an-address", False),
        ("127.0.0.1", "", False),
        ("127.0.0.1", None, False),
        ("", "127.0.0.1", False),
        ("0.0.0.0/0", "::1", False),  # an IPv4 network never holds an IPv6 peer
    ],
)
def test_peer_is_trusted(cidrs: str, peer: str | None, trusted: bool) -> None:
    assert peer_is_trusted(peer, networks(cidrs).trusted_proxies) is trusted


@pytest.mark.parametrize(
    ("mode", "peer", "sendfile_type", "secret", "expected"),
    [
        ("auto", "127.0.0.1", "X-Accel-Redirect", None, "X-Accel-Redirect"),
        ("auto", "127.0.0.1", "x-accel-redirect", None, "X-Accel-Redirect"),
        ("auto", "127.0.0.1", "X-Sendfile", None, "X-Sendfile"),
        ("auto", "127.0.0.1", "X-Lighttpd-Send-File", None, None),
        ("auto", "127.0.0.1", None, None, None),
        ("auto", "192.0.2.1", "X-Accel-Redirect", None, None),
        ("auto", "192.0.2.1", "X-Accel-Redirect", SECRET, "X-Accel-Redirect"),
        ("auto", "192.0.2.1", "X-Accel-Redirect", SECRET + "x", None),
        ("auto", "192.0.2.1", "X-Accel-Redirect", SECRET[:-1], None),
        ("auto", "192.0.2.1", "X-Accel-Redirect", "", None),
        ("auto", "192.0.2.1", "X-Accel-Redirect", "sécret-sécret-sécret", None),
        ("auto", "192.0.2.1", None, SECRET, None),  # the secret alone asks for nothing
        ("stream", "127.0.0.1", "X-Accel-Redirect", SECRET, None),
        ("offload", "192.0.2.1", None, None, "X-Sendfile"),  # offload: always, as configured
    ],
)
def test_offload_method(
    mode: str, peer: str, sendfile_type: str | None, secret: str | None, expected: str | None
) -> None:
    settings = Settings(
        mode=mode, trusted_proxies="127.0.0.0/8", proxy_secret=SECRET, offload_header="X-Sendfile"
    )
    assert offload_method(settings, peer, sendfile_type, secret) == expected


def test_secret_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "hmac.compare_digest(" in inspect.getsource(trust)
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    settings = Settings(proxy_secret=SECRET)
    assert offload_method(settings, "192.0.2.1", "X-Accel-Redirect", "wrong") is None
    assert offload_method(settings, "192.0.2.1", "X-Accel-Redirect", SECRET) == "X-Accel-Redirect"
    assert calls == [(b"wrong", SECRET.encode()), (SECRET.encode(), SECRET.encode())]


def test_no_secret_configured_trusts_no_secret() -> None:
    assert offload_method(Settings(), "192.0.2.1", "X-Accel-Redirect", SECRET) is None


# --- Through the adapters ---------------------------------------------------


def test_trust_and_range_headers_are_hidden_from_the_app(exchange: ExchangeFn, media: Media) -> None:
    sent = {
        "x-sendfile-type": "X-Accel-Redirect",
        "x-accel-proxy-secret": SECRET,
        "range": "bytes=0-1",
        "if-range": '"x"',
        "x-other": "kept",
        "if-none-match": '"nope"',
    }
    result = exchange(media.settings(), marker(media.file), request_headers=sent)
    assert "x-other" in result.seen
    assert "if-none-match" in result.seen
    assert result.seen.isdisjoint({"x-sendfile-type", "x-accel-proxy-secret", "range", "if-range"})


def test_untrusted_client_asking_for_offload_gets_the_file_streamed(
    exchange: ExchangeFn, media: Media
) -> None:
    result = exchange(
        media.settings(trusted_proxies="10.0.0.0/8"),
        marker(media.file),
        request_headers=ACCEL,
        client="192.0.2.7",
    )
    assert result.status == 200
    assert result.body == CONTENT
    assert "x-accel-redirect" not in result.headers
    assert "x-sendfile" not in result.headers


@pytest.mark.parametrize(
    ("trusted", "client"),
    [("127.0.0.1/32", "127.0.0.1"), ("::1/128", "::1"), ("127.0.0.0/8", "::ffff:127.0.0.1")],
)
def test_trusted_proxy_gets_an_offload(exchange: ExchangeFn, media: Media, trusted: str, client: str) -> None:
    result = exchange(
        media.settings(trusted_proxies=trusted), marker(media.file), request_headers=ACCEL, client=client
    )
    assert result.status == 200
    assert result.body == b""
    assert result.headers["x-accel-redirect"] == f"{PREFIX}/file.txt"
    assert result.headers["content-length"] == "0"  # the empty body, not the file
    assert "x-accel-source" not in result.headers
    assert result.headers["content-type"] == "application/pdf"
    assert result.headers["content-disposition"] == 'attachment; filename="a.pdf"'
    assert result.headers["cache-control"] == "private, max-age=60"
    assert result.all("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]


@pytest.mark.parametrize(
    ("secret", "offloaded"), [(SECRET, True), ("x" * 20, False), (SECRET.upper(), False)]
)
def test_secret_from_an_untrusted_peer(
    exchange: ExchangeFn, media: Media, secret: str, offloaded: bool
) -> None:
    result = exchange(
        media.settings(proxy_secret=SECRET),
        marker(media.file),
        request_headers={**ACCEL, "x-accel-proxy-secret": secret},
        client="192.0.2.7",
    )
    assert ("x-accel-redirect" in result.headers) is offloaded
    assert result.body == (b"" if offloaded else CONTENT)


@pytest.mark.parametrize("mode", ["stream", "auto"])
def test_modes_that_stream(exchange: ExchangeFn, media: Media, mode: str) -> None:
    settings = media.settings(mode=mode, trusted_proxies="0.0.0.0/0" if mode == "stream" else "")
    result = exchange(settings, marker(media.file), request_headers=ACCEL)
    assert result.body == CONTENT
    assert "x-accel-redirect" not in result.headers


def test_offload_mode_offloads_without_asking(exchange: ExchangeFn, media: Media) -> None:
    result = exchange(media.settings(mode="offload"), marker(media.file), client="192.0.2.7")
    assert result.headers["x-accel-redirect"] == f"{PREFIX}/file.txt"
    assert result.body == b""


@pytest.mark.parametrize(
    "conditional",
    [
        {"range": "bytes=0-1"},
        {"range": "bytes=0-1,4-5"},
        {"range": "bytes=100-"},
        {"if-none-match": "*"},
        {"if-modified-since": "Fri, 01 Jan 2100 00:00:00 GMT"},
    ],
)
def test_offload_is_never_a_206_or_304(
    exchange: ExchangeFn, media: Media, conditional: dict[str, str]
) -> None:
    """The proxy does Range and conditionals itself inside its internal location."""
    result = exchange(media.settings(mode="offload"), marker(media.file), request_headers=conditional)
    assert result.status == 200
    assert "x-accel-redirect" in result.headers
    assert "content-range" not in result.headers


@pytest.mark.parametrize("status", [206, 304])
def test_an_apps_own_206_or_304_passes_untouched(exchange: ExchangeFn, media: Media, status: int) -> None:
    headers = [("ETag", '"own"'), ("Cache-Control", "no-cache")]
    if status == 206:
        headers += [("Content-Type", "text/plain"), ("Content-Range", "bytes 0-2/10")]
    body = b"abc" if status == 206 else b""
    result = exchange(media.settings(mode="offload"), headers, status=status, app_body=body)
    assert result.status == status
    assert result.raw_headers == [(k.lower(), v) for k, v in headers]
    assert result.body == body


def test_nginx_controls_appear_with_x_accel_redirect(exchange: ExchangeFn, media: Media) -> None:
    settings = media.settings(
        mode="offload", accel_buffering="no", accel_limit_rate="1048576", accel_expires="60"
    )
    result = exchange(settings, marker(media.file))
    assert result.headers["x-accel-buffering"] == "no"
    assert result.headers["x-accel-limit-rate"] == "1048576"
    assert result.headers["x-accel-expires"] == "60"


def test_an_apps_own_nginx_control_wins(exchange: ExchangeFn, media: Media) -> None:
    settings = media.settings(mode="offload", accel_buffering="no")
    result = exchange(settings, [*marker(media.file), ("X-Accel-Buffering", "yes")])
    assert result.all("x-accel-buffering") == ["yes"]


def test_x_sendfile_gets_the_absolute_path(exchange: ExchangeFn, media: Media) -> None:
    settings = media.settings(mode="offload", offload_header="X-Sendfile", accel_buffering="no")
    result = exchange(settings, marker(media.root / "." / "file.txt"))
    assert result.headers["x-sendfile"] == str(media.file.resolve())
    assert "x-accel-redirect" not in result.headers
    assert "x-accel-buffering" not in result.headers  # nginx's controls mean nothing to Apache


def test_x_sendfile_of_a_name_with_a_newline_is_streamed(exchange: ExchangeFn, media: Media) -> None:
    """A file name may hold LF; a header value may not: stream instead."""
    odd = media.root / "a\nb.txt"
    odd.write_bytes(b"odd")
    link = media.root / "link.txt"
    link.symlink_to(odd.name)
    result = exchange(media.settings(mode="offload", offload_header="X-Sendfile"), marker(link))
    assert (result.status, result.body) == (200, b"odd")
    assert "x-sendfile" not in result.headers


def test_offload_without_an_app_content_type_gets_the_files(exchange: ExchangeFn, media: Media) -> None:
    pdf = media.root / "doc.pdf"
    pdf.write_bytes(b"%PDF")
    result = exchange(media.settings(mode="offload"), [("X-Accel-Source", str(pdf))])
    assert result.headers["content-type"] == "application/pdf"


@pytest.mark.parametrize("mode", ["offload", "stream"])
@pytest.mark.parametrize("where", ["sibling", "dotdot", "directory", "missing", "relative", "etc"])
def test_marker_outside_roots_is_a_404_that_leaks_nothing(
    exchange: ExchangeFn, media: Media, caplog: pytest.LogCaptureFixture, mode: str, where: str
) -> None:
    target = {
        "sibling": str(media.private),
        "dotdot": f"{media.root}/../media-private/secret.txt",
        "directory": str(media.root),
        "missing": str(media.root / "missing.txt"),
        "relative": "media/file.txt",
        "etc": "/etc/passwd",
    }[where]
    settings = media.settings(mode=mode)
    caplog.set_level(logging.WARNING, logger="xaccel_middleware")
    for _ in range(2):
        result = exchange(settings, [("Content-Type", "text/plain"), ("X-Accel-Source", target)])
        assert result.status == 404
        assert result.body == b"Not Found"
        leaked = result.body.decode() + "".join(f"{k}: {v}\n" for k, v in result.raw_headers)
        assert "media" not in leaked and "etc" not in leaked and "secret" not in leaked, leaked
        assert "x-accel-redirect" not in result.headers
    # One warning per middleware (each exchange builds its own); see below for repeats.
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def test_same_bad_marker_twice_warns_once(media: Media, caplog: pytest.LogCaptureFixture) -> None:
    from conftest import run_wsgi, wsgi_environ

    from xaccel_middleware import XAccelWSGIMiddleware

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Accel-Source", str(media.private))])
        return [b""]

    middleware = XAccelWSGIMiddleware(app, media.settings())
    caplog.set_level(logging.WARNING, logger="xaccel_middleware")
    for _ in range(3):
        assert run_wsgi(middleware, wsgi_environ()).status == 404
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].name == "xaccel_middleware"


def test_marker_inside_a_root_streams_with_ipv6_trust_absent(exchange: ExchangeFn, media: Media) -> None:
    result = exchange(media.settings(trusted_proxies="::1/128"), marker(media.file), request_headers=ACCEL)
    assert result.body == CONTENT  # the client is 127.0.0.1, not ::1


def test_networks_are_ip_networks() -> None:
    parsed = Settings(trusted_proxies="10.0.0.1/8, ::1").trusted_proxies
    assert parsed == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))
