"""Training-step benchmark: exprgen's value_and_grad against NumPy by hand, PyTorch (eager, torch.compile) and
jax.jit, whole steps (the loss and every gradient) in float32.

    python bench/bench_train.py [--json results.json] [--strict] [--cache-dir DIR]
                                [--cases mlp,logreg,layernorm] [--repeats N]

The cases of issue 18, item 5, each on fresh random data fixed per case (seeded):
  * mlp        ``logits = gelu(X @ W1 + b1, approximate="tanh") @ W2 + b2``,
               ``loss = -mean(sum(Y * log_softmax(logits, axis=-1), axis=-1))`` (Y one-hot float32 labels);
               gradients for W1, b1, W2, b2; (B, D, H, C) = (512, 256, 512, 10) and (256, 784, 1024, 10);
  * logreg     ``z = X @ w + b``, ``loss = mean(softplus(z) - y * z)`` (y in {0, 1}), X 100000 x 32;
               gradients for w and b (shape (1,)) only, X and y being data;
  * layernorm  ``out = (x - mean) / sqrt(var + 1e-5) * g + beta`` along the last axis of a 4096 x 1024 x,
               ``loss = sum(out * dy)`` for a fixed random cotangent dy; gradients for x, g and beta.

Engines, every one computing the loss and all the gradients each call, each result materialised:
  * numpy            forward and backward written by hand (``numpy_*`` below; their formulas are checked
                     against jax.value_and_grad in float64 before anything is timed);
  * torch            eager: requires_grad leaves, ``.backward()``, the gradients reset every call;
  * torch.compile    ``torch.compile`` of a function calling ``torch.autograd.grad`` (the loss and its backward
                     compiled by AOTAutograd; ``torch.func.grad_and_value`` under compile was ~2x slower here);
                     a failure to compile is reported and the engine skipped; its first call starts from a
                     fresh Inductor cache, as exprgen's from a fresh kernel cache;
  * jax.jit          ``jax.jit(jax.value_and_grad(loss, argnums=...))``, the data passed as arguments;
  * exprgen          ``ex.value_and_grad(loss, argnums=...)`` built afresh every call and realised with one
                     ``ex.eval(loss, *grads)`` (a realised Array keeps its value; the guard checks on every
                     call that kernels ran), on the default threads and, as "exprgen 1 thread", inside
                     ``with ex.threads(1):``;
  * exprgen jit      ``ex.jit(ex.value_and_grad(loss, argnums=...))``: traced once, replayed.

Reported with bench_core.py's harness (the engines of a case timed side by side in rotating rounds, medians
after warm-up, first calls, which compile or trace, reported apart): per case a table of median, min, first
call, runs, the normwise error of the first result and the speed-up over the best peer (the best peer's
median over the engine's: > 1 is faster). Peers are numpy, torch, torch.compile and jax.jit; a peer whose
first result is wrong (any array off the float64 reference by more than 1e-3 * max|ref|) is marked WRONG
and is nobody's best peer.

Targets: mlp, exprgen (its jit where ``ex.jit`` exists, else eager) at least 1.25x faster than the best of
torch.compile and jax.jit; logreg and layernorm, exprgen faster than every peer. ``--strict`` exits 1
when one is missed (or exprgen fails or is wrong); by default they are only reported.

Only exprgen's public API is used, as in bench_core.py.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time

import numpy as np

import bench_core as core   # also puts the repository on sys.path and keeps jax on the CPU
from bench_core import DTYPE, exprgen_guard, fmt_time

# Inductor compiles in a pool of worker processes by default; on a 2-core machine those linger and take
# CPU from whichever engine is timed next. One thread only slows torch.compile's first call, reported apart.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

from bench_reductions import load_peers   # noqa: E402 - numexpr, jax, torch where installed

RTOL = 1e-3          # normwise, per array, against float64
XCHECK_RTOL = 1e-9   # the hand-written float64 backward against jax's float64 gradients
EPS = 1e-5
GELU_C, GELU_K = 0.044715, 0.7978845608028654
MLP_TARGET, BEAT_ALL_TARGET = 1.25, 1.0
PEERS = ("numpy", "torch", "torch.compile", "jax.jit")
ENGINES = PEERS + ("exprgen", "exprgen 1 thread", "exprgen jit")
# (min repeats, max repeats, seconds of timed work per engine after which to stop once min is reached): the
# steps take ~1-100 ms, so about a second an engine keeps the default run within ~3 minutes on 2 cores.
DEFAULT_PLAN = (15, 90, 1.0)


# -- the cases --------------------------------------------------------------------------------------------
class Case:
    """One training step: its parameters (the differentiated arguments, in order), its data, the NumPy step
    by hand and the loss as each library is given it. ``numpy_step(xp_params, xp_data)`` works in the
    arrays' own dtype, so the same code gives the float32 engine and the float64 reference."""
    family = label = ""
    params: dict = {}
    data: dict = {}

    def names(self) -> tuple[str, ...]:
        return ("loss", *(f"d{k}" for k in self.params))


