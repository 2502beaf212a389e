"""Conformance with the array API standard (2024.12, real dtypes), as its own test suite would check it.

The official array-api-tests suite is not installable here; this is a compact stand-in built on
hypothesis's array API strategies (``make_strategies_namespace``, which draws exprgen arrays through
exprgen's own namespace). Each example checks many functions at once, evaluated in one ``ex.eval``, so
that a property costs a few kernels per example rather than one per function:

- signatures: every function of the standard and the array object's methods, by ``inspect.signature``
  (positional-only and keyword-only parameters, keyword names, defaults), with array-api-tests' rule: a
  positional-only parameter may also be accepted by keyword, and extra parameters need defaults;
- elementwise functions: result dtype and shape as NumPy 2 (a conforming namespace for real dtypes:
  the standard's promotion table where it speaks, NumPy's answer where it leaves a pair unspecified),
  values within the tolerance table of ``exprgen.testing`` (the truth of a float32 op is the op in
  float64, rounded once; a float64 result may be each library's bound away from the truth, so twice
  it apart), special values (±0, ±inf, NaN, extremes) drawn often, signs of zeros compared, inputs
  flipped or transposed too. Elements whose result the standard leaves unspecified (integer division by
  zero, negative shifts, integer powers with negative exponents) are not compared. Python scalars on
  either side, of the array's kind or another (a float with an int array): NumPy's answer;
- statistical, searching, sorting, set and linear algebra functions: axes (None, negative, tuples),
  keepdims, empty and 0-d arrays; values that make every result exact, compared exactly;
- edge cases by hand, each a rule of the standard or NumPy's answer where the standard leaves it open.

Where NumPy and the standard differ, the standard wins: ``var`` and ``std`` with ``N - correction <= 0``
are NaN (NumPy: inf). Where the standard allows NumPy's answer, NumPy's: ``floor_divide`` of an infinity
by a finite number is NaN and ``-1.0 // inf`` is -1.0 (the standard's notes allow Python's behaviour).
``.T`` of an array that is not 2-D reverses its axes, as NumPy's (the standard says it should raise).
"""

from __future__ import annotations

import inspect
import math
import operator
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import exprgen as ex
from exprgen.testing import assert_close, assert_matches_reference, check_values, tolerance

with warnings.catch_warnings():   # hypothesis warns that exprgen's version string is newer than it knows
    warnings.simplefilter("ignore")
    from hypothesis.extra.array_api import make_strategies_namespace

    xps = make_strategies_namespace(ex, api_version="2023.12")

# Few examples, each checking many functions in one evaluation: every distinct kernel compiles once.
CONFORMANCE = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                       suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                              HealthCheck.filter_too_much])
REAL_DTYPES = st.one_of(xps.boolean_dtypes(), xps.integer_dtypes(), xps.unsigned_integer_dtypes(),
                        xps.floating_dtypes())

# -- signatures ------------------------------------------------------------------------------------------
# The standard's signatures (2024.12), annotations left out. Elementwise functions are listed by arity.
UNARY = ["abs", "acos", "acosh", "asin", "asinh", "atan", "atanh", "bitwise_invert", "ceil", "conj", "cos", "cosh",
         "exp", "expm1", "floor", "imag", "isfinite", "isinf", "isnan", "log", "log1p", "log2", "log10",
         "logical_not", "negative", "positive", "real", "reciprocal", "round", "sign", "signbit", "sin", "sinh",
         "sqrt", "square", "tan", "tanh", "trunc"]
BINARY = ["add", "atan2", "bitwise_and", "bitwise_left_shift", "bitwise_or", "bitwise_right_shift", "bitwise_xor",
          "copysign", "divide", "equal", "floor_divide", "greater", "greater_equal", "hypot", "less", "less_equal",
          "logaddexp", "logical_and", "logical_or", "logical_xor", "maximum", "minimum", "multiply", "nextafter",
          "not_equal", "pow", "remainder", "subtract"]
