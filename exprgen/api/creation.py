"""Array creation (array API 2024.12): arange, linspace, eye, full, zeros, ones, empty, the ``*_like``
forms, meshgrid, tril and triu. Every result is lazy, and none holds memory of its size:

- a constant (``full``, ``zeros``, ``ones``, ``empty``, the ``*_like`` forms) is a one-element buffer
  broadcast to the shape (stride 0). The value lives in that buffer, not in the kernel or the plan, so
  ``full(n, 3.0)`` and ``full(n, 4.0)`` run one plan and one kernel. ``empty`` gives zeros. An ``astype``
  to the same dtype sits on top, so that a constant asked for by itself is computed into a fresh,
  writable array (as NumPy's) rather than handed back as the read-only broadcast; inside an expression
  that conversion compiles to nothing.
- a value that is a function of its index (``arange``, ``linspace``, ``eye``, and the masks of ``tril``
  and ``triu``) is arithmetic on index leaves (``graph.INDEX``): int64 "arrays" whose elements are their
  own offsets, computed by the kernel where it would load. ``(ex.arange(n) * 2).sum()`` is one rows
  kernel that reads two one-element buffers (start and step) and allocates nothing of size n. Views of
  an index leaf move its layout as they would a buffer's.
- ``meshgrid`` is views (reshape, broadcast) of its inputs.

Values are NumPy's, bit for bit: ``arange`` fills as NumPy's ``fill`` does (element 0 is start, element
1 is start + step rounded to the dtype, element i is start + i * delta with delta their difference, all
in the dtype), ``linspace`` follows ``np.linspace`` step by step (float64 arithmetic for Python scalars,
the step or, when it underflows to 0, i / div * delta, the endpoint stored exactly, floor for integer
dtypes). The numbers that depend on the arguments are one-element buffers too (kernel inputs, never
compiled in), rather than Python scalars: those are weakly typed, and a rewrite that reads one (x*1 -> x)
makes the plan depend on its value. Only facts that change the formula (a length, whether element 0 or
1 needs selecting) shape the graph.
"""

from __future__ import annotations

import math
import operator

import numpy as np

from ..ir import dtypes, graph
from .array import Array, asarray, check_device, placed, standard_astype
from .functions import broadcast_to, reshape, shape_argument

_MAX_BYTES = 2**63 - 1   # NumPy's limit on an array's size in bytes (the largest intp)


def _dtype(dtype, default: np.dtype) -> np.dtype:
    return default if dtype is None else dtypes.as_dtype(dtype)


def _check_size(shape: tuple[int, ...], dtype: np.dtype) -> None:
    if math.prod(shape) * dtype.itemsize > _MAX_BYTES:
        raise ValueError(f"array is too big: shape {shape} of {dtype.name} would need "
                         f"{math.prod(shape) * dtype.itemsize} bytes, more than any array can have")


def _shape(shape, dtype: np.dtype) -> tuple[int, ...]:
    """A shape from an int or a sequence of ints, refused as NumPy refuses it."""
    result = shape_argument(shape)
    if any(n < 0 for n in result):
        raise ValueError(f"negative dimensions are not allowed (shape {result})")
    _check_size(result, dtype)
    return result


def _real(value, what: str):
    """A real scalar argument (Python or NumPy bool, int or float); complex and others are refused."""
    if isinstance(value, (complex, np.complexfloating)):
        raise TypeError(f"{what} must be a real number, not complex ({value!r}): complex dtypes are not supported")
    if not isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
        raise TypeError(f"{what} must be a Python or NumPy real scalar, not {type(value).__name__}")
    return value


def _constant(value, dtype: np.dtype) -> graph.Node:
    """A one-element buffer: a value the kernel reads, so it is neither compiled in nor part of the plan."""
    return graph.buffer(np.array(value, dtype), device=None)


def _apply(name: str, *src: graph.Node, params: tuple = ()) -> graph.Node:
    return graph.apply(name, *src, params=params)


def _cast(node: graph.Node, dtype: np.dtype) -> graph.Node:
    return node if node.dtype == dtype else _apply("astype", node, params=(dtype.name,))


# -- constants ------------------------------------------------------------------------------------
def full(shape, fill_value, *, dtype=None, device=None) -> Array:
    """An array of ``shape`` filled with ``fill_value`` (dtype from the value's kind when not given:
    bool, int64 or float64; a NumPy scalar keeps its dtype). A value that does not fit the dtype raises
    OverflowError, as in NumPy; a complex value raises TypeError."""
    where = check_device(device)
    _real(fill_value, "fill_value")
    dtype = _dtype(dtype, dtypes.as_dtype(np.result_type(fill_value)))
    shape = _shape(shape, dtype)
    broadcast = graph.view(_constant(fill_value, dtype), (("broadcast_to", shape),))
    return placed(Array(_apply("astype", broadcast, params=(dtype.name,))), where)   # a copy when asked for alone


