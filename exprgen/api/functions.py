"""Reductions and views as NumPy-style functions.

Primitive reductions (sum, prod, max, min, any, all, argmax, argmin) are entries of ``ops/``; mean, var,
std, logsumexp, softmax and log_softmax are compositions of them, written so that the scheduler fuses
each into one rows kernel (a reduced value kept as a size-1 axis broadcasts back over its row). Views
(reshape, transpose, ...) are steps NumPy itself applies (``views.py``): no copy is made. Indexing
is in ``indexing.py``.

The functions have the array API's signatures: the array positional-only, ``axis`` and the rest
keyword-only (``dtype`` for sum and prod, ``correction`` for var and std, which also take NumPy's
``ddof``). The Array methods made of them (``surface.py``) keep NumPy's habit of a positional axis
(``x.sum(0)``). ``concatenate``, ``concat`` and ``stack`` materialise (see ``concatenate``);
``count_nonzero`` is a lazy sum of ``x != 0``.
"""

from __future__ import annotations

import builtins
import math
import operator

import numpy as np

from ..ir import graph, opdefs
from .array import Array, apply, asarray, astype, computed, readable
from ..runtime.realize import evaluate

builtins_sum = builtins.sum   # this module defines sum, max, min, any and all as NumPy does


def _node(x):
    return (x if isinstance(x, Array) else asarray(x))._graph_node()


def _finish(node, x_shape: tuple, axes: tuple, keepdims: bool) -> Array:
    if keepdims:
        return Array(node)
    shape = tuple(n for d, n in enumerate(x_shape) if d not in axes)
    return Array(graph.view(node, (("reshape", shape),)))


def _reduce(name: str, x, axis=None, keepdims: bool = False, dtype=None) -> Array:
    """Reduction ``name``; with ``dtype``, the input is cast to it first and the result is in it (the array
    API's rule; an integer sum still accumulates in int64, which wraps to the same value)."""
    if dtype is not None:
        x = astype(x, dtype)
    node = _node(x)
    axes = graph.normalize_axes(axis, len(node.shape))
    if not axes:   # reducing over no axis: every element is its own result, in the result dtype
        result_dtype = opdefs.get(name).result_dtype((node.signature_item(),), ((),))
        result = astype(Array(node), result_dtype)
        if name == "sum" and result_dtype.kind == "f":   # a sum starts at +0.0 (as NumPy's): -0.0 sums to 0.0
            result = result + 0.0
    else:
        result = _finish(graph.reduce(name, node, axes), node.shape, axes, keepdims)
    return result if dtype is None else astype(result, dtype)


def sum(x, /, *, axis=None, dtype=None, keepdims: bool = False) -> Array:  # noqa: A001 - NumPy's names
    """Sum over ``axis`` (None: all). Integers sum in int64, float32 accumulates in double."""
    return _reduce("sum", x, axis, keepdims, dtype)


def prod(x, /, *, axis=None, dtype=None, keepdims: bool = False) -> Array:
    return _reduce("prod", x, axis, keepdims, dtype)


def max(x, /, *, axis=None, keepdims: bool = False) -> Array:  # noqa: A001
    """Maximum; NaN wins, as in NumPy. An empty reduction raises ValueError."""
    return _reduce("max", x, axis, keepdims)


def min(x, /, *, axis=None, keepdims: bool = False) -> Array:  # noqa: A001
    return _reduce("min", x, axis, keepdims)


def any(x, /, *, axis=None, keepdims: bool = False) -> Array:  # noqa: A001
    return _reduce("any", x, axis, keepdims)


def all(x, /, *, axis=None, keepdims: bool = False) -> Array:  # noqa: A001
    return _reduce("all", x, axis, keepdims)


def _arg(name: str, x, axis, keepdims: bool) -> Array:
    node = _node(x)
    if axis is None:   # NumPy: the index into the flattened array
        flat = graph.view(node, (("reshape", (-1,)),))
        found = graph.reduce(name, flat, (0,))
        shape = (1,) * len(node.shape) if keepdims else ()
        return Array(graph.view(found, (("reshape", shape),)))
    if isinstance(axis, tuple):
        raise TypeError(f"{name} takes one axis, not a tuple")
    axes = graph.normalize_axes(axis, len(node.shape))
    return _finish(graph.reduce(name, node, axes), node.shape, axes, keepdims)


