"""Counters that keep tests and benchmarks honest: compiles, cache hits by tier, launches."""

from __future__ import annotations

from collections import Counter

_counts: Counter = Counter()


def count(name: str, n: int = 1) -> None:
    _counts[name] += n


def stats() -> dict:
    """A snapshot: compiles, kernels_launched, cache_hits by tier, plan cache hits and misses."""
    return {
        "compiles": _counts["compiles"],
        "kernels_launched": _counts["kernels_launched"],
        "cache_hits": {tier: _counts[f"cache_hit_{tier}"] for tier in ("memory", "disk", "prebuilt")},
        "plan_cache": {"hits": _counts["plan_hit"], "misses": _counts["plan_miss"]},
        "compile_seconds": round(_counts["compile_ns"] / 1e9, 6),
    }


def reset_stats() -> None:
    _counts.clear()
