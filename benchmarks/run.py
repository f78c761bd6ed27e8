"""Run every contender side by side and write RESULTS.md and the ratio chart.

    python benchmarks/run.py            # full run: a few minutes
    python benchmarks/run.py --quick    # smoke run: under a minute

Servers start once and stay up; within each round the contenders take turns
(A B C ... A B C ...), so that a noisy neighbour hurts them all alike. Under
``CI=true`` a missing contender is an error; elsewhere it is listed as missing.
Timings are never asserted: the exit status says only whether the harness worked.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: make the repository importable as the package's parent.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from benchmarks import contenders as contenders_mod
from benchmarks import measure, report
from benchmarks.load import make_loader
from benchmarks.media import FILES, make_media
from benchmarks.procs import Server

HERE = Path(__file__).resolve().parent
IN_CI = os.environ.get("CI", "").lower() == "true"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of under a minute (1 round, 1 s each, no 1 GiB file)",
    )
    parser.add_argument("--rounds", type=int, help="rounds per workload (full: 4, quick: 1)")
    parser.add_argument("--seconds", type=int, help="seconds per measurement (full: 2, quick: 1)")
    parser.add_argument(
        "--load",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator (auto: wrk when installed)",
    )
    parser.add_argument(
        "--only", help="comma-separated workload keys to run (4k,1m,100m,range,resume,hello,rss)"
    )
    parser.add_argument(
        "--media", help="folder for the served files, kept between runs (default: in the temp folder)"
    )
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="another checkout of the library (say, git worktree add DIR main): streamed beside this one",
    )
    parser.add_argument("--replot", metavar="JSON", help="only rewrite the report from a run's saved JSON")
    parser.add_argument(
        "--out", help="the Markdown report (default: benchmarks/RESULTS.md; RESULTS-quick.md for --quick)"
    )
    return parser


def _plan_timing(quick: bool) -> tuple[str | None, float | None, float | None]:
    """benchmarks/bench_plan.py's table, its slowest plan with the range cap
    lifted and its plan under the default cap, in ms."""
    script = HERE / "bench_plan.py"
    if not script.exists():
        return None, None, None
    argv = [sys.executable, str(script), *(["--repeat", "5"] if quick else [])]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"bench_plan.py failed: {done.stderr.strip()[-2000:]}")
    text = done.stdout.strip()
    found = re.search(r"slowest plan_response: ([0-9.]+) ms", text)
    capped = re.search(r"default-cap plan_response: ([0-9.]+) ms", text)
    return text, float(found.group(1)) if found else None, float(capped.group(1)) if capped else None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.replot:
        saved = Path(args.replot).resolve()
        data = json.loads(saved.read_text())
        out = saved.with_suffix(".md")
        quick = "--quick" in data["settings"]["command"]
        default = HERE / ("ratios-quick.png" if quick else "ratios.png")
        _report(data, out, default if saved.parent == HERE else saved.with_suffix(".png"), quick)
        print(f"wrote {out}")
        return 0
    rounds = args.rounds or (1 if args.quick else 4)
    seconds = args.seconds or (1 if args.quick else 2)
    only = set(args.only.split(",")) if args.only else None
    out = Path(args.out) if args.out else HERE / ("RESULTS-quick.md" if args.quick else "RESULTS.md")
    chart = (
        out.with_suffix(".png") if args.out else HERE / ("ratios-quick.png" if args.quick else "ratios.png")
    )
    media_dir = args.media or os.path.join(tempfile.gettempdir(), f"xaccel-bench-media-{os.getuid()}")
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)

    names = ["small-4k.bin", "medium-1m.bin", "large-100m.bin"] + ([] if args.quick else ["huge-1g.bin"])
    paths = make_media(media_dir, names)
    say(f"media ready in {media_dir}")
    machine = report.machine_now()
    workdir = Path(tempfile.mkdtemp(prefix="xaccel-bench-"))
    os.chmod(workdir, 0o755)
    loader = make_loader(args.load, str(workdir))
    load_name = (
        "wrk, 1 thread" if type(loader).__name__ == "Wrk" else "the Python client in benchmarks/load.py"
    )

    baseline = Path(args.baseline).resolve() if args.baseline else None
    if baseline is not None and not (baseline / "xaccel_middleware" / "__init__.py").exists():
        print(f"error: {baseline} holds no xaccel_middleware package", file=sys.stderr)
        return 2
    found, missing = contenders_mod.build(workdir, media_dir, baseline)
    if missing and IN_CI:
        for m in missing:
            print(f"error: {m.label} is required under CI=true: {m.why}", file=sys.stderr)
        return 1
    by_key = {c.key: c for c in found}
    servers: list[Server] = contenders_mod.servers(found)
    try:
        _start(servers, by_key, say)
        small = {n: Path(paths[n]).read_bytes() for n in ("small-4k.bin", "medium-1m.bin")}
        problems = [p for c in found for p in measure.preflight(c, small, "large-100m.bin")]
        if problems:
            for p in problems:
                print(f"error: {p}", file=sys.stderr)
            return 1
        say(f"{len(servers)} servers up, {len(found)} contenders checked")

        run = measure.Run()
        if only is None or "rss" in only:
            # First, while the apps are fresh: a warm process reuses what earlier
            # downloads made it allocate, and would hide a stream's own footprint.
            big = "large-100m.bin" if args.quick else "huge-1g.bin"
            for key in measure.FILE_CONTENDERS:
                if key in by_key:
                    probe = measure.probe_memory(by_key[key], big, FILES[big])
                    run.probes.append(probe)
                    say(f"   rss {key:<16} +{probe.growth / 2**20:6.2f} MiB in {probe.seconds:.2f} s")
        workloads = [
            w for w in measure.WORKLOADS if (w.quick or not args.quick) and (only is None or w.key in only)
        ]
        measure.run_workloads(by_key, workloads, loader, rounds, seconds, run, say)
    finally:
        for server in reversed(servers):
            server.stop()
    plan_row, plan_ms, capped_ms = _plan_timing(args.quick)
    say(
        "planning a 10,000-range header: "
        + (f"{plan_ms} ms at worst" if plan_row else "bench_plan.py is missing")
    )

    data = {
        "settings": {
            "command": "nox -s bench -- --quick" if args.quick else "nox -s bench",
            "date": report.today(),
            "rounds": str(rounds),
            "seconds": str(seconds),
            "load": load_name,
        },
        "machine": machine,
        "labels": {c.key: c.label for c in found},
        "missing": [dataclasses.asdict(m) for m in missing],
        "workloads": [w.key for w in workloads],
        "samples": [dataclasses.asdict(x) for x in run.samples],
        "probes": [dataclasses.asdict(x) for x in run.probes],
        "problems": run.problems,
        "plan": [plan_row, plan_ms, capped_ms],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    rows = _report(data, out, chart, quick=args.quick)
    say(f"wrote {out} and {chart.name}")
    for t in rows:
        mark = {True: "ok  ", False: "MISS", None: "n/a "}[t.met]
        print(f"  {mark} {t.label}: {t.shown} (goal {t.goal_shown})")
    for p in run.problems:
        print(f"  problem: {p}")
    return 0


def _report(data: dict[str, Any], out: Path, chart: Path, quick: bool) -> list[report.Target]:
    """Write the Markdown report and the chart from a run's saved data."""
    run = measure.Run(
        [measure.Sample(**x) for x in data["samples"]],
        [measure.Probe(**x) for x in data["probes"]],
        data["problems"],
    )
    by_key = {w.key: w for w in measure.WORKLOADS}
    notes = HERE / "NOTES.md"
    plan = [*data["plan"], None][:3]  # row, slowest ms, default-cap ms (older runs lack it)
    return report.write(
        out,
        chart,
        run,
        data["labels"],
        [contenders_mod.Missing(**m) for m in data["missing"]],
        [by_key[k] for k in data["workloads"]],
        data["settings"],
        [tuple(row) for row in data["machine"]],
        plan[0],
        plan[1],
        plan[2],
        notes.read_text() if notes.exists() and not quick else "",
    )


def _start(servers: list[Server], contenders: dict[str, contenders_mod.Contender], say: object) -> None:
    fronts = {id(c.front) for c in contenders.values() if c.front is not None}
    apps = [s for s in servers if id(s) not in fronts]
    for group in (apps, [s for s in servers if id(s) in fronts]):
        for server in group:
            server.start()
        for server in group:
            server.wait_ready()


if __name__ == "__main__":
    sys.exit(main())
