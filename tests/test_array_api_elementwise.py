"""exprgen as an array API namespace (2024.12): dtypes, promotion, dtype helpers, namespace info, and
the elementwise functions' special cases on the narrower and unsigned integers.

Promotion is checked twice: against the standard's own table (written out below, where the standard
specifies a pair) and against NumPy 2 for every pair (exprgen follows NumPy where the standard does not
speak). Types are known before anything runs, so those checks compile nothing. Values of every op at
every new dtype are tests/test_ops.py's; here are the cases whose answer is a rule to state (shifts past
the width, MIN // -1, exact uint64/int64 comparisons), each batch one evaluation.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import exprgen as ex
from exprgen.ir import dtypes
from exprgen.testing import assert_matches_reference

REAL = dtypes.SUPPORTED
NAMES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"]


def standard_promotion(a: np.dtype, b: np.dtype) -> np.dtype | None:
    """The standard's promotion table; None where it leaves the pair to the implementation."""
    if a.kind == b.kind:
        return max(a, b, key=lambda d: d.itemsize)
    if {a.kind, b.kind} == {"i", "u"}:
        signed, unsigned = (a, b) if a.kind == "i" else (b, a)
        if signed.itemsize > unsigned.itemsize:
            return signed
        return np.dtype(f"int{16 * unsigned.itemsize}") if unsigned.itemsize < 8 else None
    return None


def test_namespace_exports_the_dtypes_and_constants():
    assert [getattr(ex, name) for name in NAMES] == list(REAL)
    assert ex.__array_api_version__ == "2024.12"
    assert (ex.e, ex.pi) == (math.e, math.pi) and ex.inf == math.inf and math.isnan(ex.nan) and ex.newaxis is None
    for name in ("bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_invert", "bitwise_left_shift",
                 "bitwise_right_shift", "conj", "real", "imag", "logaddexp", "nextafter", "clip", "astype"):
        assert callable(getattr(ex, name)), name


@pytest.mark.parametrize("a", REAL, ids=str)
def test_promotion_of_every_pair(a):
    """Result dtype of a binary op for every pair: the standard's table where it speaks, NumPy 2's always."""
    for b in REAL:
        got = ex.add(np.ones(2, a), np.ones(2, b)).dtype
        assert got == np.result_type(a, b) == ex.result_type(a, b) == ex.result_type(ex.asarray(np.ones(1, a)), b)
        if standard_promotion(a, b) is not None:
            assert got == standard_promotion(a, b), (a, b)
        # A comparison meets in the same dtype and answers bool.
        assert ex.less(np.ones(2, a), np.ones(2, b)).dtype == dtypes.BOOL


@pytest.mark.parametrize("dtype", REAL, ids=str)
def test_python_scalars_are_weak(dtype):
    """A Python scalar takes the array's dtype when its kind allows (NumPy 2 / the standard)."""
    x = np.ones(2, dtype)
    for scalar in (True, 3, 2.5):
        want = np.multiply(x, scalar).dtype
        assert ex.multiply(x, scalar).dtype == want == ex.result_type(x, scalar), (dtype, scalar)
        assert ex.multiply(scalar, x).dtype == want
    assert ex.result_type(dtype, 1) == np.result_type(dtype, 1)


@pytest.mark.parametrize("dtype, value", [(dtypes.UINT8, 256), (dtypes.UINT8, -1), (dtypes.INT8, 128),
                                          (dtypes.INT16, -40000), (dtypes.UINT64, -1), (dtypes.UINT32, 2**32)])
def test_python_int_out_of_range_raises_overflow_error(dtype, value):
    x = np.ones(2, dtype)
    with pytest.raises(OverflowError):
        np.add(x, value)   # NumPy 2 itself
    with pytest.raises(OverflowError):
        ex.add(x, value)
    with pytest.raises(OverflowError):
        ex.bitwise_and(value, x)


