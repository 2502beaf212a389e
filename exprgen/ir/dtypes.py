"""The dtype set, NumPy 2 promotion, and the C names of each dtype.

Promotion is NumPy's own: an op's result dtype is what its NumPy reference returns for empty inputs of
the same dtypes (see ``opdefs.OpDef.result_dtype``). That keeps exprgen's typing identical to NumPy's,
including weakly typed Python scalars, without a second copy of NumPy's tables here. This module only
says which dtypes exprgen supports and how C spells them.

Every real dtype of the array API standard is supported: bool, the signed and unsigned integers of 8 to
64 bits, float32 and float64. ``CORE`` are the five that the standard kernel set is built for (the
others compile on first use). Complex dtypes are refused with a TypeError that says so.
"""

from __future__ import annotations

import numpy as np

BOOL = np.dtype(np.bool_)
INT8, INT16, INT32, INT64 = (np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64))
UINT8, UINT16, UINT32, UINT64 = (np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64))
FLOAT32 = np.dtype(np.float32)
FLOAT64 = np.dtype(np.float64)

SIGNED = (INT8, INT16, INT32, INT64)
UNSIGNED = (UINT8, UINT16, UINT32, UINT64)
SUPPORTED = (BOOL, *SIGNED, *UNSIGNED, FLOAT32, FLOAT64)
CORE = (BOOL, INT32, INT64, FLOAT32, FLOAT64)
FLOATS = frozenset({FLOAT32, FLOAT64})
INTEGERS = frozenset(SIGNED + UNSIGNED)

# prelude.h declares the fixed-width names (no system headers), for CUDA too.
C_TYPE = {BOOL: "bool", FLOAT32: "float", FLOAT64: "double",
          **{d: f"{'u' if d.kind == 'u' else ''}int{8 * d.itemsize}_t" for d in SIGNED + UNSIGNED}}

# A Python scalar is weakly typed: it takes the dtype of the array it meets. These are the dtypes NumPy
# gives such a scalar when nothing else decides, and the probes used to ask NumPy what it would do.
WEAK_DEFAULT = {bool: BOOL, int: INT64, float: FLOAT64}
WEAK_PROBE = {bool: True, int: 1, float: 1.0}


def as_dtype(obj) -> np.dtype:
    """The supported dtype named by ``obj``; TypeError naming it otherwise."""
    try:
        dtype = np.dtype(obj)
    except TypeError as exc:
        raise TypeError(f"exprgen does not understand dtype {obj!r}") from exc
    check_supported(dtype)
    return dtype


def check_supported(dtype: np.dtype, what: str = "") -> np.dtype:
    if dtype not in SUPPORTED:
        names = ", ".join(d.name for d in SUPPORTED)
        kind = " (complex dtypes are not supported yet)" if dtype.kind == "c" else ""
        where = f" from {what}" if what else ""
        raise TypeError(f"unsupported dtype {dtype.name}{where}{kind}; exprgen supports {names}")
    return dtype


def python_scalar_kind(value) -> type | None:
    """bool, int or float for a Python scalar (weakly typed); None for anything else."""
    for kind in (bool, int, float):
        if type(value) is kind:
            return kind
    return None
