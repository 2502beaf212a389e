"""Linear algebra of the main namespace: ``matmul``, ``tensordot``, ``vecdot``, ``matrix_transpose``.

Not called ``linalg``: a package attribute of that name would announce the standard's optional linalg
extension (inv, det, ...), which exprgen does not have; array-agnostic code tests ``hasattr(xp, "linalg")``.

``matmul`` is a graph node like any other (ops/linalg.toml, a "library" op): nothing runs at the call.
When a value is needed the scheduler gives the product a step of its own, a call of NumPy's matmul (BLAS
for floats; integer and bool products too, with NumPy's dtype rules), its operands materialised first
(their producers fused into one pass) and its consumers (a bias and an activation) fused into one pass over
its result. A 1-D operand is promoted to a matrix and the added axis removed again; batch axes broadcast.

Gradients of ``matmul`` are matmuls (its backward formulas in ops/), summed over broadcast batch axes, so
gradients of gradients work, and only the gradients asked for are formed: nothing for captured data. ``tensordot`` is a transpose and a reshape of each operand around one
``matmul``. ``vecdot`` is lazy: ``sum(x1 * x2, axis)``, one fused kernel, no BLAS. ``matrix_transpose`` is
a view.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import graph
from .array import Array, apply, asarray
from .functions import permute_dims, reshape, sum, swapaxes
from .manipulation import axes_in_order


def matrix_transpose(x, /) -> Array:
    """``x`` with its last two axes swapped (a view)."""
    x = asarray(x)
    if x.ndim < 2:
        raise ValueError(f"matrix_transpose needs an array of at least two dimensions, got shape {x.shape}")
    return swapaxes(x, -1, -2)


def matmul(x1, x2, /) -> Array:
    """The matrix product, as NumPy's ``matmul``: a graph node (see the module docstring)."""
    x1, x2 = asarray(x1), asarray(x2)
    if x1.ndim == 0 or x2.ndim == 0:
        raise ValueError("matmul does not take zero-dimensional arrays; use multiply")
    a = x1 if x1.ndim > 1 else reshape(x1, (1, x1.shape[0]))
    b = x2 if x2.ndim > 1 else reshape(x2, (x2.shape[0], 1))
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {x1.shape} and {x2.shape} do not match in the contracted axis "
                         f"({a.shape[-1]} != {b.shape[-2]})")
    batch = graph.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    product = apply("matmul", a, b)
    shape = batch + x1.shape[-2:-1] * (x1.ndim > 1) + x2.shape[-1:] * (x2.ndim > 1)
    return product if product.shape == shape else reshape(product, shape)


def tensordot(x1, x2, /, *, axes=2) -> Array:
    """Sum of products over ``axes``: the last ``axes`` axes of ``x1`` with the first of ``x2`` (an int),
    or the axes listed in a pair of sequences. The result's axes: ``x1``'s free axes, then ``x2``'s."""
    x1, x2 = asarray(x1), asarray(x2)
    if isinstance(axes, (int, np.integer)):
        if not 0 <= axes <= min(x1.ndim, x2.ndim):
            raise ValueError(f"tensordot: axes={axes} must be between 0 and the smaller of the ranks "
                             f"{x1.ndim} and {x2.ndim}")
        first, second = list(range(x1.ndim - axes, x1.ndim)), list(range(axes))
    else:
        if len(axes) != 2:
            raise ValueError("tensordot: axes must be an int or a pair of sequences of axes")
        first, second = axes_in_order(axes[0], x1.ndim), axes_in_order(axes[1], x2.ndim)
        if len(first) != len(second):
            raise ValueError(f"tensordot: {axes[0]} and {axes[1]} name different numbers of axes")
    for d1, d2 in zip(first, second):
        if x1.shape[d1] != x2.shape[d2]:
            raise ValueError(f"tensordot: axis {d1} of shape {x1.shape} and axis {d2} of shape {x2.shape} "
                             f"differ in size")
    free1 = [d for d in range(x1.ndim) if d not in first]
    free2 = [d for d in range(x2.ndim) if d not in second]
    inner = math.prod(x1.shape[d] for d in first)
    a = reshape(permute_dims(x1, tuple(free1 + first)), (math.prod(x1.shape[d] for d in free1), inner))
    b = reshape(permute_dims(x2, tuple(second + free2)), (inner, math.prod(x2.shape[d] for d in free2)))
    return reshape(matmul(a, b), tuple(x1.shape[d] for d in free1) + tuple(x2.shape[d] for d in free2))


def vecdot(x1, x2, /, *, axis: int = -1) -> Array:
    """Dot products along ``axis`` (counted from the end: -N to -1, N the smaller rank) of the broadcast
    operands, in their promoted dtype: lazily, ``sum(x1 * x2, axis)``, one fused kernel."""
    x1, x2 = asarray(x1), asarray(x2)
    rank = min(x1.ndim, x2.ndim)
    if rank == 0:
        raise ValueError("vecdot does not take zero-dimensional arrays; use multiply")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -rank <= axis <= -1:
        raise ValueError(f"vecdot: axis must be an integer from {-rank} to -1 (for ranks {x1.ndim} and "
                         f"{x2.ndim}), got {axis}")
    if x1.shape[axis] != x2.shape[axis]:
        raise ValueError(f"vecdot: shapes {x1.shape} and {x2.shape} differ in size along axis {axis}")
    return sum(x1 * x2, axis=int(axis), dtype=np.result_type(x1.dtype, x2.dtype))
