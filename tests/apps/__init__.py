"""Small apps for the real-server tests, each wrapped in the middleware.

Every app serves the same routes, so one set of tests runs against all of them:

- ``/marker/{name}``: an empty 200 with ``X-Accel-Source`` naming a media file;
- ``/file/{name}``: the framework's own file response (Starlette ``FileResponse``,
  Django ``FileResponse``, ``wsgi.file_wrapper``);
- ``/outside``: a marker for a file outside every root (``<media>-private``, a
  sibling whose name shares the root's prefix);
- ``/gated/{name}``: 403 unless the cookie ``session=ok`` is sent, then a marker;
- ``/hello``: plain text that the middleware must leave alone.

The servers import them with ``tests/`` on ``PYTHONPATH``; the middleware reads
its ``XACCEL_*`` variables, the apps read ``XACCEL_TEST_MEDIA``.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

MEDIA_VARIABLE = "XACCEL_TEST_MEDIA"
PROXY_SECRET = "test-proxy-secret-0123456789"
INTERNAL_PREFIX = "/protected"
HELLO = b"hello, world\n"
SECRET_NAME = "secret.txt"

# Names that break naive URL, header or path handling. NFC and NFD spellings of
# the same word are different files on Linux and must not be confused.
AWKWARD_NAMES = (
    "with space.txt",
    "100%.txt",
    "hash#tag.txt",
    "what?.txt",
    "a+b.txt",
    unicodedata.normalize("NFC", "café.txt"),
    unicodedata.normalize("NFD", "café.txt"),
)


def media_dir() -> Path:
    return Path(os.environ[MEDIA_VARIABLE])


def outside_path() -> Path:
    """A file beside the media root, not in it: the prefix matches, the component does not."""
    media = media_dir()
    return media.with_name(media.name + "-private") / SECRET_NAME


def awkward_content(name: str) -> bytes:
    """Each awkward file holds its own name, so a mix-up shows in the body."""
    return f"file {name!r}\n".encode()


def make_media(folder: Path, small: bytes, big_size: int) -> None:
    """Fill ``folder`` (the root) and its private sibling.

    ``small.txt`` holds ``small``; ``big.bin`` has ``big_size`` random bytes so
    that any offset can be checked; the awkward names hold their own names.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "small.txt").write_bytes(small)
    (folder / "big.bin").write_bytes(os.urandom(big_size))
    for name in AWKWARD_NAMES:
        (folder / name).write_bytes(awkward_content(name))
    private = folder.with_name(folder.name + "-private")
    private.mkdir(exist_ok=True)
    (private / SECRET_NAME).write_bytes(b"top secret\n")


def server_env(media: Path) -> dict[str, str]:
    """The variables a server process gets: ``media`` is the only root, no peer is
    trusted, and the proxy secret is set. Every other ``XACCEL_*`` variable is
    blanked (unset), so the caller's own environment cannot change the results."""
    from xaccel_middleware.settings import VARIABLES

    return {
        **dict.fromkeys(VARIABLES.values(), ""),
        MEDIA_VARIABLE: str(media),
        "XACCEL_MODE": "auto",
        "XACCEL_ROOTS": f"{media}={INTERNAL_PREFIX}",
        "XACCEL_PROXY_SECRET": PROXY_SECRET,
    }
