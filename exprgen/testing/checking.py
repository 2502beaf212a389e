"""Checking exprgen against its NumPy reference: the tolerance table, enclosures, and the comparisons
built on them.

    assert_matches_reference(ex.exp(ex.asarray(x)) * 2.0)   # evaluates, then checks against the oracle

Users import these names from ``exprgen.testing``, which re-exports them beside the hypothesis strategies
that draw the cases to check; a ``Case`` drawn there is compared as the Arrays it builds.

Tolerances come from one table, ``tolerance(op, dtype)``: each op's ``ulp`` entry in ``ops/`` (0 where it
has none: the result must be correctly rounded); bool and integer results are exact. The truth of a
float32 op is the op computed in float64 from its float32 operands and rounded once
(``interpret.evaluate(..., exact_float32=True)``): NumPy's own float32 functions err too.

For one op on given inputs that is the whole story. A composition is compared with an *enclosure*
(``enclose``), computed by the reference: for every element of every node, the interval of values that an
implementation meeting every op's ULP bound may produce.

- A leaf is exact. An op's interval is the op, in float64, over its inputs' intervals, sampled at their
  ends, at up to nine representable values between them, at the reference value and at both zeros;
  rounded outwards and widened by the op's ULP bound, plus one ULP for the reference's own rounding when
  the inputs were not exact. Where an interval holds nine values or fewer every one of them is tried;
  beyond that the op must be monotone along the samples, or the element is *undecided*.
- A reduction's interval adds each input's effect (first order; exact for sum, max, min, any and all),
  and its ULP bound counts ULPs of the same reduction of ``|x|``: for a sum, of the sum of magnitudes,
  the condition of summation, so a cancelling sum is not held to ULPs of its tiny result.

So one op is held to exactly its ULP bound and a chain to the sum of its ops' bounds, each scaled by how
much the ops after it amplify it, as measured by the reference at these very values: never assumed, never
a blanket atol. The alternatives fail: a fixed budget per depth is wrong wherever a later op amplifies
error without bound (``x - y`` that cancels, ``sin`` of a large argument, ``floor`` or ``<`` at a step),
and a float32-rounded reference of the same graph still compounds per-op differences there. An element
the reference cannot decide (an interval that straddles a pole or a step it could not sample, or that
may or may not be NaN) is not compared: ``Comparison.undecided`` counts them, and the fuzz tests report
the fraction. A bool that a rounding may flip may take either value; NaN must be NaN; an infinity is exact
unless the interval reaches it; -0.0 vs 0.0 is compared where every sampled input gives a zero of one
sign and the op defines it (``signed_zero``).

Rewrites: exprgen compiles the rewritten graph, so compiled values are compared with the rewritten graph's
enclosure, and the rewrite with the original graph. Exact rules must give bit-identical reference values.
Accurate rules must give an enclosure that meets the original formula's real-number enclosure
(``enclose(..., real=True)``: every op rounds, at least a step either way, and an overflow stands for any
larger value): an accurate formula may be far more than ULPs from the original's floating-point value
exactly where that value is poor (``log(1 + x)`` for a tiny x), never from its real value.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field

import numpy as np

from ..backends import cuda_host
from ..ir import dtypes, graph, opdefs, interpret, views
from ..rewrite import rules
from ..api.array import Array, as_node
from ..ir.graph import BUFFER, INDEX, LEAVES, SCALAR, VIEW, Node, library_ops, reductions, toposort
from ..runtime.realize import evaluate, rewrite

_ORDERED_INT = {dtypes.FLOAT32: np.int32, dtypes.FLOAT64: np.int64}


def tolerance(op: str, dtype) -> int:
    """ULP allowed for op ``op`` (a name or alias) with a result of ``dtype``: the op's ``ulp`` entry."""
    return opdefs.get(op).tolerance_ulp(dtype) if np.dtype(dtype) in dtypes.FLOATS else 0


def tolerance_table() -> dict[str, dict[str, int]]:
    """The whole table, op -> float dtype -> ULP (ops defined at run time included)."""
    return {op.name: {d.name: tolerance(op.name, d) for d in _ORDERED_INT} for op in opdefs.canonical_ops()}