_REDUCE = "(x, /, *, axis=None, keepdims=False)"
_SHAPE_ONLY = "(shape, *, dtype=None, device=None)"
_LIKE = "(x, /, *, dtype=None, device=None)"
_SORT = "(x, /, *, axis=-1, descending=False, stable=True)"
_SCAN = "(x, /, *, axis=None, dtype=None, include_initial=False)"
SIGNATURES = {
    **{name: "(x, /)" for name in UNARY}, **{name: "(x1, x2, /)" for name in BINARY},
    "clip": "(x, /, min=None, max=None)",
    # creation
    "arange": "(start, /, stop=None, step=1, *, dtype=None, device=None)",
    "asarray": "(obj, /, *, dtype=None, device=None, copy=None)",
    "empty": _SHAPE_ONLY, "empty_like": _LIKE, "ones": _SHAPE_ONLY, "ones_like": _LIKE, "zeros": _SHAPE_ONLY,
    "zeros_like": _LIKE,
    "eye": "(n_rows, n_cols=None, /, *, k=0, dtype=None, device=None)",
    "from_dlpack": "(x, /, *, device=None, copy=None)",
    "full": "(shape, fill_value, *, dtype=None, device=None)",
    "full_like": "(x, /, fill_value, *, dtype=None, device=None)",
    "linspace": "(start, stop, /, num, *, dtype=None, device=None, endpoint=True)",
    "meshgrid": "(*arrays, indexing='xy')",
    "tril": "(x, /, *, k=0)", "triu": "(x, /, *, k=0)",
    # data types
    "astype": "(x, dtype, /, *, copy=True, device=None)",
    "can_cast": "(from_, to, /)", "finfo": "(type, /)", "iinfo": "(type, /)", "isdtype": "(dtype, kind)",
    "result_type": "(*arrays_and_dtypes)",
    # indexing
    "take": "(x, indices, /, *, axis=None)", "take_along_axis": "(x, indices, /, *, axis=-1)",
    # linear algebra
    "matmul": "(x1, x2, /)", "matrix_transpose": "(x, /)", "tensordot": "(x1, x2, /, *, axes=2)",
    "vecdot": "(x1, x2, /, *, axis=-1)",
    # manipulation
    "broadcast_arrays": "(*arrays)", "broadcast_to": "(x, /, shape)",
    "concat": "(arrays, /, *, axis=0)", "expand_dims": "(x, /, axis=0)", "flip": "(x, /, *, axis=None)",
    "moveaxis": "(x, source, destination, /)", "permute_dims": "(x, /, axes)",
    "repeat": "(x, repeats, /, *, axis=None)", "reshape": "(x, /, shape, *, copy=None)",
    "roll": "(x, /, shift, *, axis=None)", "squeeze": "(x, /, axis)", "stack": "(arrays, /, *, axis=0)",
    "tile": "(x, repetitions, /)", "unstack": "(x, /, *, axis=0)",
    # searching
    "argmax": "(x, /, *, axis=None, keepdims=False)", "argmin": "(x, /, *, axis=None, keepdims=False)",
    "count_nonzero": _REDUCE, "nonzero": "(x, /)",
    "searchsorted": "(x1, x2, /, *, side='left', sorter=None)", "where": "(condition, x1, x2, /)",
    # sets, sorting
    "unique_all": "(x, /)", "unique_counts": "(x, /)", "unique_inverse": "(x, /)", "unique_values": "(x, /)",
    "argsort": _SORT, "sort": _SORT,
    # statistical, utility
    "cumulative_prod": _SCAN, "cumulative_sum": _SCAN, "max": _REDUCE, "mean": _REDUCE, "min": _REDUCE,
    "prod": "(x, /, *, axis=None, dtype=None, keepdims=False)",
    "sum": "(x, /, *, axis=None, dtype=None, keepdims=False)",
    "std": "(x, /, *, axis=None, correction=0.0, keepdims=False)",
    "var": "(x, /, *, axis=None, correction=0.0, keepdims=False)",
    "all": _REDUCE, "any": _REDUCE, "diff": "(x, /, *, axis=-1, n=1, prepend=None, append=None)",
    "__array_namespace_info__": "()",
}
_BINARY_METHOD = "(self, other, /)"
METHODS = {
    **{f"__{name}__": "(self, /)" for name in ("abs", "neg", "pos", "invert", "bool", "float", "int", "index",
                                               "complex", "dlpack_device")},
    **{f"__{p}{name}__": _BINARY_METHOD for p in ("", "r", "i")
       for name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
                    "lshift", "rshift")},
    **{f"__{name}__": _BINARY_METHOD for name in ("eq", "ne", "lt", "le", "gt", "ge")},
    "__getitem__": "(self, key, /)", "__setitem__": "(self, key, value, /)",
    "__array_namespace__": "(self, /, *, api_version=None)",
    "__dlpack__": "(self, /, *, stream=None, max_version=None, dl_device=None, copy=None)",
    "to_device": "(self, device, /, *, stream=None)",
}
ATTRIBUTES = ["dtype", "device", "mT", "ndim", "shape", "size", "T"]


def _stub(text: str) -> inspect.Signature:
    namespace = {}
    exec(f"def f{text}: pass", namespace)   # noqa: S102 - our own table
    return inspect.signature(namespace["f"])


