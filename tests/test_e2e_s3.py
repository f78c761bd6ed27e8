"""S3 objects offloaded through real nginx and Caddy (and Caddy's ``intercept``
as in Tutor), in front of uvicorn and gunicorn, with the test S3 server behind.

Each proxy runs what ``xaccel config`` prints for the app's own settings. The
S3 server checks every presigned signature, so a 200 here proves the URL the
app signed and the request the proxy made agree: host, path, query and method.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import s3_app
from cases import CASES, CONTENT, Case, check
from s3server import BUCKET, CLIENT_ENV, S3Server, shared
from servers import binary, free_port, require, running

from xaccel_middleware import Settings
from xaccel_middleware.proxyconf import ProxyKind, render, render_tutor
from xaccel_middleware.proxyrun import find_binary, started_proxy

KEYS = ["dir/a b ü%#?.mp4", "x%41y+(1)!&=;,.mp4"]
TYPE = "video/mp4"
SECRET = "s3-e2e-secret-0123456789"
TESTS = Path(__file__).resolve().parent
STACKS = [("nginx", "uvicorn"), ("nginx", "gunicorn"), ("caddy", "uvicorn"), ("caddy", "gunicorn"),
          ("tutor", "gunicorn")]  # fmt: skip
# Single ranges and plain requests: S3 answers several ranges with the whole
# object (RFC 9110 allows it), and a 416 with an error document.
RANGE_CASES = [
    c
    for c in CASES
    if c.id
    in {
        "go:none",
        "go:bytes=0-4",
        "go:bytes=2-",
        "go:bytes=-5",
        "go:bytes=3-7",
        "go:bytes=5-1000",
        "range:first-byte",
        "range:last-byte",
    }
]


@pytest.fixture(scope="module")
def s3() -> S3Server:
    server = shared()
    for key in KEYS:
        server.put(key, CONTENT, ContentType=TYPE)
    server.put("with-metadata.bin", CONTENT, Metadata={"owner": "someone"})
    return server


def app_env(s3: S3Server) -> dict[str, str]:
    return {
        **CLIENT_ENV,
        "XACCEL_PROXY_SECRET": SECRET,
        "XACCEL_S3_ENDPOINT_URL": s3.endpoint,
        "XACCEL_S3_REGION": "us-east-1",
        "XACCEL_S3_BUCKETS": BUCKET,
        "XACCEL_S3_URL_LIFETIME": "30",
    }


@dataclass(frozen=True)
class Stack:
    proxy: str
    app: str
    kind: str

    def get(self, path: str, method: str = "GET", **kwargs: object) -> httpx.Response:
        return httpx.request(method, self.proxy + path, timeout=10, **kwargs)  # type: ignore[arg-type]


def server_argv(kind: str, port: int) -> list[str]:
    if kind == "uvicorn":
        return [binary("uvicorn"), "--app-dir", str(TESTS), "s3_app:asgi_app", "--host", "127.0.0.1",
                "--port", str(port), "--no-access-log"]  # fmt: skip
    return [binary("gunicorn"), "--chdir", str(TESTS), "-b", f"127.0.0.1:{port}", "-w", "2",
            "s3_app:wsgi_app"]  # fmt: skip


@pytest.fixture(scope="module")
def apps(s3: S3Server) -> Iterator[dict[str, str]]:
    started: dict[str, str] = {}
    with running(server_argv("uvicorn", u := free_port()), u, env=app_env(s3)):
        started["uvicorn"] = f"http://127.0.0.1:{u}"
        with running(server_argv("gunicorn", g := free_port()), g, env=app_env(s3)):
            started["gunicorn"] = f"http://127.0.0.1:{g}"
            yield started


def tutor_like_site(snippet: str, upstream: str, port: int) -> str:
    """A site block shaped like Tutor's LMS one: its own reverse_proxy, then the
    generated ``caddyfile-lms`` lines."""
    patch = "".join(f"\t{line}" if line.strip() else line for line in snippet.splitlines(True))
    target = upstream.removeprefix("http://")
    return f"http://:{port} {{\n\tbind 127.0.0.1\n\treverse_proxy {target}\n\n{patch}}}\n"


@pytest.fixture(scope="module", params=STACKS, ids="-".join)
def stack(request: pytest.FixtureRequest, s3: S3Server, apps: dict[str, str]) -> Iterator[Stack]:
    name, server = request.param
    kind: ProxyKind = "nginx" if name == "nginx" else "caddy"
    program = find_binary(kind)
    require(kind, program is not None)
    settings = Settings.from_env(app_env(s3))
    app = apps[server]
    port = free_port()
    if name == "tutor":
        site = tutor_like_site(render_tutor(settings), app, port)
    else:
        upstream = ("127.0.0.1", int(app.rsplit(":", 1)[1]))
        site = render(kind, settings, upstream=upstream, listen=("127.0.0.1", port))
    with started_proxy(kind, site, port, SECRET, program) as proxy:
        yield Stack(proxy.url, app, name)


def assert_clean(response: httpx.Response) -> None:
    """Nothing of S3's or of the offload reaches the client."""
    for name, value in response.headers.items():
        assert not name.lower().startswith(("x-amz", "x-accel")), name
        assert "signature" not in value.lower() and "x-amz-" not in value.lower(), (name, value)
    assert b"X-Amz-" not in response.content and b"Signature" not in response.content


