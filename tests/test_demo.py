"""``xaccel demo`` without a proxy: its sample media are written where no other
local user can plant a link, and removed when the demo ends."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from xaccel_middleware.demo import PDF, VIDEO, VIDEO_SIZE, make_media


def test_make_media_replaces_planted_links_instead_of_following_them(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep me")
    missing = tmp_path / "created-through-a-dangling-link"
    media = tmp_path / "media"
    media.mkdir()
    (media / VIDEO).symlink_to(victim)
    (media / PDF).symlink_to(missing)
    files = make_media(str(media))
    assert victim.read_bytes() == b"keep me"
    assert not missing.exists()
    for name in (VIDEO, PDF):
        assert stat.S_ISREG(os.lstat(files[name]).st_mode)
    assert os.path.getsize(files[VIDEO]) == VIDEO_SIZE
    assert Path(files[PDF]).read_bytes().startswith(b"%PDF-")
    # Nothing but the two files is left behind.
    assert sorted(os.listdir(media)) == sorted([VIDEO, PDF])


def test_make_media_keeps_files_already_made(tmp_path: Path) -> None:
    first = make_media(str(tmp_path))
    before = {name: os.stat(path).st_ino for name, path in first.items()}
    second = make_media(str(tmp_path))
    assert {name: os.stat(path).st_ino for name, path in second.items()} == before


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_demo_uses_a_private_folder_and_removes_it(stop: signal.Signals) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("XACCEL_")}
    argv = [sys.executable, "-m", "xaccel_middleware", "demo", "--port", "0"]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean
    ) as process:
        try:
            assert process.stdout is not None
            shown = "".join(process.stdout.readline() for _ in range(3))
            url = re.search(r"serving on (http://127\.0\.0\.1:\d+), streamed", shown)
            folder = re.search(r"media folder: (.+)", shown)
            assert url and folder, shown
            media = Path(folder[1])
            assert media.parent == Path(tempfile.gettempdir()) and media.name != "xaccel-demo-media"
            assert stat.S_IMODE(media.stat().st_mode) == 0o700 and media.stat().st_uid == os.getuid()
            answer = httpx.get(f"{url[1]}/media/{VIDEO}", headers={"range": "bytes=0-99"})
            assert answer.status_code == 206 and len(answer.content) == 100
            process.send_signal(stop)
            assert process.wait(timeout=20) == 0
        finally:
            if process.poll() is None:
                process.kill()
    assert not media.exists()