def _op_nodes(node: Node) -> list[Node]:
    """The nodes of a graph that apply a registry op (not leaves, not views)."""
    return [n for n in toposort([node]) if n.op not in LEAVES and n.op in opdefs.registry()]


def ulp_bound(node: Node) -> int:
    """ULP of the root's dtype allowed for one op over exact inputs: the sum of its ops' bounds.

    A composition is better compared with ``enclose`` (see the module docstring), which also follows how
    later ops amplify an earlier op's error.
    """
    return sum(tolerance(op, node.dtype) for op in {n.op for n in _op_nodes(node)})


def defines_signed_zero(node: Node) -> bool:
    """Whether -0.0 vs 0.0 is part of the result: only if every op on the way defines it."""
    return all(opdefs.get(n.op).signed_zero for n in _op_nodes(node))


def _ordered(v: np.ndarray) -> np.ndarray:
    """Floats as int64 that order like them, one step per representable value (-0.0 and 0.0 both 0)."""
    v = np.asarray(v)
    signed = _ORDERED_INT[v.dtype]
    bits = v.view(signed).astype(np.int64)
    return np.where(bits < 0, -(bits & np.iinfo(signed).max), bits)


def _unordered(o: np.ndarray, dtype: np.dtype) -> np.ndarray:
    signed = _ORDERED_INT[dtype]
    magnitude = np.abs(o)
    bits = np.where(o < 0, magnitude + np.iinfo(signed).min, magnitude)   # the sign bit set
    return bits.astype(signed).view(dtype)


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Number of representable floats between ``a`` and ``b`` (same float dtype), as uint64.

    Floats are mapped to integers that order like the floats (-0.0 and 0.0 both to 0), so the distance
    counts steps across zero and between subnormals correctly. NaN and inf are the caller's business.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.dtype not in _ORDERED_INT:
        raise TypeError(f"ulp_distance needs two float32 or float64 arrays, got {a.dtype} and {b.dtype}")
    oa, ob = _ordered(a), _ordered(b)
    same_side = (oa >= 0) == (ob >= 0)
    # On one side of zero the difference fits in int64; across zero it is |a| + |b|, which may not.
    near = np.abs(np.where(same_side, oa - ob, 0)).astype(np.uint64)
    across = np.abs(oa).astype(np.uint64) + np.abs(ob).astype(np.uint64)
    return np.where(same_side, near, across)


