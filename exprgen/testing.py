"""Checking exprgen against its NumPy reference, and hypothesis strategies to fuzz it with.

    assert_matches_reference(ex.exp(ex.asarray(x)) * 2.0)   # evaluates, then checks against the oracle

    @given(expressions(ops=["sigmoid", "my_custom_op", "add"], dtypes=["float32"], max_depth=6))
    def test_my_op(case):
        assert_matches_reference(case)          # a failing case prints as Python that rebuilds it

Tolerances come from one table, ``tolerance(op, dtype)``: each op's ``ulp`` entry in ``ops/`` (0 where it
has none: the result must be correctly rounded); bool and integer results are exact. The truth of a
float32 op is the op computed in float64 from its float32 operands and rounded once
(``reference.evaluate(..., exact_float32=True)``): NumPy's own float32 functions err too.

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

import math
from dataclasses import dataclass, field

import numpy as np

import exprgen as ex

from . import dtypes, opdefs, reference, rules, views
from .array import Array, as_node
from .graph import BUFFER, INDEX, LEAVES, SCALAR, VIEW, Node, reductions, toposort
from .realize import evaluate, rewrite

_ORDERED_INT = {dtypes.FLOAT32: np.int32, dtypes.FLOAT64: np.int64}
# ``expressions`` draws from these by default (it takes a parameter named dtypes): the core five, since a
# float drawn into a narrow or unsigned integer may be NaN or out of range, which the standard leaves
# unspecified (tests/test_ops.py tests every op at the other integers, with values they hold).
DEFAULT_DTYPES = dtypes.CORE


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
        return _exact(reference.index_values(node))
    if node.op is VIEW:
        return Bounds(*(views.apply(f, node.arg) for f in found[id(node.src[0])].fields()))
    if node.op in reductions():
        return _enclose_reduction(node, found[id(node.src[0])], ulps, real)
    return _enclose_elementwise(node, [found[id(s)] for s in node.src], ulps, real)


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


def _roots(arrays) -> tuple[tuple[Node, ...], Case | None]:
    if len(arrays) == 1 and isinstance(arrays[0], Case):
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


# -- values and hypothesis strategies --------------------------------------------------------------
GENERIC_DOMAIN = opdefs.Domain(-10.0, 10.0)   # for inputs no op's domain speaks for (views)


def special_values(dtype) -> np.ndarray:
    """The values every op must survive in this dtype: zeros, infinities, NaN, subnormals, extremes."""
    dtype = np.dtype(dtype)
    if dtype == dtypes.BOOL:
        return np.array([False, True])
    if dtype in dtypes.INTEGERS:
        info = np.iinfo(dtype)
        values = [0, 1, -1, 2, -2, 3, -7, 100, info.min, info.min + 1, info.max, info.max - 1]
        return np.array([v for v in dict.fromkeys(values) if info.min <= v <= info.max], dtype)
    info = np.finfo(dtype)
    tiny_sub = info.smallest_subnormal
    # Halves are round()'s ties; the largest subnormal and the smallest normal sit on either side of
    # the point where hardware may flush to zero.
    values = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, 2.5, -2.5, 3.0, -7.0, math.inf, -math.inf, math.nan,
              tiny_sub, -tiny_sub, info.tiny - tiny_sub, info.tiny, info.max, -info.max, 1e30, -1e30]
    return np.array(values, dtype)


def _domain(op: opdefs.OpDef | None, index: int) -> opdefs.Domain:
    return op.domains[index] if op is not None and op.domains else GENERIC_DOMAIN


def domain_edges(op: opdefs.OpDef | None, index: int, dtype) -> np.ndarray:
    """The op's own edge values for input ``index`` that ``dtype`` can hold exactly (ints: integral ones)."""
    dtype = np.dtype(dtype)
    edges = np.array(_domain(op, index).edges, np.float64)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        with np.errstate(invalid="ignore"):
            keep = np.isfinite(edges) & (edges == np.round(edges)) & (edges >= info.min) & (edges <= info.max)
        edges = edges[keep]
    elif dtype == dtypes.BOOL:
        edges = edges[(edges == 0) | (edges == 1)]
    with np.errstate(over="ignore"):
        return edges.astype(dtype)