def signature_problems(function, stub: str) -> list[str]:
    """How ``function``'s signature differs from the standard's ``stub`` (array-api-tests' rule)."""
    got = list(inspect.signature(function).parameters.values())
    want = list(_stub(stub).parameters.values())
    P = inspect.Parameter
    problems = []
    for i, w in enumerate(want):
        g = got[i] if i < len(got) else None
        if w.kind == P.VAR_POSITIONAL:
            g = next((p for p in got if p.kind == P.VAR_POSITIONAL), None)
            if g is None:
                problems.append(f"*{w.name} missing")
            continue
        if w.kind == P.KEYWORD_ONLY:
            g = next((p for p in got if p.name == w.name), None)
            if g is None or g.kind not in (P.KEYWORD_ONLY, P.POSITIONAL_OR_KEYWORD):
                problems.append(f"keyword {w.name} missing")
                continue
        elif g is None or g.kind not in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD):
            problems.append(f"positional parameter {i} ({w.name}) is {g}")
            continue
        elif w.kind == P.POSITIONAL_OR_KEYWORD and (g.name != w.name or g.kind != P.POSITIONAL_OR_KEYWORD):
            problems.append(f"parameter {w.name} must be positional or keyword, is {g}")
            continue
        if w.default is not P.empty and g.default != w.default:
            problems.append(f"{w.name} defaults to {g.default!r}, not {w.default!r}")
    for g in got[len(want):]:   # an extension may add parameters, not require them
        if g.default is P.empty and g.kind not in (P.VAR_POSITIONAL, P.VAR_KEYWORD):
            problems.append(f"extra parameter {g.name} has no default")
    return problems


def test_every_function_of_the_standard_has_its_signature():
    problems = {name: signature_problems(getattr(ex, name), stub) for name, stub in SIGNATURES.items()}
    assert not {name: p for name, p in problems.items() if p}


def test_the_array_object_has_the_standard_s_attributes_and_methods():
    problems = {name: signature_problems(getattr(ex.Array, name), stub) for name, stub in METHODS.items()}
    assert not {name: p for name, p in problems.items() if p}
    x = ex.asarray(np.arange(24.0).reshape(2, 3, 4))
    assert all(hasattr(x, name) for name in ATTRIBUTES)
    assert (x.dtype, x.device, x.ndim, x.shape, x.size, x.mT.shape) == (ex.float64, "cpu", 3, (2, 3, 4), 24, (2, 4, 3))
    assert type(x.shape) is tuple and type(x.ndim) is int and type(x.size) is int
    assert x.__array_namespace__() is ex and x.to_device("cpu").device == "cpu" and x.__dlpack_device__() == (1, 0)
    scalar, flag = ex.asarray(np.float32(-2.5)), ex.asarray(np.array(True))
    assert (float(scalar), int(scalar), complex(scalar), bool(flag), operator.index(ex.asarray(np.int8(-3)))) == \
        (-2.5, -2, -2.5 + 0j, True, -3)
    with pytest.raises(TypeError):
        operator.index(scalar)   # __index__ is for integer arrays only
    with pytest.raises((TypeError, ValueError)):
        bool(ex.asarray(np.ones(2)))


# -- elementwise functions ---------------------------------------------------------------------------------
# The kinds of dtype each function accepts (the standard's "Should have a ... data type").
_FLOAT_ONLY = {"acos", "acosh", "asin", "asinh", "atan", "atanh", "cos", "cosh", "exp", "expm1", "log", "log1p",
               "log2", "log10", "reciprocal", "sin", "sinh", "sqrt", "tan", "tanh", "signbit", "atan2", "copysign",
               "hypot", "logaddexp", "nextafter", "divide"}
_BOOL_ONLY = {"logical_not", "logical_and", "logical_or", "logical_xor"}
_INTEGRAL_OR_BOOL = {"bitwise_invert", "bitwise_and", "bitwise_or", "bitwise_xor"}
_INTEGRAL = {"bitwise_left_shift", "bitwise_right_shift"}
_ANY = {"equal", "not_equal"}
# The registry's names (for the tolerance table) where the standard's differ.
_OP_NAME = {"acos": "arccos", "asin": "arcsin", "atan": "arctan", "acosh": "arccosh", "asinh": "arcsinh",
            "atanh": "arctanh", "atan2": "arctan2", "pow": "power", "bitwise_invert": "invert",
            "bitwise_left_shift": "left_shift", "bitwise_right_shift": "right_shift"}


