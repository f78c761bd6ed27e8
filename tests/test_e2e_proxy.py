"""End to end through the real proxies: nginx and Caddy, each in front of uvicorn
(Starlette), gunicorn (Django) and granian (Starlette).

Each proxy runs the text ``xaccel config`` prints for the very settings the app
server runs with, through the launcher that ``xaccel demo --proxy`` uses: no
configuration is written by hand here. Every app server and every proxy starts
once for this module.

An offloaded answer is told from a streamed one by its ETag: the middleware's
ETag (inode, mtime, size) differs from the one nginx or Caddy computes, so a
test that expects the proxy to send the bytes asserts the app's ETag is absent.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from apps import (
    AWKWARD_NAMES,
    HELLO,
    INTERNAL_PREFIX,
    PROXY_SECRET,
    awkward_content,
    make_media,
    server_env,
)
from cases import CASES, CONTENT, Case, check
from e2e import PARITY, SHADOW
from servers import (
    AppServer,
    app_server_argv,
    free_port,
    require,
    require_modules,
    running,
    wait_for_http,
)

from xaccel_middleware import Settings
from xaccel_middleware.proxyconf import ProxyKind, render, render_tutor
from xaccel_middleware.proxyrun import RunningProxy, find_binary, started_proxy

PROXIES: tuple[ProxyKind, ...] = ("nginx", "caddy")
SERVERS = ("uvicorn", "gunicorn", "granian")
BIG_SIZE = 1024 * 1024
# The table's cases that the proxies must answer as the middleware does.
PROXY_CASES = [
    c
    for c in CASES
    if c.id
    in {
        "go:none",
        "go:bytes=0-4",
        "go:bytes=2-",
        "go:bytes=-5",
        "go:bytes=3-7",
        "go:bytes=0-0,-2",
        "go:bytes=0-1,5-8",
        "go:bytes=5-1000",
        "range:first-byte",
        "range:last-byte",
    }
]
# Left out: a 416 (nginx sends an HTML body) and HEAD with Range (both proxies
# answer 206 without a body, where the middleware ignores the Range: RFC 9110
# defines Range for GET only, and a HEAD's headers may describe either).


@dataclass(frozen=True)
class Stack:
    proxy: RunningProxy
    app: AppServer

    @property
    def url(self) -> str:
        return self.proxy.url


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("proxies") / "media"
    make_media(folder, CONTENT, BIG_SIZE)
    return folder


def _serve(kind: str, media: Path) -> Iterator[AppServer]:
    require_modules("django" if kind == "gunicorn" else "starlette")
    port = free_port()
    argv = app_server_argv(kind, port, wsgi_module="e2e.django_app")
    # The ASGI servers take the Starlette app with the /parity route.
    argv = [a.replace("apps.starlette_app:", "e2e.starlette_app:") for a in argv]
    tests = Path(__file__).parent
    with running(argv, port, env={**server_env(media), "PYTHONPATH": str(tests)}, cwd=tests) as process:
        server = AppServer(kind, port, process)
        wait_for_http(f"{server.url}/hello", process)
        yield server


@pytest.fixture(scope="module")
def uvicorn_server(media: Path) -> Iterator[AppServer]:
    yield from _serve("uvicorn", media)


@pytest.fixture(scope="module")
def gunicorn_server(media: Path) -> Iterator[AppServer]:
    yield from _serve("gunicorn", media)


@pytest.fixture(scope="module")
def granian_server(media: Path) -> Iterator[AppServer]:
    yield from _serve("granian", media)


# "tutor": Caddy with the app's answers taken by `intercept`, as in Tutor's LMS
# site block, whose reverse_proxy is defined by Tutor and cannot be edited.
STACKS = [(p, s) for p in PROXIES for s in SERVERS] + [("tutor", "gunicorn")]


@pytest.fixture(scope="module", params=STACKS, ids="-".join)
def stack(request: pytest.FixtureRequest, media: Path) -> Iterator[Stack]:
    name, server = request.param
    kind: ProxyKind = "nginx" if name == "nginx" else "caddy"
    program = find_binary(kind)
    require(kind, program is not None)
    app: AppServer = request.getfixturevalue(f"{server}_server")
    settings = Settings.from_env(server_env(media))
    port = free_port()
    if name == "tutor":
        site = tutor_like_site(render_tutor(settings), app.port, port)
    else:
        site = render(kind, settings, upstream=("127.0.0.1", app.port), listen=("127.0.0.1", port))
    with started_proxy(kind, site, port, settings.proxy_secret, program) as proxy:
        yield Stack(proxy, app)


def tutor_like_site(snippet: str, upstream: int, port: int) -> str:
    """A site block shaped like Tutor's LMS one: its own reverse_proxy, then the
    ``caddyfile-lms`` patch, which is the generated snippet."""
    patch = "".join(f"\t{line}" if line.strip() else line for line in snippet.splitlines(True))
    return f"http://:{port} {{\n\tbind 127.0.0.1\n\treverse_proxy 127.0.0.1:{upstream}\n\n{patch}}}\n"


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def app_etag(client: httpx.Client, stack: Stack, path: str) -> str:
    """The ETag of the middleware's own (streamed) answer, asked of the app directly."""
    answer = client.head(stack.app.url + path)
    assert answer.status_code == 200, answer
    return answer.headers["etag"]


