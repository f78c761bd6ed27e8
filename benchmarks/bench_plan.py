"""How long the pure core takes over a header of 10,000 ranges.

CVE-2025-62727: Starlette merged ranges in O(n²), so one request with a few
thousand ranges held a worker for seconds. This times ``parse_range`` alone and
``plan_response`` (parse, coalesce, multipart framing) on several shapes of such
a header, with ``max_ranges`` raised above the count so the full work runs, and
the default cap path that refuses it.

    python benchmarks/bench_plan.py [--ranges 10000] [--repeat 41]

Prints a markdown table of medians in milliseconds. Standard library only.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xaccel_middleware.plan import FileMeta, plan_response
from xaccel_middleware.ranges import parse_range

SIZE = 10**12  # large enough that no shape asks for more bytes than the file holds
TARGET_MS = 5.0


def shapes(n: int) -> dict[str, str]:
    return {
        "disjoint": ",".join(f"{i * 100}-{i * 100 + 49}" for i in range(n)),
        "reversed": ",".join(f"{i * 100}-{i * 100 + 49}" for i in reversed(range(n))),
        "overlapping": ",".join(f"{i * 100}-{i * 100 + 149}" for i in range(n)),
        "shuffled-adjacent": ",".join(
            f"{(i * 7919) % n * 100}-{(i * 7919) % n * 100 + 99}" for i in range(n)
        ),
        # OWS, open and suffix ranges: the general (non-plain) parsing path.
        "mixed-syntax": ", ".join(
            f"{i * 100}-" if i == n - 1 else f"-{i + 1}" if i % 1000 == 0 else f"{i * 100} - {i * 100 + 49}"
            for i in range(n)
        ),
    }


def timed_ms(action: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median and fastest run; on a shared machine the fastest shows the code's cost."""
    action()  # warm up
    times = []
    gc.collect()
    for _ in range(repeat):
        began = time.perf_counter_ns()
        action()
        times.append(time.perf_counter_ns() - began)
    return statistics.median(times) / 1e6, min(times) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranges", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=41)
    args = parser.parse_args(argv)
    n = args.ranges
    meta = FileMeta(SIZE, 1_000_000_000.0, '"bench"')
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {n:,} ranges, median of {args.repeat}"
    )
    print()
    print("| shape | max_ranges | status | parts | parse_range ms | plan_response ms | fastest plan ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    worst = capped = 0.0
    cases = [(name, header, n + 1) for name, header in shapes(n).items()]
    cases.append(("overlapping, default cap", shapes(n)["overlapping"], 100))
    for name, ranges, cap in cases:
        header = "bytes=" + ranges
        request = {"range": header}
        plan = plan_response("GET", request, meta, max_ranges=cap, boundary="b")
        parts = sum(not isinstance(s, bytes) for s in plan.body)
        parse, _ = timed_ms(lambda h=header, c=cap: parse_range(h, SIZE, c), args.repeat)  # type: ignore[misc]
        whole, fastest = timed_ms(
            lambda r=request, c=cap: plan_response("GET", r, meta, max_ranges=c, boundary="b"),  # type: ignore[misc]
            args.repeat,
        )
        if cap < n:
            capped = whole
        else:
            worst = max(worst, whole)
        print(f"| {name} | {cap:,} | {plan.status} | {parts:,} | {parse:.2f} | {whole:.2f} | {fastest:.2f} |")
    print()
    verdict = "within" if worst < TARGET_MS else "over"
    print(f"slowest plan_response: {worst:.2f} ms ({verdict} the {TARGET_MS:g} ms target)")
    print(f"default-cap plan_response: {capped:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
