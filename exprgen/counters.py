"""Counters that keep tests and benchmarks honest: compiles, cache hits by tier, launches."""

from __future__ import annotations

import threading

# A plain dict: a warm evaluation counts twice, and a Counter's item access (a dict subclass) costs about
# twice a dict's.
_counts: dict[str, int] = {}


def count(name: str, n: int = 1) -> None:
    _counts[name] = _counts.get(name, 0) + n


_lock = threading.Lock()


def count_shared(name: str, n: int = 1) -> None:
    """``count`` from threads that may run at once (the kernel cache compiling a plan's kernels side by
    side): a read and a write another thread's could come between would lose a count. The evaluation path
    counts with ``count``, unlocked: it is one thread's at a time per count that a test reads."""
    with _lock:
        _counts[name] = _counts.get(name, 0) + n


def stats() -> dict:
    """A snapshot: compiles, kernels_launched, library_calls (matmul's BLAS), cache_hits by tier, plan cache
    hits and misses."""
    get = _counts.get
    return {
        "compiles": get("compiles", 0),
        "kernels_launched": get("kernels_launched", 0),
        "library_calls": get("library_calls", 0),
        "cache_hits": {tier: get(f"cache_hit_{tier}", 0) for tier in ("memory", "disk", "prebuilt")},
        "plan_cache": {"hits": get("plan_hit", 0), "misses": get("plan_miss", 0)},
        "compile_seconds": round(get("compile_ns", 0) / 1e9, 6),
        "jit": {"traces": get("jit_traces", 0), "replays": get("jit_replays", 0)},
    }


def reset_stats() -> None:
    _counts.clear()