def _normal(rng, shape, scale=1.0, shift=0.0):
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale) + np.float32(shift)).astype(DTYPE)


class MLP(Case):
    family = "mlp"

    def __init__(self, b, d, h, c, seed):
        rng = np.random.default_rng(seed)
        self.label = f"mlp {b}x{d}x{h}x{c}"
        self.params = {"W1": _normal(rng, (d, h), 1 / np.sqrt(d)), "b1": _normal(rng, (h,), 0.1),
                       "W2": _normal(rng, (h, c), 1 / np.sqrt(h)), "b2": _normal(rng, (c,), 0.1)}
        labels = rng.integers(0, c, b)
        self.data = {"X": _normal(rng, (b, d)), "Y": np.eye(c, dtype=DTYPE)[labels]}

    @staticmethod
    def numpy_step(p, data):
        """a = X W1 + b1, h = gelu_tanh(a) = a/2 (1 + t), t = tanh(k (a + c a^3)), logits = h W2 + b2,
        loss = -mean_i sum_j Y_ij logp_ij with logp = log_softmax(logits). Backward: d loss / d logp = -Y / B,
        and through log_softmax dlogits = (softmax * rowsum(Y) - Y) / B; dW2 = h^T dlogits, db2 = colsum;
        dh = dlogits W2^T; gelu_tanh'(a) = (1 + t)/2 + a/2 (1 - t^2) k (1 + 3 c a^2); da = dh gelu'(a);
        dW1 = X^T da, db1 = colsum(da)."""
        X, Y = data["X"], data["Y"]
        W1, b1, W2, b2 = p["W1"], p["b1"], p["W2"], p["b2"]
        a = X @ W1 + b1
        t = np.tanh(GELU_K * (a + GELU_C * a * a * a))
        h = 0.5 * a * (1 + t)
        logits = h @ W2 + b2
        shifted = logits - logits.max(axis=-1, keepdims=True)
        e = np.exp(shifted)
        se = e.sum(axis=-1, keepdims=True)
        logp = shifted - np.log(se)
        n = X.shape[0]
        loss = -(Y * logp).sum(axis=-1).mean()
        dlogits = (e / se * Y.sum(axis=-1, keepdims=True) - Y) / n
        dW2, db2 = h.T @ dlogits, dlogits.sum(axis=0)
        dh = dlogits @ W2.T
        da = dh * (0.5 * (1 + t) + 0.5 * a * (1 - t * t) * GELU_K * (1 + 3 * GELU_C * a * a))
        return loss, X.T @ da, da.sum(axis=0), dW2, db2

    @staticmethod
    def exprgen_loss(ex, d):
        X, Y = d["X"], d["Y"]

        def loss(W1, b1, W2, b2):
            logits = ex.gelu(X @ W1 + b1, approximate="tanh") @ W2 + b2
            return -ex.mean(ex.sum(Y * ex.log_softmax(logits, axis=-1), axis=-1))
        return loss

    @staticmethod
    def torch_loss(torch, d):
        X, Y, F = d["X"], d["Y"], torch.nn.functional

        def loss(W1, b1, W2, b2):
            logits = F.gelu(X @ W1 + b1, approximate="tanh") @ W2 + b2
            return -(Y * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
        return loss

    @staticmethod
    def jax_loss(jax):
        jnp = jax.numpy

        def loss(W1, b1, W2, b2, X, Y):
            logits = jax.nn.gelu(X @ W1 + b1, approximate=True) @ W2 + b2
            return -jnp.mean(jnp.sum(Y * jax.nn.log_softmax(logits, axis=-1), axis=-1))
        return loss


class LogReg(Case):
    family = "logreg"

    def __init__(self, n, d, seed):
        rng = np.random.default_rng(seed)
        self.label = f"logreg {n}x{d}"
        self.params = {"w": _normal(rng, (d,), 1 / np.sqrt(d)), "b": _normal(rng, (1,), 0.1)}
        X = _normal(rng, (n, d))
        truth = rng.standard_normal(d) / np.sqrt(d)
        y = (rng.random(n) < 1 / (1 + np.exp(-(X @ truth)))).astype(DTYPE)
        self.data = {"X": X, "y": y}

    @staticmethod
    def numpy_step(p, data):
        """z = X w + b, loss = mean(softplus(z) - y z); d loss / dz = (sigmoid(z) - y) / n, dw = X^T dz,
        db = sum(dz) (shape (1,))."""
        X, y, w, b = data["X"], data["y"], p["w"], p["b"]
        z = X @ w + b
        loss = (np.logaddexp(0, z) - y * z).mean()
        dz = (1 / (1 + np.exp(-z)) - y) / z.shape[0]
        return loss, X.T @ dz, dz.sum(keepdims=True)

    @staticmethod
    def exprgen_loss(ex, d):
        X, y = d["X"], d["y"]

        def loss(w, b):
            z = X @ w + b
            return ex.mean(ex.softplus(z) - y * z)
        return loss

    @staticmethod
    def torch_loss(torch, d):
        X, y, F = d["X"], d["y"], torch.nn.functional

        def loss(w, b):
            z = X @ w + b
            return (F.softplus(z) - y * z).mean()
        return loss

    @staticmethod
    def jax_loss(jax):
        jnp = jax.numpy

        def loss(w, b, X, y):
            z = X @ w + b
            return jnp.mean(jax.nn.softplus(z) - y * z)
        return loss


class LayerNorm(Case):
    family = "layernorm"

    def __init__(self, rows, cols, seed):
        rng = np.random.default_rng(seed)
        self.label = f"layernorm {rows}x{cols}"
        self.params = {"x": _normal(rng, (rows, cols), 2.0, 0.5), "g": _normal(rng, (cols,), 0.1, 1.0),
                       "beta": _normal(rng, (cols,), 0.1)}
        self.data = {"dy": _normal(rng, (rows, cols))}

    @staticmethod
    def numpy_step(p, data):
        """xhat = (x - mu) r with r = 1/sqrt(var + eps), out = xhat g + beta, loss = sum(out dy).
        dbeta = colsum(dy), dg = colsum(dy xhat); with dxhat = dy g,
        dx = r (dxhat - rowmean(dxhat) - xhat rowmean(dxhat xhat))."""
        x, g, beta, dy = p["x"], p["g"], p["beta"], data["dy"]
        xc = x - x.mean(axis=-1, keepdims=True)
        r = 1 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + EPS)
        xhat = xc * r
        loss = ((xhat * g + beta) * dy).sum()
        dxhat = dy * g
        dx = r * (dxhat - dxhat.mean(axis=-1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
        return loss, dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)

    @staticmethod
    def exprgen_loss(ex, d):
        dy = d["dy"]

        def loss(x, g, beta):
            mean = ex.mean(x, axis=-1, keepdims=True)
            var = ex.var(x, axis=-1, keepdims=True)
            return ex.sum(((x - mean) / ex.sqrt(var + EPS) * g + beta) * dy)
        return loss

    @staticmethod
    def torch_loss(torch, d):
        dy = d["dy"]

        def loss(x, g, beta):   # correction=0: NumPy's (and exprgen's) ddof=0 variance
            mean = x.mean(dim=-1, keepdim=True)
            var = x.var(dim=-1, keepdim=True, correction=0)
            return (((x - mean) / torch.sqrt(var + EPS) * g + beta) * dy).sum()
        return loss

    @staticmethod
    def jax_loss(jax):
        jnp = jax.numpy

        def loss(x, g, beta, dy):
            mean = jnp.mean(x, axis=-1, keepdims=True)
            var = jnp.var(x, axis=-1, keepdims=True)
            return jnp.sum(((x - mean) / jnp.sqrt(var + EPS) * g + beta) * dy)
        return loss


def make_cases(families) -> list[Case]:
    every = {"mlp": [lambda: MLP(512, 256, 512, 10, seed=1), lambda: MLP(256, 784, 1024, 10, seed=2)],
             "logreg": [lambda: LogReg(100_000, 32, seed=3)],
             "layernorm": [lambda: LayerNorm(4096, 1024, seed=4)]}
    unknown = set(families) - set(every)
    if unknown:
        raise SystemExit(f"unknown case(s) {sorted(unknown)}; choose from {', '.join(every)}")
    return [make() for family in every if family in families for make in every[family]]


# -- the engines ----------------------------------------------------------------------------------------------
def numpy_call(case: Case):
    step, params, data = case.numpy_step, case.params, case.data
    return lambda: step(params, data)


def torch_calls(torch, case: Case) -> dict:
    data = {k: torch.from_numpy(v) for k, v in case.data.items()}   # no copies
    loss = case.torch_loss(torch, data)
    eager_leaves = [torch.from_numpy(v.copy()).requires_grad_(True) for v in case.params.values()]
    compiled_leaves = [torch.from_numpy(v.copy()).requires_grad_(True) for v in case.params.values()]

    def eager():
        for p in eager_leaves:
            p.grad = None   # a fresh gradient each call, not an accumulation
        value = loss(*eager_leaves)
        value.backward()
        return (value.detach(), *(p.grad for p in eager_leaves))

    def step(*leaves):
        value = loss(*leaves)
        return (value.detach(), *torch.autograd.grad(value, leaves))

    compiled = torch.compile(step)
    return {"torch": eager, "torch.compile": lambda: compiled(*compiled_leaves)}


def jax_call(jax, case: Case):
    jnp = jax.numpy
    nparams = len(case.params)
    f = jax.jit(jax.value_and_grad(case.jax_loss(jax), argnums=tuple(range(nparams))))
    args = [jnp.asarray(v) for v in (*case.params.values(), *case.data.values())]

    def call():
        value, grads = f(*args)
        return jax.block_until_ready((value, *grads))   # jax dispatches asynchronously
    return call


def exprgen_calls(ex, case: Case) -> dict:
    """(call, guard) per exprgen engine: a fresh value_and_grad expression every call, realised in one
    ex.eval (the kernels shared between the loss and the gradients)."""
    data = {k: ex.asarray(v) for k, v in case.data.items()}
    params = [ex.asarray(v) for v in case.params.values()]   # leaves reusable, expressions not
    loss = case.exprgen_loss(ex, data)
    argnums = tuple(range(len(params)))
    value_and_grad = ex.value_and_grad(loss, argnums=argnums)

    def eager():
        value, grads = value_and_grad(*params)
        return ex.eval(value, *grads)

    def one_thread():
        with ex.threads(1):
            return eager()

    calls = {"exprgen": (eager, exprgen_guard(ex)), "exprgen 1 thread": (one_thread, exprgen_guard(ex))}
    jitted = ex.jit(ex.value_and_grad(loss, argnums=argnums))

    def jit():
        value, grads = jitted(*params)
        return tuple(r.numpy() for r in (value, *grads))
    # No launch guard: a replay does not go through the lazy path ex.stats counts kernels on; each call
    # still returns new outputs, so no realised value can be handed back in its place.
    calls["exprgen jit"] = (jit, None)
    return calls


# -- checks -------------------------------------------------------------------------------------------------
def reference(case: Case) -> tuple:
    """The loss and gradients in float64, by the same hand-written NumPy step as the "numpy" engine."""
    as64 = lambda d: {k: v.astype(np.float64) for k, v in d.items()}   # noqa: E731
    return tuple(np.asarray(r, dtype=np.float64) for r in case.numpy_step(as64(case.params), as64(case.data)))


def normwise_errors(got, ref) -> list[float]:
    return [float(np.max(np.abs(np.asarray(g, dtype=np.float64) - r)) / max(float(np.max(np.abs(r))), 1e-300))
            for g, r in zip(got, ref)]


def cross_check_reference(jax, case: Case, ref: tuple) -> float:
    """The hand-written backward against jax.value_and_grad, both in float64: the check that the formulas
    in ``numpy_step`` are right, so that the reference every engine is judged by is."""
    with jax.enable_x64(True):
        nparams = len(case.params)
        f = jax.value_and_grad(case.jax_loss(jax), argnums=tuple(range(nparams)))
        value, grads = f(*(v.astype(np.float64) for v in (*case.params.values(), *case.data.values())))
        got = [np.asarray(value), *(np.asarray(g) for g in grads)]
    errors = normwise_errors(got, ref)
    if max(errors) > XCHECK_RTOL:
        raise AssertionError(f"{case.label}: the hand-written float64 step disagrees with jax.value_and_grad in "
                             f"float64 ({dict(zip(case.names(), errors))}): the reference is wrong")
    return max(errors)


class Check:
    """An engine's first result (loss, *grads) against the float64 reference: every array float32 of the
    reference's shape and within RTOL normwise. A wrong engine, exprgen included, is marked, not fatal."""

    def __init__(self, case: Case, engine: str, ref: tuple):
        self.case, self.engine, self.ref = case, engine, ref
        self.ok, self.error, self.problem = None, None, None

    def __call__(self, result) -> None:
        values = [np.asarray(v.detach() if hasattr(v, "detach") else v) for v in result]
        names = self.case.names()
        if len(values) != len(names):
            self.ok, self.problem = False, f"{len(values)} results, want {len(names)}"
            return
        bad = [f"{n}: {v.dtype}{v.shape}, want float32{r.shape}" for n, v, r in zip(names, values, self.ref)
               if v.dtype != DTYPE or v.shape != r.shape]
        errors = normwise_errors(values, self.ref) if not bad else [float("inf")]
        self.error = max(errors)
        worst = names[int(np.argmax(errors))] if not bad else None
        self.ok = not bad and self.error <= RTOL
        if bad:
            self.problem = "; ".join(bad)
        elif not self.ok:
            self.problem = f"{worst} off by {self.error:.1e} of its max"


# -- running ---------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def repeat_plan(plan: tuple[int, int, float]):
    """bench_core's repeat plan (by size) replaced by one plan for every engine while the cases run."""
    saved = core.REPEATS
    core.REPEATS = ((None, plan),)
    try:
        yield
    finally:
        core.REPEATS = saved


def run_case(ex, peers: dict, case: Case, plan) -> tuple[list[dict], dict]:
    ref = reference(case)
    info = {"case": case.label, "family": case.family, "failures": {},
            "shapes": {k: list(v.shape) for k, v in {**case.params, **case.data}.items()}}
    if "jax" in peers:
        info["reference_vs_jax_float64"] = cross_check_reference(peers["jax"][0], case, ref)
    cases = {"numpy": (numpy_call(case), None)}
    if "torch" in peers:
        try:
            for engine, call in torch_calls(peers["torch"], case).items():
                cases[engine] = (call, None)
        except Exception as e:   # torch.compile refuses at wrapping time on some installs
            info["failures"]["torch.compile"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    if "jax" in peers:
        cases["jax.jit"] = (jax_call(peers["jax"][0], case), None)
    cases.update(exprgen_calls(ex, case))
    checks = {engine: Check(case, engine, ref) for engine in cases}

    def on_failure(engine, error):   # reported and left out; exprgen's too, so the other cases still run
        info["failures"][engine] = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:160]}"
        print(f"  {case.label:<26} {engine:<16} failed: {info['failures'][engine]}", flush=True)

    with repeat_plan(plan):
        timed = core.side_by_side({e: (call, guard, checks[e]) for e, (call, guard) in cases.items()}, 1,
                                  on_failure=on_failure)
    rows = []
    for engine, r in timed.items():
        check = checks[engine]
        rows.append({"case": case.label, "family": case.family, "engine": engine, **r, "correct": bool(check.ok),
                     "error": check.error, "problem": check.problem})
        print(f"  {case.label:<26} {engine:<16} {fmt_time(r['median_s']):>10}  first {fmt_time(r['first_call_s']):>10}"
              f"  ({r['repeats']} runs){'' if check.ok else '  WRONG: ' + check.problem}", flush=True)
    return rows, info


