"""Indexing: ``x[key]``, ``take``, ``take_along_axis`` and the functional updates ``x.at[key].set(v)``.

- Basic indexing (ints, slices of any step, None, Ellipsis) is a view (``views.py``): lazy, no copy.
- Reading an element of a computed array (every index an int: ``x[3]``, ``x[1, 2]``) takes a short path:
  a 0-d NumPy view of the buffer, as an Array whose graph leaf is made only if an expression needs it. An
  op over such elements (``x[3] > 0``) is lazy, as any other, so that it reads the memory when computed
  (README, "Shared memory"), and ``realize.evaluate`` gives any graph of one-element exact nodes to NumPy.
  Array-agnostic code reads elements in loops: that costs microseconds and never compiles or launches a
  kernel.
- Integer arrays and boolean masks (NumPy's advanced indexing, mixed with basic parts as NumPy mixes
  them) materialise: the array and the index arrays are computed, in one pass, NumPy indexes the value,
  and the result is a new leaf, so what is built on it is lazy and fuses again. A mask gives a shape that
  depends on the data, which no graph node can have; a gather at known indices could stay lazy once the
  graph has a gather op. Out-of-bounds indices raise NumPy's IndexError. The gradient of a gathered
  array is the incoming gradient added back at the indices it came from (``np.add.at``, again a leaf
  with a gradient: gradients of gradients work). ``take`` and ``take_along_axis`` are such gathers.
- Arrays are immutable: ``x[key] = v`` raises TypeError naming ``x.at[key].set(v)`` and ``ex.where``.
  ``x.at[key].set(v)``, ``.add``, ``.multiply``, ``.min`` and ``.max`` return a new array, as in JAX, and
  materialise too: a copy of x's value updated by NumPy (``ufunc.at``, so an index given twice adds or
  multiplies twice; ``set`` with repeated indices keeps the last value). The update must be castable to
  x's dtype by NumPy's same_kind rule (no float update of an int array: NumPy's ``ufunc.at`` would
  truncate it silently). Updates carry no gradient; a gradient that reaches one raises NotImplementedError.
"""

from __future__ import annotations

import operator

import numpy as np

from ..ir import graph, views
from .array import Array, asarray, computed, staging
from .functions import reshape
from ..ir.graph import BUFFER, CPU
from .materialising import values

_SEQUENCES = (Array, np.ndarray, list, tuple, bool, np.bool_)   # index parts that are (or make) arrays


def _array(x) -> Array:
    return x if isinstance(x, Array) else asarray(x)


def _is_int(part) -> bool:
    return type(part) is int or isinstance(part, np.integer)   # not bool: True is a mask, as in NumPy


def _is_basic(part) -> bool:
    return part is None or part is Ellipsis or type(part) is slice or _is_int(part)


def _part(part):
    """An index part as a view takes it: slice bounds and 0-d integer arrays read as Python ints."""
    if type(part) is slice:
        return slice(*(None if b is None else operator.index(b) for b in (part.start, part.stop, part.step)))
    if isinstance(part, (Array, np.ndarray)) and part.ndim == 0 and part.dtype.kind in "iu":
        return operator.index(part)
    if not (_is_basic(part) or isinstance(part, _SEQUENCES)):
        raise TypeError(f"exprgen arrays are indexed by integers, slices, None, Ellipsis, integer arrays and "
                        f"boolean masks, not {type(part).__name__}")
    return part


def _parts(key) -> tuple:
    return tuple(map(_part, key if type(key) is tuple else (key,)))


def _element(x: Array, key) -> Array:
    """``x[i, j]`` of a computed ``x``: a 0-d view of its value (NumPy itself would give a scalar copy),
    whose leaf is made only if an expression is built on it."""
    value = x.numpy()[(*key, Ellipsis) if type(key) is tuple else (key, Ellipsis)]

    def leaf():
        made = graph.buffer(value, x.device)
        made.annotate("view_of", (x._graph_node(), (views.index_step(key),)))   # as graph.view records, for gradients
        return made

    return Array._of_value(value, leaf)


def _resolve(x: Array, parts: tuple, *more) -> tuple:
    """x's value, the index with NumPy values for its Array parts, and the values of ``more`` (Arrays or
    not): every Array among them computed in one pass."""
    arrays = [a for a in (*parts, *more) if isinstance(a, Array)]
    found = iter(values(x, *arrays))
    x_value = next(found)
    key = tuple(next(found) if isinstance(p, Array) else p for p in parts)
    return (x_value, key, *[next(found) if isinstance(m, Array) else m for m in more])


def _gather(x: Array, x_value: np.ndarray, key: tuple) -> Array:
    return computed(x_value[key], [x], lambda g, wanted: [scatter_add(g, x.shape, key)], "indexing")


