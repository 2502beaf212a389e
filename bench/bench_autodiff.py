"""Autodiff benchmark: exprgen's grad against jax.jit(jax.grad) and PyTorch (eager, torch.compile) on float32.

    python bench/bench_autodiff.py [--json results.json] [--strict] [--cache-dir DIR] [--n 1e7]

The case of issue 5, with x, t, w, b float32 arrays of N = 1e7:

    def loss(w, b): return ((ex.sigmoid(x * w + b) - t) ** 2).mean()
    dw, db = ex.grad(loss, argnums=(0, 1))(w, b)          # "grad": one fused kernel expected
    v, (dw, db) = ex.value_and_grad(loss, (0, 1))(w, b)   # "value_and_grad": two kernels expected

Every timed exprgen call builds the gradient expression afresh and realises it with ``ex.eval`` (a
realised Array keeps its value, so reusing one would time nothing); the guard checks on every call that
kernels ran, and no more than the fusion promises. The peers get the same source: jax.jit of jax.grad /
jax.value_and_grad (x and t passed as arguments, not baked in as constants), torch eager (requires_grad and
.backward(), the gradients reset each call) and torch.compile of a function calling torch.autograd.grad.

Reported, with bench_core.py's harness (medians after warm-up, first calls apart): time, the effective
GB/s of the minimum traffic (x, t, w, b read once, dw and db written once: 24 bytes an element; the loss
value adds 4 bytes in all), and for exprgen the kernels launched per call and the bytes those kernels
move, each kernel's inputs read once and outputs written once, read off the kernels ``ex.explain``
shows, against that minimum and against the STREAM triad measured in the same run. Every engine's first
result is checked against float64 NumPy (normwise: max|got - ref| <= 1e-4 * max|ref|); a peer outside
that is reported as wrong and is nobody's best peer. Target: grad >= 2x faster than the best peer.

"exprgen r*r" rows are a diagnostic, not part of any target: the same loss written ``r * r`` instead of
``r ** 2``, which separates the cost of the power's backward rule from the rest of the pipeline.

Only exprgen's public API is used, as in bench_core.py.
"""

from __future__ import annotations

import argparse
import re
import sys
import time

import numpy as np

import bench_core as core   # also puts the repository on sys.path and keeps jax on the CPU
from bench_core import DTYPE, exprgen_guard, fmt_time
from bench_reductions import kernels_per_call, load_peers   # numexpr, jax, torch where installed

N = 10_000_000
TARGET_SPEEDUP = 2.0
RTOL = 1e-4                # normwise, against float64
MIN_BYTES_PER_ELEM = 24    # read x, t, w, b (4 x 4 bytes); write dw, db (2 x 4 bytes)
# case -> (the most kernels one exprgen call may launch, whether the loss value is computed too)
CASES = {"grad": (1, False), "value_and_grad": (2, True)}
ENGINES = ("exprgen", "exprgen r*r", "jax", "torch", "torch.compile")


# -- the loss, as each engine is given it ---------------------------------------------------------------
def exprgen_losses(ex, x, t):
    def loss(w, b):
        return ((ex.sigmoid(x * w + b) - t) ** 2).mean()

    def loss_rr(w, b):   # diagnostic: the same loss without the power
        r = ex.sigmoid(x * w + b) - t
        return (r * r).mean()

    return {"exprgen": loss, "exprgen r*r": loss_rr}


def exprgen_call(ex, loss, case: str, w, b):
    """A fresh gradient expression every call, realised in one ex.eval (kernels shared between results)."""
    if case == "grad":
        return lambda: ex.eval(*ex.grad(loss, argnums=(0, 1))(w, b))
    return lambda: ex.eval(*flatten(ex.value_and_grad(loss, argnums=(0, 1))(w, b)))


def flatten(value_and_grads):
    value, grads = value_and_grads
    return (value, *grads)


def jax_calls(jax, inputs: dict) -> dict:
    jnp = jax.numpy

    def loss(w, b, x, t):
        return ((jax.nn.sigmoid(x * w + b) - t) ** 2).mean()

    args = [jnp.asarray(inputs[k]) for k in ("w", "b", "x", "t")]
    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    both = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    return {"grad": lambda: jax.block_until_ready(grad(*args)),   # jax dispatches asynchronously
            "value_and_grad": lambda: jax.block_until_ready(flatten(both(*args)))}