def argmax(x, /, *, axis=None, keepdims: bool = False) -> Array:
    """Index of the first maximum (the first NaN, if any), as in NumPy."""
    return _arg("argmax", x, axis, keepdims)


def argmin(x, /, *, axis=None, keepdims: bool = False) -> Array:
    return _arg("argmin", x, axis, keepdims)


def count_nonzero(x, /, *, axis=None, keepdims: bool = False) -> Array:
    """How many elements are not zero (NaN counts), as int64: a lazy sum of ``x != 0``."""
    return _reduce("sum", apply("not_equal", x, 0), axis, keepdims)


def _count(x: Array, axis) -> int:
    axes = graph.normalize_axes(axis, x.ndim)
    return math.prod(x.shape[d] for d in axes)


def _keepdims(result: Array, x: Array, axis, keepdims: bool) -> Array:
    """A composite computed with kept axes (so it fuses into its rows kernel), shaped as asked at the end."""
    return result if keepdims else _finish(result._graph_node(), x.shape, graph.normalize_axes(axis, x.ndim), False)


def _float_input(x, dtype) -> Array:
    """What mean, var and std average: ``x`` in ``dtype`` when given (NumPy's accumulator and result dtype),
    integers and bools in float64, as NumPy sums them for a mean (an int64 sum would wrap: four 2**62
    averaged to 0)."""
    x = x if isinstance(x, Array) else asarray(x)
    if dtype is not None:
        return astype(x, dtype)
    return x if x.dtype.kind == "f" else astype(x, np.float64)


def mean(x, /, *, axis=None, keepdims: bool = False, dtype=None) -> Array:
    """Sum / count: float64 for integer input, float32 stays float32 (summed in double). ``dtype`` is
    NumPy's: the input is converted to it first."""
    x = _float_input(x, dtype)
    result = _keepdims(sum(x, axis=axis, keepdims=True) / float(_count(x, axis)), x, axis, keepdims)  # weak float
    return result if dtype is None else astype(result, dtype)   # an integer dtype truncates, as NumPy's does


def _correction(correction, ddof) -> float:
    """The array API's ``correction`` or NumPy's ``ddof`` (the same number; give one of them)."""
    if ddof is not None and correction != 0.0:
        raise TypeError("give correction= or ddof=, not both")
    return float(correction if ddof is None else ddof)


def var(x, /, *, axis=None, correction=0.0, keepdims: bool = False, ddof=None, dtype=None) -> Array:
    """Mean squared deviation from the mean, divided by ``n - correction`` (two passes over each row, one
    kernel). ``ddof`` is NumPy's name for ``correction``. Where ``n - correction <= 0`` the result is NaN,
    as the standard says (NumPy divides by 0 there: inf, or NaN for 0 / 0). Integers in float64, as for
    ``mean``."""
    x = _float_input(x, dtype)
    deviation = x - mean(x, axis=axis, keepdims=True)
    divisor = float(_count(x, axis)) - _correction(correction, ddof)
    divisor = divisor if divisor > 0 else math.nan   # a negative divisor would give a negative variance
    return _keepdims(sum(deviation * deviation, axis=axis, keepdims=True) / divisor, x, axis, keepdims)


def std(x, /, *, axis=None, correction=0.0, keepdims: bool = False, ddof=None, dtype=None) -> Array:
    x = _float_input(x, dtype)
    deviation = var(x, axis=axis, correction=_correction(correction, ddof), keepdims=True)
    return _keepdims(apply("sqrt", deviation), x, axis, keepdims)


