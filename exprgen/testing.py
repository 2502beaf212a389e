"""Comparing exprgen with its NumPy reference, and hypothesis strategies drawn from the op registry.

    assert_matches_reference(ex.exp(ex.asarray(x)) * 2.0)   # evaluates, then checks against the oracle

Tolerances come from one table, ``tolerance(op, dtype)``: each op's ``ulp`` entry in ``ops/`` (0 where
it has none: the result must be correctly rounded). A comparison checks shape and dtype first; bool and
integer results must be equal; float results must have NaN where the truth has NaN, equal infinities,
matching signs of zero where every op in the graph defines them (``signed_zero``), and otherwise be
within the ULP bound, counted on the floats' integer representation (``ulp_distance``).

The truth of a float32 result is not NumPy's float32 answer (NumPy's float32 functions have errors of
their own): each float32 op is computed in float64 from its float32 operands and rounded once
(``reference.evaluate(..., exact_float32=True)``).
"""

from __future__ import annotations

import math

import numpy as np

from . import dtypes, opdefs, reference
from .array import Array, as_node
from .graph import LEAVES, Node, toposort

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
    """ULP of the root's dtype allowed for a graph: the sum of its ops' bounds at that dtype.

    For one op this is the op's entry. For a composition it assumes no step amplifies an earlier error
    (no cancellation); expressions drawn for fuzzing have to respect that.
    """
    return sum(tolerance(op, node.dtype) for op in {n.op for n in _op_nodes(node)})


def defines_signed_zero(node: Node) -> bool:
    """Whether -0.0 vs 0.0 is part of the result: only if every op on the way defines it."""
    return all(opdefs.get(n.op).signed_zero for n in _op_nodes(node))


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Number of representable floats between ``a`` and ``b`` (same float dtype), as uint64.

    Floats are mapped to integers that order like the floats (-0.0 and 0.0 both to 0), so the distance
    counts steps across zero and between subnormals correctly. NaN and inf are the caller's business.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.dtype not in _ORDERED_INT:
        raise TypeError(f"ulp_distance needs two float32 or float64 arrays, got {a.dtype} and {b.dtype}")
    signed = _ORDERED_INT[a.dtype]
    magnitude = np.iinfo(signed).max

    def ordered(v):
        bits = v.view(signed).astype(np.int64)
        return np.where(bits < 0, -(bits & magnitude), bits)

    oa, ob = ordered(a), ordered(b)
    same_side = (oa >= 0) == (ob >= 0)
    # On one side of zero the difference fits in int64; across zero it is |a| + |b|, which may not.
    near = np.abs(np.where(same_side, oa - ob, 0)).astype(np.uint64)
    across = np.abs(oa).astype(np.uint64) + np.abs(ob).astype(np.uint64)
    return np.where(same_side, near, across)


