"""Range-header attacks on other servers, replayed against the pure core."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from xaccel_middleware.plan import FileMeta, Plan, plan_response
from xaccel_middleware.ranges import ByteSpan

BIG = FileMeta(10**12, 1_000_000_000.0, '"big"')


def shapes(n: int) -> dict[str, str]:
    return {
        "disjoint": ",".join(f"{i * 100}-{i * 100 + 49}" for i in range(n)),
        "reversed": ",".join(f"{i * 100}-{i * 100 + 49}" for i in reversed(range(n))),
        # Each range overlaps the next: Starlette's merge rescanned the list per range.
        "overlapping": ",".join(f"{i * 100}-{i * 100 + 149}" for i in range(n)),
        "interleaved": ",".join(f"{(i * 7919) % n * 100}-{(i * 7919) % n * 100 + 99}" for i in range(n)),
    }


def best_of(runs: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return min(times)


def plan(header: str, max_ranges: int) -> Plan:
    return plan_response("GET", {"range": "bytes=" + header}, BIG, max_ranges=max_ranges, boundary="b")


@pytest.mark.parametrize("shape", ["disjoint", "reversed", "overlapping", "interleaved"])
def test_cve_2025_62727_starlette_quadratic_range_merge(shape: str) -> None:
    """Starlette < 0.49.1 merged ranges in O(n²): 10,000 ranges took seconds.
    Here they are parsed, coalesced and planned in milliseconds, and eight times
    as many take about eight times as long, where a quadratic merge would take
    sixty-four."""
    n = 10_000
    header = shapes(n)[shape]
    result = plan(header, n + 1)
    spans = [s for s in result.body if isinstance(s, ByteSpan)]
    assert result.status == 206
    if shape == "overlapping":
        assert spans == [ByteSpan(0, (n - 1) * 100 + 150)]
    elif shape == "interleaved":  # a permutation of adjacent ranges: one span
        assert spans == [ByteSpan(0, n * 100)]
    else:
        assert len(spans) == n
    assert best_of(3, lambda: plan(header, n + 1)) < 0.5

    small, large = shapes(5_000)[shape], shapes(40_000)[shape]
    ratios = []
    for _ in range(3):  # a busy machine can stall one measurement, not three
        t_small = max(best_of(5, lambda: plan(small, 5_001)), 0.001)
        t_large = best_of(3, lambda: plan(large, 40_001))
        ratios.append(t_large / t_small)
        if ratios[-1] < 24:  # between linear (8) and quadratic (64)
            break
    else:
        raise AssertionError(f"time grows faster than n log n: ratios {ratios}")


def test_cve_2025_62727_default_cap_refuses_cheaply() -> None:
    header = shapes(10_000)["overlapping"]
    result = plan(header, 100)
    assert result.status == 200
    assert result.body == (ByteSpan(0, BIG.size),)
    assert best_of(3, lambda: plan(header, 100)) < 0.05


# The classic Apache Killer header: one open range and 1,300 overlapping ones.
KILLER = "0-," + ",".join(f"5-{i}" for i in range(1300))


def test_cve_2011_3192_apache_killer_overlapping_ranges() -> None:
    meta = FileMeta(100_000, 1_000_000_000.0, '"f"')

    def sent(header: str, max_ranges: int = 100_000) -> tuple[int, int]:
        result = plan_response("GET", {"range": "bytes=" + header}, meta, max_ranges=max_ranges)
        span_bytes = sum(s.length for s in result.body if isinstance(s, ByteSpan))
        return result.status, span_bytes

    # "5-0" has last < first: the header is invalid and ignored (§14.1.1).
    assert sent(KILLER) == (200, meta.size)
    # The same attack with valid specs: more bytes asked than the file has.
    assert sent("0-," + ",".join(f"5-{i}" for i in range(5, 1300))) == (200, meta.size)
    # Overlaps adding up to less than the file are coalesced, never repeated.
    status, span_bytes = sent(",".join(f"{i}-{i + 9}" for i in range(0, 5000, 5)))
    assert (status, span_bytes) == (206, 5005)
    # Over the cap: the whole file, once.
    assert sent(",".join(f"{i * 10}-{i * 10}" for i in range(101)), max_ranges=100) == (200, meta.size)
    # Whatever the header, a 206 never carries more file bytes than the file.
    for header in (KILLER, "0-,0-,0-", "-1,-1,-1", ",".join(["0-99999"] * 2), ",".join(["1-1"] * 5000)):
        for cap in (1, 100, 10_000):
            status, span_bytes = sent(header, cap)
            assert span_bytes <= meta.size, (header[:20], cap)