def scatter_add(g: Array, shape: tuple, key: tuple) -> Array:
    """The gradient of a gather: ``g`` added into zeros of ``shape`` at ``key`` (repeated indices add up)."""
    (g_value,) = values(g)
    total = np.zeros(shape, g_value.dtype)
    np.add.at(total, key, g_value)
    return computed(total, [g], lambda h, wanted: [_gather(h, values(h)[0], key)], "indexing")


def getitem(x: Array, key) -> Array:
    """``x[key]``: NumPy's indexing. Basic indexing is a view; integer arrays and boolean masks materialise
    (see the module docstring)."""
    ints = all(map(_is_int, key)) if type(key) is tuple else _is_int(key)
    # Computed: its value is at hand (not while ex.jit traces: an argument's value is the next call's).
    if ints and (x._value is not None or x._node.op is BUFFER) and not staging.depth and x.device == CPU:
        return _element(x, key)
    node = x._graph_node()
    parts = _parts(key)
    if all(map(_is_basic, parts)):
        return Array(graph.view(node, (views.index_step(parts if type(key) is tuple else parts[0]),)))
    return _gather(x, *_resolve(x, parts))


def setitem(x: Array, key, value):
    raise TypeError("exprgen arrays are immutable: x[key] = v cannot change x. Make a new array instead: "
                    "x = x.at[key].set(v), or x = ex.where(mask, v, x)")


def _integer_indices(indices, function: str):
    indices = indices if isinstance(indices, Array) else np.asarray(indices)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"{function} needs integer indices, not {indices.dtype.name}")
    return indices


def take(x, indices, /, *, axis=None) -> Array:
    """``x`` at ``indices`` along ``axis`` (None: of x flattened), as NumPy's ``take``: negative indices count
    from the end, and the result is x's shape with that axis replaced by the indices' shape. Materialises,
    like integer-array indexing (module docstring)."""
    x, indices = _array(x), _integer_indices(indices, "take")
    if axis is None:
        return getitem(reshape(x, -1), indices)
    (axis,) = graph.normalize_axes(axis, x.ndim)
    return getitem(x, (slice(None),) * axis + (indices,))


def take_along_axis(x, indices, /, *, axis=-1) -> Array:
    """``x`` at ``indices`` along ``axis``, element by element (as NumPy's ``take_along_axis``: ``indices`` has
    x's number of dimensions and broadcasts with x on the other axes). Materialises (module docstring)."""
    x, indices = _array(x), _integer_indices(indices, "take_along_axis")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"take_along_axis needs an integer axis, not {axis!r}")
    if indices.ndim != x.ndim:
        raise ValueError(f"take_along_axis needs indices with as many dimensions as x: x has shape {x.shape}, "
                         f"indices {indices.shape}")
    (axis,) = graph.normalize_axes(axis, x.ndim)
    # Every other axis is indexed by its own positions, which broadcast against the indices as NumPy does.
    grids = [np.arange(n).reshape((1,) * d + (n,) + (1,) * (x.ndim - d - 1)) for d, n in enumerate(x.shape)]
    grids[axis] = indices
    return getitem(x, tuple(grids))


def _update(x: Array, key, value, ufunc) -> Array:
    x_value, key, update = _resolve(x, _parts(key), value)
    kind = np.result_type(x_value.dtype, update)   # Python scalars weakly typed
    if not np.can_cast(kind, x_value.dtype, "same_kind"):
        raise TypeError(f"x.at[...] cannot put {kind.name} values into a {x_value.dtype.name} array (NumPy's same_kind "
                        f"rule); convert them with astype first")
    result = x_value.copy()
    if ufunc is None:
        result[key] = update
    else:
        ufunc.at(result, key, update)
    return computed(result, [a for a in (x, value) if isinstance(a, Array)], None, "x.at[...] updates")


class _Update:
    """``x.at[key]``: what can be done there, each giving a new array (see the module docstring)."""

    __slots__ = ("_array", "_key")

    def __init__(self, array: Array, key):
        self._array, self._key = array, key

    def set(self, value) -> Array:
        return _update(self._array, self._key, value, None)

    def add(self, value) -> Array:
        return _update(self._array, self._key, value, np.add)

    def multiply(self, value) -> Array:
        return _update(self._array, self._key, value, np.multiply)

    def min(self, value) -> Array:  # noqa: A003 - JAX's names
        return _update(self._array, self._key, value, np.minimum)

    def max(self, value) -> Array:  # noqa: A003
        return _update(self._array, self._key, value, np.maximum)


class At:
    """``x.at``, Array's property (installed by ``surface.py``): ``x.at[key]`` is an update waiting for its op."""

    __slots__ = ("_array",)

    def __init__(self, array: Array):
        self._array = array

    def __getitem__(self, key) -> _Update:
        return _Update(self._array, key)

