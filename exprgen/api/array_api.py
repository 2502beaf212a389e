"""The array API standard's namespace pieces that are not ops: dtype helpers, constants, ``astype`` and
``__array_namespace_info__``.

exprgen follows the 2024.12 revision for every real dtype. Dtype objects are NumPy's (``ex.int8 ==
np.dtype("int8")``; the standard asks only that dtypes compare with ==). Promotion is NumPy 2's: the
standard's table where the standard speaks, NumPy's answer where it leaves a pair unspecified (uint64
with int64 gives float64, an integer with a float the float's kind), Python scalars weakly typed.
Complex dtypes are refused with a TypeError saying they are not supported yet, wherever they appear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..ir import dtypes
from ..backends import cuda_host
from .array import CPU, HOST_DEVICE, Array, normalize_device
from .array import standard_astype as astype  # noqa: F401 - the namespace's astype

__array_api_version__ = "2024.12"

e, inf, nan, pi = math.e, math.inf, math.nan, math.pi
newaxis = None

# isdtype's kinds, as NumPy dtype kind letters.
KINDS = {"bool": "b", "signed integer": "i", "unsigned integer": "u", "integral": "iu", "real floating": "f",
         "complex floating": "c", "numeric": "iufc"}


def _dtype_of(obj) -> np.dtype:
    """The supported dtype of an array (exprgen or NumPy) or named by a dtype object."""
    if isinstance(obj, complex):
        dtypes.check_supported(np.dtype(np.complex128), f"the Python complex {obj!r}")
    dtype = obj.dtype if isinstance(obj, (Array, np.ndarray)) else obj
    return dtypes.as_dtype(dtype)


@dataclass(frozen=True)
class finfo_object:  # noqa: N801 - the standard's name
    bits: int
    eps: float
    max: float
    min: float
    smallest_normal: float
    dtype: np.dtype


@dataclass(frozen=True)
class iinfo_object:  # noqa: N801 - the standard's name
    bits: int
    max: int
    min: int
    dtype: np.dtype


def finfo(type, /) -> finfo_object:  # noqa: A002 - the standard's parameter name
    """Machine limits of a floating-point dtype (or of an array's dtype), as Python numbers."""
    dtype = _dtype_of(type)
    if dtype.kind != "f":
        raise TypeError(f"finfo needs a floating-point dtype, not {dtype.name} (iinfo describes integers)")
    info = np.finfo(dtype)
    return finfo_object(info.bits, float(info.eps), float(info.max), float(info.min), float(info.smallest_normal),
                        dtype)


def iinfo(type, /) -> iinfo_object:  # noqa: A002 - the standard's parameter name
    """Limits of an integer dtype (or of an array's dtype)."""
    dtype = _dtype_of(type)
    if dtype.kind not in "iu":
        raise TypeError(f"iinfo needs an integer dtype, not {dtype.name} (finfo describes floats)")
    info = np.iinfo(dtype)
    return iinfo_object(info.bits, int(info.max), int(info.min), dtype)


def isdtype(dtype, kind) -> bool:
    """Whether ``dtype`` is of ``kind``: a kind name ("integral", "real floating", ...), a dtype, or a
    tuple of them (any matches)."""
    if not isinstance(dtype, np.dtype):
        raise TypeError(f"isdtype needs a dtype object such as ex.int8, not {dtype!r}")
    if isinstance(kind, tuple):
        return any(isdtype(dtype, k) for k in kind)
    if isinstance(kind, np.dtype):
        return dtype == kind
    if isinstance(kind, str):
        if kind not in KINDS:
            raise ValueError(f"unknown dtype kind {kind!r}: one of {', '.join(map(repr, KINDS))}")
        return dtype.kind in KINDS[kind]
    raise TypeError(f"kind must be a kind name, a dtype or a tuple of them, not {kind!r}")


def result_type(*arrays_and_dtypes) -> np.dtype:
    """The dtype an op over these arrays, dtypes and Python scalars (weakly typed) gives."""
    items = [a if dtypes.python_scalar_kind(a) is not None else _dtype_of(a) for a in arrays_and_dtypes]
    if all(not isinstance(item, np.dtype) for item in items):
        raise TypeError("result_type needs at least one array or dtype (Python scalars alone have no dtype)")
    return dtypes.check_supported(np.result_type(*items), "result_type")


def can_cast(from_, to, /) -> bool:
    """Whether ``from_`` (a dtype or an array) converts to dtype ``to`` without losing values (NumPy's
    "safe" casting)."""
    return bool(np.can_cast(_dtype_of(from_), dtypes.as_dtype(to), casting="safe"))


class Info:
    """What ``__array_namespace_info__()`` tells: capabilities, devices and dtypes of this namespace."""

    def capabilities(self) -> dict:
        # Every buffer is a NumPy array, so NumPy's rank limit (64 in NumPy 2) is exprgen's.
        core = getattr(np, "_core", None) or np.core
        return {"boolean indexing": True, "data-dependent shapes": True, "max dimensions": core.multiarray.MAXDIMS}

    def default_device(self) -> str:
        return CPU

    def devices(self) -> list[str]:
        # CUDA kernels are rendered and compiled, but arrays cannot live on a GPU yet (array.py); under CUDA
        # host execution they live on its one device.
        return [CPU, HOST_DEVICE] if cuda_host.enabled() else [CPU]

    def default_dtypes(self, *, device=None) -> dict:
        """The standard's default dtypes, but "complex floating": no complex dtype is supported, and naming
        one that asarray refuses would fail later, far from here (the missing key says so where it is read)."""
        self._check_device(device)
        return {"real floating": dtypes.FLOAT64, "integral": dtypes.INT64, "indexing": dtypes.INT64}

    def dtypes(self, *, device=None, kind=None) -> dict:
        """The supported dtypes by name, those of ``kind`` (as ``isdtype``'s) if given."""
        self._check_device(device)
        return {d.name: d for d in dtypes.SUPPORTED if kind is None or isdtype(d, kind)}

    def _check_device(self, device) -> None:
        if device is not None and normalize_device(device) not in self.devices():
            raise ValueError(f"exprgen arrays live on {' and '.join(map(repr, self.devices()))} here, not {device!r}")


def __array_namespace_info__() -> Info:
    return Info()