def zeros(shape, *, dtype=None, device=None) -> Array:
    """Zeros of ``shape`` (default float64)."""
    return full(shape, 0, dtype=_dtype(dtype, dtypes.FLOAT64), device=device)


def ones(shape, *, dtype=None, device=None) -> Array:
    return full(shape, 1, dtype=_dtype(dtype, dtypes.FLOAT64), device=device)


def empty(shape, *, dtype=None, device=None) -> Array:
    """Unspecified values, per the standard: here zeros (lazy, they cost no more than garbage)."""
    return zeros(shape, dtype=dtype, device=device)


def full_like(x, /, fill_value, *, dtype=None, device=None) -> Array:
    x = asarray(x)
    return full(x.shape, fill_value, dtype=_dtype(dtype, x.dtype), device=x.device if device is None else device)


def copy(x, /) -> Array:
    """``x`` in memory of its own (as ``np.copy``): lazily, a kernel writes the copy when it is computed."""
    x = asarray(x)
    return standard_astype(x, x.dtype, copy=True)


def zeros_like(x, /, *, dtype=None, device=None) -> Array:
    x = asarray(x)
    return zeros(x.shape, dtype=_dtype(dtype, x.dtype), device=x.device if device is None else device)


def ones_like(x, /, *, dtype=None, device=None) -> Array:
    x = asarray(x)
    return ones(x.shape, dtype=_dtype(dtype, x.dtype), device=x.device if device is None else device)


def empty_like(x, /, *, dtype=None, device=None) -> Array:
    return zeros_like(x, dtype=dtype, device=device)


# -- values from indices --------------------------------------------------------------------------
def _arange_length(start, stop, step) -> int:
    """NumPy's: ceil((stop - start) / step) in the arguments' own arithmetic, as a double."""
    if step == 0:
        raise ZeroDivisionError("arange: step must not be zero")
    with np.errstate(all="ignore"):   # NumPy scalars warn where the checks below speak
        distance = stop - start
        span = float(distance / step)
    if math.isnan(span):
        raise ValueError(f"arange: cannot compute the length of a range from {start} to {stop} by {step}")
    if not abs(span) < 2**63:
        raise ValueError(f"arange: maximum allowed size exceeded (from {start} to {stop} by {step})")
    if span == 0 and distance != 0:   # an infinite step, or one so large the quotient underflows
        return 0 if math.copysign(1, span) < 0 else 1
    return max(math.ceil(span), 0)


def _bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.tobytes() == b.tobytes()


def arange(start, /, stop=None, step=1, *, dtype=None, device=None) -> Array:
    """Values from ``start`` (inclusive) to ``stop`` (exclusive) by ``step``, as ``np.arange``: its
    length, its rounding, and its default dtype (int64 when every argument is an integer, else float64)."""
    where = check_device(device)
    if stop is None:
        start, stop = 0, start
    for value, what in ((start, "start"), (stop, "stop"), (step, "step")):
        _real(value, f"arange's {what}")
    kinds = {np.asarray(v).dtype.kind for v in (start, stop, step)}
    dtype = _dtype(dtype, dtypes.FLOAT64 if "f" in kinds else dtypes.INT64)
    if dtype == dtypes.BOOL:
        raise TypeError("arange does not make bool arrays (NumPy allows only lengths up to 2)")
    length = _arange_length(start, stop, step)
    _check_size((length,), dtype)
    with np.errstate(all="ignore"):   # wrapping integers and float overflow are NumPy's too
        first = np.array(start, dtype)
        second = np.array(start + step, dtype) if length > 1 else first
        delta = second - first
        position = graph.index((length,))
        value = _apply("add", _apply("multiply", _cast(position, dtype), _constant(delta, dtype)),
                       _constant(first, dtype))
        # NumPy stores elements 0 and 1 as given; the formula gives them too, except in corner cases
        # (start -0.0, a step lost to rounding, an infinite delta), where they are selected exactly.
        for i, exact in ((1, second), (0, first)):
            if i < length and not _bits_equal(first + dtype.type(i) * delta, exact):
                value = _apply("where", _apply("equal", position, graph.scalar(i)), _constant(exact, dtype), value)
    return placed(Array(value), where)