def assert_offloaded(client: httpx.Client, stack: Stack, path: str, answer: httpx.Response) -> None:
    assert "etag" in answer.headers and "last-modified" in answer.headers
    assert answer.headers["etag"] != app_etag(client, stack, path), "the app streamed it, not the proxy"
    for name in ("x-accel-redirect", "x-accel-source", "x-sendfile", "x-accel-proxy-secret"):
        assert name not in answer.headers


def test_get_is_offloaded(client: httpx.Client, stack: Stack, media: Path) -> None:
    answer = client.get(stack.url + "/marker/big.bin")
    assert answer.status_code == 200
    assert answer.content == (media / "big.bin").read_bytes()
    assert len(answer.content) == BIG_SIZE == int(answer.headers["content-length"])
    assert_offloaded(client, stack, "/marker/big.bin", answer)


@pytest.mark.parametrize("case", PROXY_CASES, ids=lambda c: c.id)
def test_range_and_head(client: httpx.Client, stack: Stack, case: Case) -> None:
    answer = client.request(case.method, stack.url + "/marker/small.txt", headers=dict(case.request))
    headers = {k.lower(): v for k, v in answer.headers.items()}
    check(case, answer.status_code, headers, answer.content, accept_ranges_on_206=False)


def test_head(client: httpx.Client, stack: Stack) -> None:
    answer = client.head(stack.url + "/marker/big.bin")
    assert answer.status_code == 200
    assert answer.content == b""
    assert answer.headers["content-length"] == str(BIG_SIZE)
    assert answer.headers["accept-ranges"] == "bytes"
    assert_offloaded(client, stack, "/marker/big.bin", answer)


def test_if_none_match_gives_304(client: httpx.Client, stack: Stack) -> None:
    etag = client.head(stack.url + "/marker/small.txt").headers["etag"]
    answer = client.get(stack.url + "/marker/small.txt", headers={"if-none-match": etag})
    assert answer.status_code == 304
    assert answer.content == b""
    assert answer.headers["etag"] == etag


def test_post_is_offloaded(client: httpx.Client, stack: Stack) -> None:
    answer = client.post(stack.url + "/parity/small.txt", content=b"form=1")
    assert answer.status_code == 200
    assert answer.content == CONTENT
    assert_offloaded(client, stack, "/parity/small.txt", answer)


@pytest.mark.parametrize("route", ["marker", "file"])
@pytest.mark.parametrize("name", AWKWARD_NAMES, ids=ascii)
def test_awkward_names(client: httpx.Client, stack: Stack, route: str, name: str) -> None:
    path = f"/{route}/{quote(name)}"
    answer = client.get(stack.url + path)
    assert answer.status_code == 200, answer.text
    assert answer.content == awkward_content(name)
    assert_offloaded(client, stack, path, answer)


def test_gated_file(client: httpx.Client, stack: Stack) -> None:
    refused = client.get(stack.url + "/gated/small.txt")
    assert refused.status_code == 403
    assert CONTENT not in refused.content
    allowed = client.get(stack.url + "/gated/small.txt", headers={"cookie": "session=ok"})
    assert allowed.status_code == 200
    assert allowed.content == CONTENT


def test_outside_the_roots_is_404(client: httpx.Client, stack: Stack) -> None:
    answer = client.get(stack.url + "/outside")
    assert answer.status_code == 404
    assert b"top secret" not in answer.content