def assert_close(actual, expected, *, ulp: int = 0, signed_zero: bool = True, what: str = "result",
                 inputs: tuple = ()) -> None:
    """Raise AssertionError unless ``actual`` matches ``expected`` (see the module docstring).

    ``inputs``: arrays broadcastable to the result, shown beside each mismatch.
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape or actual.dtype != expected.dtype:
        raise AssertionError(f"{what}: got {actual.dtype.name}{list(actual.shape)}, "
                             f"reference is {expected.dtype.name}{list(expected.shape)}")
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
        lines.append(f"  at {index}: inputs ({', '.join(shown)}) got {actual[index]!r}, "
                     f"expected {expected[index]!r}{gap}")
    raise AssertionError(f"{what}: {len(where)} of {actual.size} elements differ ({detail}):\n"
                         + "\n".join(lines))


def assert_matches_reference(*arrays, ulp: int | None = None) -> list[np.ndarray]:
    """Evaluate expressions (Arrays or Nodes, not yet computed) with exprgen; compare with the reference.

    Tolerance: ``ulp`` if given, else ``ulp_bound`` of each graph (the table, never an ad-hoc atol).
    Returns exprgen's values.
    """
    from .realize import evaluate

    if any(isinstance(a, Array) and a._value is not None for a in arrays):
        raise ValueError("assert_matches_reference needs expressions that have not been computed yet "
                         "(a computed Array is only its buffer, so the comparison would be empty)")
    nodes = tuple(a if isinstance(a, Node) else as_node(a) for a in arrays)
    actual = evaluate(nodes)
    truth = reference.evaluate(nodes, exact_float32=True)
    for node, got, expected in zip(nodes, actual, truth):
        leaves = tuple(n.buffer if n.buffer is not None else n.arg for n in toposort([node]) if n.op in LEAVES)
        assert_close(got, expected, ulp=ulp_bound(node) if ulp is None else ulp,
                     signed_zero=defines_signed_zero(node), what=repr(node)[:160], inputs=leaves)
    return actual


# -- values and hypothesis strategies --------------------------------------------------------------
def special_values(dtype) -> np.ndarray:
    """The values every op must survive in this dtype: zeros, infinities, NaN, subnormals, extremes."""
    dtype = np.dtype(dtype)
    if dtype == dtypes.BOOL:
        return np.array([False, True])
    if dtype in dtypes.INTEGERS:
        info = np.iinfo(dtype)
        return np.array([0, 1, -1, 2, -2, 3, -7, 100, info.min, info.min + 1, info.max, info.max - 1], dtype)
    info = np.finfo(dtype)
    tiny_sub = info.smallest_subnormal
    # Halves are round()'s ties; the largest subnormal and the smallest normal sit on either side of
    # the point where hardware may flush to zero.
    values = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, 2.5, -2.5, 3.0, -7.0, math.inf, -math.inf, math.nan,
              tiny_sub, -tiny_sub, info.tiny - tiny_sub, info.tiny, info.max, -info.max, 1e30, -1e30]
    return np.array(values, dtype)


def domain_edges(op: opdefs.OpDef, index: int, dtype) -> np.ndarray:
    """The op's own edge values for input ``index`` that ``dtype`` can hold exactly (ints: integral ones)."""
    dtype = np.dtype(dtype)
    edges = np.array(op.domains[index].edges, np.float64)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        with np.errstate(invalid="ignore"):
            keep = np.isfinite(edges) & (edges == np.round(edges)) & (edges >= info.min) & (edges <= info.max)
        edges = edges[keep]
    elif dtype == dtypes.BOOL:
        edges = edges[(edges == 0) | (edges == 1)]
    with np.errstate(over="ignore"):
        return edges.astype(dtype)


def edge_values(op: opdefs.OpDef, index: int, dtype) -> np.ndarray:
    """Special values of the dtype plus the op's domain edges, without repeats."""
    values = np.concatenate([special_values(dtype), domain_edges(op, index, dtype)])
    _, first = np.unique(values.view(f"u{values.itemsize}"), return_index=True)  # by bits: keeps -0.0, NaN
    return values[np.sort(first)]


def domain_elements(op: opdefs.OpDef, index: int, dtype):
    """Hypothesis strategy for one input value: the domain's range, and sometimes its edges."""
    from hypothesis import strategies as st

    dtype = np.dtype(dtype)
    domain = op.domains[index]
    edges = st.sampled_from(list(edge_values(op, index, dtype)))
    if dtype == dtypes.BOOL:
        return st.booleans()
    if dtype in dtypes.INTEGERS:
        low, high = math.ceil(domain.low), math.floor(domain.high)
        inside = st.integers(low, high) if low <= high else edges
        return st.one_of(inside, inside, edges).map(dtype.type)   # one_of picks evenly: 2/3 inside
    # hypothesis wants bounds the width can hold: round them inwards.
    low, high = dtype.type(domain.low), dtype.type(domain.high)
    low = np.nextafter(low, dtype.type(math.inf)) if low < domain.low else low
    high = np.nextafter(high, dtype.type(-math.inf)) if high > domain.high else high
    inside = st.floats(float(low), float(high), width=8 * dtype.itemsize)
    return st.one_of(inside, inside, inside, edges).map(dtype.type)


def domain_arrays(op: opdefs.OpDef, dtype, shape, index: int = 0):
    """Hypothesis strategy for an array for input ``index`` of ``op``: values from its domain."""
    from hypothesis.extra import numpy as hnp

    return hnp.arrays(np.dtype(dtype), shape, elements=domain_elements(op, index, dtype))