def linspace(start, stop, /, num, *, dtype=None, device=None, endpoint=True) -> Array:
    """``num`` evenly spaced values from ``start`` to ``stop`` (included unless ``endpoint=False``), as
    ``np.linspace`` computes them (default dtype float64, or float32 for float32 NumPy scalars)."""
    where = check_device(device)
    num = operator.index(num)
    if num < 0:
        raise ValueError(f"Number of samples, {num}, must be non-negative.")
    _real(start, "linspace's start")
    _real(stop, "linspace's stop")
    compute = np.result_type(start, stop)
    compute = compute if compute.kind == "f" else dtypes.FLOAT64
    dtype = _dtype(dtype, compute)
    _check_size((num,), dtype)
    div = num - 1 if endpoint else num
    with np.errstate(all="ignore"):
        delta = np.subtract(stop, start, dtype=compute)
        step = delta / div if div > 0 else delta
        position = graph.index((num,))
        ramp = _cast(position, compute)
        if div > 0 and step == 0:   # the step underflowed: NumPy scales by delta after dividing
            ramp = _apply("divide", ramp, _constant(div, compute))
            step = delta
        value = _apply("add", _apply("multiply", ramp, _constant(step, compute)), _constant(start, compute))
    if endpoint and num > 1:
        value = _apply("where", _apply("equal", position, graph.scalar(num - 1)), _constant(stop, compute), value)
    if dtype.kind in "iu":
        value = _apply("floor", value)
    return placed(Array(_cast(value, dtype)), where)


def _row_and_column(shape: tuple[int, ...]) -> tuple[graph.Node, graph.Node]:
    """Index leaves over the last two dims of ``shape``: each element's row, and its column."""
    n, m = shape[-2:]
    return graph.index((n, m), (1, 0)), graph.index((n, m), (0, 1))


def _diagonal_offset(k, n: int, m: int) -> graph.Node:
    """``k`` as a kernel argument; past the matrix either way it means the same as at its edge, so it is
    clipped there (a huge k then cannot overflow)."""
    return graph.scalar(min(max(operator.index(k), -n), m))


def eye(n_rows, n_cols=None, /, *, k=0, dtype=None, device=None) -> Array:
    """Ones on the ``k``-th diagonal (above the main one for k > 0), zeros elsewhere."""
    where = check_device(device)
    dtype = _dtype(dtype, dtypes.FLOAT64)
    shape = _shape((n_rows, n_rows if n_cols is None else n_cols), dtype)
    row, column = _row_and_column(shape)
    on = _apply("equal", _apply("add", row, _diagonal_offset(k, *shape)), column)
    return placed(Array(_cast(on, dtype)), where)


def _triangle(name: str, keep: str, x, k) -> Array:
    node = asarray(x)._graph_node()
    if len(node.shape) < 2:
        raise ValueError(f"{name} needs an array of at least 2 dimensions, got shape {node.shape}")
    row, column = _row_and_column(node.shape)
    mask = _apply(keep, column, _apply("add", row, _diagonal_offset(k, *node.shape[-2:])))
    return Array(_apply("where", mask, node, _constant(0, node.dtype)))


def tril(x, /, *, k=0) -> Array:
    """``x`` with the elements above the ``k``-th diagonal of its last two dims set to zero."""
    return _triangle("tril", "less_equal", x, k)


def triu(x, /, *, k=0) -> Array:
    """``x`` with the elements below the ``k``-th diagonal of its last two dims set to zero."""
    return _triangle("triu", "greater_equal", x, k)


def meshgrid(*arrays, indexing: str = "xy") -> list[Array]:
    """Coordinate grids from 1-D arrays (others are flattened, as NumPy does): views, no copies.
    ``indexing="xy"`` (default) swaps the first two axes of the result, ``"ij"`` keeps them."""
    if indexing not in ("xy", "ij"):
        raise ValueError(f"indexing must be 'xy' or 'ij', not {indexing!r}")
    flat = [reshape(asarray(a), (-1,)) for a in arrays]
    shape = [a.shape[0] for a in flat]
    axes = list(range(len(flat)))
    if indexing == "xy" and len(flat) > 1:
        shape[0], shape[1] = shape[1], shape[0]
        axes[0], axes[1] = 1, 0
    grids = []
    for a, axis in zip(flat, axes):
        sizes = [1] * len(flat)
        sizes[axis] = -1
        grids.append(broadcast_to(reshape(a, tuple(sizes)), tuple(shape)))
    return grids