def test_finfo_iinfo():
    for dtype in (dtypes.FLOAT32, dtypes.FLOAT64):
        info, want = ex.finfo(dtype), np.finfo(dtype)
        assert (info.bits, info.eps, info.max, info.min, info.smallest_normal, info.dtype) == \
            (want.bits, float(want.eps), float(want.max), float(want.min), float(want.smallest_normal), dtype)
        assert isinstance(info.max, float)
        assert ex.finfo(ex.asarray(np.ones(2, dtype))) == info
    for dtype in dtypes.SIGNED + dtypes.UNSIGNED:
        info, want = ex.iinfo(dtype), np.iinfo(dtype)
        assert (info.bits, info.max, info.min, info.dtype) == (want.bits, want.max, want.min, dtype)
        assert ex.iinfo(np.zeros(1, dtype)) == info
    with pytest.raises(TypeError, match="iinfo"):
        ex.finfo(ex.int8)
    with pytest.raises(TypeError, match="finfo"):
        ex.iinfo(ex.float32)
    with pytest.raises(TypeError, match="complex"):
        ex.finfo(np.complex64)


def test_isdtype():
    kinds = {"bool": ["bool"], "signed integer": ["int8", "int16", "int32", "int64"],
             "unsigned integer": ["uint8", "uint16", "uint32", "uint64"], "real floating": ["float32", "float64"]}
    kinds["integral"] = kinds["signed integer"] + kinds["unsigned integer"]
    kinds["numeric"] = kinds["integral"] + kinds["real floating"]
    for dtype, (kind, members) in itertools.product(REAL, kinds.items()):
        assert ex.isdtype(dtype, kind) == (dtype.name in members), (dtype, kind)
    assert ex.isdtype(ex.int8, ("bool", ex.int8)) and not ex.isdtype(ex.uint8, ("bool", ex.int8, "real floating"))
    assert ex.isdtype(ex.float64, ex.float64) and not ex.isdtype(ex.float64, "complex floating")
    assert ex.isdtype(np.dtype(np.complex128), "complex floating")
    with pytest.raises(ValueError, match="unknown dtype kind"):
        ex.isdtype(ex.int8, "integer")
    with pytest.raises(TypeError):
        ex.isdtype("int8", "integral")


def test_can_cast_and_result_type():
    for a, b in itertools.product(REAL, REAL):
        assert ex.can_cast(a, b) == np.can_cast(a, b, casting="safe"), (a, b)
    assert ex.can_cast(ex.asarray(np.ones(1, np.uint8)), ex.int16) and not ex.can_cast(ex.int64, ex.uint64)
    assert ex.result_type(ex.int8, ex.uint8, ex.float32) == np.float32
    assert ex.result_type(ex.uint64, ex.int64) == np.float64      # NumPy's answer; the standard leaves it open
    assert ex.result_type(ex.uint8, 1, 2.0) == np.float64
    with pytest.raises(TypeError, match="at least one array or dtype"):
        ex.result_type(1, 2.0)


def test_namespace_info():
    info = ex.__array_namespace_info__()
    assert info.capabilities() == {"boolean indexing": True, "data-dependent shapes": True, "max dimensions": 64}
    assert info.default_device() == "cpu" == ex.asarray(np.ones(1)).device
    assert info.devices() == ["cpu"]
    assert info.default_dtypes() == {"real floating": ex.float64, "integral": ex.int64, "indexing": ex.int64}
    assert info.default_dtypes(device="cpu") == info.default_dtypes()
    assert list(info.dtypes()) == NAMES and info.dtypes()["uint16"] == ex.uint16
    assert list(info.dtypes(kind="unsigned integer")) == ["uint8", "uint16", "uint32", "uint64"]
    assert list(info.dtypes(kind=("bool", "real floating"))) == ["bool", "float32", "float64"]
    assert info.dtypes(kind="complex floating") == {}
    with pytest.raises(ValueError):
        info.dtypes(device="cuda")
    # Arrays of NumPy's maximum rank go through a kernel.
    x = np.arange(2.0).reshape((1,) * 63 + (2,))
    np.testing.assert_array_equal((ex.asarray(x) + 1).numpy(), x + 1)


@pytest.mark.parametrize("make", [
    lambda: ex.asarray(np.zeros(2, np.complex128)),
    lambda: ex.astype(np.zeros(2), np.complex64),
    lambda: ex.asarray(np.zeros(2)) * 1j,
    lambda: ex.add(1j, np.zeros(2)),
    lambda: ex.result_type(ex.float32, np.complex64),
    lambda: ex.result_type(ex.float32, 1j),
], ids=["asarray", "astype", "scalar operand", "scalar first", "result_type dtype", "result_type scalar"])
def test_complex_dtypes_are_refused(make):
    with pytest.raises(TypeError, match="complex dtypes are not supported yet"):
        make()


