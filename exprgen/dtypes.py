"""The dtype set, NumPy 2 promotion, and the C names of each dtype.

Promotion is NumPy's own: an op's result dtype is what its NumPy reference returns for empty inputs of
the same dtypes (see ``opdefs.OpDef.result_dtype``). That keeps exprgen's typing identical to NumPy's,
including weakly typed Python scalars, without a second copy of NumPy's tables here. This module only
says which dtypes exprgen supports and how C spells them.
"""

from __future__ import annotations

import numpy as np

BOOL = np.dtype(np.bool_)
INT32 = np.dtype(np.int32)
INT64 = np.dtype(np.int64)
FLOAT32 = np.dtype(np.float32)
FLOAT64 = np.dtype(np.float64)

SUPPORTED = (BOOL, INT32, INT64, FLOAT32, FLOAT64)
FLOATS = frozenset({FLOAT32, FLOAT64})
INTEGERS = frozenset({INT32, INT64})

C_TYPE = {BOOL: "bool", INT32: "int32_t", INT64: "int64_t", FLOAT32: "float", FLOAT64: "double"}

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
