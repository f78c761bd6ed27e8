"""The generated nginx and Caddy configuration: its text, its escaping, the
proxies' own checks (``nginx -t``, ``caddy validate`` and ``caddy adapt``), a
live run with awkward directory names, and ``deploy/`` and the deployment
docs, which must stay what the generator prints.

Regenerate ``deploy/`` after changing the generator with
``python tests/test_proxyconf.py --write-deploy``.
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx
import pytest
from servers import free_port, require

from xaccel_middleware import ConfigError, Settings, XAccelWSGIMiddleware, marker_for_path
from xaccel_middleware.cli import main
from xaccel_middleware.proxyconf import ProxyKind, render, render_tutor
from xaccel_middleware.proxyconf.nginx import SECRET_FILE, secret_include
from xaccel_middleware.proxyrun import find_binary, started_proxy, write_proxy_files
from xaccel_middleware.settings import Root

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SECRET = "s3cr3t-Value_0123456789"
UP, LISTEN = ("127.0.0.1", 8000), ("127.0.0.1", 8080)
KINDS: tuple[ProxyKind, ...] = ("nginx", "caddy")

# The reference setups that deploy/ ships; each file's header repeats them.
# Their directories exist on a server, not here: roots are set past the disk check.
REFERENCE_ROOTS = (Root("/srv/private-media", "/_protected"),)
REFERENCE_ADDRESSES = {"upstream": ("127.0.0.1", 8000), "listen": ("0.0.0.0", 80)}
TUTOR_ROOTS = (Root("/openedx/media-private", "/_protected"),)


def settings_with_roots(roots: tuple[Root, ...], **values: Any) -> Settings:
    settings = Settings(**values)
    object.__setattr__(settings, "roots", roots)
    return settings


def reference_files() -> dict[Path, str]:
    settings = settings_with_roots(REFERENCE_ROOTS, proxy_secret=SECRET)
    return {
        DEPLOY / "nginx.conf": render("nginx", settings, **REFERENCE_ADDRESSES),
        DEPLOY / "Caddyfile": render("caddy", settings, **REFERENCE_ADDRESSES),
    }


def tutor_snippet() -> str:
    return render_tutor(settings_with_roots(TUTOR_ROOTS, proxy_secret=SECRET))


@pytest.fixture
def media(tmp_path: Path) -> Path:
    folder = tmp_path / "media"
    folder.mkdir()
    return folder


def both(media: Path, **values: Any) -> dict[str, str]:
    settings = Settings(roots=f"{media}=/_protected", **values)
    return {kind: render(kind, settings, upstream=UP, listen=LISTEN) for kind in KINDS}


# --- the text ----------------------------------------------------------------


def test_the_secret_is_never_written(media: Path) -> None:
    texts = both(media, proxy_secret=SECRET)
    assert all(SECRET not in text for text in texts.values())
    assert f"include {SECRET_FILE};" in texts["nginx"]
    assert "header_up X-Accel-Proxy-Secret {env.XACCEL_PROXY_SECRET}" in texts["caddy"]


def test_trust_headers_are_set_on_every_proxied_request(media: Path) -> None:
    texts = both(media, proxy_secret=SECRET)
    assert "proxy_set_header X-Sendfile-Type X-Accel-Redirect;" in texts["nginx"]
    assert "header_up X-Sendfile-Type X-Accel-Redirect" in texts["caddy"]


def test_trust_by_address_clears_a_clients_secret(media: Path) -> None:
    texts = both(media, trusted_proxies="127.0.0.1/32")
    assert 'proxy_set_header X-Accel-Proxy-Secret "";' in texts["nginx"]
    assert SECRET_FILE not in texts["nginx"].split("server {")[1]
    assert "header_up -X-Accel-Proxy-Secret" in texts["caddy"]


def test_internal_locations_and_header_parity(media: Path) -> None:
    texts = both(media, proxy_secret=SECRET)
    assert re.search(
        r"location /_protected/ \{\s+internal;\s+alias " + re.escape(f"{media}/;"), texts["nginx"]
    )
    assert re.search(r"location /_protected/ \{[^}]*\n\s+disable_symlinks on;\n", texts["nginx"])
    assert (
        "add_header Content-Security-Policy $upstream_http_content_security_policy always;" in texts["nginx"]
    )
    assert (
        "add_header Access-Control-Allow-Origin $upstream_http_access_control_allow_origin always;"
        in texts["nginx"]
    )
    # nginx keeps these itself: adding them again would send them twice.
    assert "add_header Content-Type" not in texts["nginx"] and "add_header Set-Cookie" not in texts["nginx"]
    caddy = texts["caddy"]
    assert "respond @xaccel_internal 404" in caddy and "@xaccel_internal path /_protected/*" in caddy
    assert "method GET" in caddy
    for name in ("Content-Type", "Set-Cookie", "Content-Security-Policy", "Access-Control-Allow-Origin"):
        assert f"include {name}\n" in caddy


def test_nested_directories_keep_their_own_prefixes(tmp_path: Path) -> None:
    # Overlapping prefixes are refused by Settings; nested directories are fine.
    outer, inner = tmp_path / "a", tmp_path / "a" / "b"
    inner.mkdir(parents=True)
    settings = Settings(roots=f"{outer}=/files,{inner}=/inner", proxy_secret=SECRET)
    nginx = render("nginx", settings, upstream=UP, listen=LISTEN)
    assert f'alias "{inner}/";' in nginx or f"alias {inner}/;" in nginx
    assert "location /inner/ " in nginx and "location /files/ " in nginx
    caddy = render("caddy", settings, upstream=UP, listen=LISTEN)
    assert "handle_path /inner/*" in caddy and "handle_path /files/*" in caddy


def test_ipv6_addresses(media: Path) -> None:
    settings = Settings(roots=f"{media}=/p", proxy_secret=SECRET)
    nginx = render("nginx", settings, upstream=("::1", 8000), listen=("::1", 8080))
    assert "server [::1]:8000;" in nginx and "listen [::1]:8080;" in nginx
    caddy = render("caddy", settings, upstream=("::1", 8000), listen=("::1", 8080))
    assert "reverse_proxy [::1]:8000 {" in caddy and "\tbind ::1\n" in caddy


def test_awkward_directories_are_quoted(tmp_path: Path) -> None:
    folder = tmp_path / "média files; it's #1"
    folder.mkdir()
    settings = Settings(roots=f"{folder}=/p;x", proxy_secret=SECRET)
    nginx = render("nginx", settings, upstream=UP, listen=LISTEN)
    assert f'alias "{folder}/";' in nginx and 'location "/p;x/" {' in nginx
    assert f'root * "{folder}"' in render("caddy", settings, upstream=UP, listen=LISTEN)


@pytest.mark.parametrize("name", ["x$y", 'q"uote', "back\\slash", "br{ace}"])
def test_unwritable_directories_are_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / name).mkdir()
    settings = Settings(roots=f"{tmp_path / name}=/p", proxy_secret=SECRET)
    for kind in KINDS:
        with pytest.raises(ConfigError, match="XACCEL_ROOTS directory"):
            render(kind, settings, upstream=UP, listen=LISTEN)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "XACCEL_PROXY_SECRET and XACCEL_TRUSTED_PROXIES are both unset"),
        ({"proxy_secret": SECRET, "offload_header": "X-Sendfile"}, "XACCEL_OFFLOAD_HEADER"),
        ({"proxy_secret": SECRET, "roots": "/tmp=/a*b"}, "Caddy wildcard"),
    ],
)
def test_settings_that_cannot_work_are_refused(values: dict[str, str], message: str) -> None:
    values.setdefault("roots", "/tmp=/p")
    settings = Settings(**values)
    for kind in KINDS:
        with pytest.raises(ConfigError, match=message):
            render(kind, settings, upstream=UP, listen=LISTEN)


def test_no_roots_is_refused() -> None:
    with pytest.raises(ConfigError, match="XACCEL_ROOTS is empty"):
        render("nginx", Settings(proxy_secret=SECRET), upstream=UP, listen=LISTEN)


def test_stream_mode_needs_no_trust(media: Path) -> None:
    assert "server {" in both(media, mode="stream")["nginx"]


@pytest.mark.parametrize(
    "secret", ["with$dollar-0123456789", 'with"quote-0123456789', "back\\slash-0123456789"]
)
def test_nginx_secret_file_refuses_what_nginx_would_expand(secret: str) -> None:
    with pytest.raises(ConfigError, match="XACCEL_PROXY_SECRET"):
        secret_include(secret)


def test_nginx_secret_file() -> None:
    assert secret_include(SECRET) == f'proxy_set_header X-Accel-Proxy-Secret "{SECRET}";\n'


def test_cli_prints_the_same_text(
    media: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XACCEL_ROOTS", f"{media}=/_protected")
    monkeypatch.setenv("XACCEL_PROXY_SECRET", SECRET)
    for kind in KINDS:
        assert main(["config", kind, "--upstream", "127.0.0.1:8000", "--listen", "127.0.0.1:8080"]) == 0
        assert capsys.readouterr().out == both(media, proxy_secret=SECRET)[kind]
    monkeypatch.delenv("XACCEL_ROOTS")
    assert main(["config", "nginx", "--upstream", "127.0.0.1:8000", "--listen", "127.0.0.1:8080"]) == 2
    assert "XACCEL_ROOTS is empty" in capsys.readouterr().err


# --- the proxies' own checks -------------------------------------------------


def proxy_binary(kind: ProxyKind) -> str:
    program = find_binary(kind)
    require(kind, program is not None)
    assert program is not None
    return program


SETUPS = {
    "secret": {"proxy_secret": SECRET},
    "by-address": {"trusted_proxies": "10.0.0.0/8,::1/128"},
    "extras": {"proxy_secret": SECRET, "accel_buffering": "no", "accel_limit_rate": "1048576"},
}


@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize("kind", KINDS)
def test_the_proxy_accepts_it(tmp_path: Path, kind: ProxyKind, setup: str) -> None:
    folders = [tmp_path / "plain", tmp_path / "média files; it's #1"]
    for folder in folders:
        folder.mkdir()
    roots = f"{folders[0]}=/_protected,{folders[1]}=/other"
    settings = Settings(roots=roots, **SETUPS[setup])
    site = render(kind, settings, upstream=UP, listen=LISTEN)
    run = tmp_path / "run"
    run.mkdir()
    files = write_proxy_files(kind, site, run, settings.proxy_secret)
    checked = subprocess.run(
        files.argv(proxy_binary(kind), check=True),
        env=files.env(settings.proxy_secret),
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr + checked.stdout


def test_caddy_adapt_keeps_the_secret_out_of_the_json(tmp_path: Path, media: Path) -> None:
    site = both(media, proxy_secret=SECRET)["caddy"]
    (tmp_path / "Caddyfile").write_text(site)
    adapted = subprocess.run(
        [proxy_binary("caddy"), "adapt", "--config", str(tmp_path / "Caddyfile"), "--adapter", "caddyfile"],
        env={"XACCEL_PROXY_SECRET": SECRET, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert SECRET not in adapted.stdout
    assert "{env.XACCEL_PROXY_SECRET}" in adapted.stdout
    config = json.loads(adapted.stdout)
    assert config["apps"]["http"]["servers"]


def test_the_tutor_snippet_is_accepted(tmp_path: Path, media: Path) -> None:
    """Shaped as in Tutor's Caddyfile: the LMS's reverse_proxy, then the patch."""
    snippet = render_tutor(Settings(roots=f"{media}=/_protected", proxy_secret=SECRET))
    site = f"http://:8080 {{\n\treverse_proxy lms:8000\n{snippet}}}\n"
    (tmp_path / "Caddyfile").write_text(site)
    checked = subprocess.run(
        [proxy_binary("caddy"), "adapt", "--config", str(tmp_path / "Caddyfile"), "--adapter", "caddyfile"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
    assert '"handler":"intercept"' in checked.stdout


def test_the_tutor_snippet_says_who_else_receives_the_secret() -> None:
    """request_header reaches every reverse_proxy of the site, a plugin's too:
    the lines say so, and how to strip it there."""
    with_secret = tutor_snippet()
    assert "request_header X-Accel-Proxy-Secret {env.XACCEL_PROXY_SECRET}" in with_secret
    assert "every reverse_proxy of\n# this site receives the secret" in with_secret
    assert "`header_up -X-Accel-Proxy-Secret`" in with_secret
    by_address = render_tutor(settings_with_roots(TUTOR_ROOTS, trusted_proxies="10.0.0.0/8"))
    assert "receives the secret" not in by_address


# --- a live run with awkward directory and file names -------------------------


@contextlib.contextmanager
def wsgi_app(app: Callable[..., Iterable[bytes]]) -> Iterator[int]:
    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("kind", KINDS)
def test_awkward_directories_serve(tmp_path: Path, kind: ProxyKind) -> None:
    program = proxy_binary(kind)
    outer = tmp_path / "média files; it's #1"
    inner = outer / "inner dir"
    inner.mkdir(parents=True)
    (outer / "a b.txt").write_bytes(b"outer\n")
    (inner / "c%d.txt").write_bytes(b"inner\n")
    settings = Settings(roots=f"{outer}=/files,{inner}=/in", proxy_secret=SECRET)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        name = environ["PATH_INFO"].encode("latin-1").decode()
        start_response("200 OK", [("X-Accel-Source", marker_for_path(str(outer) + name))])
        return []

    port = free_port()
    with wsgi_app(XAccelWSGIMiddleware(app, settings)) as app_port:
        site = render(kind, settings, upstream=("127.0.0.1", app_port), listen=("127.0.0.1", port))
        with started_proxy(kind, site, port, settings.proxy_secret, program) as proxy:
            outer_file = httpx.get(proxy.url + "/a%20b.txt")
            inner_file = httpx.get(proxy.url + "/inner%20dir/c%25d.txt")
            direct = httpx.get(f"http://127.0.0.1:{app_port}/a%20b.txt")
    assert (outer_file.status_code, outer_file.content) == (200, b"outer\n")
    assert (inner_file.status_code, inner_file.content) == (200, b"inner\n")
    # The proxy's ETag, not the middleware's: the proxy sent these bytes.
    assert outer_file.headers["etag"] != direct.headers["etag"]


def test_nginx_refuses_a_symlink_swapped_in_after_the_apps_check(tmp_path: Path) -> None:
    """The middleware redirects to a file's real path; a symlink found there by
    nginx was put in place after the check, and may lead out of the root."""
    program = proxy_binary("nginx")
    media, outside = tmp_path / "media", tmp_path / "outside"
    media.mkdir()
    outside.mkdir()
    (media / "plain.txt").write_bytes(b"inside\n")
    (outside / "secret.txt").write_bytes(b"outside\n")
    (media / "swapped.txt").symlink_to(outside / "secret.txt")
    (media / "dir").symlink_to(outside)
    settings = Settings(roots=f"{media}=/_protected", proxy_secret=SECRET)

    # What the middleware would send had the link been a file when it looked.
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("X-Accel-Redirect", "/_protected" + environ["PATH_INFO"])])
        return []

    port = free_port()
    with wsgi_app(app) as app_port:
        site = render("nginx", settings, upstream=("127.0.0.1", app_port), listen=("127.0.0.1", port))
        with started_proxy("nginx", site, port, SECRET, program) as proxy:
            plain = httpx.get(proxy.url + "/plain.txt")
            swapped = [httpx.get(proxy.url + path) for path in ("/swapped.txt", "/dir/secret.txt")]
    assert (plain.status_code, plain.content) == (200, b"inside\n")
    for answer in swapped:
        assert answer.status_code in (403, 404) and b"outside" not in answer.content


# --- deploy/ and the deployment docs -------------------------------------------


@pytest.mark.parametrize("path", sorted(reference_files()), ids=lambda p: p.name)
def test_deploy_files_are_the_generators_output(path: Path) -> None:
    assert path.read_text() == reference_files()[path], (
        f"regenerate: python {Path(__file__).name} --write-deploy"
    )


def test_tutor_plugin_holds_the_generators_snippet() -> None:
    source = (DEPLOY / "tutor" / "xaccel.py").read_text()
    constants = {
        node.targets[0].id: node.value.value
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
    }
    assert constants["CADDYFILE_LMS"] == tutor_snippet()


def fenced_blocks(markdown: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", markdown, flags=re.M | re.S)


def test_readme_shows_the_deploy_files() -> None:
    text = (ROOT / "README.md").read_text()
    nginx, caddy = fenced_blocks(text, "nginx"), fenced_blocks(text, "caddyfile")
    # The first nginx block is the deployment section's; the S3 section shows excerpts.
    assert nginx[0] == (DEPLOY / "nginx.conf").read_text()
    assert caddy == [(DEPLOY / "Caddyfile").read_text(), tutor_snippet()]


def _write_deploy() -> None:
    for path, text in reference_files().items():
        path.write_text(text)
        print(f"wrote {path}")
    plugin = DEPLOY / "tutor" / "xaccel.py"
    source = plugin.read_text()
    start = source.index('CADDYFILE_LMS = """\\\n') + len('CADDYFILE_LMS = """\\\n')
    end = source.index('"""', start)
    plugin.write_text(source[:start] + tutor_snippet() + source[end:])
    print(f"wrote {plugin}")


if __name__ == "__main__" and sys.argv[1:] == ["--write-deploy"]:
    _write_deploy()