def edge_values(op: opdefs.OpDef | None, index: int, dtype) -> np.ndarray:
    """Special values of the dtype plus the op's domain edges, without repeats."""
    values = np.concatenate([special_values(dtype), domain_edges(op, index, dtype)])
    _, first = np.unique(values.view(f"u{values.itemsize}"), return_index=True)  # by bits: keeps -0.0, NaN
    return values[np.sort(first)]


def domain_elements(op: opdefs.OpDef | None, index: int, dtype, edges: bool = True):
    """Hypothesis strategy for one input value of ``op`` (None: any op): the domain's range, and with
    ``edges`` one time in four an edge (special values of the dtype and the op's own)."""
    from hypothesis import strategies as st

    dtype = np.dtype(dtype)
    domain = _domain(op, index)
    if dtype == dtypes.BOOL:
        return st.booleans()
    if dtype in dtypes.INTEGERS:
        info = np.iinfo(dtype)
        low, high = max(math.ceil(domain.low), info.min), min(math.floor(domain.high), info.max)
        if low > high:   # no integer inside the range: its edges are all there is
            return st.sampled_from(list(edge_values(op, index, dtype))).map(dtype.type)
        inside = st.integers(low, high)
    else:
        # hypothesis wants bounds the width can hold: round them inwards.
        low, high = dtype.type(domain.low), dtype.type(domain.high)
        low = np.nextafter(low, dtype.type(math.inf)) if low < domain.low else low
        high = np.nextafter(high, dtype.type(-math.inf)) if high > domain.high else high
        inside = st.floats(float(low), float(high), width=8 * dtype.itemsize)
    if edges:   # one_of picks evenly: three parts in four inside
        inside = st.one_of(inside, inside, inside, st.sampled_from(list(edge_values(op, index, dtype))))
    return inside.map(dtype.type)


def array_dtypes(allowed=None):
    """Hypothesis strategy for a dtype exprgen supports (from ``allowed`` names or dtypes, if given)."""
    from hypothesis import strategies as st

    return st.sampled_from([dtypes.as_dtype(d) for d in (allowed or dtypes.SUPPORTED)])


def array_shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 0, max_side: int = 5):
    """Hypothesis strategy for an array shape (0-d and empty shapes included by default)."""
    from hypothesis.extra import numpy as hnp

    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_shapes(num_shapes: int = 2, min_dims: int = 0, max_dims: int = 3, min_side: int = 1,
                         max_side: int = 5):
    """Hypothesis strategy for a tuple of ``num_shapes`` shapes that broadcast together."""
    from hypothesis.extra import numpy as hnp

    return hnp.mutually_broadcastable_shapes(num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims,
                                             min_side=min_side, max_side=max_side).map(lambda s: s.input_shapes)


def arrays(dtype, shape, op: opdefs.OpDef | str | None = None, index: int = 0, edges: bool = True):
    """Hypothesis strategy for a contiguous array whose values come from input ``index`` of ``op``'s
    domain (``domain_elements``); ``dtype`` and ``shape`` may be strategies."""
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    op = opdefs.get(op) if isinstance(op, str) else op
    if isinstance(dtype, st.SearchStrategy):
        return dtype.flatmap(lambda d: arrays(d, shape, op, index, edges))
    # Every element drawn (no background fill): a kernel that reads the wrong element must show it.
    return hnp.arrays(np.dtype(dtype), shape, elements=domain_elements(op, index, dtype, edges), fill=st.nothing())


def domain_arrays(op: opdefs.OpDef, dtype, shape, index: int = 0):
    """``arrays`` for input ``index`` of ``op``."""
    return arrays(dtype, shape, op, index)