def torch_calls(torch, inputs: dict) -> dict:
    """Eager: requires_grad leaves and .backward(); compiled: torch.compile of a function that calls
    torch.autograd.grad (with the default dynamo config that call is a graph break: the loss and its
    backward are compiled by AOTAutograd, autograd.grad runs them)."""
    x, t, w, b = (torch.from_numpy(inputs[k]) for k in ("x", "t", "w", "b"))   # no copies
    w.requires_grad_(True)
    b.requires_grad_(True)

    def loss(w, b):
        return ((torch.sigmoid(x * w + b) - t) ** 2).mean()

    def eager(with_value: bool):
        def call():
            w.grad = b.grad = None   # a fresh gradient each call, not an accumulation
            value = loss(w, b)
            value.backward()
            return (value.detach(), w.grad, b.grad) if with_value else (w.grad, b.grad)
        return call

    def grads(w, b):
        return torch.autograd.grad(loss(w, b), (w, b))

    def value_and_grads(w, b):
        value = loss(w, b)
        return (value.detach(), *torch.autograd.grad(value, (w, b)))

    compiled_grads, compiled_both = torch.compile(grads), torch.compile(value_and_grads)
    return {
        "torch": {"grad": eager(False), "value_and_grad": eager(True)},
        "torch.compile": {"grad": lambda: compiled_grads(w, b), "value_and_grad": lambda: compiled_both(w, b)},
    }


# -- checks ---------------------------------------------------------------------------------------------
def reference(inputs: dict) -> dict:
    """The loss and both gradients in float64 NumPy, by hand: s = sigmoid(x*w + b), r = s - t,
    d loss / d(x*w + b) = 2/N * r * s * (1 - s), so db is that and dw is that times x."""
    x, t, w, b = (inputs[k].astype(np.float64) for k in ("x", "t", "w", "b"))
    s = 1 / (1 + np.exp(-(x * w + b)))
    r = s - t
    db = 2 / x.size * r * s * (1 - s)
    return {"value": np.mean(r * r), "dw": db * x, "db": db}


class Check:
    """Compares an engine's first result (dw, db) or (value, dw, db) with the float64 reference: ``error``
    is the largest normwise relative error max|got - ref| / max|ref| over the results, ``ok`` whether it
    is within RTOL and every result is float32 of the right shape."""

    def __init__(self, case: str, engine: str, ref: dict):
        self.engine, self.case = engine, case
        self.names = ("value", "dw", "db") if CASES[case][1] else ("dw", "db")
        self.ref = ref
        self.ok, self.error = None, None

    def __call__(self, result) -> None:
        values = [np.asarray(v.detach() if hasattr(v, "detach") else v) for v in result]
        if len(values) != len(self.names):
            raise AssertionError(f"{self.engine} {self.case}: {len(values)} results, want {len(self.names)}")
        errors, shapes_ok = [], True
        for name, value in zip(self.names, values):
            ref = self.ref[name]
            shapes_ok &= value.dtype == DTYPE and value.shape == np.shape(ref)
            errors.append(float(np.max(np.abs(value.astype(np.float64) - ref)) / np.max(np.abs(ref))))
        self.error = max(errors)
        self.ok = bool(shapes_ok and self.error <= RTOL)
        if not self.ok and self.engine.startswith("exprgen"):
            raise AssertionError(f"exprgen {self.case}: wrong result (dtypes/shapes "
                                 f"{[(v.dtype.name, v.shape) for v in values]}, normwise errors {errors})")


# -- traffic ----------------------------------------------------------------------------------------------
C_SIZES = {"float": 4, "double": 8, "int64_t": 8, "int32_t": 4, "uint64_t": 8, "uint32_t": 4, "int8_t": 1,
           "uint8_t": 1, "bool": 1}
_KERNEL = re.compile(r"^-- kernel \d+:", re.M)
_POINTER = re.compile(r"\b(?:const )?(\w+)\* __restrict ((?:in|out)\d+) =")