def assert_close(actual, expected, *, ulp: int = 0, signed_zero: bool = True, what: str = "result",
                 inputs: tuple = ()) -> None:
    """Raise AssertionError unless ``actual`` is within ``ulp`` of ``expected`` (one op over exact inputs;
    compositions: ``assert_matches_reference``). ``inputs``: arrays broadcastable to the result, shown
    beside each mismatch."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    _check_kind(actual, expected, what)
    if actual.dtype not in dtypes.FLOATS:
        bad = actual != expected
        detail = "values differ"
    else:
        a_nan, e_nan = np.isnan(actual), np.isnan(expected)
        a_inf, e_inf = np.isinf(actual), np.isinf(expected)
        finite = ~(a_nan | e_nan | a_inf | e_inf)
        zeros = (actual == 0) & (expected == 0)
        with np.errstate(invalid="ignore"):
            distance = ulp_distance(np.where(finite, actual, 0), np.where(finite, expected, 0))
        bad = (a_nan != e_nan) | ((a_inf | e_inf) & (actual != expected)) | (finite & (distance > ulp))
        if signed_zero:
            bad |= zeros & (np.signbit(actual) != np.signbit(expected))
        detail = f"allowed {ulp} ULP" + ("" if signed_zero else ", either sign of zero")
    _raise_for(bad, actual, expected, None, inputs, what, detail)


def _check_kind(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    if actual.shape != expected.shape or actual.dtype != expected.dtype:
        raise AssertionError(f"{what}: got {actual.dtype.name}{list(actual.shape)}, "
                             f"reference is {expected.dtype.name}{list(expected.shape)}")


def _raise_for(bad, actual, expected, allowed, inputs, what, detail) -> None:
    """AssertionError listing the first mismatches: index, inputs there, value, reference (and interval)."""
    if not bad.any():
        return
    where = np.argwhere(np.atleast_1d(bad))
    lines = []
    for row in where[:12]:
        index = tuple(int(i) for i in row) if actual.ndim else ()
        shown = [repr(np.broadcast_to(x, actual.shape)[index]) for x in inputs]
        gap = ""
        if actual.dtype in dtypes.FLOATS and np.isfinite(actual[index]) and np.isfinite(expected[index]):
            gap = f"  ({int(ulp_distance(actual[index], expected[index]))} ULP)"
        interval = f", allowed [{allowed[0][index]!r}, {allowed[1][index]!r}]" if allowed is not None else ""
        lines.append(f"  at {index}: inputs ({', '.join(shown)}) got {actual[index]!r}, "
                     f"expected {expected[index]!r}{gap}{interval}")
    raise AssertionError(f"{what}: {len(where)} of {actual.size} elements differ ({detail}):\n" + "\n".join(lines))


# -- enclosures ------------------------------------------------------------------------------------
SAMPLES = 9   # points tried between the ends of an input's interval (beyond: monotone, or undecided)


@dataclass
class Bounds:
    """One node's enclosure, elementwise (see the module docstring)."""

    center: np.ndarray      # the reference value
    lo: np.ndarray          # the lowest and highest value allowed, in the node's dtype
    hi: np.ndarray
    decided: np.ndarray     # bool: the reference decides this element (else it is not compared)
    free: np.ndarray        # bool: the value may differ from ``center`` at all
    zero_sign: np.ndarray   # bool: a zero must have ``center``'s sign

    def fields(self) -> tuple:
        return (self.center, self.lo, self.hi, self.decided, self.free, self.zero_sign)


def _exact(value: np.ndarray) -> Bounds:
    value = np.asarray(value)
    ones = np.ones(value.shape, bool)
    return Bounds(value, value, value, ones, ~ones, ones)


def _widen(lo, hi, dtype, steps, delta=None):
    """``lo``/``hi`` moved ``delta`` (absolute) and then ``steps`` representable values outwards, per
    element; a finite bound stops at the largest finite float (overflow is the interval's to show)."""
    if delta is not None:
        with np.errstate(all="ignore"):
            moved = delta > 0
            lo = np.where(moved, (lo.astype(np.float64) - delta).astype(dtype), lo)
            hi = np.where(moved, (hi.astype(np.float64) + delta).astype(dtype), hi)
        steps = steps + moved   # the conversions above round to nearest
    top = int(_ordered(np.array(np.finfo(dtype).max, dtype)))
    olo, ohi = _ordered(lo), _ordered(hi)
    new_lo = _unordered(np.where(np.isfinite(lo), np.maximum(olo - steps, -top), olo), dtype)
    new_hi = _unordered(np.where(np.isfinite(hi), np.minimum(ohi + steps, top), ohi), dtype)
    keep = (steps == 0) | np.isnan(lo)   # keeps the sign of a zero bound, and NaN
    return np.where(keep, lo, new_lo), np.where(keep, hi, new_hi)


def _sort_key(v: np.ndarray) -> np.ndarray:
    return 2 * _ordered(v) - ((v == 0) & np.signbit(v))   # -0.0 just below 0.0