def accepts(name: str, dtype: np.dtype) -> bool:
    kind = dtype.kind
    if name in _BOOL_ONLY:
        return kind == "b"
    if name in _INTEGRAL_OR_BOOL:
        return kind in "iub"
    if name in _INTEGRAL:
        return kind in "iu"
    if name in _FLOAT_ONLY:
        return kind == "f" or (name == "divide" and kind in "iu")   # integer division: NumPy's float64
    return name in _ANY or kind in "iuf"   # numeric


def unspecified(name: str, dtype: np.dtype, *operands) -> np.ndarray | bool:
    """Elements whose result the standard leaves to the implementation (not compared)."""
    if dtype.kind not in "iu" or len(operands) < 2:
        return False
    x2 = np.asarray(operands[1])
    if name in ("floor_divide", "remainder"):
        return x2 == 0
    if name in ("pow", "bitwise_left_shift", "bitwise_right_shift"):
        return x2 < 0
    return False


def numpy_truth(name: str, *operands) -> np.ndarray:
    """NumPy's result; for a float32 op with a ULP bound, computed in float64 and rounded once (the
    tolerance table's truth: NumPy's own float32 functions err too)."""
    with np.errstate(all="ignore"):
        want = np.asarray(getattr(np, name)(*operands))
        if want.dtype == np.float32 and tolerance(_OP_NAME.get(name, name), want.dtype):
            # A Python float meets float32 as a float32 (weakly typed): rounded first, then widened.
            wide = [np.asarray(o, np.float32).astype(np.float64) for o in operands]
            want = np.asarray(getattr(np, name)(*wide)).astype(np.float32)
    return want


class Checks:
    """Pairs of (exprgen result, NumPy's) gathered, then evaluated in one pass and compared."""

    def __init__(self):
        self.pending = []

    def elementwise(self, name: str, *operands):
        """``name`` over exprgen and NumPy operands (Arrays become NumPy arrays for NumPy): dtype,
        shape, values within the tolerance table; TypeError wherever NumPy raises it."""
        npo = [np.asarray(o) if isinstance(o, ex.Array) else o for o in operands]
        try:
            want = numpy_truth(name, *npo)
        except ValueError:   # NumPy refuses an integer to a negative Python int power: unspecified
            assert name == "pow"
            return
        except (TypeError, OverflowError) as refused:   # the same refusal (an int the dtype cannot hold)
            with pytest.raises(type(refused)):
                getattr(ex, name)(*operands)
            return
        got = getattr(ex, name)(*operands)
        dtype = next(np.asarray(o).dtype for o in npo if isinstance(o, np.ndarray))
        skip = np.broadcast_to(unspecified(name, dtype, *npo), want.shape)
        ulp = tolerance(_OP_NAME.get(name, name), want.dtype)
        ulp *= 1 if want.dtype == np.float32 else 2
        self.add(got, want, f"{name}{tuple(getattr(o, 'dtype', type(o).__name__) for o in operands)}", ulp, skip,
                 inputs=tuple(np.broadcast_to(o, want.shape) for o in npo if isinstance(o, np.ndarray)))

    def add(self, got, want, what: str, ulp: int = 0, skip=False, signed_zero: bool = True, inputs=()):
        self.pending.append((got, np.asarray(want), what, ulp, skip, signed_zero, inputs))

    def run(self):
        values = ex.eval(*[got for got, *_ in self.pending]) if self.pending else ()
        values = values if isinstance(values, tuple) else (values,)
        for value, (_, want, what, ulp, skip, signed_zero, inputs) in zip(values, self.pending):
            assert (value.dtype, value.shape) == (want.dtype, want.shape), what
            keep = ~np.broadcast_to(skip, want.shape)
            assert_close(np.where(keep, value, 0).astype(value.dtype), np.where(keep, want, 0).astype(want.dtype),
                         ulp=ulp, signed_zero=signed_zero, what=what, inputs=inputs)


def python_scalar(dtype: np.dtype):
    """A Python scalar that ``dtype`` holds: the standard's weakly typed operand."""
    if dtype.kind == "b":
        return st.booleans()
    if dtype.kind in "iu":
        info = np.iinfo(dtype)   # a Python int beyond int64 must be passed as a float (README: known differences)
        return st.integers(int(info.min), min(int(info.max), 2**63 - 1))
    return st.floats(width=32 if dtype == np.float32 else 64)


@CONFORMANCE
@given(dtype=REAL_DTYPES, data=st.data())
def test_unary_elementwise_functions(dtype, data):
    x = data.draw(xps.arrays(dtype, xps.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)), label="x")
    x = data.draw(st.sampled_from([x, ex.flip(x), ex.permute_dims(x, tuple(reversed(range(x.ndim))))]), label="layout")
    checks = Checks()
    for name in UNARY:
        if accepts(name, dtype):
            checks.elementwise(name, x)
    checks.run()