@contextlib.contextmanager
def fresh_inductor_cache(cache_dir: str | None):
    """torch.compile's first call as fresh as exprgen's: Inductor's on-disk cache goes to a temporary folder
    (removed afterwards) unless --cache-dir, or TORCHINDUCTOR_CACHE_DIR, names one. Set before torch loads."""
    if cache_dir or "TORCHINDUCTOR_CACHE_DIR" in os.environ:
        if cache_dir:
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(cache_dir, "torchinductor"))
        yield
        return
    tmp = tempfile.mkdtemp(prefix="exprgen-bench-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tmp
    try:
        yield
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def judged_engine(rows: list[dict]) -> str:
    return "exprgen jit" if any(r["engine"] == "exprgen jit" for r in rows) else "exprgen"


def best_peer(rows: list[dict], among=PEERS) -> dict | None:
    peers = [r for r in rows if r["engine"] in among and r["correct"]]
    return min(peers, key=lambda r: r["median_s"]) if peers else None


def targets(rows: list[dict], infos: list[dict]) -> dict:
    result = {}
    for info in infos:
        label, family = info["case"], info["family"]
        mine_rows = [r for r in rows if r["case"] == label]
        engine = judged_engine(mine_rows)
        mine = next((r for r in mine_rows if r["engine"] == engine), None)
        among, goal = (("torch.compile", "jax.jit"), MLP_TARGET) if family == "mlp" else (PEERS, BEAT_ALL_TARGET)
        best = best_peer(mine_rows, among)
        t = {"engine": engine, "target": goal, "against": list(among), "best_peer": best and best["engine"],
             "best_peer_s": best and best["median_s"], "exprgen_s": mine and mine["median_s"], "speedup": None}
        if mine is None or not mine["correct"]:
            t["pass"], t["why"] = False, ("failed: " + info["failures"].get(engine, "did not run")) if mine is None \
                else f"wrong result ({mine['problem']})"
        elif best is None:
            t["pass"], t["why"] = True, "no correct peer to compare with"
        else:
            t["speedup"] = best["median_s"] / mine["median_s"]
            t["pass"] = t["speedup"] >= goal if family == "mlp" else t["speedup"] > goal
        result[label] = t
    return {"train": result}


# -- reporting -------------------------------------------------------------------------------------------------
def print_tables(report: dict) -> None:
    rows = report["results"]
    warning = core.load_warning(report["meta"])
    print()
    if warning:
        print(warning)
    print("Whole training steps, float32: the loss and every gradient each call. median / min per call over the "
          "runs after warm-up;\nfirst call: compile / trace included (exprgen 1 thread reuses the kernels exprgen "
          "compiled); error: the largest normwise\nrelative error of the first result's arrays vs float64 "
          f"(tolerance {RTOL:.0e}); vs best peer: the best correct peer's median over\nthe engine's (> 1: faster), "
          f"peers being {', '.join(PEERS)}.")
    for info in report["cases"]:
        label = info["case"]
        mine_rows = [r for r in rows if r["case"] == label]
        best = best_peer(mine_rows)
        print()
        xcheck = info.get("reference_vs_jax_float64")
        print(f"{label}   " + ", ".join(f"{k} {tuple(v)}" for k, v in info["shapes"].items()) +
              (f"   (hand-written float64 reference vs jax float64: {xcheck:.1e})" if xcheck is not None else
               "   (reference not cross-checked: jax missing)"))
        print(f"  {'engine':<17} {'median':>10} {'min':>10} {'first call':>11} {'runs':>5}  {'error':<9} "
              f"{'vs best peer':>12}")
        for engine in ENGINES:
            r = next((r for r in mine_rows if r["engine"] == engine), None)
            if r is None:
                if engine in info["failures"]:
                    print(f"  {engine:<17} failed: {info['failures'][engine]}")
                continue
            vs = f"{best['median_s'] / r['median_s']:11.2f}x" if best else "-"
            err = "-" if r["error"] is None else f"{r['error']:.1e}"
            mark = "" if r["correct"] else f"  WRONG ({r['problem']})"
            star = " *" if best is r else ""
            print(f"  {engine:<17} {fmt_time(r['median_s']):>10} {fmt_time(r['min_s']):>10} "
                  f"{fmt_time(r['first_call_s']):>11} {r['repeats']:>5}  {err:<9} {vs:>12}{star}{mark}")
        t = report["targets"]["train"][label]
        rule = (f"at least {t['target']}x faster than the best of torch.compile and jax.jit" if info["family"] == "mlp"
                else "faster than every peer")
        if t["speedup"] is not None:
            how = (f"{t['speedup']:.2f}x vs {t['best_peer']} ({fmt_time(t['best_peer_s'])} against "
                   f"{fmt_time(t['exprgen_s'])})")
        else:
            how = t.get("why", "")
        note = "" if t["engine"] == "exprgen jit" else " (ex.jit not available: eager exprgen judged)" \
            if info["family"] == "mlp" else ""
        print(f"  target: {t['engine']} {rule}{note}: {how}  {'PASS' if t['pass'] else 'MISS'}")
    print("\n(* the best peer)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="PATH", help="write every number to this JSON file")
    parser.add_argument("--cache-dir", help="kernel cache, torch.compile's in its torchinductor/ (default: fresh "
                                            "temporary ones, so first-call times mean a compile and the user's "
                                            "caches are untouched)")
    parser.add_argument("--cases", default="mlp,logreg,layernorm", help="comma-separated: mlp, logreg, layernorm")
    parser.add_argument("--repeats", type=int, help="timed runs per engine and case (default: 15 to 90, about "
                                                    "1 s of each engine's time), rounded up to a multiple of 3")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    families = [f.strip() for f in args.cases.split(",") if f.strip()]
    plan = DEFAULT_PLAN if args.repeats is None else (args.repeats, args.repeats, 0.0)
    if plan[0] < 1:
        raise SystemExit("--repeats must be at least 1")

    started = time.perf_counter()
    with core.private_kernel_cache(args.cache_dir), fresh_inductor_cache(args.cache_dir):
        import exprgen as ex

        cases = make_cases(families)
        peers = load_peers()
        meta = core.describe_run(ex, peers, cases=[c.label for c in cases], exprgen_jit=hasattr(ex, "jit"))
        if "torch" in peers:
            torch = peers["torch"]
            meta["torch"], meta["torch_threads"] = torch.__version__, torch.get_num_threads()
            print(f"torch {meta['torch']} ({meta['torch_threads']} threads), eager and torch.compile")
        rows, infos = [], []
        for case in cases:
            case_rows, info = run_case(ex, peers, case, plan)
            rows += case_rows
            infos.append(info)
        report = {"meta": meta, "cases": infos, "results": rows, "targets": targets(rows, infos)}
        core.finish_report(report, started, args.json, print_tables)
    return 1 if args.strict and core.missed_targets(report) else 0


if __name__ == "__main__":
    sys.exit(main())