@dataclass(frozen=True, eq=False)
class Leaf:
    """An input: ``base`` (contiguous) seen through NumPy ``layout`` steps: ("getitem", index),
    ("transpose", axes) or ("broadcast_to", shape)."""

    base: np.ndarray
    layout: tuple = ()

    def array(self) -> np.ndarray:
        a = self.base
        for kind, arg in self.layout:
            a = a[arg] if kind == "getitem" else a.transpose(arg) if kind == "transpose" else np.broadcast_to(a, arg)
        return a

    def source(self) -> str:
        values = ", ".join(_literal(v) for v in self.base.ravel().tolist())
        text = f"np.array([{values}], dtype=np.{self.base.dtype.name}).reshape({self.base.shape})"
        for kind, arg in self.layout:
            text = (f"{text}[{_index_source(arg)}]" if kind == "getitem" else f"{text}.transpose({arg})"
                    if kind == "transpose" else f"np.broadcast_to({text}, {arg})")
        return text


def _layouts(draw, shape: tuple) -> tuple[tuple, tuple]:
    """(base shape, layout) of a NumPy view of ``shape``: contiguous, transposed, strided on one axis
    (with any offset, either direction) and the others possibly reversed, or broadcast (stride 0)."""
    from hypothesis import strategies as st

    kind = draw(st.sampled_from(["contiguous", "transposed", "strided", "broadcast"]), label="layout")
    if kind == "contiguous" or not shape:
        return shape, ()
    if kind == "transposed":
        perm = draw(st.permutations(range(len(shape))))
        return tuple(shape[p] for p in perm), (("transpose", tuple(int(i) for i in np.argsort(perm))),)
    if kind == "broadcast":
        return tuple(draw(st.sampled_from([1, n])) for n in shape), (("broadcast_to", shape),)
    axis = draw(st.integers(0, len(shape) - 1))
    base, key = [], []
    for d, n in enumerate(shape):
        step = draw(st.sampled_from([2, -2, 3]) if d == axis else st.sampled_from([1, -1]))
        offset = draw(st.integers(0, abs(step) - 1)) if d == axis else 0
        size = n * abs(step) + offset
        base.append(size)
        key.append(slice(offset, None, step) if step > 0 else slice(size - 1 - offset, None, step))
    return tuple(base), (("getitem", tuple(key)),)


def _leaf(draw, dtype, shape: tuple, op=None, index: int = 0, edges: bool = True) -> Leaf:
    base_shape, layout = _layouts(draw, shape)
    return Leaf(draw(arrays(dtype, base_shape, op, index, edges)), layout)


def array_views(dtype, shape, op: opdefs.OpDef | str | None = None, index: int = 0, edges: bool = True):
    """Hypothesis strategy for a NumPy view of ``shape`` (contiguous, transposed, strided or reversed,
    broadcast) holding values from ``op``'s domain: how kernels meet arrays users slice."""
    from hypothesis import strategies as st

    op = opdefs.get(op) if isinstance(op, str) else op
    return st.composite(lambda draw: _leaf(draw, dtype, shape, op, index, edges).array())()


# -- random expressions ------------------------------------------------------------------------------
# Composite functions and the registry reduction whose domain their input is drawn from.
COMPOSITES = {"mean": "sum", "var": "sum", "std": "sum", "logsumexp": "max", "softmax": "max", "log_softmax": "max"}
VIEWS = ("flip", "transpose", "reshape", "getitem", "broadcast_to", "expand_dims", "squeeze", "swapaxes")
PATTERN = "rule: "   # a vocabulary entry that draws a rewrite rule's pattern
# Shapes a case's results broadcast to: 0-d, size-1 axes, and rows long enough for a SIMD loop and its
# tail (16 floats a vector at most).
FULL_SHAPES = [(), (1,), (7,), (3, 4), (4, 1), (1, 5), (2, 3, 4), (3, 1, 2), (2, 17), (37,)]