def _spread(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(SAMPLES integers from ``lo`` to ``hi`` along a new first axis, whether that is all of them); int64
    or uint64 ends, any distance apart. The arithmetic is in uint64, with int64 moved up by 2**63 (which
    keeps the order), so no difference or step overflows."""
    top = np.uint64(1 << 63)
    signed = lo.dtype.kind == "i"
    ulo, uhi = (lo.astype(np.uint64) ^ top, hi.astype(np.uint64) ^ top) if signed else (lo, hi)
    distance = uhi - ulo
    j = np.arange(SAMPLES - 1).reshape((-1,) + (1,) * lo.ndim) / (SAMPLES - 1)
    steps = np.floor(j * distance.astype(np.float64)).astype(np.uint64)   # j < 1: below 2**64
    grid = np.minimum(ulo + np.concatenate([steps, distance[None]]), uhi)
    return ((grid ^ top).astype(np.int64) if signed else grid), distance < SAMPLES


def _samples(b: Bounds) -> tuple[np.ndarray, np.ndarray]:
    """(points, exhaustive): sorted points of each element's interval along a new first axis, and whether
    they are all of its values. A NaN is tried with either sign: IEEE leaves the sign of a NaN that an
    operation makes unspecified, and signbit or copysign would show it."""
    c = b.center
    nan = np.isnan(c) if c.dtype in dtypes.FLOATS else np.zeros(c.shape, bool)
    if not b.free.any() and not nan.any():
        return c[None], np.ones(c.shape, bool)
    if c.dtype == dtypes.BOOL:
        return np.stack([b.lo, c, b.hi]), np.ones(c.shape, bool)
    if c.dtype in dtypes.INTEGERS:
        wide = np.uint64 if c.dtype.kind == "u" else np.int64
        grid, exhaustive = _spread(b.lo.astype(wide), b.hi.astype(wide))
        return np.sort(np.concatenate([grid.astype(c.dtype), c[None]]), axis=0), exhaustive
    olo, ohi = _ordered(b.lo), _ordered(b.hi)
    grid, exhaustive = _spread(olo, ohi)
    straddles = (olo <= 0) & (ohi >= 0) & ~b.zero_sign
    zeros = [np.where(straddles, c.dtype.type(z), c)[None] for z in (-0.0, 0.0)]
    points = np.concatenate([np.where(nan, c, _unordered(grid, c.dtype)), c[None], *zeros])
    order = np.argsort(np.where(nan, 0, _sort_key(points)), axis=0, kind="stable")
    points = np.take_along_axis(points, order, axis=0)
    points[:, nan] = np.copysign(c.dtype.type(np.nan), np.arange(len(points)) % 2 - 0.5)[:, None]
    return points, exhaustive | ~b.free | nan


def _caller_compute(node: Node) -> tuple:
    return opdefs.get(node.op).compute_dtypes(tuple(s.signature_item() for s in node.src), node.arg)


def _caller(node: Node):
    """The op of ``node`` as the exact-float32 reference computes it, over arrays of any leading shape
    (unrounded: float32 ops give float64); ``params`` replaces the node's (a reduction's axes)."""
    op = opdefs.get(node.op)
    compute = op.compute_dtypes(tuple(s.signature_item() for s in node.src), node.arg)
    widen = op.widen and dtypes.FLOAT32 in compute

    def call(*args, params=node.arg):
        with np.errstate(all="ignore"):
            if widen:
                args = [np.asarray(a).astype(d).astype(np.float64 if d == dtypes.FLOAT32 else d)
                        for a, d in zip(args, compute)]
            # NumPy's SIMD and scalar loops of one function may differ in the last bit: a strided view
            # and its contiguous copy must not give two reference values.
            args = [np.asarray(a, order="C") if isinstance(a, np.ndarray) else a for a in args]
            return np.asarray(op.numpy(*args, *params))
    return call


def _ulp(node: Node, ulps: dict) -> int:
    op = opdefs.get(node.op)
    return ulps.get(op.name, tolerance(op.name, node.dtype)) if node.dtype in dtypes.FLOATS else 0


def _hull(node: Node, raw, center_raw, free_in, decided, ulp: int, real: bool, delta=None) -> Bounds:
    """Bounds from the op's values at every sample (``raw``: samples along axis 0, then node.shape)."""
    dtype = node.dtype
    center = np.broadcast_to(center_raw, node.shape).astype(dtype)
    if dtype not in dtypes.FLOATS:
        lo, hi = raw.min(0).astype(dtype), raw.max(0).astype(dtype)
        return Bounds(center, lo, hi, decided, lo != hi, np.ones(node.shape, bool))
    nan = np.isnan(raw)
    all_nan = nan.all(0)
    decided = decided & (all_nan | ~nan.any(0))
    lo, hi = np.fmin.reduce(raw, axis=0).astype(dtype), np.fmax.reduce(raw, axis=0).astype(dtype)
    lo, hi = _widen(lo, hi, dtype, (max(ulp, real) + free_in) * ~all_nan, delta)
    if real:   # an overflow stands for any value beyond the largest float
        top = np.finfo(dtype).max
        lo, hi = np.where(lo == np.inf, top, lo), np.where(hi == -np.inf, -top, hi)
    zero = raw == 0
    negative = zero & np.signbit(raw)
    zero_sign = opdefs.get(node.op).signed_zero & zero.all(0) & (negative.all(0) | ~negative.any(0))
    free = ((_ordered(lo) != _ordered(hi)) | ((center == 0) & ~zero_sign)) & ~all_nan
    return Bounds(center, lo, hi, decided, free, zero_sign)