@settings(CONFORMANCE, max_examples=10)   # each example checks three forms of ~20 functions
@given(dtype=REAL_DTYPES, data=st.data())
def test_binary_elementwise_functions_broadcast_and_promote(dtype, data):
    shapes = data.draw(xps.mutually_broadcastable_shapes(2, min_dims=0, max_dims=3, max_side=3), label="shapes")
    other = data.draw(st.sampled_from([dtype, *(d for d in ex.__array_namespace_info__().dtypes().values()
                                                 if d.kind == dtype.kind)]), label="other dtype")
    x1 = data.draw(xps.arrays(dtype, shapes.input_shapes[0]), label="x1")
    x1 = data.draw(st.sampled_from([x1, ex.flip(x1)]), label="layout")
    x2 = data.draw(xps.arrays(other, shapes.input_shapes[1]), label="x2")
    # A scalar the dtype holds, or of another kind (a float with an int array: unspecified, NumPy's float64).
    scalar = data.draw(st.one_of(python_scalar(dtype), st.integers(-300, 300), st.floats()), label="scalar")
    checks = Checks()
    for name in BINARY:
        if accepts(name, dtype) and accepts(name, other):
            checks.elementwise(name, x1, x2)
            checks.elementwise(name, x1, scalar)
            checks.elementwise(name, scalar, x1)
    checks.run()


def test_mixed_kind_promotion_and_python_scalars_follow_numpy():
    """The standard leaves int with float, signed with uint64, and a float scalar with an int array to the
    implementation: NumPy's answers. Bool in arithmetic: NumPy's too."""
    i8, u8, u64, i64 = (ex.asarray(np.array([1, 2], d)) for d in ("int8", "uint8", "uint64", "int64"))
    f32, b = ex.asarray(np.array([1.5, -0.0], np.float32)), ex.asarray(np.array([True, False]))
    checks = Checks()
    for x1, x2 in [(i8, u8), (u64, i64), (i8, f32), (u8, f32), (b, i8), (b, f32), (b, b), (i8, 2.5), (2.5, u8),
                   (b, 3), (f32, 1e300), (b, True), (i64, True)]:
        for name in ("add", "subtract", "multiply", "divide", "floor_divide", "pow", "maximum", "less", "equal"):
            checks.elementwise(name, x1, x2)
    checks.run()
    with pytest.raises(TypeError):
        ex.subtract(b, b)   # as NumPy: bool subtraction is refused
    with pytest.raises(OverflowError):
        ex.add(i8, 300)     # a Python int the dtype cannot hold (the standard: unspecified)


# -- statistical and searching functions ---------------------------------------------------------------------
def _axes(ndim: int):
    """None, one axis (maybe negative), or a tuple of distinct axes (maybe empty)."""
    one = st.integers(-ndim, ndim - 1) if ndim else st.nothing()
    many = st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim).map(tuple) if ndim else st.just(())
    return st.one_of(st.none(), one, many)


def _small(dtype):
    """Elements that keep sums, products and means exact in every dtype: -2..2, and NaN and ±inf in floats."""
    if dtype.kind == "b":
        return st.booleans()
    low = 0 if dtype.kind == "u" else -2
    values = st.integers(low, 2)
    if dtype.kind == "f":
        values = st.one_of(values, values, values, st.sampled_from([math.nan, math.inf, -math.inf, -0.0]))
    return values


def _small_array(data, dtype, min_dims: int, max_dims: int, max_side: int):
    """A NumPy array of ``_small`` elements, and the same as an exprgen array."""
    shape = data.draw(xps.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=max_side),
                      label="shape")
    xs = data.draw(st.lists(_small(dtype), min_size=math.prod(shape), max_size=math.prod(shape)), label="values")
    x_np = np.array(xs, dtype).reshape(shape)
    return x_np, ex.asarray(x_np)


