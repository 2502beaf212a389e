"""The array API's manipulation functions and ``diff``, built from views, elementwise ops and ``concatenate``.

Lazy where the result is a view or an elementwise op of views: ``broadcast_arrays``, ``moveaxis`` (a
transpose), ``unstack`` (integer indexing), ``tile`` and ``repeat`` with an integer count (a size-1 axis
broadcast, then merged by a reshape: NumPy copies a buffer at that reshape, and a computed value gets a
copy step in the kernel that reads it), ``diff`` (``x[1:] - x[:-1]``, n times, one fused kernel).

Materialised at the call (through ``concatenate``, one evaluation pass into one buffer): ``roll`` (the two
slices swapped), ``diff`` with ``prepend``/``append``, and ``repeat`` with an array of counts (NumPy's
``repeat`` over the computed values: the result's shape depends on the counts). The results are lazy again.
Gradients: ``concatenate`` passes each part its slice of the gradient, and the views' gradients are the
views' own (through the slices that ``roll``, ``diff`` and ``unstack`` take, as far as indexing supports
them); ``repeat`` with an array of counts has none and says so.
"""

from __future__ import annotations

import operator

import numpy as np

from ..ir import graph
from .array import Array, apply, asarray, computed
from .functions import broadcast_to, concatenate, reshape, transpose
from .materialising import values


def _index(x: Array, axis: int, part) -> Array:
    """``x[..., part, ...]`` with ``part`` (an int or a slice) on ``axis``."""
    return x[(slice(None),) * axis + (part,)]


def broadcast_arrays(*arrays) -> list[Array]:
    """Every array broadcast to their common shape (views)."""
    arrays = [asarray(a) for a in arrays]
    shape = graph.broadcast_shapes(*(a.shape for a in arrays))
    return [broadcast_to(a, shape) for a in arrays]


def axes_in_order(axes, ndim: int) -> list[int]:
    """``axes`` (an int or a sequence) as non-negative axes, in the order given; bad or repeated ones raise."""
    axes = [axes] if isinstance(axes, (int, np.integer)) else list(axes)
    graph.normalize_axes(tuple(axes), ndim)   # the range, type and duplicate checks
    return [int(a) % ndim for a in axes]