def test_astype():
    x = ex.asarray(np.array([1.5, -2.5, 300.0]))
    assert ex.astype(x, ex.float64, copy=False) is x
    copied = ex.astype(x, ex.float64)
    assert copied is not x and copied.numpy() is not x.numpy()
    np.testing.assert_array_equal(copied.numpy(), x.numpy())
    assert ex.astype(x, ex.int16, device="cpu").dtype == ex.int16
    assert x.astype(ex.float64, copy=False) is x   # the method takes the standard's keywords too
    assert x.astype(ex.float64) is not x and x.astype("int16", device="cpu").dtype == ex.int16
    with pytest.raises((ValueError, RuntimeError, NotImplementedError)):
        ex.astype(x, ex.int16, device="cuda")


def test_clip_keywords():
    x = ex.asarray(np.array([-3, 0, 7], np.int8))
    assert ex.clip(x) is x
    assert ex.clip(x, min=-1).dtype == ex.int8
    low, high, both, positional = ex.eval(ex.clip(x, min=-1), ex.clip(x, max=2), ex.clip(x, min=-1, max=2),
                                          ex.clip(x, -1, 2))
    np.testing.assert_array_equal(low, [-1, 0, 7])
    np.testing.assert_array_equal(high, [-3, 0, 2])
    np.testing.assert_array_equal(both, [-1, 0, 2])
    np.testing.assert_array_equal(positional, both)


# -- values whose answer is a rule ----------------------------------------------------------------
def _int(dtype, *values):
    return np.array(values, dtype)