def _literal(value) -> str:
    """Python source for a value a case holds (Python scalars stay Python scalars: weakly typed)."""
    if isinstance(value, Ref):
        return value.name
    if isinstance(value, float) and not math.isfinite(value):
        return "np.nan" if math.isnan(value) else ("np.inf" if value > 0 else "-np.inf")
    if isinstance(value, tuple):
        return "(" + ", ".join(map(_literal, value)) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def _index_source(key) -> str:
    def part(p):
        if isinstance(p, slice):
            text = ":".join("" if v is None else str(v) for v in (p.start, p.stop))
            return text + (f":{p.step}" if p.step is not None else "")
        return "..." if p is Ellipsis else repr(p)
    return ", ".join(map(part, key if isinstance(key, tuple) else (key,))) or "()"


@dataclass(frozen=True)
class Ref:
    """A case's reference to one of its inputs (x0, x1, ...) or earlier results (v0, v1, ...)."""

    name: str


@dataclass(frozen=True, eq=False)
class Call:
    """``ex.<function>(*args, **kwargs)``; "getitem" is ``args[0][args[1]]``, "apply" a user op."""

    function: str
    args: tuple
    kwargs: tuple = ()

    def run(self, env: dict):
        args = [env[a.name] if isinstance(a, Ref) else a for a in self.args]
        if self.function == "getitem":
            return args[0][args[1]]
        return getattr(ex, self.function)(*args, **dict(self.kwargs))

    def source(self) -> str:
        if self.function == "getitem":
            return f"{_literal(self.args[0])}[{_index_source(self.args[1])}]"
        args = [_literal(a) for a in self.args] + [f"{k}={_literal(v)}" for k, v in self.kwargs]
        return f"ex.{self.function}({', '.join(args)})"