def test_non_file_answer_passes(client: httpx.Client, stack: Stack) -> None:
    answer = client.get(stack.url + "/hello")
    assert answer.status_code == 200
    assert answer.content == HELLO
    assert answer.headers["x-hello"] == "1"


@pytest.mark.parametrize(
    "target",
    [
        f"{INTERNAL_PREFIX}/small.txt",
        f"{INTERNAL_PREFIX}//small.txt",
        f"{INTERNAL_PREFIX}/with%20space.txt",
        f"/%{ord(INTERNAL_PREFIX[1]):02X}{INTERNAL_PREFIX[2:]}/small.txt",
        f"/hello/..{INTERNAL_PREFIX}/small.txt",
        f"{INTERNAL_PREFIX.upper()}/small.txt",
    ],
)
def test_internal_prefix_is_404(stack: Stack, target: str) -> None:
    """A client asking for the internal prefix itself, however spelled, gets 404."""
    status, body = raw_get(stack.proxy.url, target)
    assert (status, body) != (200, SHADOW), f"{target} reached the app"
    assert status == 404, target
    assert CONTENT not in body


@pytest.mark.parametrize(
    "sent",
    [
        {"x-sendfile-type": "X-Sendfile"},
        {"x-sendfile-type": "None"},
        {"x-accel-proxy-secret": "guessed-0123456789abcdef"},
        {"x-sendfile-type": "X-Accel-Redirect", "x-accel-proxy-secret": "guessed-0123456789abcdef"},
    ],
    ids=lambda sent: "+".join(sent),
)
def test_client_trust_headers_change_nothing(
    client: httpx.Client, stack: Stack, sent: dict[str, str]
) -> None:
    plain = client.get(stack.url + "/marker/small.txt")
    tried = client.get(stack.url + "/marker/small.txt", headers=sent)
    assert tried.status_code == plain.status_code == 200
    assert tried.content == plain.content == CONTENT
    ignore = {"date"}
    assert {k: v for k, v in tried.headers.items() if k not in ignore} == {
        k: v for k, v in plain.headers.items() if k not in ignore
    }
    assert_offloaded(client, stack, "/marker/small.txt", tried)


@pytest.mark.parametrize(
    "sent",
    [
        {"x-sendfile-type": "X-Accel-Redirect"},
        {"x-sendfile-type": "X-Sendfile"},
        {"x-sendfile-type": "X-Accel-Redirect", "x-accel-proxy-secret": "guessed-0123456789abcdef"},
        {"x-sendfile-type": "X-Accel-Redirect", "x-accel-proxy-secret": PROXY_SECRET[:-1]},
    ],
    ids=lambda sent: "+".join(sent),
)
def test_direct_client_gets_the_stream(client: httpx.Client, stack: Stack, sent: dict[str, str]) -> None:
    """Talking to the app directly, with the trust headers but not the secret."""
    answer = client.get(stack.app.url + "/marker/small.txt", headers=sent)
    assert answer.status_code == 200
    assert answer.content == CONTENT
    assert not {"x-accel-redirect", "x-sendfile", "x-accel-source"} & set(answer.headers)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_header_parity(client: httpx.Client, stack: Stack, method: str) -> None:
    """The app's headers reach the client as they do when the middleware streams."""
    streamed = client.request(method, stack.app.url + "/parity/small.txt")
    offloaded = client.request(method, stack.url + "/parity/small.txt")
    assert streamed.status_code == offloaded.status_code == 200
    for name in dict(PARITY):
        sent, got = streamed.headers.get_list(name), offloaded.headers.get_list(name)
        assert sent, name
        if name == "Vary":
            # A proxy may add its own (Caddy: Accept-Encoding); the app's must be there.
            assert set(sent) <= set(got), name
        else:
            assert got == sent, name
    for name in ("etag", "last-modified", "accept-ranges", "content-length"):
        assert name in offloaded.headers, name
    assert offloaded.headers["content-length"] == streamed.headers["content-length"] == str(len(CONTENT))
    assert_offloaded(client, stack, "/parity/small.txt", offloaded)


def raw_get(base: str, target: str) -> tuple[int, bytes]:
    """A GET whose target goes out byte for byte, unnormalised by any client library."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body