@CONFORMANCE
@given(dtype=REAL_DTYPES, data=st.data())
def test_statistical_and_searching_functions(dtype, data):
    x_np, x = _small_array(data, dtype, 0, 3, 3)
    shape = x.shape
    axis = data.draw(_axes(len(shape)), label="axis")
    keepdims = data.draw(st.booleans(), label="keepdims")
    kw = {"axis": axis, "keepdims": keepdims}
    checks = Checks()
    numeric = dtype.kind != "b"
    reduced = math.prod(shape[a] for a in (range(len(shape)) if axis is None else np.atleast_1d(axis)))
    empty_reduced = reduced == 0
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # NumPy's mean and var of nothing: NaN, with a warning
        for name in ("sum", "prod", "any", "all", "count_nonzero") + (("mean",) if numeric else ()):
            if name in ("sum", "prod", "mean") and not numeric:
                continue
            checks.add(getattr(ex, name)(x, **kw), getattr(np, name)(x_np, **kw), f"{name}({kw})")
        if numeric and not empty_reduced:
            for name in ("max", "min"):
                checks.add(getattr(ex, name)(x, **kw), getattr(np, name)(x_np, **kw), f"{name}({kw})")
        if dtype.kind == "f":
            correction = data.draw(st.sampled_from([0, 1, 0.5]), label="correction")
            for name in ("var", "std"):   # NumPy's value, and the compiled kernel's, within exprgen's formula's
                got = getattr(ex, name)(x, correction=correction, **kw)
                want = getattr(np, name)(x_np, ddof=correction, **kw)
                if reduced - correction <= 0:   # the standard: NaN (NumPy: inf, or NaN for 0 / 0)
                    want = np.full_like(want, np.nan)
                assert (got.dtype, got.shape) == (want.dtype, want.shape)
                check_values([want], got)
                assert_matches_reference(got)
        one_axis = axis if not isinstance(axis, tuple) else None
        if numeric and x.size and (one_axis is None or shape[one_axis]):
            for name in ("argmax", "argmin"):   # the first NaN, else the first extreme (NumPy's)
                checks.add(getattr(ex, name)(x, axis=one_axis, keepdims=keepdims),
                           getattr(np, name)(x_np, axis=one_axis, keepdims=keepdims), name)
        if x.ndim and numeric:
            scan_axis = one_axis if one_axis is not None or x.ndim > 1 else None
            scan_axis = scan_axis if x.ndim == 1 or scan_axis is not None else -1
            initial = data.draw(st.booleans(), label="include_initial")
            for name in ("cumulative_sum", "cumulative_prod"):
                checks.add(getattr(ex, name)(x, axis=scan_axis, include_initial=initial),
                           getattr(np, name)(x_np, axis=scan_axis, include_initial=initial), name)
    checks.run()


@CONFORMANCE
@given(dtype=REAL_DTYPES, data=st.data())
def test_sorting_set_and_searching_functions(dtype, data):
    x_np, x = _small_array(data, dtype, 1, 2, 5)
    shape = x.shape
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    descending = data.draw(st.booleans(), label="descending")
    checks = Checks()
    # Stable descending order: equal elements keep their order (NaN first, the reverse of ascending).
    flipped = np.flip(np.argsort(np.flip(x_np, axis), axis=axis, stable=True), axis)
    want_order = (shape[axis] - 1 - flipped) if descending else np.argsort(x_np, axis=axis, stable=True)
    checks.add(ex.argsort(x, axis=axis, descending=descending), want_order, "argsort")
    checks.add(ex.sort(x, axis=axis, descending=descending), np.take_along_axis(x_np, want_order, axis), "sort")
    # The standard does not order unique values (NumPy 2.3+ may not sort them): compared sorted.
    values, counts = ex.unique_counts(x)
    order = ex.argsort(values)
    want_values, want_counts = np.unique_counts(x_np)
    want_order = np.argsort(want_values, stable=True)
    checks.add(values[order], want_values[want_order], "unique_counts values", signed_zero=False)
    checks.add(counts[order], want_counts[want_order], "unique_counts counts")
    checks.add(ex.sort(ex.unique_values(x)), np.sort(np.unique_values(x_np)), "unique_values", signed_zero=False)
    every = ex.unique_all(x)
    checks.add(every.values[every.inverse_indices], x_np, "unique_all inverse", signed_zero=False)
    checks.add(ex.reshape(x, (-1,))[every.indices], every.values, "unique_all indices", signed_zero=False)
    assert every.inverse_indices.shape == x.shape and ex.unique_inverse(x).inverse_indices.shape == x.shape
    nz = ex.nonzero(x)
    for got, want in zip(nz, np.nonzero(x_np)):
        checks.add(got, want, "nonzero")
    if x.ndim == 1 and dtype.kind != "b":
        sorted_np = np.sort(x_np)
        needles = np.array(data.draw(st.lists(_small(dtype), max_size=4), label="needles"), dtype)
        for side in ("left", "right"):
            checks.add(ex.searchsorted(ex.asarray(sorted_np), ex.asarray(needles), side=side),
                       np.searchsorted(sorted_np, needles, side=side), f"searchsorted {side}")
            checks.add(ex.searchsorted(x, ex.asarray(needles), side=side, sorter=ex.argsort(x)),
                       np.searchsorted(x_np, needles, side=side, sorter=np.argsort(x_np, stable=True)), "sorter")
    checks.run()


