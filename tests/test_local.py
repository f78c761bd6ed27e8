"""Local sources: XACCEL_ROOTS, confinement to the roots, markers (paths,
file:// URIs, Django's RFC 2047 values) and the internal URIs nginx decodes."""

from __future__ import annotations

import contextlib
import email.header
import errno
import os
import resource
import threading
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest
from cases import CONTENT
from conftest import PREFIX, Media, open_fds
from hypothesis import given
from hypothesis import strategies as st

from xaccel_middleware import ConfigError, Settings, marker_for_path
from xaccel_middleware.decide import Decider, Offload, Refuse, Request, Stream
from xaccel_middleware.errors import SourceError
from xaccel_middleware.offload import internal_uri
from xaccel_middleware.plan import plan_response
from xaccel_middleware.settings import Root, parse_roots
from xaccel_middleware.sources import S3Location, local, parse_marker
from xaccel_middleware.sources.local import LocalFile, TruncatedFile, confine, open_confined

OFFLOAD = Request("GET", {}, "X-Accel-Redirect")
STREAM = Request("GET", {}, None)

# --- XACCEL_ROOTS -----------------------------------------------------------


def test_roots_parse_pairs(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").mkdir()
    (tmp_path / "c=d").mkdir()
    text = f" {tmp_path}/a=/pa/ , {tmp_path}/a/b=/pb,{tmp_path}/c=d=/pc "
    roots = parse_roots(text)
    # Longest directory first, so that a nested root wins.
    assert roots == (
        Root(f"{tmp_path}/a/b", "/pb"),
        Root(f"{tmp_path}/c=d", "/pc"),
        Root(f"{tmp_path}/a", "/pa"),
    )


def test_roots_resolve_symlinked_directories(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    assert parse_roots(f"{tmp_path}/link=/p") == (Root(str(tmp_path / "real"), "/p"),)


def test_roots_from_a_mapping_and_from_roots(tmp_path: Path) -> None:
    from_mapping = Settings(roots={str(tmp_path): "/p"})
    assert from_mapping.roots == (Root(str(tmp_path), "/p"),)
    assert Settings(roots=from_mapping.roots).roots == from_mapping.roots


@pytest.mark.parametrize(
    "text",
    [
        "{d}",  # no prefix
        "=/p",  # no directory
        "relative=/p",
        "{d}/missing=/p",
        "{d}/file=/p",  # not a directory
        "{d}=",  # empty prefix
        "{d}=/",  # the whole site
        "{d}=p",  # not absolute
        "{d}=/p?x",
        "{d}=/p#x",
        "{d}=/p%20",
        "{d}=/p q",
        "{d}=/p/../q",
        "{d}=/p//q",
        "{d}=/./p",
        "{d}=/p,{d}/sub=/p",  # one prefix for two directories
        "{d}=/p,{d}/sub=/p/sub",  # nested prefixes
    ],
)
def test_bad_roots(tmp_path: Path, text: str) -> None:
    (tmp_path / "file").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    with pytest.raises(ConfigError, match="XACCEL_ROOTS"):
        parse_roots(text.format(d=tmp_path))


def test_prefixes_that_only_share_characters_are_fine(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    assert len(parse_roots(f"{tmp_path}=/p,{tmp_path}/sub=/p-sub")) == 2


# --- Confinement ------------------------------------------------------------


@pytest.fixture(params=["kernel", "by-name"])
def roots(request: pytest.FixtureRequest, media: Media, monkeypatch: pytest.MonkeyPatch) -> tuple[Root, ...]:
    """Each confinement test runs with the path resolved by the kernel (Linux,
    /proc/self/fd) and by ``os.path.realpath`` (elsewhere)."""
    if request.param == "by-name":
        monkeypatch.setattr(local, "_pinned", lambda: False)
    elif not local._pinned():
        pytest.skip("no O_PATH and /proc/self/fd here")
    return media.settings().roots


def test_confine_accepts_a_file_inside(media: Media, roots: tuple[Root, ...]) -> None:
    real, root = confine(str(media.file), roots)
    assert (real, root.prefix) == (str(media.file.resolve()), PREFIX)


def test_confine_rejects_dotdot(media: Media, roots: tuple[Root, ...]) -> None:
    with pytest.raises(SourceError):
        confine(f"{media.root}/../media-private/secret.txt", roots)


def test_confine_allows_dotdot_that_stays_inside(media: Media, roots: tuple[Root, ...]) -> None:
    (media.root / "sub").mkdir()
    real, _ = confine(f"{media.root}/sub/../file.txt", roots)
    assert real == str(media.file.resolve())


def test_confine_rejects_a_symlink_pointing_out(media: Media, roots: tuple[Root, ...]) -> None:
    (media.root / "out.txt").symlink_to(media.private)
    (media.root / "outdir").symlink_to(media.private.parent)
    for path in (media.root / "out.txt", media.root / "outdir" / "secret.txt"):
        with pytest.raises(SourceError):
            confine(str(path), roots)


def test_confine_follows_a_symlink_that_stays_inside(media: Media, roots: tuple[Root, ...]) -> None:
    (media.root / "alias.txt").symlink_to("file.txt")
    assert confine(str(media.root / "alias.txt"), roots)[0] == str(media.file.resolve())


def test_confine_rejects_the_sibling_sharing_the_prefix(media: Media, roots: tuple[Root, ...]) -> None:
    assert str(media.private).startswith(str(media.root))
    with pytest.raises(SourceError):
        confine(str(media.private), roots)


def test_confine_rejects_the_root_itself_and_relative_paths(media: Media, roots: tuple[Root, ...]) -> None:
    for path in (str(media.root), str(media.root) + "/", "file.txt", "media/file.txt", ""):
        with pytest.raises(SourceError):
            confine(path, roots)


def test_confine_rejects_nul(media: Media, roots: tuple[Root, ...]) -> None:
    with pytest.raises(SourceError):
        confine(f"{media.file}\x00.png", roots)


def test_only_regular_files_are_confined(media: Media, roots: tuple[Root, ...]) -> None:
    (media.root / "dir").mkdir()
    os.mkfifo(media.root / "fifo")
    for name in ("dir", "fifo"):
        for resolve in (confine, open_confined):
            with pytest.raises(SourceError, match="not a regular file"):
                resolve(str(media.root / name), roots)


def test_open_confined_reads_the_file_under_its_real_name(media: Media, roots: tuple[Root, ...]) -> None:
    (media.root / "alias.txt").symlink_to("file.txt")
    file = open_confined(str(media.root / "alias.txt"), roots)
    try:
        assert file.path == str(media.file.resolve())
        assert file.meta.content_type == "text/plain"
        assert b"".join(file.read(0, file.meta.size, 1 << 20)) == CONTENT
    finally:
        file.close()
    with pytest.raises(SourceError):
        open_confined(str(media.private), roots)


@pytest.mark.skipif(
    not local._pinned(), reason="no O_PATH and /proc/self/fd: O_NOFOLLOW only narrows this window"
)
def test_a_path_swapped_after_the_check_still_opens_the_file_checked(
    media: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check and the open are one resolution: a directory replaced by a
    symlink pointing out, between the two, cannot redirect the open."""
    roots = media.settings().roots
    (media.root / "sub").mkdir()
    (media.root / "sub" / "secret.txt").write_bytes(b"public\n")
    checked = local.find_root

    def find_root_then_swap(real: str, roots: tuple[Root, ...]) -> Root | None:
        found = checked(real, roots)
        (media.root / "sub").rename(media.root / "sub-old")
        (media.root / "sub").symlink_to(media.private.parent)
        return found

    monkeypatch.setattr(local, "find_root", find_root_then_swap)
    file = open_confined(str(media.root / "sub" / "secret.txt"), roots)
    try:
        assert b"".join(file.read(0, file.meta.size, 1 << 20)) == b"public\n"
    finally:
        file.close()
    assert (media.root / "sub" / "secret.txt").read_bytes() == b"top secret\n"


def test_a_real_path_longer_than_path_max_is_a_404(media: Media) -> None:
    """The kernel can reach a file through symlinks whose real path it cannot
    write back (ENAMETOOLONG): refused, never an error."""
    parts = ["d" * 250] * 18  # 4,518 bytes below the root
    here = os.open(media.root, os.O_RDONLY)
    try:
        for part in parts:
            os.mkdir(part, dir_fd=here)
            below = os.open(part, os.O_RDONLY, dir_fd=here)
            os.close(here)
            here = below
        os.close(os.open("f.txt", os.O_CREAT | os.O_WRONLY, dir_fd=here))
    finally:
        os.close(here)
    os.symlink("/".join(parts[:9]), media.root / "s1")
    os.symlink("/".join(parts[9:]), os.path.join(media.root, "s1", "s2"))
    marker = str(media.root / "s1" / "s2" / "f.txt")
    decider = Decider(media.settings())
    for request in (OFFLOAD, STREAM):
        assert decider.for_marker(marker.encode(), request, []) == Refuse(404)
    # Handed over by path (pathsend), it is resolved by name instead: no 500 either.
    assert decider.for_file(marker, None, STREAM, []) == Refuse(404)
    assert isinstance(decider.for_file(marker, None, OFFLOAD, []), (Offload, Refuse))


@pytest.mark.skipif(not local._pinned(), reason="no O_PATH and /proc/self/fd here")
@pytest.mark.parametrize("resolve", [confine, open_confined])
def test_a_name_deleted_while_it_is_resolved_is_a_404(
    media: Media, monkeypatch: pytest.MonkeyPatch, resolve: Any
) -> None:
    """/proc names an unlinked file "... (deleted)"; with a hard link left
    elsewhere the file still has links, so the name itself is checked."""
    inside = media.root / "linked.txt"
    inside.write_bytes(b"x")
    os.link(inside, media.private.parent / "linked.txt")
    readlink = os.readlink

    def unlink_then_readlink(path: str) -> str:
        inside.unlink(missing_ok=True)
        return readlink(path)

    monkeypatch.setattr(os, "readlink", unlink_then_readlink)
    with pytest.raises(SourceError) as caught:
        resolve(str(inside), media.settings().roots)
    assert caught.value.status == 404


def test_nothing_is_served_without_roots(media: Media) -> None:
    with pytest.raises(SourceError):
        confine(str(media.file), ())


@pytest.mark.parametrize(
    "raw",
    [
        b"/srv/a\x00b",
        b"/srv/a\rb",
        b"/srv/a\nb",
        b"file:///srv/a%00b",
        b"file:///srv/a%0Ab",
        b"file:///srv/a%0db",
        b"relative/path",
        b"./file",
        b"",
        b"file:relative",
        b"file://otherhost/srv/a",
        b"file:///srv/a?x=1",
        b"file:///srv/a#frag",
        b"http://example.com/a",
        b"s3://",
        b"s3://bucket",
        b"s3://bucket/",
        b"s3://bucket/key?versionId=1",
        b"s3://bucket/key#x",
        b"file:///srv/a?",  # an empty query is still a query
        b"file://localhost",
        b"=?utf-8?b?L3Nydi9hAGI=?=",  # RFC 2047 hiding a NUL
        b"=?utf-8?q?=0A?=",
        b"=?nonexistent-charset?q?/srv/a?=",
        b"=?utf-8?b?/w==?=",  # a byte that is not UTF-8
    ],
)
def test_bad_markers_are_refused(raw: bytes) -> None:
    with pytest.raises(SourceError) as info:
        parse_marker(raw)
    assert info.value.status == 404


def test_uri_markers_keep_every_byte_of_the_name() -> None:
    """A raw tab in a URI names a file with a tab; urlsplit() would drop it and
    name another file."""
    assert parse_marker(b"file:///srv/a\tb.txt") == "/srv/a\tb.txt"
    assert parse_marker(b"file:/srv/a b.txt") == "/srv/a b.txt"
    assert parse_marker(b"file://localhost/srv/x%3Fy") == "/srv/x?y"


@given(st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00\r\n/"), min_size=1))
def test_marker_for_path_round_trips(name: str) -> None:
    path = "/srv/media/" + name
    assert parse_marker(marker_for_path(path).encode("latin-1")) == os.path.abspath(path)


@given(st.binary(max_size=80))
def test_parse_marker_fails_only_with_source_error(raw: bytes) -> None:
    with contextlib.suppress(SourceError):
        parse_marker(raw)


@given(st.binary(max_size=40))
def test_parse_marker_never_returns_a_relative_path_or_control_bytes(raw: bytes) -> None:
    for candidate in (raw, b"/" + raw, b"file:///" + raw, b"=?utf-8?b?" + raw + b"?="):
        try:
            marker = parse_marker(candidate)
        except SourceError:
            continue
        if isinstance(marker, str):
            assert marker.startswith("/")
            assert not {"\x00", "\r", "\n"} & set(marker)


def test_fifo_and_directory_are_refused_without_hanging(media: Media) -> None:
    fifo = media.root / "pipe"
    os.mkfifo(fifo)
    decider = Decider(media.settings())
    results: list[object] = []
    worker = threading.Thread(
        target=lambda: results.extend(
            decider.for_marker(str(p).encode(), STREAM, []) for p in (fifo, media.root)
        )
    )
    worker.start()
    worker.join(timeout=5)
    if worker.is_alive():  # unblock the open() so that the test process can end
        with open(fifo, "wb"):
            pass
        worker.join()
        pytest.fail("opening a FIFO blocked the request")
    assert results == [Refuse(404), Refuse(404)]


def test_fifo_and_directory_are_not_offloaded(media: Media) -> None:
    fifo = media.root / "pipe"
    os.mkfifo(fifo)
    (media.root / "dir").mkdir()
    decider = Decider(media.settings())
    for path in (fifo, media.root / "dir"):
        assert decider.for_marker(str(path).encode(), OFFLOAD, []) == Refuse(404)


# --- Markers and internal URIs ----------------------------------------------

NAMES = [
    "plain.txt",
    "with space.txt",
    "100%.txt",
    "%41.txt",  # must not turn into A.txt
    "hash#tag.txt",
    "what?.txt",
    "a+b.txt",
    "semi;colon&amp=.txt",
    "quote'\"<>.txt",
    "back\\slash.txt",
    unicodedata.normalize("NFC", "café.txt"),
    unicodedata.normalize("NFD", "café.txt"),
    "日本語.txt",
    "emoji-😀.txt",
    "tab\tname.txt",
    "sub dir/deep/file.txt",
]
NON_UTF8 = [b"latin1-\xe9.txt", b"bad-\xff\xfe.txt", b"\x80.txt"]


def _make(root: Path, name: bytes) -> Path:
    path = os.path.join(os.fsencode(root), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"content of " + name)
    return Path(os.fsdecode(path))


@pytest.mark.parametrize("name", [os.fsencode(n) for n in NAMES] + NON_UTF8, ids=repr)
def test_internal_uri_decodes_back_to_the_exact_bytes(media: Media, name: bytes) -> None:
    path = _make(media.root, name)
    outcome = Decider(media.settings()).for_marker(marker_for_path(path).encode("latin-1"), OFFLOAD, [])
    assert isinstance(outcome, Offload), outcome
    uri = dict(outcome.headers)["x-accel-redirect"]
    assert uri.isascii() and uri.isprintable() and " " not in uri
    assert "?" not in uri and "#" not in uri  # nginx would split a raw "?" off as a query
    # nginx percent-decodes X-Accel-Redirect, then maps the prefix onto the root.
    assert unquote_to_bytes(uri) == os.fsencode(PREFIX) + b"/" + name


@pytest.mark.parametrize("name", [os.fsencode(n) for n in NAMES] + NON_UTF8, ids=repr)
def test_file_marker_reaches_the_file(media: Media, name: bytes) -> None:
    path = _make(media.root, name)
    marker = marker_for_path(path)
    assert marker.startswith("file:///")
    marker.encode("latin-1")  # fits in a PEP 3333 header as it is
    assert parse_marker(marker.encode("latin-1")) == str(path)
    outcome = Decider(media.settings()).for_marker(marker.encode("latin-1"), STREAM, [])
    assert isinstance(outcome, Stream)
    try:
        assert outcome.prefetch(1 << 20) == [b"content of " + name]
    finally:
        outcome.file.close()


def test_internal_uri_keeps_slashes_and_escapes_the_rest() -> None:
    assert internal_uri("/p", "a b/c%d/e?f") == "/p/a%20b/c%25d/e%3Ff"


@pytest.mark.parametrize("name", ["café.txt", "Ünïcödé.txt", "£.txt"])
def test_a_plain_path_with_latin1_text_as_frameworks_send_it(media: Media, name: str) -> None:
    """Django and Starlette write a str header value as latin-1 bytes: "é" is
    one byte 0xE9 on the wire, and still means the file named "é"."""
    path = _make(media.root, os.fsencode(name))
    assert parse_marker(str(path).encode("latin-1")) == str(path)
    assert parse_marker(str(path).encode("utf-8")) == str(path)


@pytest.mark.parametrize("name", ["日本語.txt", "€uro.txt", unicodedata.normalize("NFD", "café.txt")])
def test_django_rfc2047_values(media: Media, name: str) -> None:
    """What Django's HttpResponse makes of a header value that is not latin-1."""
    path = _make(media.root, os.fsencode(name))
    encoded = email.header.Header(str(path), "utf-8", maxlinelen=10_000).encode()
    assert encoded.startswith("=?utf-8?")
    assert parse_marker(encoded.encode("latin-1")) == str(path)
    outcome = Decider(media.settings()).for_marker(encoded.encode("latin-1"), STREAM, [])
    assert isinstance(outcome, Stream)
    outcome.file.close()


def test_rfc2047_in_another_charset() -> None:
    assert parse_marker(b"=?iso-8859-1?q?/srv/caf=E9.txt?=") == "/srv/café.txt"


def test_django_really_encodes_that_way() -> None:
    """The header store of Django's HttpResponse (it needs no settings)."""
    from django.http.response import ResponseHeaders

    headers = ResponseHeaders({})
    headers["X-Accel-Source"] = "/srv/日本/x.txt"
    assert headers["X-Accel-Source"].startswith("=?utf-8?")
    assert parse_marker(headers["X-Accel-Source"].encode("latin-1")) == "/srv/日本/x.txt"
    headers["X-Accel-Source"] = "/srv/café.txt"
    assert headers["X-Accel-Source"] == "/srv/café.txt"  # latin-1: sent as it is
    assert parse_marker(headers["X-Accel-Source"].encode("latin-1")) == "/srv/café.txt"


def test_s3_markers_parse() -> None:
    assert parse_marker(b"s3://bucket/a%20b/c%2Fd.txt") == S3Location("bucket", "a b/c/d.txt")
    assert parse_marker(b"s3://bucket/a\tb") == S3Location("bucket", "a\tb")
    outcome = Decider(Settings()).for_marker(b"s3://bucket/key", STREAM, [])
    assert outcome == Refuse(404)  # no S3 source configured in this build


# --- LocalFile --------------------------------------------------------------


def test_local_file_close_is_idempotent(media: Media) -> None:
    before = open_fds()
    file = LocalFile.open(str(media.file))
    assert open_fds() == before + 1
    file.close()
    file.close()
    assert open_fds() == before


def test_local_file_refuses_a_symlink_swapped_in(media: Media) -> None:
    link = media.root / "link"
    link.symlink_to(media.private)
    with pytest.raises(SourceError):
        LocalFile.open(str(link))


def test_running_out_of_descriptors_is_a_503_not_a_cacheable_404(media: Media) -> None:
    """EMFILE is an outage: a 404 would be cached and hide it."""
    decider = Decider(media.settings())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Below the descriptors already open: the next open() gets EMFILE.
    resource.setrlimit(resource.RLIMIT_NOFILE, (3, hard))
    try:
        with pytest.raises(SourceError) as info:
            LocalFile.open(str(media.file))
        outcome = decider.for_marker(str(media.file).encode(), STREAM, [])
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert info.value.status == 503
    assert outcome == Refuse(503) and outcome.body == b"Service Unavailable"


OPEN_ERRORS = [
    # No file to serve here.
    (errno.ENOENT, 404),
    (errno.ENOTDIR, 404),
    (errno.ELOOP, 404),
    (errno.EACCES, 404),
    (errno.EISDIR, 404),
    (errno.ENXIO, 404),
    (errno.EAGAIN, 404),
    # The server failing.
    (errno.EMFILE, 503),
    (errno.ENFILE, 503),
    (errno.EIO, 503),
    (errno.ENOMEM, 503),
]


@pytest.mark.parametrize(("code", "status"), OPEN_ERRORS, ids=[errno.errorcode[c] for c, _ in OPEN_ERRORS])
def test_open_errors_map_to_a_status(code: int, status: int, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_open(path: str, flags: int) -> int:
        raise OSError(code, os.strerror(code), path)

    monkeypatch.setattr(os, "open", failing_open)
    with pytest.raises(SourceError) as info:
        LocalFile.open("/srv/media/file.txt")
    assert info.value.status == status


def test_local_file_reads_are_bounded(media: Media) -> None:
    file = LocalFile.open(str(media.file))
    try:
        with open(media.file, "ab") as f:
            f.write(b"grown")
        assert b"".join(file.read(0, len(CONTENT), 4)) == CONTENT
        assert b"".join(file.read(2, 5, 1)) == CONTENT[2:5]
    finally:
        file.close()


def test_prefetch_of_a_file_that_shrank_raises_rather_than_send_short(media: Media) -> None:
    file = LocalFile.open(str(media.file))
    plan = plan_response("GET", {}, file.meta)
    os.truncate(media.file, 5)
    try:
        with pytest.raises(TruncatedFile):
            Stream(file, plan).prefetch(1 << 20)
    finally:
        file.close()


def test_local_file_meta(media: Media) -> None:
    file = LocalFile.open(str(media.file))
    file.close()
    st_ = os.stat(media.file)
    assert file.meta.size == len(CONTENT)
    assert file.meta.content_type == "text/plain"
    assert file.meta.etag == f'"{st_.st_ino:x}-{st_.st_mtime_ns:x}-{st_.st_size:x}"'
