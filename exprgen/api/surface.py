"""Array's surface: every operator and method that ``Array``'s class body does not define, in one table.

The class (``array.py``) sits below the functions its methods call (reductions, views, indexing,
matmul), so it cannot name them; this module, the last of the api's, imports them all and installs the
table on the class once. Whoever reads ``x + y``, ``x.sum(0)`` or ``x.at[i]`` finds what it is here, and no
other module adds to Array. ``exprgen/__init__.py`` imports this module, and importing any exprgen module
imports that first, so an Array always has its whole surface.
"""

from __future__ import annotations

import numpy as np

from ..ir import dtypes, opdefs
from . import functions
from .array import Array, apply, asarray, positional_signature, readable
from .elementwise import round  # noqa: A004 - ex.round, as round(x) calls it
from .indexing import At, getitem, setitem
from .linear_algebra import matmul
from ..runtime.realize import evaluate


def _op(name: str):
    def method(*operands):
        return apply(name, *operands)
    method.__signature__ = positional_signature(*("self", "other")[:opdefs.get(name).arity])
    return method


def _is_bool(operand) -> bool:
    dtype = getattr(operand, "dtype", None)
    return type(operand) is bool or (dtype is not None and dtype == dtypes.BOOL)


def _logical_or_bitwise(logical: str, bitwise: str):
    """``&``, ``|``, ``^``, ``~``: on bool operands the logical op (NumPy's bool result), else the bitwise one."""
    def compute(*operands):
        return apply(logical if all(map(_is_bool, operands)) else bitwise, *operands)
    compute.__signature__ = positional_signature(*("self", "other")[:opdefs.get(logical).arity])
    return compute


def _divmod(a, b) -> tuple[Array, Array]:
    return apply("floor_divide", a, b), apply("remainder", a, b)


def _reflected(compute):
    return lambda self, other: compute(other, self)


def _inplace(compute, symbol: str):
    """``x op= y``: arrays are immutable, so it rebinds x to ``x op y``, which must keep x's dtype and shape
    (NumPy's rule for writing in place; the array API's too)."""
    def method(self, other):
        result = compute(self, other)
        if result.dtype != self.dtype:
            raise TypeError(f"x {symbol}= y would make x {result.dtype.name} (it is {self.dtype.name}); an in-place "
                            f"operator keeps the dtype, as in NumPy: write x = x {symbol} y")
        if result.shape != self.shape:
            raise ValueError(f"x {symbol}= y would make x of shape {result.shape} (it is {self.shape}); an "
                             f"in-place operator keeps the shape, as in NumPy: write x = x {symbol} y")
        return result
    return method


def _arithmetic(dunder: str, symbol: str, compute) -> dict:
    """``x op y``, ``y op x`` and ``x op= y``, all three from the one function of the operands."""
    return {f"__{dunder}__": compute, f"__r{dunder}__": _reflected(compute),
            f"__i{dunder}__": _inplace(compute, symbol)}


def _compared_with_none(name: str, result_for_none: bool):
    """``==`` or ``!=``, where ``x == None`` compares each element with None as NumPy does (never equal: all
    False, or all True for ``!=``) instead of refusing None as an operand."""
    compare = _op(name)
    def method(self, other):
        return asarray(np.full(self.shape, result_for_none), device=self.device) if other is None else compare(self, other)
    method.__signature__ = compare.__signature__
    return method


def _method(function):
    """``function`` as an Array method, NumPy-style: the axis may be given by position too, and ``out``
    (a NumPy buffer the result is computed into, and returned) is accepted, as ``np.sum(array)`` and the
    like call the method with ``out=None``."""
    def method(self, axis=None, *, out=None, **kwargs):
        result = function(self, axis=axis, **kwargs)
        if out is None:
            return result
        readable((result._graph_node(),), "out=")
        return evaluate((result._graph_node(),), out=out)[0]
    method.__name__ = method.__qualname__ = function.__name__
    method.__doc__ = function.__doc__
    return method


SURFACE = {
    # arithmetic operators, each with its reflected and in-place forms
    **_arithmetic("add", "+", _op("add")), **_arithmetic("sub", "-", _op("subtract")),
    **_arithmetic("mul", "*", _op("multiply")), **_arithmetic("truediv", "/", _op("divide")),
    **_arithmetic("floordiv", "//", _op("floor_divide")), **_arithmetic("mod", "%", _op("remainder")),
    **_arithmetic("pow", "**", _op("power")), **_arithmetic("matmul", "@", matmul),
    **_arithmetic("and", "&", _logical_or_bitwise("logical_and", "bitwise_and")),
    **_arithmetic("or", "|", _logical_or_bitwise("logical_or", "bitwise_or")),
    **_arithmetic("xor", "^", _logical_or_bitwise("logical_xor", "bitwise_xor")),
    **_arithmetic("lshift", "<<", _op("bitwise_left_shift")),
    **_arithmetic("rshift", ">>", _op("bitwise_right_shift")),
    "__divmod__": _divmod, "__rdivmod__": _reflected(_divmod),
    # comparisons
    "__lt__": _op("less"), "__le__": _op("less_equal"), "__gt__": _op("greater"), "__ge__": _op("greater_equal"),
    "__eq__": _compared_with_none("equal", False), "__ne__": _compared_with_none("not_equal", True),
    # unary operators
    "__neg__": _op("negative"), "__pos__": _op("positive"), "__abs__": _op("abs"),
    "__invert__": _logical_or_bitwise("logical_not", "bitwise_invert"),
    "__round__": lambda self, ndigits=None: round(self, ndigits or 0),
    # NumPy's parts of a number (of a real array: the array itself, and zeros of its dtype)
    "real": property(_op("real"), doc="The real part (lazily), as NumPy's ``x.real``."),
    "imag": property(_op("imag"), doc="The imaginary part (lazily), as NumPy's ``x.imag``."),
    # reductions as methods, NumPy-style (a positional axis, out=)
    "sum": _method(functions.sum), "prod": _method(functions.prod), "max": _method(functions.max),
    "min": _method(functions.min), "any": _method(functions.any), "all": _method(functions.all),
    "argmax": _method(functions.argmax), "argmin": _method(functions.argmin), "mean": _method(functions.mean),
    "var": _method(functions.var), "std": _method(functions.std),
    # shape methods: NumPy's x.reshape(2, 3) and x.transpose(1, 0) as well as a tuple
    "flip": _method(functions.flip), "swapaxes": functions.swapaxes, "squeeze": functions.squeeze,
    "reshape": lambda self, *shape: functions.reshape(self, shape[0] if len(shape) == 1 else shape),
    "transpose": lambda self, *axes: functions.transpose(
        self, axes[0] if len(axes) == 1 and not isinstance(axes[0], int) else (axes or None)),
    # indexing
    "__getitem__": getitem, "__setitem__": setitem,
    "at": property(At, doc="Functional updates, as in JAX: ``x.at[key].set(v)`` returns a new array."),
}

for _name, _implementation in SURFACE.items():
    setattr(Array, _name, _implementation)