@CONFORMANCE
@given(data=st.data(), dtype=st.sampled_from([ex.int8, ex.uint8, ex.int64, ex.float32, ex.float64]))
def test_linear_algebra_functions(data, dtype):
    """matmul (1-D operands, batches that broadcast), tensordot, vecdot: small integers, exact (the sign
    of a zero sum of products is not the standard's business, nor the same in NumPy's BLAS and dot)."""
    m, k, n = data.draw(st.tuples(*[st.integers(1, 3)] * 3), label="m k n")
    batch = data.draw(xps.mutually_broadcastable_shapes(2, max_dims=2, max_side=2), label="batch").input_shapes
    left = data.draw(st.sampled_from([(k,), (*batch[0], m, k)]), label="left")
    right = data.draw(st.sampled_from([(k,), (*batch[1], k, n)]), label="right")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    low = 0 if dtype.kind == "u" else -3
    a_np, b_np = (rng.integers(low, 4, s).astype(dtype) for s in (left, right))
    a, b = ex.asarray(a_np), ex.asarray(b_np)
    checks = Checks()
    checks.add(ex.matmul(a, b), np.matmul(a_np, b_np), f"matmul {left} @ {right}", signed_zero=False)
    checks.add(a @ b, a_np @ b_np, "@", signed_zero=False)
    axes = data.draw(st.integers(0, min(a.ndim, b.ndim, 2)), label="axes")
    if all(a_np.shape[a.ndim - axes + i] == b_np.shape[i] for i in range(axes)):
        checks.add(ex.tensordot(a, b, axes=axes), np.tensordot(a_np, b_np, axes=axes), f"tensordot axes={axes}",
                   signed_zero=False)
    axis = data.draw(st.integers(-a.ndim, -1), label="vecdot axis")
    checks.add(ex.vecdot(a, a, axis=axis), np.vecdot(a_np, a_np, axis=axis), "vecdot", signed_zero=False)
    checks.run()