def _shifted(x: Array, axis):
    """x minus its max along ``axis`` (kept as a size-1 axis), with infinite maxima replaced by 0 so that
    a row of -inf gives -inf, not NaN (as scipy.special.logsumexp does). An empty axis has no max (NumPy's
    max raises) and sums to 0, so nothing is taken out: logsumexp gives scipy's -inf."""
    if _count(x, axis) == 0:
        return x, 0
    top = max(x, axis=axis, keepdims=True)
    safe = apply("where", apply("isfinite", top), top, 0)
    return x - safe, safe


def logsumexp(x, axis=None, keepdims: bool = False) -> Array:
    """log(sum(exp(x))) without overflow: the max is taken out first."""
    x = x if isinstance(x, Array) else asarray(x)
    shifted, safe = _shifted(x, axis)
    return _keepdims(apply("log", sum(apply("exp", shifted), axis=axis, keepdims=True)) + safe, x, axis, keepdims)


def softmax(x, axis=-1) -> Array:
    """exp(x - max) / sum(exp(x - max)) along ``axis``: one kernel, each row read from memory once. The
    division is one reciprocal per row and a multiply per element (as PyTorch's CPU kernel does): within
    1 ULP of dividing, and about 10% faster over a (10000, 1000) float32 matrix. The max is taken out as
    it is (scipy.special.softmax, torch and jax do the same): a row holding +inf is NaN throughout, where
    ``_shifted``'s 0 would give [nan, 0, 0], a distribution that sums to NaN yet looks half valid."""
    x = x if isinstance(x, Array) else asarray(x)
    e = apply("exp", x - max(x, axis=axis, keepdims=True))
    return e * (1 / sum(e, axis=axis, keepdims=True))


def log_softmax(x, axis=-1) -> Array:
    x = x if isinstance(x, Array) else asarray(x)
    shifted, _ = _shifted(x, axis)
    return shifted - apply("log", sum(apply("exp", shifted), axis=axis, keepdims=True))


# -- views ----------------------------------------------------------------------------------------
def _view(x, *steps) -> Array:
    return Array(graph.view(_node(x), tuple(steps)))


def shape_argument(shape) -> tuple[int, ...]:
    """A shape argument as NumPy takes it: an integer (NumPy's integers too) or a sequence of them; a float
    is refused, as NumPy does, not truncated. (Creation functions check the sizes besides.)"""
    sizes = (shape,) if hasattr(shape, "__index__") else shape
    try:
        return tuple(operator.index(n) for n in sizes)
    except TypeError:
        raise TypeError(f"expected a sequence of integers or a single integer for a shape, got {shape!r}") from None


def reshape(x, /, shape, *, copy=None) -> Array:
    """A view with a new shape (one dimension may be -1). ``copy=True``: a copy, made when the result is
    computed; ``copy=False``: ValueError when the array is a buffer that no strides can view so."""
    shape = shape_argument(shape)
    node = _node(x)
    if copy is False and node.op is graph.BUFFER:
        node.buffer.reshape(shape, copy=False)   # NumPy's ValueError when that would copy
    result = _view(x, ("reshape", shape))
    return Array(graph.apply("astype", result._graph_node(), params=(node.dtype.name,))) if copy else result


def transpose(x, axes=None) -> Array:
    node = _node(x)
    axes = tuple(reversed(range(len(node.shape)))) if axes is None else tuple(axes)
    if sorted(graph.normalize_axes(a, len(node.shape))[0] for a in axes) != list(range(len(node.shape))):
        raise ValueError(f"axes {axes} are not a permutation of the {len(node.shape)} axes")
    return _view(x, ("transpose", tuple(a % len(node.shape) for a in axes)))


def permute_dims(x, /, axes) -> Array:
    return transpose(x, axes)


def swapaxes(x, axis1: int, axis2: int) -> Array:
    node = _node(x)
    (a,), (b,) = graph.normalize_axes(axis1, len(node.shape)), graph.normalize_axes(axis2, len(node.shape))
    order = list(range(len(node.shape)))
    order[a], order[b] = order[b], order[a]
    return _view(x, ("transpose", tuple(order)))


