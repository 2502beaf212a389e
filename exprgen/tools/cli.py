"""The ``exprgen`` command: ``demo``, ``generate``, ``prebuild`` and ``cache {info,list,verify,prune,clear}``."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path


def _median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


# The demo's expression in a new interpreter: what a second run of a program pays, the kernel on disk.
_FRESH = """
import json, sys, time
import numpy as np
import exprgen as ex
x = ex.asarray(np.random.default_rng(0).standard_normal(int(sys.argv[1])).astype(np.float32))
start = time.perf_counter()
(1 / (1 + ex.exp(-(x * ex.asarray(np.float32(0.5)) + 0.1)))).numpy()
seconds = time.perf_counter() - start
s = ex.stats()
print(json.dumps({"seconds": seconds, "compiles": s["compiles"], "disk": s["cache_hits"]["disk"]}))
"""


def _fresh_process(n: int) -> dict:
    run = subprocess.run([sys.executable, "-c", _FRESH, str(n)], capture_output=True, text=True, check=True)
    return json.loads(run.stdout.splitlines()[-1])


def demo(args) -> int:
    import numpy as np

    import exprgen as ex

    n = args.n
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal(n).astype(np.float32)
    x, w, b = ex.asarray(x_np), ex.asarray(np.float32(0.5)), 0.1
    print(f"exprgen demo: y = 1 / (1 + exp(-(x * w + b))) on {n:,} float32 values\n")
    def build():   # the expression, built anew each time (an Array keeps its value once computed)
        return 1 / (1 + ex.exp(-(x * w + b)))

    y = build()
    print("The expression is lazy; nothing has run yet:")
    print(f"  {y!r}\n")
    ex.reset_stats()
    start = time.perf_counter()
    y.numpy()
    first = time.perf_counter() - start
    s = ex.stats()
    how = f"compiled in {s['compile_seconds']:.3f} s" if s["compiles"] else "kernel found in the disk cache"
    print(f"first evaluation: {first * 1e3:.1f} ms ({how}; {s['kernels_launched']} kernel launched)\n")
    print(ex.explain(build(), verbose=True))   # y itself is now its computed values; verbose: the source whole
    ex.reset_stats()
    second = _median_seconds(lambda: build().numpy(), 20)
    s = ex.stats()
    # A repeated expression finds its compiled plan in memory, kernel bound in: no kernel cache lookup at all.
    print(f"\nsecond evaluation: {second * 1e3:.2f} ms median (compiles: {s['compiles']}, compiled plan found "
          f"in memory {s['plan_cache']['hits']} times, so the kernel cache was not even asked)")
    fresh = _fresh_process(n)
    print(f"a fresh process with the same cache: first result {fresh['seconds'] * 1e3:.1f} ms after import "
          f"(compiles: {fresh['compiles']}, kernel read from the disk cache: {fresh['disk']} time(s))")
    w_np = np.float32(0.5)
    numpy_time = _median_seconds(lambda: 1 / (1 + np.exp(-(x_np * w_np + np.float32(b)))), 20)
    ratio = numpy_time / second   # small arrays: a launch costs more than NumPy's whole computation
    verdict = f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower (too small to gain from a kernel)"
    print(f"NumPy, same expression: {numpy_time * 1e3:.2f} ms median -> exprgen is {verdict}")
    expected = 1 / (1 + np.exp(-(x_np * w_np + np.float32(b))))
    error = float(np.max(np.abs(y.numpy() - expected)))
    print(f"max |exprgen - NumPy| = {error:.2e}")
    return 0


def generate(args) -> int:
    from ..cache.kernelset import standard_kernels

    target = Path(args.into) / "cpu"
    target.mkdir(parents=True, exist_ok=True)
    written = set()
    for name, source in standard_kernels():
        path = target / f"{name}.cpp"
        written.add(path.name)
        if not path.exists() or path.read_text() != source:
            path.write_text(source)
    stale = [p for p in target.glob("*.cpp") if p.name not in written]
    for p in stale:
        p.unlink()
    print(f"{len(written)} kernel sources in {target} ({len(stale)} stale removed)")
    return 0


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def prebuild(args) -> int:
    from ..cache import prebuild as pb
    from .. import settings

    jobs, notes = [], []
    try:
        targets = pb.parse_targets(args.target)
        for manifest in args.manifest:
            found, warned = pb.manifest_jobs(manifest)
            jobs += found
            notes += warned
        if args.standard or not args.manifest or args.ops or args.dtypes:
            jobs += pb.standard_jobs(_names(args.ops), _names(args.dtypes), {t.backend for t in targets})
    except (ValueError, TypeError, OSError) as exc:
        print(f"exprgen prebuild: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    into = os.path.abspath(args.into or settings.cache_dir())
    outcome = pb.prebuild(jobs, targets, into, args.jobs, progress=False if args.no_progress else None)
    print(outcome.describe(into, args.jobs))
    return 1 if outcome.failed else 0


def cache(args) -> int:
    from ..cache import prebuild as pb

    left = 0   # problems found and not fixed, or files that could not be removed: exit 1
    if args.action == "info":
        lines = pb.info_lines()
    elif args.action == "list":
        lines = pb.list_lines(args.limit)
    elif args.action == "verify":
        lines, left = pb.verify(args.fix)
    elif args.action == "prune":
        try:
            limit = pb.parse_size(args.max_size)
        except ValueError as exc:
            print(f"exprgen cache prune: {exc}", file=sys.stderr)
            return 2
        lines, left = pb.prune(limit)
    else:
        lines, left = pb.clear()
    print("\n".join(lines))
    return 1 if left else 0


def _positive(text: str) -> int:
    """argparse's type for a count: an integer of at least 1, also written as 1e7 (anything else is a
    usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not number.is_integer():
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        value = int(number)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="exprgen", description="Lazy numpy-like arrays compiled into fused kernels")
    # From the installed package's metadata: the version pip installed, and no import of exprgen itself.
    parser.add_argument("--version", action="version", version=f"exprgen {importlib.metadata.version('exprgen')}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="show an expression, its kernel, the compile and cache, and the speed-up")
    p.add_argument("-n", type=_positive, default=10_000_000, help="array length (default 1e7)")
    p.set_defaults(run=demo)
    p = sub.add_parser("generate", help="render the standard kernel set's sources into generated/")
    p.add_argument("--into", default=os.environ.get("EXPRGEN_GENERATED_DIR", "generated"))
    p.set_defaults(run=generate)
    p = sub.add_parser("prebuild", help="compile kernels ahead of time into a prebuilt tier",
                       description="Compile the standard kernel set and/or recorded manifests for several targets. "
                                   "With --manifest only the manifests are built, unless --standard, --ops or "
                                   "--dtypes asks for the standard set too.")
    p.add_argument("--manifest", action="append", default=[], metavar="JSON",
                   help="a manifest recorded with EXPRGEN_RECORD=JSON (repeatable)")
    p.add_argument("--standard", action="store_true", help="build the standard set as well as the manifests")
    p.add_argument("--ops", help="narrow the standard set to these ops (comma-separated, e.g. exp,tanh,add)")
    p.add_argument("--dtypes", help="narrow the standard set to these dtypes (e.g. float32,float64)")
    p.add_argument("--target", default="cpu",
                   help="comma-separated: cpu (this machine), cpu:x86-64[-v2|-v3|-v4], cuda:sm_XX (default cpu)")
    p.add_argument("-j", "--jobs", type=_positive, default=len(os.sched_getaffinity(0)),
                   help="compilers run at once (default: the CPUs)")
    p.add_argument("--into", help="the directory to fill (default: the user cache, $EXPRGEN_CACHE_DIR)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it shows only on a terminal)")
    p.set_defaults(run=prebuild)
    p = sub.add_parser("cache", help="inspect, check and trim the kernel cache")
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("info", help="where the tiers are, their sizes and entries per backend and target")
    q = actions.add_parser("list", help="entries, newest first, with the expression each computes")
    q.add_argument("--limit", type=_positive, default=None, help="show at most this many")
    q = actions.add_parser("verify", help="check checksums, owners and permissions (exit 1 on problems)")
    q.add_argument("--fix", action="store_true", help="remove the bad entries (they are rebuilt when needed)")
    q = actions.add_parser("prune", help="remove the least recently used entries down to a size (exit 1 if some "
                                         "could not be removed)")
    q.add_argument("--max-size", required=True, help="e.g. 500M, 2G")
    actions.add_parser("clear", help="remove every entry of the user cache (exit 1 if some could not be removed)")
    p.set_defaults(run=cache)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
