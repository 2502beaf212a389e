"""A NumPy interpreter of any graph, built from the ops' NumPy references.

It is the oracle of every test and the backend used when ``EXPRGEN_BACKEND=numpy`` is set or no C++
compiler exists. ``HELPERS`` are the functions op references may call where NumPy lacks one (``erf``)
or NumPy's own would be wrong for exprgen (``power``, ``logistic``); they follow NumPy's typing (float32
in, float32 out; integers give float64).
"""

from __future__ import annotations

import math

import numpy as np

from .dtypes import FLOAT32
from . import views
from .graph import BUFFER, INDEX, SCALAR, VIEW, Node, toposort


def _float_typed(scalar_fn):
    """Lift a float64 scalar function to arrays with the typing of a NumPy float ufunc."""
    vectorised = np.vectorize(scalar_fn, otypes=[np.float64])

    def apply(x):
        x = np.asarray(x)
        result = np.sqrt(np.empty(0, x.dtype)).dtype
        return vectorised(x.astype(np.float64)).astype(result) if x.size else np.empty(x.shape, result)

    return apply


erf = _float_typed(math.erf)
erfc = _float_typed(math.erfc)


def logistic(x):
    """1 / (1 + exp(-x)), for x < 0 as exp(x) / (1 + exp(x)) so subnormal results survive.

    Integers become float64 first: NumPy's -x would wrap INT_MIN to itself, giving 1 instead of 0.
    """
    x = np.asarray(x)
    x = x.astype(np.sqrt(np.empty(0, x.dtype)).dtype)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def power(x, y):
    """np.power, except that an integer to a negative integer power is the truncated 1 / x**-y (0 unless
    |x| == 1) where NumPy raises ValueError: a kernel cannot raise, and this is what it computes."""
    try:
        return np.power(x, y)
    except ValueError:
        pass
    dtype = np.result_type(x, y)  # Python scalars weakly typed, as np.power saw them
    x, y = np.broadcast_arrays(np.asarray(x).astype(dtype), np.asarray(y).astype(dtype))
    negative = y < 0
    inverse = np.where(x == 1, 1, np.where(x == -1, np.where(y % 2 == 0, 1, -1), 0)).astype(dtype)
    return np.where(negative, inverse, np.power(x, np.where(negative, 0, y)))


def fma(x, y, z):
    """x*y+z rounded once, for floats: the inputs converted to the result dtype (as the kernel does), then
    float32 through float64 (where a float32 product is exact), float64 through long double."""
    dtype = np.result_type(x, y, z)   # Python scalars weakly typed, as everywhere
    if dtype.kind != "f":
        raise TypeError(f"fma is defined for floating-point inputs, not {dtype.name}")
    wide = np.float64 if dtype == FLOAT32 else np.longdouble
    x, y, z = (np.asarray(v).astype(dtype).astype(wide) for v in (x, y, z))
    return (x * y + z).astype(dtype)


HELPERS = {"erf": erf, "erfc": erfc, "logistic": logistic, "power": power, "fma": fma}


def index_values(node: Node) -> np.ndarray:
    """An index leaf's elements: each one's offset in its layout (graph.INDEX)."""
    strides, offset = node.arg
    grids = np.indices(node.shape, dtype=np.int64, sparse=True)
    return offset + sum((g * s for g, s in zip(grids, strides)), np.zeros(node.shape, np.int64))


def _value(node: Node, values: dict, exact_float32: bool):
    if node.op is BUFFER:
        return node.buffer
    if node.op is SCALAR:
        return node.arg
    if node.op is INDEX:
        return index_values(node)
    if node.op is VIEW:
        return views.apply(np.asarray(values[id(node.src[0])]), node.arg)
    from . import opdefs

    op = opdefs.get(node.op)
    args = [values[id(s)] for s in node.src]
    with np.errstate(all="ignore"):
        result = np.asarray(op.numpy(*args, *node.arg))
    if result.dtype != node.dtype:
        raise AssertionError(f"reference for {node.op} gave {result.dtype}, graph says {node.dtype}")
    if exact_float32 and op.widen:
        compute = op.compute_dtypes(tuple(s.signature_item() for s in node.src), node.arg)
        if FLOAT32 in compute:
            return _float32_via_float64(op, node, args, compute)
    return result


def _float32_via_float64(op, node: Node, args: list, compute: tuple) -> np.ndarray:
    # Operands are converted as the kernel converts them (a weak 0.1 meeting float32 becomes 0.1f),
    # then widened, so the only rounding left is the final one.
    with np.errstate(all="ignore"):
        wide = [np.asarray(a).astype(d).astype(np.float64 if d == FLOAT32 else d) for a, d in zip(args, compute)]
        return np.asarray(op.numpy(*wide, *node.arg)).astype(node.dtype)


def evaluate(roots, *, exact_float32: bool = False) -> list[np.ndarray]:
    """The value of each root, computed op by op with NumPy.

    ``exact_float32``: compute every op that works in float32 in float64 from its float32 operands and
    round once, the truth a float32 kernel is measured against (NumPy's float32 functions err too).
    """
    values: dict[int, object] = {}
    for node in toposort(roots):
        values[id(node)] = _value(node, values, exact_float32)
    return [np.asarray(values[id(r)]).reshape(r.shape) for r in roots]