def moveaxis(x, source, destination, /) -> Array:
    """Axes ``source`` moved to positions ``destination`` (ints or tuples of one length): a transpose."""
    x = asarray(x)
    src = axes_in_order(source, x.ndim)
    dst = axes_in_order(destination, x.ndim)
    if len(src) != len(dst):
        raise ValueError(f"source {source} and destination {destination} must name as many axes")
    order = [d for d in range(x.ndim) if d not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(x, tuple(order))


def unstack(x, /, *, axis: int = 0) -> tuple[Array, ...]:
    """The slices of ``x`` along ``axis``, as a tuple of views."""
    x = asarray(x)
    if x.ndim == 0:
        raise ValueError("a zero-dimensional array cannot be unstacked")
    (axis,) = graph.normalize_axes(axis, x.ndim)
    return tuple(_index(x, axis, i) for i in range(x.shape[axis]))


def _interleave(x: Array, counts: tuple[int, ...], inner: bool) -> Array:
    """Each axis d of ``x`` given a size-``counts[d]`` partner axis by broadcasting (after it when ``inner``:
    every element repeated; before it: the whole axis repeated), the pairs then merged by a reshape."""
    split, wide, merged = [], [], []
    for n, r in zip(x.shape, counts):
        split += [n, 1] if inner else [1, n]
        wide += [n, r] if inner else [r, n]
        merged.append(n * r)
    return reshape(broadcast_to(reshape(x, tuple(split)), tuple(wide)), tuple(merged))


def _count(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be integers, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")
    return int(value)


def tile(x, repetitions, /) -> Array:
    """``x`` repeated ``repetitions[d]`` times along each axis d (leading 1s fill the shorter one): a
    broadcast and a reshape."""
    x = asarray(x)
    reps = tuple(_count(r, "repetitions") for r in repetitions)
    ndim = max(x.ndim, len(reps))
    x = reshape(x, (1,) * (ndim - x.ndim) + x.shape)
    return _interleave(x, (1,) * (ndim - len(reps)) + reps, inner=False)


def repeat(x, repeats, /, *, axis=None) -> Array:
    """Each element repeated along ``axis`` (None: of the flattened array). ``repeats``: an int (lazy: a
    broadcast and a reshape) or an array of counts, one per element or one for all (materialised, as the
    result's shape depends on the counts' values)."""
    x = asarray(x)
    if axis is None:
        x, axis = reshape(x, -1), 0
    (axis,) = graph.normalize_axes(axis, x.ndim)
    if isinstance(repeats, (int, np.integer)) or (isinstance(repeats, Array) and repeats.ndim == 0):
        counts = [1] * x.ndim
        counts[axis] = _count(operator.index(repeats) if isinstance(repeats, Array) else repeats, "repeats")
        return _interleave(x, tuple(counts), inner=True)
    value, counts = values(x, repeats)
    if counts.dtype.kind not in "iu" or counts.ndim != 1 or counts.size not in (1, x.shape[axis]):
        raise ValueError(f"repeats must be an integer or a 1-D integer array of size 1 or {x.shape[axis]} "
                         f"(the size of axis {axis}), got {counts.dtype.name}{list(counts.shape)}")
    if (counts < 0).any():
        raise ValueError("repeats must not be negative")
    return computed(np.repeat(value, counts, axis), [x], None, "repeat with an array of counts")


def roll(x, /, shift, *, axis=None) -> Array:
    """Elements shifted by ``shift`` along ``axis`` (ints or tuples of one length; None: the flattened
    array), wrapping around. Materialised: the two parts are joined by ``concatenate``."""
    x = asarray(x)
    if axis is None:
        return reshape(roll(reshape(x, -1), shift, axis=0), x.shape)
    shifts = [shift] if isinstance(shift, (int, np.integer)) else list(shift)
    axes = [axis] if isinstance(axis, (int, np.integer)) else list(axis)
    if len(shifts) == 1:   # one shift for every axis, or one axis for every shift (NumPy broadcasts them)
        shifts = shifts * len(axes)
    if len(axes) == 1:
        axes = axes * len(shifts)
    if len(shifts) != len(axes):
        raise ValueError(f"shift {shift} and axis {axis} must have one length")
    total = {}
    for s, a in zip(shifts, axes):   # NumPy adds the shifts of an axis named twice
        (a,) = graph.normalize_axes(a, x.ndim)
        total[a] = total.get(a, 0) + int(s)
    for a, s in total.items():
        n = x.shape[a]
        if n and s % n:
            x = concatenate([_index(x, a, slice(n - s % n, None)), _index(x, a, slice(None, n - s % n))], a)
    return x


def diff(x, /, *, axis: int = -1, n: int = 1, prepend=None, append=None) -> Array:
    """The ``n``-th forward difference along ``axis``: ``x[1:] - x[:-1]``, n times, lazily (bool arrays:
    ``!=``, as in NumPy). ``prepend``/``append`` (arrays, or scalars broadcast to one slice) are joined
    first, which materialises."""
    x = asarray(x)
    if x.ndim == 0:
        raise ValueError("diff needs an array of at least one dimension")
    n = _count(n, "n")
    (axis,) = graph.normalize_axes(axis, x.ndim)
    if prepend is not None or append is not None:
        slice_shape = x.shape[:axis] + (1,) + x.shape[axis + 1:]
        edge = [None if p is None else asarray(p) for p in (prepend, append)]
        edge = [e if e is None or e.ndim else broadcast_to(e, slice_shape) for e in edge]
        x = concatenate([e for e in (edge[0], x, edge[1]) if e is not None], axis)
    difference = "not_equal" if x.dtype == np.bool_ else "subtract"
    for _ in range(n):
        if x.shape[axis] == 0:
            break
        x = apply(difference, _index(x, axis, slice(1, None)), _index(x, axis, slice(None, -1)))
    return x