def rule_cases():
    """(expression, expected values): each checked against NumPy too, all evaluated at once."""
    i8, u8, u16, u32, i64, u64 = (dtypes.INT8, dtypes.UINT8, dtypes.UINT16, dtypes.UINT32, dtypes.INT64,
                                  dtypes.UINT64)
    f32, f64 = dtypes.FLOAT32, dtypes.FLOAT64
    counts = _int(i8, 0, 7, 8, 100, -1)
    return [
        # Shifts past the width: 0 to the left, the sign to the right (C++ leaves both undefined).
        (ex.bitwise_left_shift(_int(i8, 1, 1, 1, 1, 1), counts), [1, -128, 0, 0, 0]),
        (ex.bitwise_right_shift(_int(i8, -100, -100, -100, -100, 100), counts), [-100, -1, -1, -1, 0]),
        (ex.bitwise_left_shift(_int(u32, 3, 3, 3, 3, 3), _int(u32, 0, 30, 31, 32, 99)),
         [3, 2**31 + 2**30, 2**31, 0, 0]),
        (ex.bitwise_right_shift(_int(u64, 2**63, 2**63, 2**63, 1, 1), _int(u64, 63, 64, 200, 0, 1)), [1, 0, 0, 1, 0]),
        (ex.bitwise_invert(np.array([True, False, True, False, True])), [False, True, False, True, False]),
        (ex.bitwise_invert(_int(u8, 0, 1, 255, 128, 7)), [255, 254, 0, 127, 248]),
        (ex.bitwise_xor(_int(i8, -1, 5, 0, -128, 127), _int(u8, 255, 3, 0, 128, 127)), [-256, 6, 0, -256, 0]),
        # Integer division as NumPy: MIN // -1 wraps, division by zero gives 0, floor towards -inf.
        (ex.floor_divide(_int(i8, -128, 7, -7, 5, 0), _int(i8, -1, 0, 2, -2, 0)), [-128, 0, -4, -3, 0]),
        (ex.remainder(_int(i8, -128, 7, -7, 5, 0), _int(i8, -1, 0, 2, -2, 0)), [0, 0, 1, -1, 0]),
        (ex.floor_divide(_int(u16, 65535, 7, 0, 9, 1), _int(u16, 2, 0, 3, 65535, 1)), [32767, 0, 0, 0, 1]),
        # Wrapping arithmetic, and abs/negative of MIN.
        (ex.add(_int(u8, 250, 255, 0, 1, 128), _int(u8, 10, 1, 0, 255, 128)), [4, 0, 0, 0, 0]),
        (ex.abs(_int(i8, -128, -127, 0, 5, -5)), [-128, 127, 0, 5, 5]),
        (ex.negative(_int(u8, 1, 0, 255, 128, 2)), [255, 0, 1, 128, 254]),
        (ex.multiply(_int(i8, 64, -128, 16, -1, 11), _int(i8, 2, -1, 16, -128, 12)), [-128, -128, 0, -128, -124]),
        (ex.sign(_int(u32, 0, 1, 2**32 - 1, 5, 0)), [0, 1, 1, 1, 0]),
        (ex.reciprocal(_int(u8, 0, 1, 2, 255, 1)), [0, 1, 0, 0, 1]),
        (ex.power(_int(u8, 2, 3, 0, 16, 255), _int(u8, 7, 5, 0, 2, 2)), [128, 243, 1, 0, 1]),
        # int64 and uint64 compare exactly, although their common dtype is float64.
        (ex.equal(_int(u64, 2**63, 2**53 + 1, 0, 2**64 - 1, 5), _int(i64, 2**63 - 1, 2**53, 0, -1, 5)),
         [False, False, True, False, True]),
        (ex.less(_int(i64, -1, 2**63 - 1, 2**53, -2**63, 7), _int(u64, 0, 2**63, 2**53 + 1, 0, 7)),
         [True, True, True, True, False]),
        (ex.greater_equal(_int(u64, 0, 2**63, 2**53 + 1, 0, 7), _int(i64, -1, 2**63 - 1, 2**53, -2**63, 7)),
         [True, True, True, True, True]),
        # ceil/floor/trunc/round keep integers as they are; real/conj are the value, imag a zero of its dtype.
        (ex.floor(_int(u64, 2**64 - 1, 0, 1, 2, 3)), [2**64 - 1, 0, 1, 2, 3]),
        (ex.round(_int(i8, -128, 127, 0, 1, -1)), [-128, 127, 0, 1, -1]),
        (ex.imag(np.array([np.nan, -0.0, np.inf, 1.5, -2.0], f32)), [0.0, 0.0, 0.0, 0.0, 0.0]),
        (ex.real(np.array([np.nan, -0.0, np.inf, 1.5, -2.0], f64)), [np.nan, -0.0, np.inf, 1.5, -2.0]),
        (ex.conj(_int(u16, 0, 1, 2, 3, 65535)), [0, 1, 2, 3, 65535]),
        # logaddexp: equal infinities, NaN, and no overflow for large arguments; nextafter across zero.
        (ex.logaddexp(np.array([np.inf, -np.inf, np.nan, 1000.0, 0.0], f64),
                      np.array([np.inf, -np.inf, 0.0, 1000.0, 0.0])),
         [np.inf, -np.inf, np.nan, 1000.0 + math.log(2), math.log(2)]),
        (ex.nextafter(np.array([0.0, -0.0, 1.0, np.inf, np.nan], f32), np.array([1.0, -1.0, 2.0, 0.0, 0.0], f32)),
         np.array([1e-45, -1e-45, 1.0000001, np.finfo(f32).max, np.nan], f32)),
    ]


def test_rules_of_integer_and_special_values():
    cases = rule_cases()
    values = assert_matches_reference(*(expr for expr, _ in cases))   # NumPy agrees, in one evaluation
    for (expr, expected), value in zip(cases, values):
        want = np.array(expected, value.dtype)
        np.testing.assert_array_equal(value, want, err_msg=repr(expr._node))
        if value.dtype.kind == "f":   # -0.0 is not 0.0 here
            np.testing.assert_array_equal(np.signbit(value), np.signbit(want), err_msg=repr(expr._node))


def test_reductions_of_new_dtypes():
    """Sums and products accumulate wide as NumPy does (int8 sums to int64, uint8 to uint64); max, min
    and argmax start from each dtype's own extremes."""
    rng = np.random.default_rng(0)
    results = []
    for dtype in dtypes.SIGNED[:2] + dtypes.UNSIGNED:
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, (3, 5), dtype=dtype, endpoint=True)
        x[0, :2] = info.min, info.max
        a = ex.asarray(x)
        results += [ex.sum(a, axis=1), ex.prod(a, axis=1), ex.max(a, axis=1), ex.min(a, axis=1),
                    ex.argmax(a, axis=1), ex.argmin(a, axis=1), ex.mean(a, axis=1)]
    assert_matches_reference(*results)