def expand_dims(x, /, axis=0) -> Array:
    node = _node(x)
    axes = graph.normalize_axes(axis, len(node.shape) + len(axis if isinstance(axis, tuple) else (axis,)))
    shape = list(node.shape)
    for a in axes:
        shape.insert(a, 1)
    return _view(x, ("reshape", tuple(shape)))


def squeeze(x, /, axis=None) -> Array:
    node = _node(x)
    if axis is None:
        axes = tuple(d for d, n in enumerate(node.shape) if n == 1)
    else:
        axes = graph.normalize_axes(axis, len(node.shape))
        wide = [d for d in axes if node.shape[d] != 1]
        if wide:
            raise ValueError(f"cannot squeeze axis {wide[0]}: its size is {node.shape[wide[0]]}, not 1")
    return _view(x, ("reshape", tuple(n for d, n in enumerate(node.shape) if d not in axes)))


def broadcast_to(x, /, shape) -> Array:
    return _view(x, ("broadcast_to", tuple(shape)))


def flip(x, /, *, axis=None) -> Array:
    node = _node(x)
    return _view(x, ("flip", graph.normalize_axes(axis, len(node.shape))))


def concatenate(arrays, axis: int = 0) -> Array:
    """Join arrays along an existing axis. The result materialises: every part is computed in one
    evaluation pass, straight into its slice of one output buffer (parts of one shape share a kernel,
    so ``stack`` is one kernel; parts of different shapes take one kernel per shape). The result is a leaf
    that gives each part its slice of a gradient."""
    parts = [a if isinstance(a, Array) else asarray(a) for a in arrays]
    if not parts:
        raise ValueError("need at least one array to concatenate")
    ndim = parts[0].ndim
    if ndim == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    (axis,) = graph.normalize_axes(axis, ndim)
    first = parts[0].shape[:axis] + parts[0].shape[axis + 1:]
    for p in parts[1:]:
        if p.ndim != ndim or p.shape[:axis] + p.shape[axis + 1:] != first:
            raise ValueError(f"all arrays must match except along axis {axis}: {parts[0].shape} and {p.shape}")
    dtype = np.result_type(*[p.dtype for p in parts])
    parts = [astype(p, dtype) for p in parts]
    shape = list(parts[0].shape)
    shape[axis] = builtins_sum(p.shape[axis] for p in parts)
    result = np.empty(shape, dtype)
    indices, start = [], 0
    for p in parts:
        index = [slice(None)] * ndim
        index[axis] = slice(start, start + p.shape[axis])
        indices.append(tuple(index))
        start += p.shape[axis]
    pending = [(p, result[i]) for p, i in zip(parts, indices) if p.size]
    if pending:
        readable([p._graph_node() for p, _ in pending], "concat (computed at the call)")
        evaluate(tuple(p._graph_node() for p, _ in pending), out=[s for _, s in pending])

    return computed(result, parts, lambda g, wanted: [g[i] for i in indices], "concatenate")


def concat(arrays, /, *, axis=0) -> Array:
    """The array API's ``concatenate``: ``axis=None`` joins the arrays flattened (materialises)."""
    if axis is None:
        return concatenate([reshape(a, -1) for a in arrays], 0)
    return concatenate(arrays, axis)


def stack(arrays, /, *, axis: int = 0) -> Array:
    """Join arrays of one shape along a new axis (materialises, like ``concatenate``)."""
    parts = [a if isinstance(a, Array) else asarray(a) for a in arrays]
    if not parts:
        raise ValueError("need at least one array to stack")
    shapes = {p.shape for p in parts}
    if len(shapes) > 1:
        raise ValueError(f"all input arrays must have the same shape, got {sorted(shapes)}")
    (axis,) = graph.normalize_axes(axis, parts[0].ndim + 1)
    return concatenate([expand_dims(p, axis) for p in parts], axis)


def sum_to(g: Array, shape: tuple[int, ...]) -> Array:
    """``g`` summed over the axes that broadcasting added or stretched, to get back ``shape``."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + d for d, n in enumerate(shape) if n == 1 and g.shape[lead + d] != 1)
    return reshape(sum(g, axis=axes, keepdims=True), shape) if axes else reshape(g, shape)
