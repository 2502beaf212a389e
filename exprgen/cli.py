"""The ``exprgen`` command: ``demo`` and ``generate``."""

from __future__ import annotations

import argparse
import os
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


def demo(args) -> int:
    import numpy as np

    import exprgen as ex

    n = args.n
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal(n).astype(np.float32)
    x, w, b = ex.asarray(x_np), ex.asarray(np.float32(0.5)), 0.1
    print(f"exprgen demo: y = 1 / (1 + exp(-(x * w + b))) on {n:,} float32 values\n")
    y = 1 / (1 + ex.exp(-(x * w + b)))
    print("The expression is lazy; nothing has run yet:")
    print(f"  {y!r}\n")
    ex.reset_stats()
    start = time.perf_counter()
    y.numpy()
    first = time.perf_counter() - start
    s = ex.stats()
    how = f"compiled in {s['compile_seconds']:.3f} s" if s["compiles"] else "kernel found in the disk cache"
    print(f"first evaluation: {first * 1e3:.1f} ms ({how}; {s['kernels_launched']} kernel launched)\n")
    print(ex.explain(y))
    ex.reset_stats()
    second = _median_seconds(lambda: (1 / (1 + ex.exp(-(x * w + b)))).numpy(), 20)
    s = ex.stats()
    print(f"\nsecond evaluation: {second * 1e3:.2f} ms median (compiles: {s['compiles']}, plan cache hits: "
          f"{s['plan_cache']['hits']}, kernel cache hits: {s['cache_hits']})")
    w_np = np.float32(0.5)
    numpy_time = _median_seconds(lambda: 1 / (1 + np.exp(-(x_np * w_np + np.float32(b)))), 20)
    print(f"NumPy, same expression: {numpy_time * 1e3:.2f} ms median -> exprgen is "
          f"{numpy_time / second:.1f}x faster")
    expected = 1 / (1 + np.exp(-(x_np * w_np + np.float32(b))))
    error = float(np.max(np.abs(y.numpy() - expected)))
    print(f"max |exprgen - NumPy| = {error:.2e}")
    return 0


def generate(args) -> int:
    from .kernelset import standard_kernels

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="exprgen", description="Lazy numpy-like arrays compiled into fused kernels")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="show an expression, its kernel, the compile and cache, and the speed-up")
    p.add_argument("-n", type=int, default=10_000_000, help="array length (default 1e7)")
    p.set_defaults(run=demo)
    p = sub.add_parser("generate", help="render the standard kernel set's sources into generated/")
    p.add_argument("--into", default=os.environ.get("EXPRGEN_GENERATED_DIR", "generated"))
    p.set_defaults(run=generate)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