def _monotone(raw: np.ndarray, axis: int, grid_axes: tuple, dtype: np.dtype, slack: int) -> np.ndarray:
    """Monotone along grid axis ``axis``, up to ``slack`` ULPs of ``dtype`` back: a function's own
    rounding wiggles at that scale, and the hull is widened by as much."""
    a = np.moveaxis(raw, axis, 0)
    if dtype in dtypes.FLOATS:
        a = _ordered(a.astype(dtype))
    else:
        slack = 0
    return (a[1:] >= a[:-1] - slack).all(grid_axes) | (a[1:] <= a[:-1] + slack).all(grid_axes)


def _enclose_elementwise(node: Node, inputs: list, ulps: dict, real: bool) -> Bounds:
    call = _caller(node)
    n, nd = len(node.src), len(node.shape)
    args, centers, sizes, unsampled = [], [], [1] * n, []
    free_in, decided = np.zeros(node.shape, bool), np.ones(node.shape, bool)
    for i, (src, b) in enumerate(zip(node.src, inputs)):
        if src.op is SCALAR:
            args.append(src.arg)
            centers.append(src.arg)
            continue
        points, exhaustive = _samples(b)
        if src.weak:   # a value of Python scalars: converted to what it meets, as the kernel converts it
            points = points.astype(_caller_compute(node)[i])
        sizes[i] = len(points)
        args.append(points.reshape((1,) * i + (len(points),) + (1,) * (n - 1 - i + nd - len(src.shape)) + src.shape))
        centers.append(b.center)
        free_in |= np.broadcast_to(b.free, node.shape)
        decided &= np.broadcast_to(b.decided, node.shape)
        if not exhaustive.all():
            unsampled.append((i, np.broadcast_to(exhaustive, node.shape)))
    raw = np.broadcast_to(call(*args), tuple(sizes) + node.shape)
    ulp = _ulp(node, ulps)
    for i, exhaustive in unsampled:   # a stretch with values not tried: the op must be monotone on it
        decided &= exhaustive | _monotone(raw, i, tuple(range(n)), node.dtype, ulp + 1)
    return _hull(node, raw.reshape((math.prod(sizes),) + node.shape), call(*centers), free_in, decided, ulp, real)