def path_of(key: str) -> str:
    return "/s3/" + quote(key)


@pytest.mark.parametrize("key", KEYS, ids=ascii)
def test_get(stack: Stack, key: str) -> None:
    response = stack.get(path_of(key))
    assert response.status_code == 200, response.text
    assert response.content == CONTENT
    assert response.headers["content-disposition"] == s3_app.DISPOSITION
    assert response.headers["content-type"] == TYPE
    assert response.headers.get_list("content-disposition") == [s3_app.DISPOSITION]
    assert "etag" in response.headers and "last-modified" in response.headers
    assert_clean(response)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_apps_content_type_wins(stack: Stack, method: str) -> None:
    response = stack.get(path_of(KEYS[0]), method=method, params={"type": "application/pdf"})
    assert response.status_code == 200
    assert response.headers.get_list("content-type") == ["application/pdf"]
    assert_clean(response)


@pytest.mark.parametrize("key", KEYS, ids=ascii)
def test_head(stack: Stack, key: str) -> None:
    response = stack.get(path_of(key), method="HEAD")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(CONTENT))
    assert response.headers["content-disposition"] == s3_app.DISPOSITION
    assert_clean(response)


@pytest.mark.parametrize("case", RANGE_CASES, ids=lambda c: c.id)
def test_range(stack: Stack, case: Case) -> None:
    response = stack.get(path_of(KEYS[0]), method=case.method, headers=dict(case.request))
    check(case, response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content)
    assert_clean(response)


def test_conditional_and_post(stack: Stack) -> None:
    etag = stack.get(path_of(KEYS[0]), method="HEAD").headers["etag"]
    cached = stack.get(path_of(KEYS[0]), headers={"if-none-match": etag})
    assert cached.status_code == 304 and cached.content == b""
    posted = stack.get(path_of(KEYS[0]), method="POST", content=b"form=1")
    assert posted.status_code == 200 and posted.content == CONTENT
    assert_clean(posted)


def test_client_credentials_do_not_reach_s3(stack: Stack) -> None:
    """ministack refuses a request carrying an unknown Authorization; cleared, it passes."""
    response = stack.get(path_of(KEYS[0]), headers={"authorization": "AWS4-HMAC-SHA256 Credential=x/y"})
    assert response.status_code == 200 and response.content == CONTENT


def test_user_metadata(stack: Stack) -> None:
    response = stack.get("/s3/with-metadata.bin")
    assert response.status_code == 200 and response.content == CONTENT
    if stack.kind != "nginx":
        assert_clean(response)
    # nginx cannot hide a header prefix: x-amz-meta-* passes (see proxyconf.s3).


def test_missing_key_is_404(stack: Stack) -> None:
    response = stack.get("/s3/no/such/key.bin")
    assert response.status_code == 404
    assert_clean(response)


def test_internal_location_is_404(stack: Stack) -> None:
    uri = signed_uri(stack, path_of(KEYS[0]))
    for target in ("/_xaccel_s3/", "/_xaccel_s3" + uri, uri):
        response = stack.get(target)
        assert response.status_code == 404, target
        assert CONTENT not in response.content


def signed_uri(stack: Stack, path: str) -> str:
    """The presigned path and query the app hands the proxy, asked of the app directly."""
    trusted = {"x-sendfile-type": "X-Accel-Redirect", "x-accel-proxy-secret": SECRET}
    answer = httpx.get(stack.app + path, headers=trusted, timeout=10)
    assert answer.status_code == 200 and answer.headers["x-accel-redirect"] == "/_xaccel_s3/"
    return answer.headers["x-accel-s3-uri"]


def replay(stack: Stack, uri: str) -> httpx.Response:
    return stack.get("/replay", params={"uri": uri})


def test_the_proxy_uses_the_apps_signed_url(stack: Stack) -> None:
    """A fresh URL works; the same URL with one signature digit changed does not."""
    uri = signed_uri(stack, path_of(KEYS[0]))
    fresh = replay(stack, uri)
    assert fresh.status_code == 200 and fresh.content == CONTENT
    head, signature = uri.rsplit("X-Amz-Signature=", 1)
    tampered = replay(
        stack, head + "X-Amz-Signature=" + ("0" if signature[0] != "0" else "1") + signature[1:]
    )
    assert tampered.status_code == 404 and CONTENT not in tampered.content
    assert_clean(tampered)


@pytest.fixture(scope="module")
def expired_uri(apps: dict[str, str]) -> str:
    """A URL signed for one second, once for all stacks, and then left to expire."""
    import time

    trusted = {"x-sendfile-type": "X-Accel-Redirect", "x-accel-proxy-secret": SECRET}
    answer = httpx.get(apps["uvicorn"] + "/short/" + quote(KEYS[0]), headers=trusted, timeout=10)
    uri = answer.headers["x-accel-s3-uri"]
    assert "X-Amz-Expires=1&" in uri
    time.sleep(2.1)
    return uri


def test_an_expired_url_fails(stack: Stack, expired_uri: str) -> None:
    expired = replay(stack, expired_uri)
    assert expired.status_code == 404 and CONTENT not in expired.content
    assert_clean(expired)
