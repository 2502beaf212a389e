"""Functions NumPy computes: scans, sorting, sets, and results whose shape depends on the data.

``cumulative_sum``, ``cumulative_prod``, ``sort``, ``argsort``, ``unique_all``, ``unique_counts``,
``unique_inverse``, ``unique_values``, ``nonzero`` and ``searchsorted`` materialise their input at the call:
exprgen evaluates it (one pass, fused like any evaluation), NumPy computes the function over the value,
and the result is a new leaf, so what is built on it is lazy and fuses again. A fused scan or sort kernel
would need an op kind the scheduler does not have; NumPy's are well tuned, and the input's pass is fused.

Gradients: ``cumulative_sum`` has one (the reversed cumulative sum of the incoming gradient, itself a
``cumulative_sum``) and so has ``sort`` (the incoming gradient unsorted, by the inverse permutation), so
gradients of gradients work too. ``cumulative_prod`` and the ``unique_*`` values raise NotImplementedError
when a gradient reaches them (index and bool results carry no gradient anyway).
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ..ir import dtypes, graph
from .array import Array, asarray, common_device, computed, readable
from .functions import flip
from ..runtime.realize import evaluate

UniqueAllResult = namedtuple("UniqueAllResult", ["values", "indices", "inverse_indices", "counts"])
UniqueCountsResult = namedtuple("UniqueCountsResult", ["values", "counts"])
UniqueInverseResult = namedtuple("UniqueInverseResult", ["values", "inverse_indices"])


def values(*arrays) -> list[np.ndarray]:
    """The NumPy values of ``arrays``, those not computed yet in one evaluation pass. They are not kept in
    the Arrays: an Array that holds its value is a leaf from then on, which would cut the gradient's path."""
    arrays = [asarray(a) for a in arrays]
    common_device(arrays, "a function computed at the call")
    pending = [a for a in arrays if a._value is None]
    readable([a._graph_node() for a in pending], "a function computed at the call (sort, unique, concat, "
             "indexing with an array...)")
    found = dict(zip(map(id, pending), evaluate(tuple(a._graph_node() for a in pending)) if pending else ()))
    return [found[id(a)] if id(a) in found else a.numpy() for a in arrays]


def _scan(name: str, x: Array, axis, dtype, include_initial: bool) -> tuple[np.ndarray, int]:
    """(NumPy's ``name`` of ``x``'s value, the axis it ran along)."""
    if x.ndim == 0:
        raise ValueError(f"{name} needs an array of at least one dimension")
    if axis is None:
        if x.ndim > 1:
            raise ValueError(f"{name} of a {x.ndim}-D array needs axis=")
        axis = 0
    (axis,) = graph.normalize_axes(axis, x.ndim)
    (value,) = values(x)
    dtype = None if dtype is None else dtypes.as_dtype(dtype)
    return getattr(np, name)(value, axis=axis, dtype=dtype, include_initial=include_initial), axis


def cumulative_sum(x, /, *, axis=None, dtype=None, include_initial: bool = False) -> Array:
    """Running sums along ``axis`` (optional for a 1-D array), starting with 0 when ``include_initial``.
    Integers sum in int64 unless ``dtype`` says otherwise (NumPy's rule). Materialises (module docstring)."""
    x = asarray(x)
    result, axis = _scan("cumulative_sum", x, axis, dtype, include_initial)

    def backward(g, wanted):
        # x[i] reaches every output from position i on (from i + 1 on, with the initial 0 in front).
        if include_initial:
            g = g[(slice(None),) * axis + (slice(1, None),)]
        return [flip(cumulative_sum(flip(g, axis=axis), axis=axis), axis=axis)]

    return computed(result, [x], backward, "cumulative_sum")


def cumulative_prod(x, /, *, axis=None, dtype=None, include_initial: bool = False) -> Array:
    """Running products along ``axis``, as ``cumulative_sum`` (starting with 1). Materialises; no gradient."""
    x = asarray(x)
    return computed(_scan("cumulative_prod", x, axis, dtype, include_initial)[0], [x], None, "cumulative_prod")


def _order(value: np.ndarray, axis: int, descending: bool, stable: bool) -> np.ndarray:
    """The indices that sort ``value`` along ``axis``. Descending: an ascending sort of the reversed array,
    reversed, so that equal elements keep their order when ``stable`` (NaN comes first, as it is last
    in an ascending sort)."""
    kind = "stable" if stable else None
    if not descending:
        return np.argsort(value, axis=axis, kind=kind)
    reversed_order = np.flip(np.argsort(np.flip(value, axis), axis=axis, kind=kind), axis)
    return value.shape[axis] - 1 - reversed_order