def _enclose_reduction(node: Node, b: Bounds, ulps: dict, real: bool) -> Bounds:
    """Joint corners (every input at its lowest, every one at its highest) and each input moved alone;
    for a float result the single moves' effects add up (first order)."""
    call = _caller(node)
    (axes,) = node.arg
    center_raw = call(b.center)
    decided = b.decided.all(axis=axes, keepdims=True)
    free_in = b.free.any(axis=axes, keepdims=True)
    raw = center_raw[None]
    if free_in.any():
        kept = [d for d in range(b.center.ndim) if d not in axes]
        m = math.prod(b.center.shape[d] for d in axes)

        def rows(a):   # the reduced axes last, as one
            return a.transpose(kept + list(axes)).reshape(tuple(a.shape[d] for d in kept) + (m,))
        one = np.eye(m, dtype=bool).reshape((m,) + (1,) * len(kept) + (m,))
        alone = np.stack([call(np.where(one, rows(end), rows(b.center)), params=((len(kept) + 1,),))
                          .reshape((m,) + node.shape) for end in (b.lo, b.hi)])
        raw = np.concatenate([raw, call(b.lo)[None], call(b.hi)[None], alone.reshape((2 * m,) + node.shape)])
        if raw.dtype.kind == "f":
            with np.errstate(invalid="ignore"):
                moves = alone - center_raw
                low = center_raw + np.fmin(moves, 0).min(0).sum(0)
                high = center_raw + np.fmax(moves, 0).max(0).sum(0)
            raw = np.concatenate([raw, low[None], high[None]])
    delta = None
    if node.dtype in dtypes.FLOATS:
        # ULPs of the reduction of |x|: for a sum, of the sum of magnitudes (the condition of summation).
        with np.errstate(all="ignore"):
            scale = np.abs(call(np.abs(b.center)).astype(np.float64))
            finite = np.where(np.isfinite(b.center), np.abs(b.center), 0)
        # Where the finite inputs' magnitudes overflow, whether a partial sum (or product) does depends
        # on the order: max + max + inf is NaN or inf, max + max - max inf or max.
        decided = decided & np.isfinite(call(finite))
        info = np.finfo(node.dtype)
        delta = _ulp(node, ulps) * (info.eps * scale + info.smallest_subnormal)
        delta = np.where(np.isfinite(delta), delta, 0.0)
    return _hull(node, raw, center_raw, free_in, decided, 0, real, delta)


def enclose(roots, ulps: dict | None = None, real: bool = False) -> dict[int, Bounds]:
    """The enclosure of every node of the graph of ``roots`` (Nodes), by node id.

    ``ulps``: ULP bounds by op name that replace the table's, for ops whose entry has none (user ops).
    ``real``: enclose the real-number value of the formula rather than its floating-point one: every
    float op rounds (a step either way at least), and an overflow stands for any larger value.
    """
    ulps = {opdefs.get(name).name: ulp for name, ulp in (ulps or {}).items()}
    found: dict[int, Bounds] = {}
    with np.errstate(all="ignore"):
        for node in toposort(list(roots)):
            found[id(node)] = _enclose_node(node, found, ulps, real)
    return found


def _enclose_node(node: Node, found: dict, ulps: dict, real: bool) -> Bounds:
    if node.op is BUFFER:
        return _exact(node.buffer)
    if node.op is SCALAR:
        return _exact(np.asarray(node.arg, node.dtype))
    if node.op is INDEX:
        return _exact(interpret.index_values(node))
    if node.op is VIEW:
        return Bounds(*(views.apply(f, node.arg) for f in found[id(node.src[0])].fields()))
    if node.op in reductions():
        return _enclose_reduction(node, found[id(node.src[0])], ulps, real)
    if node.op in library_ops():
        return _enclose_contraction(node, [found[id(s)] for s in node.src], ulps, real)
    return _enclose_elementwise(node, [found[id(s)] for s in node.src], ulps, real)


def _enclose_contraction(node: Node, inputs: list, ulps: dict, real: bool) -> Bounds:
    """A matmul, (..., M, K) with (..., K, N): for floats, the products (..., M, K, N) enclosed as a
    multiply is, then their sum over K as a sum is, allowed K of its ULPs of the sum of magnitudes (BLAS
    adds in the dtype, in its own order: K roundings at most). Integer and bool products are exact, and
    decided where every input they read is fixed."""
    (x, y), (bx, by) = node.src, inputs
    if node.dtype not in dtypes.FLOATS:
        rows = (bx.decided & ~bx.free).all(-1, keepdims=True)
        columns = (by.decided & ~by.free).all(-2, keepdims=True)
        center, ones = np.matmul(bx.center, by.center), np.ones(node.shape, bool)
        return Bounds(center, center, center, np.broadcast_to(rows & columns, node.shape), ~ones, ones)
    m, k, n = x.shape[-2], x.shape[-1], y.shape[-1]

    def placeholder(like: Node, shape: tuple) -> Node:   # the dtype and shape of an operand; no memory
        return graph.buffer(np.broadcast_to(np.zeros((), like.dtype), shape), device=None)
    product = graph.apply("multiply", placeholder(x, x.shape[:-2] + (m, k, 1)),
                          placeholder(y, y.shape[:-2] + (1, k, n)))
    total = graph.reduce("sum", product, (len(product.shape) - 2,))
    products = _enclose_elementwise(product, [Bounds(*(f[..., None] for f in bx.fields())),
                                              Bounds(*(f[..., None, :, :] for f in by.fields()))], ulps, real)
    summed = _enclose_reduction(total, products, {**ulps, "sum": max(k, tolerance("sum", node.dtype))}, real)
    return Bounds(*(np.reshape(f, node.shape) for f in summed.fields()))