def kernel_traffic(explained: str, n: int) -> list[dict]:
    """Bytes each kernel of an ``ex.explain`` text reads and writes, each array once: an array the kernel
    indexes by a loop variable counts n elements, one only ever read at [0] (a broadcast scalar, or a
    reduction's single result) one element. Write-allocate reads are not counted, as bench_core's ideal
    bytes do not count them."""
    kernels = []
    for source in _KERNEL.split(explained)[1:]:
        read = written = 0
        for name, ctype in dict((m.group(2), m.group(1)) for m in _POINTER.finditer(source)).items():
            indices = set(re.findall(rf"\b{name}\[([^\]]+)\]", source))
            nbytes = C_SIZES[ctype] * (n if indices - {"0"} else 1)
            if name.startswith("in"):
                read += nbytes
            else:
                written += nbytes
        kernels.append({"read": read, "written": written})
    return kernels


def describe_traffic(ex, build_roots, launched: int, n: int) -> dict:
    """The kernels of one fresh expression, from ex.explain, cross-checked against the kernels a call
    launched; ``bytes`` is None where the two disagree (the text format changed, say)."""
    kernels = kernel_traffic(ex.explain(*build_roots()), n)
    total = sum(k["read"] + k["written"] for k in kernels)
    return {"kernels": kernels, "bytes": total if len(kernels) == launched else None}


# -- the cases -------------------------------------------------------------------------------------------
def run_cases(ex, peers: dict, inputs: dict, triad_gbps: float) -> list[dict]:
    n = inputs["x"].size
    ref = reference(inputs)
    arrays = {k: ex.asarray(v) for k, v in inputs.items()}   # leaves are reusable; expressions are not
    losses = exprgen_losses(ex, arrays["x"], arrays["t"])
    peer_calls = {}
    if "jax" in peers:
        peer_calls["jax"] = jax_calls(peers["jax"][0], inputs)
    if "torch" in peers:
        peer_calls.update(torch_calls(peers["torch"], inputs))
    rows = []
    for case, (most, with_value) in CASES.items():
        min_bytes = MIN_BYTES_PER_ELEM * n + (4 if with_value else 0)
        cases = {}
        for engine, loss in losses.items():
            cases[engine] = (exprgen_call(ex, loss, case, arrays["w"], arrays["b"]), exprgen_guard(ex, most=most))
        for engine, calls in peer_calls.items():
            cases[engine] = (calls[case], None)
        checks = {engine: Check(case, engine, ref) for engine in cases}
        timed = core.side_by_side({engine: (call, guard, checks[engine]) for engine, (call, guard) in cases.items()},
                                  n, on_failure=core.skip_failed_peer(case, width=15))
        for engine, r in timed.items():
            call, check = cases[engine][0], checks[engine]
            row = {"case": case, "engine": engine, "n": n, **r, "min_bytes": min_bytes,
                   "GBps": min_bytes / r["median_s"] / 1e9, "correct": check.ok, "error": check.error}
            if engine.startswith("exprgen"):
                row["kernels_per_call"] = kernels_per_call(ex, call)
                loss = losses[engine]
                roots = ((lambda: ex.grad(loss, argnums=(0, 1))(arrays["w"], arrays["b"])) if case == "grad" else
                         (lambda: flatten(ex.value_and_grad(loss, argnums=(0, 1))(arrays["w"], arrays["b"]))))
                traffic = describe_traffic(ex, roots, row["kernels_per_call"], n)
                row["kernels"], row["bytes"] = traffic["kernels"], traffic["bytes"]
                if row["bytes"] is not None:
                    row["moved_GBps"] = row["bytes"] / r["median_s"] / 1e9
                    row["pct_triad"] = 100 * row["moved_GBps"] / triad_gbps
            rows.append(row)
            print(f"  {case:<15} {engine:<14} {fmt_time(r['median_s']):>10}  {row['GBps']:6.2f} GB/s of the minimum  "
                  f"({r['repeats']} runs){'' if check.ok else '  WRONG'}", flush=True)
    return rows