def argsort(x, /, *, axis: int = -1, descending: bool = False, stable: bool = True) -> Array:
    """Indices (int64) that sort ``x`` along ``axis``; NaN sorts last (first when descending). Materialises."""
    x = asarray(x)
    (axis,) = graph.normalize_axes(axis, x.ndim)
    (value,) = values(x)
    return asarray(_order(value, axis, descending, stable).astype(np.int64, copy=False), device=x.device)


def _permuted(x: Array, value: np.ndarray, order: np.ndarray, axis: int) -> Array:
    """``x`` (whose value is ``value``) reordered along ``axis`` by ``order``. Its gradient is the incoming
    one put back in place by the inverse permutation: itself such a reordering, so gradients of gradients
    work."""
    def backward(g, wanted):
        (g_value,) = values(g)
        return [_permuted(g, g_value, np.argsort(order, axis=axis), axis)]

    return computed(np.take_along_axis(value, order, axis), [x], backward, "sort")


def sort(x, /, *, axis: int = -1, descending: bool = False, stable: bool = True) -> Array:
    """``x`` sorted along ``axis``, as ``argsort`` orders it. Materialises. The gradient of each element goes
    back to the element that was sorted there."""
    x = asarray(x)
    (axis,) = graph.normalize_axes(axis, x.ndim)
    (value,) = values(x)
    return _permuted(x, value, _order(value, axis, descending, stable), axis)


def _unique(function, x, name: str, result_type):
    """NumPy's ``function`` of ``x``'s value (NaNs all distinct, as the array API says), fields as Arrays."""
    x = asarray(x)
    (value,) = values(x)
    found = function(value)
    fields = [found] if result_type is None else list(found)
    arrays = [computed(f, [x], None, name) if f.dtype in dtypes.FLOATS else asarray(f, device=x.device)
              for f in fields]
    return arrays[0] if result_type is None else result_type(*arrays)


def unique_values(x, /) -> Array:
    """The distinct elements of ``x``, sorted, 1-D; each NaN is distinct. Materialises."""
    return _unique(np.unique_values, x, "unique_values", None)


def unique_counts(x, /) -> UniqueCountsResult:
    """(values, counts): the distinct elements and how often each occurs. Materialises."""
    return _unique(np.unique_counts, x, "unique_counts", UniqueCountsResult)


def unique_inverse(x, /) -> UniqueInverseResult:
    """(values, inverse_indices): ``values[inverse_indices]`` rebuilds ``x`` (shape of ``x``). Materialises."""
    return _unique(np.unique_inverse, x, "unique_inverse", UniqueInverseResult)


def unique_all(x, /) -> UniqueAllResult:
    """(values, indices of first occurrences, inverse_indices, counts). Materialises."""
    return _unique(np.unique_all, x, "unique_all", UniqueAllResult)


def nonzero(x, /) -> tuple[Array, ...]:
    """Per axis, the int64 indices of the elements that are not zero, in row-major order (a 0-d array is
    refused, as in NumPy 2). Materialises: the result's size depends on the values."""
    x = asarray(x)
    if x.ndim == 0:
        raise ValueError("nonzero of a zero-dimensional array is not defined; use ex.reshape(x, (1,)) first")
    (value,) = values(x)
    return tuple(asarray(i.astype(np.int64, copy=False), device=x.device) for i in np.nonzero(value))


def searchsorted(x1, x2, /, *, side: str = "left", sorter=None) -> Array:
    """Where each element of ``x2`` would go in the sorted 1-D ``x1`` (through ``sorter``, indices that sort
    it) to keep it sorted; ``side`` says which end of a run of equal elements. int64. Materialises."""
    x1, x2 = asarray(x1), asarray(x2)
    if x1.ndim != 1:
        raise ValueError(f"searchsorted needs a 1-D x1, got shape {x1.shape}")
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', not {side!r}")
    inputs = [x1, x2] if sorter is None else [x1, x2, asarray(sorter)]
    found = values(*inputs)
    if sorter is not None and (found[2].shape != x1.shape or found[2].dtype.kind not in "iu"):
        raise ValueError(f"sorter must be integer indices of x1's shape {x1.shape}, got "
                         f"{found[2].dtype.name}{list(found[2].shape)}")
    result = np.searchsorted(found[0], found[1], side=side, sorter=None if sorter is None else found[2])
    return asarray(np.asarray(result, np.int64), device=common_device(inputs, "searchsorted"))