def _outside(actual: np.ndarray, b: Bounds) -> np.ndarray:
    """Decided elements ``actual`` gets wrong."""
    if actual.dtype not in dtypes.FLOATS:
        return b.decided & ((actual < b.lo) | (actual > b.hi))
    nan, want_nan = np.isnan(actual), np.isnan(b.center)
    with np.errstate(invalid="ignore"):
        o = _ordered(actual)
        inside = (o >= _ordered(b.lo)) & (o <= _ordered(b.hi))
        wrong_zero = b.zero_sign & (actual == 0) & (b.center == 0) & (np.signbit(actual) != np.signbit(b.center))
    return b.decided & ((nan != want_nan) | (~nan & ~want_nan & ~inside) | wrong_zero)


def _disjoint(a: Bounds, b: Bounds) -> np.ndarray:
    if a.center.dtype not in dtypes.FLOATS:
        return (a.hi < b.lo) | (a.lo > b.hi)
    nan_a, nan_b = np.isnan(a.center), np.isnan(b.center)
    apart = (_ordered(a.hi) < _ordered(b.lo)) | (_ordered(a.lo) > _ordered(b.hi))
    return (nan_a != nan_b) | (~nan_a & ~nan_b & apart)


def _same_bits(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype not in dtypes.FLOATS:
        return a == b
    return ((a == b) & (np.signbit(a) == np.signbit(b))) | (np.isnan(a) & np.isnan(b))


def _leaf_values(node: Node) -> tuple:
    """The inputs to show beside each element of ``node``: its leaves, where every op on the way is
    elementwise (through a reduction or a view an input's elements no longer line up with the result's)."""
    nodes = toposort([node])
    if any(n.op is VIEW or n.op in reductions() for n in nodes):
        return ()
    return tuple(n.buffer if n.op is BUFFER else n.arg for n in nodes if n.op in LEAVES)


# -- comparisons ------------------------------------------------------------------------------------
@dataclass
class Comparison:
    """What ``compare`` found: exprgen's values, elements compared and left undecided, rules that fired."""

    values: list
    elements: int = 0
    undecided: int = 0
    rewrites: list = field(default_factory=list)


def _roots(arrays) -> tuple[tuple[Node, ...], object]:
    # A ``Case`` (exprgen.testing, later in the pipeline) is known by its build(); it prints with source().
    if len(arrays) == 1 and hasattr(arrays[0], "build"):
        case = arrays[0]
        return tuple(a._graph_node() for a in case.build()), case
    if any(isinstance(a, Array) and a._value is not None for a in arrays):
        raise ValueError("comparing with the reference needs expressions that have not been computed yet "
                         "(a computed Array is only its buffer, so the comparison would be empty)")
    return tuple(a if isinstance(a, Node) else as_node(a) for a in arrays), None


def _rewrite_problems(roots, rewritten, fired, ulps, after: dict) -> list[str]:
    """Why the rewritten graph does not keep the original's values (see the module docstring)."""
    kinds = {r.algebra: r.kind for r in rules.active()}
    exact = all(kinds.get(algebra) == "exact" for algebra, _, _ in fired)
    before = enclose(roots, ulps, real=not exact)
    problems = []
    for root, new in zip(roots, rewritten):
        old_b, new_b = before[id(root)], after[id(new)]
        if exact:
            bad, detail = ~_same_bits(old_b.center, new_b.center), "exact rules change no bit"
        else:
            bad = _disjoint(new_b, old_b) & old_b.decided & new_b.decided
            detail = f"accurate rules ({', '.join(a for a, _, _ in fired)}): no further from the real value"
        try:
            _raise_for(bad, new_b.center, old_b.center, (new_b.lo, new_b.hi), _leaf_values(root),
                       f"rewriting {_shown(root)} into {_shown(new)}", detail)
        except AssertionError as exc:
            problems.append(str(exc))
    return problems


def _shown(node: Node) -> str:
    text = repr(node)
    return text if len(text) <= 160 else text[:160] + "..."


def _value_problems(roots, values, bounds: dict, result: Comparison) -> list[str]:
    problems = []
    for root, value in zip(roots, values):
        b, value = bounds[id(root)], np.asarray(value)
        result.elements += b.decided.size
        result.undecided += int(b.decided.size - np.count_nonzero(b.decided))
        try:
            _check_kind(value, b.center, _shown(root))
            _raise_for(_outside(value, b), value, b.center, (b.lo, b.hi), _leaf_values(root), _shown(root),
                       "outside the enclosure of the ops' ULP bounds")
        except AssertionError as exc:
            problems.append(str(exc))
    return problems


def _fail(problems: list[str], case) -> None:
    if problems:
        rebuild = f"\n\nRebuild the case with:\n{case.source()}" if case is not None else ""
        raise AssertionError("\n".join(problems) + rebuild)


def compare(*arrays, ulps: dict | None = None) -> Comparison:
    """Evaluate expressions (Arrays or Nodes not yet computed, or one ``Case``) with exprgen and compare
    them with the reference: the compiled values with the enclosure of the rewritten graph exprgen ran,
    and that graph with the original. Raises AssertionError listing every mismatch.

    ``ulps``: ULP bounds by op name, for ops whose ``ops/`` entry has none (user ops).
    """
    roots, case = _roots(arrays)
    values = evaluate(roots)
    rewritten, fired, _ = rewrite(roots)
    after = enclose(rewritten, ulps)
    result = Comparison(values, rewrites=[algebra for algebra, _, _ in fired])
    problems = _value_problems(rewritten, values, after, result)
    if fired:
        problems += _rewrite_problems(roots, rewritten, fired, ulps, after)
    _fail(problems, case)
    return result


def check_values(values, *arrays, ulps: dict | None = None) -> Comparison:
    """Compare ``values`` computed some other way (op by op, in another process, by another backend)
    with the enclosure of the graph of ``arrays`` (or one ``Case``) as written."""
    roots, case = _roots(arrays)
    result = Comparison(list(values))
    _fail(_value_problems(roots, result.values, enclose(roots, ulps), result), case)
    return result


def assert_matches_reference(*arrays, ulps: dict | None = None) -> list[np.ndarray]:
    """``compare``, returning exprgen's values."""
    return compare(*arrays, ulps=ulps).values


def assert_rewrite_keeps_values(*arrays, ulps: dict | None = None) -> list[str]:
    """Rewrite (without compiling) and compare the graph after with the graph before, by the reference;
    returns the rules that fired."""
    roots, case = _roots(arrays)
    rewritten, fired, _ = rewrite(roots)
    _fail(_rewrite_problems(roots, rewritten, fired, ulps, enclose(rewritten, ulps)) if fired else [], case)
    return [algebra for algebra, _, _ in fired]


@contextlib.contextmanager
def cuda_host_execution():
    """Device "cuda" for the block, its kernels run by CUDA host execution (``EXPRGEN_CUDA_HOST=1``,
    exprgen/backends/cuda_host.py), whether or not this machine has a GPU; the variable is restored after.
    Process-wide, like the environment it sets: for tests."""
    previous = os.environ.get(cuda_host.ENABLE)
    os.environ[cuda_host.ENABLE] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(cuda_host.ENABLE, None)
        else:
            os.environ[cuda_host.ENABLE] = previous
