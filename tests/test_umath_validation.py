"""exprgen's transcendental functions against NumPy's ULP validation set.

The set (umath-validation-set-<ufunc>.csv: ``dtype,input_hex,output_hex,ulperrortol``) holds hard
inputs, mostly near the edges of each function's range, with outputs computed in higher precision and
correctly rounded. Its tolerance is the one NumPy holds its own implementations to (SVML-derived: 1
ULP for most float64 functions), and exprgen is held to exactly that: float32 uses glibc's libmvec
vector functions (within the file's bounds), float64 glibc's scalar ones (libmvec's double variants
were up to 2 ULP off on these rows).

The set lives in the shared data directory beside the repository, not in it: without it the tests skip.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

import exprgen as ex
from exprgen import opdefs
from exprgen.testing import assert_close, defines_signed_zero

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "umath-validation"
PREFIX = "umath-validation-set-"
DTYPES = {"np.float32": np.dtype(np.float32), "np.float64": np.dtype(np.float64)}

if not DATA.is_dir():
    pytest.skip(f"NumPy's umath validation set is not at {DATA} (the shared data directory beside the "
                f"repository); nothing to check against", allow_module_level=True)

FUNCTIONS = sorted(name for name in (p.stem[len(PREFIX):] for p in DATA.glob(f"{PREFIX}*.csv"))
                   if name in opdefs.registry())


@functools.cache
def rows(name: str) -> dict[np.dtype, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(inputs, expected outputs, tolerances) per dtype, the floats rebuilt from their bit patterns."""
    found: dict[np.dtype, list] = {}
    for line in (DATA / f"{PREFIX}{name}.csv").read_text().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 4 or fields[0] not in DTYPES:   # comments, the header, blank lines
            continue
        found.setdefault(DTYPES[fields[0]], []).append((int(fields[1], 16), int(fields[2], 16), int(fields[3])))
    result = {}
    for dtype, entries in found.items():
        bits = np.array(entries, dtype=np.uint64)
        view = np.dtype(f"u{dtype.itemsize}")
        result[dtype] = (bits[:, 0].astype(view).view(dtype), bits[:, 1].astype(view).view(dtype), bits[:, 2])
    return result


@functools.cache
def results(dtype: np.dtype) -> dict[str, np.ndarray]:
    """Every function's outputs for its rows of ``dtype``, computed together: one kernel for all."""
    inputs = {name: rows(name)[dtype][0] for name in FUNCTIONS if dtype in rows(name)}
    # One kernel needs one shape: pad every input to the longest with 1.0 (in every domain but log's
    # edge) and cut the padding off the results.
    length = max(map(len, inputs.values()))
    arrays = [ex.apply(name, np.concatenate([x, np.ones(length - len(x), dtype)])) for name, x in inputs.items()]
    values = ex.eval(*arrays)
    return {name: value[: len(x)] for (name, x), value in zip(inputs.items(), values)}


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=str)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_within_numpy_validation_tolerance(name, dtype):
    if dtype not in rows(name):
        pytest.skip(f"the validation set has no {dtype} rows for {name}")
    x, expected, file_tolerance = rows(name)[dtype]
    ulp = int(file_tolerance.max())
    assert_close(results(dtype)[name], expected, ulp=ulp, signed_zero=defines_signed_zero(ex.apply(name, x)._node),
                 what=f"{name}({dtype}) on NumPy's validation set", inputs=(x,))
