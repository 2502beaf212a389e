"""The functions op references may call where NumPy lacks one (``erf``) or NumPy's own would be wrong
for exprgen (``power``, ``logistic``). They follow NumPy's typing (float32 in, float32 out; integers give
float64). The registry compiles every reference in a namespace that holds ``HELPERS``.
"""

from __future__ import annotations

import math

import numpy as np

from .dtypes import FLOAT32


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


def floor_divide(x, y):
    """np.floor_divide, float32 through float64, as prelude.h computes it: NumPy's float32 loop is off by
    one for quotients past 2**22 (its a - fmod(a, b) rounds), and the reference must be the kernel's value
    where NumPy answers for it (one element)."""
    result = np.floor_divide(x, y)
    if np.asarray(result).dtype != FLOAT32:
        return result
    wide = [np.asarray(v).astype(FLOAT32).astype(np.float64) for v in (x, y)]   # operands as the kernel converts them
    with np.errstate(all="ignore"):
        return np.asarray(np.floor_divide(*wide)).astype(FLOAT32)


def fma(x, y, z):
    """x*y+z rounded once, for floats: the inputs converted to the result dtype (as the kernel does), then
    float32 through float64 (where a float32 product is exact), float64 through long double."""
    dtype = np.result_type(x, y, z)   # Python scalars weakly typed, as everywhere
    if dtype.kind != "f":
        raise TypeError(f"fma is defined for floating-point inputs, not {dtype.name}")
    wide = np.float64 if dtype == FLOAT32 else np.longdouble
    x, y, z = (np.asarray(v).astype(dtype).astype(wide) for v in (x, y, z))
    return (x * y + z).astype(dtype)


HELPERS = {"erf": erf, "erfc": erfc, "logistic": logistic, "power": power, "fma": fma, "floor_divide": floor_divide}
