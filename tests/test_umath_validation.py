"""exprgen's transcendental functions against NumPy's ULP validation set.

The set (umath-validation-set-<ufunc>.csv: ``dtype,input_hex,output_hex,ulperrortol``) holds hard
inputs, mostly near the edges of each function's range, with outputs computed in higher precision and
correctly rounded. Its tolerance is the one NumPy holds its own implementations to (SVML-derived: 1
ULP for most float64 functions), and exprgen is held to exactly that: float32 uses glibc's libmvec
vector functions (within the file's bounds) or prelude.h's own where a libmvec variant is not, float64
glibc's scalar ones (libmvec's double variants were up to 2 ULP off on these rows).

libmvec has one variant per vector width, so the bounds must hold for every ISA level a kernel can be
built for, not only this CPU's best: each level this CPU runs is checked too, through the deployment
path (record the set's kernels, prebuild them for the level, rerun this module in a process that can
only load that level's binaries). AVX2's float cbrt was 3 ULP off where AVX-512's met the bound.

The set is read from the installed NumPy, which ships it with its own tests; without it the tests fail.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import exprgen as ex
from exprgen.ir import opdefs
from exprgen.backends import cpu
from exprgen.testing import assert_close, defines_signed_zero

# NumPy's wheel ships the set with its own tests: every clone with the test extra installed has it.
DATA = Path(np.__file__).resolve().parent / "_core" / "tests" / "data"
PREFIX = "umath-validation-set-"
DTYPES = {"np.float32": np.dtype(np.float32), "np.float64": np.dtype(np.float64)}

FUNCTIONS = sorted(name for name in (p.stem[len(PREFIX):] for p in DATA.glob(f"{PREFIX}*.csv"))
                   if name in opdefs.registry())


def test_numpy_s_validation_set_is_there_to_check_against():
    """A missing set must fail, not skip: a skipped accuracy check passes on every machine."""
    assert len(FUNCTIONS) >= 20, f"NumPy's ULP validation set ({PREFIX}*.csv) is not at {DATA}"


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
    if dtype == np.float32:
        # The op table's float32 bound measures the same thing (distance from the correctly rounded
        # result): it is the contract held here, and may not be looser than NumPy's.
        table = opdefs.get(name).tolerance_ulp(dtype)
        assert table <= ulp, f"ops/ allows {name}(float32) {table} ULP, NumPy's set {ulp}"
        ulp = table
    assert_close(results(dtype)[name], expected, ulp=ulp, signed_zero=defines_signed_zero(ex.apply(name, x)._node),
                 what=f"{name}({dtype}) on NumPy's validation set", inputs=(x,))


# Every level below the native target this CPU can execute (empty off x86-64).
ISA_LEVELS = [isa for isa in cpu.supported_isas() if isa != cpu.NATIVE]
THIS_MODULE = str(Path(__file__).resolve())
ONLY_NATIVE = ["-k", "within_numpy_validation_tolerance and not every_isa_level"]


def child(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("EXPRGEN_", "PYTEST_"))}
    environ.update({"EXPRGEN_CACHE_DIR": os.environ["EXPRGEN_CACHE_DIR"], **env})
    return subprocess.run([sys.executable, *args], cwd=Path(__file__).resolve().parents[1], env=environ,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def validation_manifest(tmp_path_factory) -> Path:
    """The sources of this module's kernels, recorded from a run of its native tests."""
    manifest = tmp_path_factory.mktemp("validation") / "kernels.json"
    run = child("-m", "pytest", "-q", "-p", "no:cacheprovider", THIS_MODULE, *ONLY_NATIVE,
                EXPRGEN_RECORD=str(manifest))
    assert run.returncode == 0 and manifest.is_file(), run.stdout + run.stderr
    return manifest


@pytest.mark.parametrize("isa", ISA_LEVELS)
def test_within_numpy_validation_tolerance_at_every_isa_level(isa, validation_manifest, tmp_path):
    prebuilt = tmp_path / "prebuilt"
    built = child("-m", "exprgen.tools.cli", "prebuild", "--manifest", str(validation_manifest), "--target",
                  f"cpu:{isa}", "--into", str(prebuilt), "--no-progress")
    assert built.returncode == 0, built.stdout + built.stderr
    # A fresh cache and no compiling: every kernel this run launches is the level's prebuilt binary.
    run = child("-m", "pytest", "-q", "-p", "no:cacheprovider", THIS_MODULE, *ONLY_NATIVE,
                EXPRGEN_CACHE_DIR=str(tmp_path / "cache"), EXPRGEN_PREBUILT_DIR=str(prebuilt),
                EXPRGEN_NO_COMPILE="1")
    assert run.returncode == 0, f"at {isa}:\n{run.stdout[-6000:]}{run.stderr[-2000:]}"