@dataclass(frozen=True, eq=False)
class Case:
    """A random expression DAG over random inputs: what ``expressions`` draws. ``build`` gives fresh,
    unevaluated Arrays of its roots; ``repr`` is Python that rebuilds and checks it."""

    leaves: tuple   # (name, Leaf)
    calls: tuple    # (name, Call), each over leaves and earlier calls
    roots: tuple    # names

    def build(self, inputs=None) -> list[Array]:
        """The roots as Arrays; ``inputs`` replaces the leaves' arrays (same shapes and dtypes)."""
        env = self.values(inputs)
        return [env[name] for name in self.roots]

    def values(self, inputs=None) -> dict[str, Array]:
        """Every input and result by name, as Arrays."""
        env = {name: ex.asarray(leaf.array() if inputs is None else inputs[i])
               for i, (name, leaf) in enumerate(self.leaves)}
        for name, call in self.calls:
            env[name] = call.run(env)
        return env

    def source(self, check: bool = True) -> str:
        user = sorted({c.args[0] for _, c in self.calls if c.function == "apply"})
        lines = ["import numpy as np", "import exprgen as ex", "from exprgen.testing import assert_matches_reference", ""]
        lines += [f"# {name}: a user op, defined with ex.elementwise before this runs" for name in user]
        lines += [f"{name} = ex.asarray({leaf.source()})" for name, leaf in self.leaves]
        lines += [f"{name} = {call.source()}" for name, call in self.calls]
        lines.append(f"roots = [{', '.join(self.roots)}]")
        if check:
            lines.append("assert_matches_reference(*roots)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.source()

    def _repr_pretty_(self, printer, cycle) -> None:   # hypothesis prints falsifying examples with this
        printer.text(self.source())


def vocabulary(ops=None, patterns: bool = True) -> list[str]:
    """What ``expressions`` draws from: registry ops (canonical names), composites, views, and with
    ``patterns`` the patterns of the rewrite rules that run by default (``"rule: x*1 -> x"``) whose ops
    are all drawn too, so that rules fire. ``ops=None``: every built-in op (user ops only when named)."""
    if ops is None:
        ops = [op.name for op in opdefs.canonical_ops(builtin_only=True)] + list(COMPOSITES) + list(VIEWS)
    names = []
    for name in ops:
        if name not in COMPOSITES and name not in VIEWS:
            op = opdefs.get(name)
            if set(op.params) - {"dtype", "axis"}:
                raise ValueError(f"expressions cannot draw {name}: it takes parameters {op.params}")
            name = op.name
        names.append(name)
    if patterns:
        names += [PATTERN + r.algebra for r in rules.active()
                  if r.pattern is not None and r.kind != "fast" and _pattern_ops(r.pattern) <= set(names)]
    return list(dict.fromkeys(names))


def _pattern_ops(pat) -> set[str]:
    return ({pat.op} if pat.op not in (None, SCALAR) else set()) | {o for p in pat.src for o in _pattern_ops(p)}


class _Skip(Exception):
    """A drawn step that cannot apply here (no operand of a fitting shape)."""


class _Builder:
    """Draws one case step by step, keeping Arrays of everything built so far to type the next step."""

    def __init__(self, draw, options: dict):
        from hypothesis import strategies as st

        self.st, self.draw, self.options = st, draw, options
        self.full = draw(options["shapes"], label="shape")
        self.leaves: list = []
        self.calls: list = []
        self.env: dict[str, Array] = {}
        self.depth: dict[str, int] = {}

    def step(self, name: str) -> None:
        """Draw and add one call of ``name``; one that NumPy's rules refuse (dtypes) leaves no trace."""
        mark = (len(self.leaves), len(self.calls))
        try:
            self._add(self._make(name))
        except (_Skip, TypeError, ValueError, OverflowError, IndexError):
            for name_, _ in self.leaves[mark[0]:] + self.calls[mark[1]:]:
                del self.env[name_]
            del self.leaves[mark[0]:], self.calls[mark[1]:]

    def _add(self, call: Call) -> Ref:
        value = call.run(self.env)
        ref = f"v{len(self.calls)}"
        self.calls.append((ref, call))
        self.env[ref] = value
        self.depth[ref] = 1 + max((self.depth.get(a.name, 0) for a in call.args if isinstance(a, Ref)), default=0)
        return Ref(ref)

    def _make(self, name: str) -> Call:
        if name.startswith(PATTERN):
            rule = next(r for r in rules.active() if r.algebra == name[len(PATTERN):])
            return self._pattern(rule.pattern, {})
        if name in VIEWS:
            return self._view(name)
        if name in COMPOSITES:
            return self._reduce(name, opdefs.get(COMPOSITES[name]))
        op = opdefs.get(name)
        return self._reduce(name, op) if op.is_reduction else self._elementwise(op)

    def _pattern(self, pat, bound: dict) -> Call:
        """The call a rule's op pattern matches, with a drawn operand for each variable (the same one
        wherever the variable recurs) and each inner op added first."""
        args = []
        for p in pat.src:
            if p.op is None:
                bound.setdefault(p.name, self._operand(None, 0, None, False)[0])
            args.append(bound[p.name] if p.op is None else p.value if p.op is SCALAR else self._add(self._pattern(p, bound)))
        if not any(isinstance(a, Ref) for a in args):
            raise _Skip   # over Python scalars alone the op is folded, not computed
        return Call("apply", (pat.op, *args)) if opdefs.get(pat.op).user else Call(pat.op, tuple(args))

    def _elementwise(self, op: opdefs.OpDef) -> Call:
        args, shape, arrays_seen = [], None, False
        for i in range(op.arity):
            scalar_ok = self.options["scalars"] and (arrays_seen or i < op.arity - 1)
            arg, arg_shape = self._operand(op, i, shape, scalar_ok)
            args.append(arg)
            if arg_shape is not None:
                arrays_seen = True
                shape = arg_shape if shape is None else np.broadcast_shapes(shape, arg_shape)
        params = tuple(self.draw(self.st.sampled_from([d.name for d in self.options["dtypes"]])) for _ in op.params)
        if op.user:
            return Call("apply", (op.name, *args))
        return Call(op.name, tuple(args) + params)

    def _operand(self, op, index: int, shape, scalar_ok: bool):
        """(argument, its shape): an earlier result or input that broadcasts with ``shape``, a new input,
        or a Python scalar (shape None)."""
        st, draw = self.st, self.draw
        fits = [n for n in self.env if self.depth.get(n, 0) < self.options["max_depth"]
                and (shape is None or _broadcasts(shape, self.env[n].shape))]
        kinds = (["earlier"] if fits else []) + ["input"] + (["scalar"] if scalar_ok else [])
        kind = draw(st.sampled_from(kinds), label="operand")
        if kind == "earlier":
            name = draw(st.sampled_from(fits))
            return Ref(name), self.env[name].shape
        if kind == "scalar":
            scalar = st.sampled_from([float, int, bool]).flatmap(
                lambda t: st.booleans() if t is bool else domain_elements(
                    op, index, np.float64 if t is float else np.int64, self.options["edges"]).map(t))
            return draw(scalar, label="scalar"), None
        target = self.full if shape is None else shape
        kept = tuple(draw(st.sampled_from([n, 1])) for n in target)
        leaf_shape = kept[draw(st.integers(0, len(kept))):]
        dtype = draw(st.sampled_from(self.options["dtypes"]), label="dtype")
        leaf = _leaf(draw, dtype, leaf_shape, op, index, self.options["edges"])
        name = f"x{len(self.leaves)}"
        self.env[name] = ex.asarray(leaf.array())
        self.leaves.append((name, leaf))
        return Ref(name), leaf_shape

    def _axis(self, ndim: int, single: bool):
        st = self.st
        one = st.integers(-ndim, ndim - 1) if ndim else st.nothing()
        if single:
            return self.draw(st.one_of(st.none(), one), label="axis")
        some = st.sets(st.integers(0, ndim - 1), min_size=1).map(lambda s: tuple(sorted(s))) if ndim else st.nothing()
        return self.draw(st.one_of(st.none(), one, some), label="axis")

    def _reduce(self, name: str, op: opdefs.OpDef) -> Call:
        x, shape = self._operand(op, 0, None, False)
        if name in ("softmax", "log_softmax"):
            return Call(name, (x,), (("axis", self._axis(len(shape), True) or -1),))
        kwargs = [("axis", self._axis(len(shape), name in ("argmax", "argmin"))),
                  ("keepdims", self.draw(self.st.booleans()))]
        if name in ("var", "std"):
            kwargs.append(("ddof", self.draw(self.st.sampled_from([0, 1]))))
        return Call(name, (x,), tuple(kwargs))

    def _view(self, kind: str) -> Call:
        st, draw = self.st, self.draw
        x, shape = self._operand(None, 0, None, False)
        nd = len(shape)
        if kind == "flip":
            return Call(kind, (x,), (("axis", self._axis(nd, False)),))
        if kind == "transpose":
            return Call(kind, (x, tuple(draw(st.permutations(range(nd))))))
        if kind == "reshape":
            return Call(kind, (x, draw(_reshapes(shape))))
        if kind == "getitem":
            return Call(kind, (x, tuple(draw(_index_parts(n)) for n in shape) + draw(st.sampled_from([(), (None,)]))))
        if kind == "broadcast_to":
            wider = tuple(draw(st.sampled_from([n, 3])) if n == 1 else n for n in shape)
            return Call(kind, (x, draw(st.sampled_from([(), (2,)])) + wider))
        if kind == "expand_dims":
            return Call(kind, (x, draw(st.integers(-nd - 1, nd))))
        if kind == "squeeze" and 1 in shape:
            return Call(kind, (x,))
        if kind == "swapaxes" and nd >= 2:
            return Call(kind, (x, draw(st.integers(0, nd - 1)), draw(st.integers(-nd, nd - 1))))
        raise _Skip

    def case(self) -> Case:
        """The case whose roots are the results nothing else used (and maybe one that something did:
        a shared subexpression as an output too), with what they do not need left out."""
        used = {a.name for _, c in self.calls for a in c.args if isinstance(a, Ref)}
        roots = [name for name, _ in self.calls if name not in used][-self.options["max_roots"]:]
        shared = [name for name, _ in self.calls if name in used and name not in roots]
        if shared and self.draw(self.st.booleans(), label="shared root"):
            roots.insert(0, self.draw(self.st.sampled_from(shared)))
        needed = set(roots)
        for name, call in reversed(self.calls):
            if name in needed:
                needed |= {a.name for a in call.args if isinstance(a, Ref)}
        return Case(tuple((n, leaf) for n, leaf in self.leaves if n in needed),
                    tuple((n, c) for n, c in self.calls if n in needed), tuple(roots))


def _broadcasts(a: tuple, b: tuple) -> bool:
    return all(m == n or 1 in (m, n) for m, n in zip(reversed(a), reversed(b)))


def _reshapes(shape: tuple):
    """Shapes the same elements fit: flattened, a size-1 axis inserted, two neighbours merged, one split."""
    from hypothesis import strategies as st

    options = [(-1,), ((1,) + shape)]
    options += [shape[:d] + (shape[d] * shape[d + 1],) + shape[d + 2:] for d in range(len(shape) - 1)]
    options += [shape[:d] + (k, shape[d] // k) + shape[d + 1:] for d in range(len(shape))
                for k in range(2, shape[d]) if shape[d] % k == 0]
    return st.sampled_from(options)


def _index_parts(n: int):
    """One axis of a basic index: all of it, reversed, every other element, one element, a range."""
    from hypothesis import strategies as st

    parts = [st.just(slice(None)), st.just(slice(None, None, -1)), st.just(slice(None, None, 2)),
             st.integers(-n, n - 1) if n else st.nothing(),
             st.tuples(st.integers(0, max(n - 1, 0)), st.integers(1, max(n, 1))).map(
                 lambda t: slice(min(t), max(t[0] + 1, t[1])))]
    return st.one_of(*parts)


def expressions(ops=None, dtypes=None, max_depth: int = 4, max_steps: int = 8, max_roots: int = 4, shapes=None,
                scalars: bool = True, edges: bool = True, patterns: bool = True):
    """Hypothesis strategy for a ``Case``: a random expression DAG drawn from ``vocabulary(ops)``.

    Each step applies a drawn op (or composite, or view) to earlier results (shared subexpressions),
    new inputs (values from that op's domain, in a drawn layout, of a shape that broadcasts) or Python
    scalars; steps NumPy's typing refuses are dropped. ``dtypes``: the inputs' dtypes (results take
    whatever the ops give: a comparison of floats is bool). ``max_depth`` bounds the longest chain,
    ``max_steps`` the number of ops drawn, ``max_roots`` the outputs. ``shapes``: a strategy for the
    full shape (default: one of ``FULL_SHAPES``). ``edges``: also draw edge values
    (off for smooth functions, e.g. gradients).
    """
    from hypothesis import assume
    from hypothesis import strategies as st

    if shapes is None:
        shapes = st.sampled_from(FULL_SHAPES)
    options = {"vocabulary": vocabulary(ops, patterns), "dtypes": [np.dtype(d) for d in (dtypes or DEFAULT_DTYPES)],
               "max_depth": max_depth, "max_roots": max_roots, "shapes": shapes, "scalars": scalars, "edges": edges}

    @st.composite
    def draw_case(draw):
        builder = _Builder(draw, options)
        for _ in range(draw(st.integers(1, max_steps), label="steps")):
            builder.step(draw(st.sampled_from(options["vocabulary"]), label="op"))
        assume(builder.calls)
        return builder.case()
    return draw_case()