def find(rows: list[dict], case: str, engine: str) -> dict | None:
    return next((r for r in rows if r["case"] == case and r["engine"] == engine), None)


def comparisons(rows: list[dict], triad_gbps: float) -> dict:
    """Per case: exprgen (and the r*r diagnostic) against the fastest correct peer, and the floor: the
    minimum bytes at the triad bandwidth, the least time any engine could take on this machine."""
    result = {}
    for case in CASES:
        mine = find(rows, case, "exprgen")
        peers = [r for r in rows if r["case"] == case and not r["engine"].startswith("exprgen") and r["correct"]]
        if mine is None or not peers:
            continue
        best = min(peers, key=lambda r: r["median_s"])
        rr = find(rows, case, "exprgen r*r")
        result[case] = {"speedup": best["median_s"] / mine["median_s"], "best_peer": best["engine"],
                        "best_peer_s": best["median_s"], "exprgen_s": mine["median_s"],
                        "speedup_rr": best["median_s"] / rr["median_s"] if rr else None,
                        "floor_s": mine["min_bytes"] / (triad_gbps * 1e9)}
    return result


def targets(rows: list[dict], compared: dict) -> dict:
    speedup = {}
    if "grad" in compared:
        speedup["grad"] = {**compared["grad"], "target": TARGET_SPEEDUP,
                           "pass": compared["grad"]["speedup"] >= TARGET_SPEEDUP}
    kernels, traffic = {}, {}
    for case, (most, _) in CASES.items():
        mine = find(rows, case, "exprgen")
        if mine is None:
            continue
        kernels[case] = {"kernels": mine["kernels_per_call"], "most": most,
                         "pass": 1 <= mine["kernels_per_call"] <= most}
    mine = find(rows, "grad", "exprgen")
    if mine is not None:   # one fused kernel moves the minimum: anything more is a kernel too many
        traffic["grad"] = {"bytes": mine["bytes"], "min_bytes": mine["min_bytes"],
                           "pass": mine["bytes"] is not None and mine["bytes"] <= 1.001 * mine["min_bytes"]}
    return {"speedup": speedup, "kernels": kernels, "traffic": traffic}


