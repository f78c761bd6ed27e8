"""Profile one contender under one workload with py-spy (``pip install py-spy``).

    python benchmarks/profile.py xaccel-uvicorn 4k [--seconds 5]

Starts only that contender's servers, drives the workload with wrk, samples
the app server's processes with py-spy, and prints where the time went: the
share of samples in each function, inclusive and own. This is how the limits
in NOTES.md were found.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from benchmarks import contenders, measure
from benchmarks.load import LoadResult, make_loader
from benchmarks.media import make_media
from benchmarks.procs import find_binary, tree


def _summary(raw: Path, top: int) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.rsplit("/", 1)[-1] if "(" in f else f for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    lines = [f"{total} samples", "", "inclusive:"]
    lines += [f"{v / total:6.1%}  {k}" for k, v in inclusive.most_common(top)]
    lines += ["", "own:"]
    lines += [f"{v / total:6.1%}  {k}" for k, v in own.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("contender")
    parser.add_argument("workload", choices=[w.key for w in measure.WORKLOADS])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    spy = find_binary("py-spy")
    if spy is None:
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    workload = next(w for w in measure.WORKLOADS if w.key == args.workload)
    media = os.path.join(tempfile.gettempdir(), f"xaccel-bench-media-{os.getuid()}")
    make_media(media, ["small-4k.bin", "medium-1m.bin", "large-100m.bin"])
    workdir = Path(tempfile.mkdtemp(prefix="xaccel-profile-"))
    os.chmod(workdir, 0o755)
    found, _ = contenders.build(workdir, media)
    chosen = next((c for c in found if c.key == args.contender), None)
    if chosen is None or chosen.app is None:
        print(f"no app contender {args.contender!r}: {', '.join(c.key for c in found)}", file=sys.stderr)
        return 2
    servers = contenders.servers([chosen])
    loader = make_loader("auto", str(workdir))
    raw = workdir / "profile.txt"
    try:
        for server in servers:
            server.start()
            server.wait_ready()
        small = {"small-4k.bin": Path(media, "small-4k.bin").read_bytes()}
        problems = measure.preflight(chosen, small, "large-100m.bin")
        if problems:
            raise RuntimeError("; ".join(problems))
        pids = [str(p) for p in tree(chosen.app.pid)]
        # py-spy follows one process; the busiest is the worker (or the only one).
        target = pids[-1]
        record = [spy, "record", "-p", target, "-d", str(args.seconds + 1), "-r", "500"]
        # --gil: only the thread holding the GIL, that is, where Python spends CPU.
        record += ["-f", "raw", "-o", str(raw), "--nonblocking", "--gil"]
        spying = subprocess.Popen(record, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result: list[object] = []
        driver = threading.Thread(
            target=lambda: result.append(
                loader.run(
                    chosen.url + measure.path_for(chosen, workload),
                    workload.connections,
                    args.seconds,
                    headers=dict(workload.headers),
                    range_size=workload.range_size,
                    file_size=workload.file_size,
                )
            )
        )
        driver.start()
        driver.join()
        spying.wait()
    finally:
        for server in reversed(servers):
            server.stop()
    load = result[0]
    assert isinstance(load, LoadResult)
    figures = f"{load.rps:,.0f} req/s, {load.mbps:,.1f} MB/s, p99 {load.p99_ms:.1f} ms"
    print(f"{chosen.label}, {workload.label}: {figures}")
    print("py-spy --gil: samples of the thread holding the GIL, that is, of Python at work.")
    print(_summary(raw, args.top))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