# -- edge cases by hand ----------------------------------------------------------------------------------
def test_edge_cases_of_the_standard():
    f64 = np.array([3.0, -1.0, np.nan, 0.5, -0.0, 2.0])
    x = ex.asarray(f64)
    f32 = ex.asarray(np.arange(6, dtype=np.float32))
    checks = Checks()
    checks.add(ex.sum(f32), np.float32(15), "sum of float32 keeps float32 (2023.12)")
    checks.add(ex.mean(ex.asarray(np.arange(4))), np.float64(1.5), "mean of ints: NumPy's float64")
    zero = ex.asarray(np.float32(-0.0))   # a sum starts at +0.0, over no axis too (as NumPy's)
    checks.add(ex.sum(zero), np.float32(0.0), "sum of a 0-d -0.0")
    checks.add(ex.sum(x[4:5], axis=()), np.zeros(1), "sum over axis=() of -0.0")
    checks.add(ex.mean(zero), np.float32(0.0), "mean of a 0-d -0.0")
    checks.add(ex.std(f32, correction=1), np.std(np.arange(6, dtype=np.float32), ddof=1), "std correction")
    # N - correction <= 0: NaN, the standard's special case (NumPy: inf; exprgen used to give -0.5).
    for got in (ex.var(x[:2], correction=2), ex.var(x[:2], correction=3), ex.std(f32[:2], correction=2.5),
                ex.var(x[:0]), ex.std(ex.ones((2, 0)), axis=1, correction=1)):
        checks.add(got, np.full(got.shape, np.nan, got.dtype), "var/std N - correction <= 0")
    for got, want in [(ex.max(x), np.nan), (ex.min(x), np.nan), (ex.argmax(x), 2), (ex.argmin(x), 2)]:
        checks.add(got, np.asarray(want, got.dtype), "NaN propagates")
    checks.add(ex.where(x > 0, 1.0, 0), np.where(f64 > 0, 1.0, 0), "where with Python scalars (2024.12)")
    checks.add(ex.where(x > 0, f32, 2), np.where(f64 > 0, np.arange(6, dtype=np.float32), 2), "where scalar weak")
    checks.add(ex.clip(x, ex.asarray(np.zeros(6)), 1.0), np.clip(f64, np.zeros(6), 1.0), "clip array bounds")
    checks.add(ex.clip(ex.asarray(np.arange(5, dtype=np.int8)), 1, 3), np.clip(np.arange(5, dtype=np.int8), 1, 3),
               "clip keeps int8")
    checks.add(ex.clip(x, 2.0, 1.0), np.clip(f64, 2.0, 1.0), "clip min > max: unspecified, NumPy's max")
    checks.add(ex.repeat(x, ex.asarray(np.array([0, 1, 2, 0, 1, 1]))), np.repeat(f64, [0, 1, 2, 0, 1, 1]),
               "repeat array counts")
    checks.add(ex.matmul(x, x), np.matmul(f64, f64), "1-D @ 1-D is 0-d")
    checks.add(ex.vecdot(ex.asarray(np.ones((3, 2))), ex.asarray(np.ones((3, 2))), axis=-2), np.full(2, 3.0), "vecdot")
    checks.add(ex.cumulative_sum(f32, include_initial=True), np.cumulative_sum(np.arange(6, dtype=np.float32),
                                                                             include_initial=True), "include_initial")
    checks.add(ex.linspace(0, 1, 4, endpoint=False), np.linspace(0, 1, 4, endpoint=False), "linspace endpoint")
    checks.add(ex.linspace(2, 3, 1), np.linspace(2, 3, 1), "linspace num=1")
    checks.add(ex.eye(3, 5, k=-1, dtype=ex.int8), np.eye(3, 5, k=-1, dtype=np.int8), "eye k")
    checks.add(ex.tril(ex.ones((2, 3, 4)), k=1), np.tril(np.ones((2, 3, 4)), k=1), "tril k")
    checks.add(ex.triu(ex.ones((3, 4)), k=-1), np.triu(np.ones((3, 4)), k=-1), "triu k")
    for indexing in ("ij", "xy"):
        for g, w in zip(ex.meshgrid(ex.arange(2), ex.arange(3.0), indexing=indexing),
                        np.meshgrid(np.arange(2), np.arange(3.0), indexing=indexing)):
            checks.add(g, w, f"meshgrid {indexing}")
    checks.add(ex.arange(5, 0, -2), np.arange(5, 0, -2), "arange negative step")
    checks.add(ex.arange(0.5, 2.0, 0.25, dtype=ex.float32), np.arange(0.5, 2.0, 0.25, dtype=np.float32), "arange f32")
    checks.add(ex.full((2,), True), np.full((2,), True), "full bool")
    checks.add(ex.zeros(()), np.zeros(()), "0-d zeros")
    checks.add(ex.take(x, ex.asarray(np.array([-1, 0]))), np.take(f64, [-1, 0]), "take negative index")
    checks.add(ex.tensordot(ex.ones((2, 3)), ex.ones((3, 2)), axes=([0, 1], [1, 0])), np.float64(6), "tensordot pairs")
    checks.add(ex.squeeze(ex.ones((1, 2, 1)), axis=(0, -1)), np.ones(2), "squeeze tuple")
    checks.add(ex.expand_dims(x, axis=-1), f64[:, None], "expand_dims -1")
    u8 = np.arange(3, dtype=np.uint8)
    checks.add(ex.asarray(np.int8(5)) + ex.asarray(u8), np.int8(5) + u8, "0-d with an array: no value-based cast")
    checks.add(ex.broadcast_to(ex.asarray(np.float32(2)), (0, 3)), np.zeros((0, 3), np.float32), "broadcast to empty")
    checks.run()
    assert ex.astype(x, ex.float64, copy=False) is x and ex.astype(x, ex.float64) is not x
    assert ex.result_type(ex.int8, 1) == ex.int8 and ex.result_type(ex.uint8, 1.0) == ex.float64
    assert ex.result_type(ex.float32, 1.0, ex.float32) == ex.float32 and ex.result_type(ex.bool, True) == ex.bool
    assert ex.can_cast(ex.int8, ex.int16) and not ex.can_cast(ex.float64, ex.float32)
    assert not ex.can_cast(ex.int64, ex.uint64) and ex.can_cast(ex.bool, ex.uint8)
    info = ex.finfo(ex.float32)
    assert (info.eps, info.max, info.min, info.smallest_normal, info.dtype) == \
        (2.0**-23, float(np.finfo(np.float32).max), -float(np.finfo(np.float32).max), 2.0**-126, ex.float32)
    assert all(type(v) is float for v in (info.eps, info.max, info.min, info.smallest_normal))
    assert ex.iinfo(ex.int8).bits == 8 and ex.iinfo(ex.uint16).max == 65535
    with pytest.raises(IndexError):
        ex.take(x, ex.asarray(np.array([6])))
    with pytest.raises(ValueError, match="too big"):
        ex.zeros((2**40, 2**40))
    with pytest.raises(ValueError):
        ex.matmul(ex.ones((2, 3)), ex.ones((2, 3)))
    with pytest.raises(ValueError):
        ex.asarray(np.ones(3)) + ex.asarray(np.ones(4))
