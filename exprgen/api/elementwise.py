"""The elementwise functions that take more than operands: NumPy's and the array API's keywords
(``clip``'s optional bounds, ``round``'s decimals, ``gelu``'s approximation), the function made for each
op of ``ops/`` (``op_function``), and user-defined ops (``elementwise``)."""

from __future__ import annotations

import math
import operator

import numpy as np

from ..ir import graph, opdefs
from .array import Array, apply, asarray, astype, positional_signature


def op_function(name: str):
    op = opdefs.get(name)

    def function(*operands):
        result = apply(op.name, *operands)
        if result._node.weak:   # of a jitted function's scalars alone: an array, as ex.exp(0.1) is in eager code
            return Array(graph.apply("astype", result._node, params=(result.dtype.name,)))
        return result

    function.__signature__ = positional_signature(*(("x",) if op.arity == 1 else (f"x{i + 1}" for i in range(op.arity))))
    function.__name__ = name
    function.__qualname__ = name
    function.__doc__ = f"Elementwise {op.name}, lazily. Reference: {op.numpy_src}"
    return function


def elementwise(name: str, c_expr: str, numpy_ref, vjp=None, dtypes=None):
    """A user-defined elementwise op, lazy, fusable and cached like the built-in ones.

        softsign = ex.elementwise("softsign", "x / (1 + absolute(x))", lambda x: x / (1 + np.abs(x)),
                                  vjp="g / ((1 + abs(x)) * (1 + abs(x)))", dtypes=["float32", "float64"])

    ``c_expr`` is C++ over the parameter names of ``numpy_ref`` (which is also the reference that gives
    the result dtype and checks the kernels); ``T`` is the type inputs are converted to, and a float
    literal is of that type (``0.5`` is taken as ``T(0.5)``: float32 inputs compute in float32, as their
    reference does). ``vjp``: the backward formula per input, in the op language.
    """
    opdefs.define_elementwise(name, c_expr, numpy_ref, vjp, dtypes)
    return op_function(name)


def clip(x, /, min=None, max=None) -> Array:  # noqa: A002 - the array API's keyword names
    """The array API's clip (NumPy's positional ``clip(x, lo, hi)`` too): either bound may be None, and
    with neither the result is ``x`` itself. As in NumPy 2, a Python int bound that cannot bind (a lower
    one below the integer dtype's range, an upper one above it) is accepted: ``clip(uint8, 0, 300)``;
    one out of range the other way (``clip(uint8, 300, 400)``) raises OverflowError as any operand does."""
    x = x if isinstance(x, Array) else asarray(x)
    if x.dtype.kind in "iu":
        limits = np.iinfo(x.dtype)
        if type(min) is int and min < limits.min:
            min = int(limits.min)
        if type(max) is int and max > limits.max:
            max = int(limits.max)
    if min is None and max is None:
        return x
    if min is None:
        return apply("minimum", x, max)
    if max is None:
        return apply("maximum", x, min)
    return apply("clip", x, min, max)


def round(x, decimals: int = 0) -> Array:  # noqa: A001 - the NumPy name
    """np.round: half to even; with ``decimals``, scaled as NumPy does (x*10**d, rounded, /10**d; a scale
    beyond float64's range is inf, which gives NaN, as NumPy's does). Integers keep their dtype: whole
    already for decimals >= 0, and for decimals < 0 rounded in float64 and cast back, as NumPy does."""
    x = x if isinstance(x, Array) else asarray(x)
    decimals = operator.index(decimals)
    if decimals == 0 or (decimals > 0 and x.dtype.kind in "iu"):
        return apply("round", x)
    if x.dtype.kind == "b":
        raise TypeError("round of a bool array with decimals != 0 has no bool result (NumPy raises too); "
                        "convert it first: round(x.astype(float), decimals)")
    try:
        factor = 10.0 ** abs(decimals)
    except OverflowError:
        factor = math.inf
    if x.dtype.kind in "iu":
        return astype(apply("round", astype(x, np.float64) / factor) * factor, x.dtype)
    if decimals > 0:
        return apply("round", x * factor) / factor
    return apply("round", x / factor) * factor


def gelu(x, approximate: str = "none") -> Array:
    """GELU; ``approximate="tanh"`` uses the tanh approximation (as in PyTorch)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', not {approximate!r}")
    return apply("gelu_tanh" if approximate == "tanh" else "gelu", x)


def where(condition, x, y) -> Array:
    return apply("where", condition, x, y)