# -- reporting -------------------------------------------------------------------------------------------
def print_tables(report: dict) -> None:
    rows, bw = report["results"], report["bandwidth"]
    n = rows[0]["n"] if rows else N
    print()
    print(core.describe_bandwidth(bw))
    warning = core.load_warning(report["meta"])
    if warning:
        print(warning)
    print()
    print(f"N = {n:,} float32. Minimum traffic: x, t, w, b read once and dw, db written once = "
          f"{MIN_BYTES_PER_ELEM} B/element ({MIN_BYTES_PER_ELEM * n / 1e6:.0f} MB; +4 B for the value).")
    print("GB/s: the minimum bytes over the median, for every engine. exprgen only: kernels per call, B/el the bytes "
          "its kernels\nmove per element (each kernel's inputs read once, outputs written once) and x min that over "
          "the minimum, moved GB/s\nthose bytes over the median and % triad of that. error: normwise relative error vs "
          "float64 (tolerance {:.0e}).".format(RTOL))
    print(f"{'case':<15} {'engine':<14} {'median':>10} {'min':>10} {'first call':>11} {'runs':>5} {'GB/s':>6} "
          f"{'kernels':>7} {'B/el':>6} {'x min':>6} {'moved GB/s':>10} {'% triad':>7}  {'error':<9} {'vs exprgen':>10}")
    for case in CASES:
        mine = find(rows, case, "exprgen")
        for engine in ENGINES:
            r = find(rows, case, engine)
            if r is None:
                continue
            ours = "kernels_per_call" in r
            moved = ours and r["bytes"] is not None
            vs = f"{r['median_s'] / mine['median_s']:9.2f}x" if mine and engine != "exprgen" else ""
            print(f"{case if engine == 'exprgen' else '':<15} {engine:<14} {fmt_time(r['median_s']):>10} "
                  f"{fmt_time(r['min_s']):>10} {fmt_time(r['first_call_s']):>11} {r['repeats']:>5} {r['GBps']:6.2f} "
                  f"{r['kernels_per_call'] if ours else '-':>7} "
                  f"{format(r['bytes'] / r['n'], '.1f') if moved else '-':>6} "
                  f"{format(r['bytes'] / r['min_bytes'], '.2f') if moved else '-':>6} "
                  f"{format(r['moved_GBps'], '.2f') if moved else '-':>10} "
                  f"{format(r['pct_triad'], '.1f') + '%' if moved else '-':>7}  "
                  f"{r['error']:<9.1e}{'' if r['correct'] else ' WRONG'} {vs:>10}")
        print()
    print("(vs exprgen: the engine's median over exprgen's, > 1 where exprgen is faster; WRONG: outside the tolerance, "
          "so not counted\n as a peer; exprgen r*r: the loss written r*r instead of r**2, a diagnostic outside the "
          "targets)")

    for case, c in report["comparisons"].items():
        rr = f"; the r*r diagnostic {c['speedup_rr']:.2f}x" if c.get("speedup_rr") else ""
        print(f"{case:<15} exprgen {fmt_time(c['exprgen_s'])} against the best peer, {c['best_peer']} "
              f"{fmt_time(c['best_peer_s'])}: {c['speedup']:.2f}x{rr}")
    floor = report["comparisons"].get("grad")
    if floor:
        need = floor["best_peer_s"] / TARGET_SPEEDUP
        verdict = ("above that floor: reachable in principle" if need >= floor["floor_s"] else
                   "below that floor: out of reach on this machine, whatever exprgen does")
        print(f"Floor for grad: the minimum bytes at the triad bandwidth take {fmt_time(floor['floor_s'])}; "
              f"{TARGET_SPEEDUP}x the best peer needs {fmt_time(need)}, {verdict}")
    t = report["targets"]
    print()
    print("Targets:")
    for case, s in t["speedup"].items():
        print(f"  {case:<15} {s['speedup']:5.2f}x faster than the best peer ({s['best_peer']}); target >= "
              f"{s['target']}x  {'PASS' if s['pass'] else 'MISS'}")
    for case, k in t["kernels"].items():
        print(f"  {case:<15} {k['kernels']} kernel(s) per call (checked on every call); expected <= {k['most']}  "
              f"{'PASS' if k['pass'] else 'MISS'}")
    for case, m in t["traffic"].items():
        moved = "unknown (explain and the launch count disagree)" if m["bytes"] is None else \
            f"{m['bytes'] / 1e6:.0f} MB = {m['bytes'] / m['min_bytes']:.2f}x"
        print(f"  {case:<15} bytes moved {moved} of the minimum {m['min_bytes'] / 1e6:.0f} MB  "
              f"{'PASS' if m['pass'] else 'MISS'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="PATH", help="write every number to this JSON file")
    parser.add_argument("--cache-dir", help="kernel cache (default: a fresh temporary one, so first-call times "
                                            "mean a compile and the user's cache is untouched)")
    parser.add_argument("--n", type=float, default=N, help="elements per array (default 1e7, the target's size)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    n = int(args.n)

    started = time.perf_counter()
    with core.private_kernel_cache(args.cache_dir):
        import exprgen as ex

        peers = load_peers()
        meta = core.describe_run(ex, peers, n=n, cases=list(CASES))
        if "torch" in peers:
            torch = peers["torch"]
            meta["torch"], meta["torch_threads"] = torch.__version__, torch.get_num_threads()
            print(f"torch {meta['torch']} ({meta['torch_threads']} threads), eager and torch.compile")
        bandwidth = core.measure_bandwidth(ex, peers, n)
        print(core.describe_bandwidth(bandwidth), flush=True)
        inputs = core.make_inputs(n, names=("x", "t", "w", "b"))
        rows = run_cases(ex, peers, inputs, bandwidth["triad_GBps"])
        compared = comparisons(rows, bandwidth["triad_GBps"])
        report = {"meta": meta, "bandwidth": bandwidth, "results": rows, "comparisons": compared,
                  "targets": targets(rows, compared)}
        core.finish_report(report, started, args.json, print_tables)
    return 1 if args.strict and core.missed_targets(report) else 0


if __name__ == "__main__":
    sys.exit(main())
