"""Every op of the registry against its NumPy reference, for every dtype combination.

Tests are generated from ``opdefs.canonical_ops()``: a new entry in ``ops/`` is tested without a line
here. Values are each dtype's special values and the op's domain edges (all combinations of them for
binary ops), then random values from the op's domain. Tolerances come from ``exprgen.testing``'s one
table; float32 results are measured against the op computed in float64.

The core dtypes (bool, int32, int64, float32, float64) meet in every combination. The narrower and
unsigned integers are tested once per op and dtype, plus a few mixed pairs that cross signedness and
kinds, all in one batch (``new_dtype_batch``): every op of every dtype compiles, at a few kernels' cost.

Kernels compile at ~0.2 s each, and the whole suite has minutes, not hours: so ops are batched into
multi-output kernels (``Batch``: a few ``ex.eval`` calls for hundreds of op/dtype outputs), computed once
per module and shared. Each test checks its own op's outputs from the batches and reports every failing
dtype combination at once, so a failure still names the op and its dtypes.
"""

from __future__ import annotations

import fractions
import functools
import itertools
import math
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import exprgen as ex
from exprgen.ir import dtypes
from exprgen.ir import opdefs
from exprgen.ir import interpret as reference
from exprgen.testing import (assert_close, assert_matches_reference, defines_signed_zero, domain_arrays, edge_values,
                             ulp_bound, ulp_distance)

# Elementwise ops from ops/ (reductions are tested with their axes elsewhere; ops users define at run
# time are not the registry's).
OPS = [op for op in opdefs.canonical_ops(builtin_only=True) if op.kind in {"unary", "binary", "ternary"}]
DTYPES = dtypes.CORE
NEW_DTYPES = tuple(d for d in dtypes.SUPPORTED if d not in DTYPES)
# Values for op parameters, by parameter name (the registry says which parameters an op has).
PARAM_CHOICES = {"dtype": [d.name for d in DTYPES]}
N_VALUES = {1: 256, 2: 1536, 3: 1536}   # elements per input: edge combinations, then domain samples
MAX_ROOTS = 32   # outputs per kernel: past this gcc's compile time grows faster than the kernel


def op_id(op):
    return op.name


def param_sets(op) -> list[tuple]:
    return list(itertools.product(*(PARAM_CHOICES[p] for p in op.params)))


def numpy_refuses(op, signature, params=()) -> bool:
    """Whether NumPy itself refuses these dtypes or answers in a dtype exprgen lacks (float16, int8...)."""
    try:
        with np.errstate(all="ignore"):
            result = np.asarray(op.numpy(*(np.ones(2, d) for d in signature), *params))
    except TypeError:
        return True
    return result.dtype not in dtypes.SUPPORTED


def accepted(op) -> list[tuple[tuple, tuple]]:
    return [(sig, params) for sig in itertools.product(DTYPES, repeat=op.arity) for params in param_sets(op)
            if not numpy_refuses(op, sig, params)]


def _rng(*parts) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def domain_samples(op, index: int, dtype: np.dtype, n: int, rng) -> np.ndarray:
    domain = op.domains[index]
    if dtype == dtypes.BOOL:
        return rng.integers(0, 2, n).astype(bool)
    if dtype in dtypes.INTEGERS:
        info = np.iinfo(dtype)
        low, high = max(int(np.ceil(domain.low)), info.min), min(int(np.floor(domain.high)), info.max)
        return rng.integers(low, max(low, high) + 1, n).astype(dtype)
    with np.errstate(over="ignore"):
        return rng.uniform(domain.low, domain.high, n).astype(dtype)


def value_columns(op, signature, n: int) -> list[np.ndarray]:
    """Inputs of length ``n``: all combinations of edge values (sampled if too many), then domain values."""
    rng = _rng(op.name, signature)
    edges = [edge_values(op, i, d) for i, d in enumerate(signature)]
    combos = np.array(list(itertools.product(*(range(len(e)) for e in edges))))
    cap = n * 2 // 3
    if len(combos) > cap:
        combos = combos[np.sort(rng.choice(len(combos), cap, replace=False))]
    columns = []
    for i, dtype in enumerate(signature):
        column = np.empty(n, dtype)
        column[: len(combos)] = edges[i][combos[:, i]]
        column[len(combos):] = domain_samples(op, i, np.dtype(dtype), n - len(combos), rng)
        columns.append(column)
    return columns


# -- the comparison itself -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [dtypes.FLOAT32, dtypes.FLOAT64], ids=str)
def test_ulp_distance_counts_representable_floats(dtype):
    info = np.finfo(dtype)
    for start in (dtype.type(0), -info.smallest_subnormal, -info.tiny, dtype.type(-1), info.max / 2):
        walked = [start]
        for _ in range(5):
            walked.append(np.nextafter(walked[-1], dtype.type(np.inf)))
        distances = ulp_distance(np.full(6, start, dtype), np.array(walked, dtype))
        # From 0 the first step is to the smallest subnormal; -0.0 and 0.0 are one point.
        assert list(distances) == list(range(6)), (start, walked)
    assert ulp_distance(np.array([-info.max]), np.array([info.max]))[0] == 2 * (np.uint64(info.max.view(
        f"u{dtype.itemsize}")))


@pytest.mark.parametrize("actual, expected, ulp, signed_zero", [
    ([np.nan], [1.0], 4, True),           # NaN where the truth is a number
    ([1.0], [np.nan], 4, True),
    ([np.inf], [np.finfo(np.float64).max], 4, True),   # one step apart, but inf must be inf
    ([-0.0], [0.0], 4, True),
    ([1.0 + 2.0**-51], [1.0], 1, True),   # two ULP off with one allowed
])
def test_assert_close_refuses(actual, expected, ulp, signed_zero):
    with pytest.raises(AssertionError):
        assert_close(np.array(actual), np.array(expected), ulp=ulp, signed_zero=signed_zero)


def test_assert_close_accepts():
    assert_close(np.array([np.nan, -0.0, np.inf, 1.0 + 2.0**-51]), np.array([np.nan, 0.0, np.inf, 1.0]),
                 ulp=2, signed_zero=False)
    with pytest.raises(AssertionError, match="float32"):   # dtype first, before any value
        assert_close(np.zeros(2, np.float32), np.zeros(2))


# -- the batches -----------------------------------------------------------------------------------
class Batch:
    """Many ops evaluated by a few ``ex.eval`` calls; ``check`` compares one of them with the reference.

    ``entries``: (key, op name, operands, params, kernel group). Outputs share kernels only within a
    group, so a change in one group (a rewrite that read a scalar's value) recompiles only its kernels.
    Building errors are kept per key and reported by ``check``.
    """

    def __init__(self, entries):
        self.nodes, self.inputs, self.errors, arrays = {}, {}, {}, {}
        for key, name, operands, params, group in entries:
            try:
                array = ex.apply(name, *operands, params=params)
            except Exception as exc:  # noqa: BLE001 - reported by check(), beside NumPy's answer
                self.errors[key] = exc
                continue
            self.nodes[key] = array._node   # kept: evaluating may swap it for the result buffer
            self.inputs[key] = tuple(o if isinstance(o, (bool, int, float)) else np.asarray(o) for o in operands)
            arrays[key] = (group, array)
        # A loop vectorises at the width of its narrowest element: a bool output among float64 ops makes
        # gcc unroll every libm call 8-fold. So kernels also split by narrowest element size, and stay
        # mid-sized (gcc's register allocator is superlinear in the loop body).
        kernels: dict[tuple, list] = {}
        for key, (group, array) in arrays.items():
            kernels.setdefault((group, _narrowest(self.nodes[key])), []).append(key)
        self.values = {}
        for keys in kernels.values():
            for start in range(0, len(keys), MAX_ROOTS):
                chunk = keys[start:start + MAX_ROOTS]
                try:
                    result = ex.eval(*(arrays[k][1] for k in chunk))
                except Exception as exc:  # noqa: BLE001 - every output of the failed call reports it
                    self.errors.update(dict.fromkeys(chunk, exc))
                    continue
                self.values.update(zip(chunk, result if isinstance(result, tuple) else (result,)))

    def check(self, key, what: str) -> None:
        if key in self.errors:
            exc = self.errors[key]
            raise AssertionError(f"{what}: exprgen raised {type(exc).__name__}: {exc}")
        node = self.nodes[key]
        truth = reference.evaluate([node], exact_float32=True)[0]
        assert_close(self.values[key], truth, ulp=ulp_bound(node), signed_zero=defines_signed_zero(node),
                     what=what, inputs=self.inputs[key])


def _narrowest(node) -> int:
    return min(n.dtype.itemsize for n in (node, *node.src) if n.op != "scalar")


def check_all(checks) -> None:
    """Run every (batch, key, what) check and report all failures together."""
    failures = []
    for batch, key, what in checks:
        try:
            batch.check(key, what)
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n".join(failures)


def describe(op, signature, params=(), layout="") -> str:
    shown = ", ".join(np.dtype(d).name for d in signature) + "".join(f", {p}" for p in params)
    return f"{op.name}({shown}){layout}"


def edge_group(op, signature) -> tuple:
    return op.arity, np.dtype(signature[0]).name


def edge_entries(group, columns=value_columns) -> list:
    """Batch entries for every op and accepted signature in ``group``, inputs from ``columns``."""
    return [((op.name, sig, params), op.name, [ex.asarray(c) for c in columns(op, sig, N_VALUES[op.arity])], params,
             group)
            for op in OPS for sig, params in accepted(op) if edge_group(op, sig) == group]


@functools.cache
def edge_batch(group) -> Batch:
    return Batch(edge_entries(group))


@pytest.mark.parametrize("op", OPS, ids=op_id)
def test_values_match_reference(op):
    """Edge values and domain samples, every dtype combination NumPy accepts; the rest raise TypeError."""
    combos = accepted(op)
    assert combos, f"{op.name} accepts no dtype at all"
    for signature in itertools.product(DTYPES, repeat=op.arity):
        for params in param_sets(op):
            if (signature, params) not in combos:
                with pytest.raises(TypeError):
                    ex.apply(op.name, *(np.ones(2, d) for d in signature), params=params)
    check_all((edge_batch(edge_group(op, sig)), (op.name, sig, params), describe(op, sig, params))
              for sig, params in combos)


@pytest.mark.parametrize("dtype", [dtypes.FLOAT32, dtypes.FLOAT64], ids=str)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_random_domain_values(dtype, data):
    """Unary ops on arrays hypothesis draws from each op's domain; the kernels are the edge test's (the
    same ops and dtypes make the same sources), so only the values are new."""
    group = (1, dtype.name)
    n = data.draw(st.integers(2, 40), label="length")   # one element would compile a broadcast load

    def drawn(op, signature, _):
        return [data.draw(domain_arrays(op, d, (n,), i), label=op.name) for i, d in enumerate(signature)]

    batch = Batch(edge_entries(group, drawn))
    check_all((batch, key, describe(opdefs.get(key[0]), key[1], key[2])) for key in batch.nodes)


# -- the narrower and unsigned integers ----------------------------------------------------------
# Pairs that cross signedness and kinds: promotion to a wider signed integer, uint64 with int64 (float64
# in NumPy, yet compared exactly), an integer meeting a float, a bool meeting an integer.
MIXED = [(dtypes.INT8, dtypes.UINT8), (dtypes.UINT16, dtypes.INT32), (dtypes.UINT64, dtypes.INT64),
         (dtypes.INT64, dtypes.UINT64), (dtypes.UINT32, dtypes.FLOAT32), (dtypes.BOOL, dtypes.INT16)]
ALL_PARAM_CHOICES = {"dtype": [d.name for d in dtypes.SUPPORTED]}
NEW_SCALAR = 3   # a weak Python int meeting each new dtype (out-of-range ints: test further down)


def new_dtype_combos(op) -> list[tuple[tuple, tuple]]:
    """(signature, params) involving a narrow or unsigned integer: each dtype at every input, the mixed
    pairs, and conversions (astype) to and from each."""
    signatures = [(d,) * op.arity for d in dtypes.SUPPORTED]
    if op.arity > 1:
        signatures += [pair + (pair[-1],) * (op.arity - 2) for pair in MIXED]
    new = {d.name for d in NEW_DTYPES}
    return [(sig, params) for sig in signatures
            for params in itertools.product(*(ALL_PARAM_CHOICES[p] for p in op.params))
            if new & ({d.name for d in sig} | set(params))]


def new_dtype_columns(op, signature, params) -> list[np.ndarray]:
    """``value_columns``, where a float becomes an integer (astype) only from values the integer holds:
    the standard leaves NaN, infinities and out-of-range values unspecified there, as C++ does (NumPy's
    answers are whatever its compiler's conversion instructions give, which differ from the vectorised
    ones of a kernel)."""
    columns = value_columns(op, signature, N_VALUES[op.arity])
    targets = [np.dtype(p) for p in params if p in ALL_PARAM_CHOICES["dtype"]]
    if targets and targets[0].kind in "iu" and columns[0].dtype.kind == "f":
        info = np.iinfo(targets[0])
        x = columns[0]
        inside = np.isfinite(x) & (x > float(info.min) - 1) & (x < float(info.max) + 1)
        columns[0] = np.where(inside, x, x.dtype.type(1))
    return columns


def new_scalar_operands(op, dtype) -> list:
    return value_columns(op, (dtype,) * op.arity, 64)[:-1] + [NEW_SCALAR]


@functools.cache
def new_dtype_batch() -> Batch:
    """One batch for them all: each op once per new dtype (and mixed pair), and with a weak Python int."""
    entries = [((op.name, sig, params), op.name, [ex.asarray(c) for c in new_dtype_columns(op, sig, params)],
                params, "new")
               for op in OPS for sig, params in new_dtype_combos(op) if not numpy_refuses(op, sig, params)]
    entries += [((op.name, dtype, int), op.name, new_scalar_operands(op, dtype), (), "new scalar")
                for op in OPS if op.arity > 1 for dtype in NEW_DTYPES
                if numpy_outcome(op, new_scalar_operands(op, dtype)) in dtypes.SUPPORTED]
    return Batch(entries)


@pytest.mark.parametrize("op", OPS, ids=op_id)
def test_narrow_and_unsigned_integers(op):
    """int8, int16 and the unsigned integers: NumPy's dtypes and values (wrapping, shifts past the width,
    MIN // -1, division by zero), also beside a weak Python int; where NumPy refuses the dtypes or
    answers in float16, TypeError."""
    checks = []
    for sig, params in new_dtype_combos(op):
        if numpy_refuses(op, sig, params):
            with pytest.raises(TypeError):
                ex.apply(op.name, *(np.ones(2, d) for d in sig), params=params)
        else:
            checks.append((new_dtype_batch(), (op.name, sig, params), describe(op, sig, params)))
    for dtype in NEW_DTYPES if op.arity > 1 else ():
        if numpy_outcome(op, new_scalar_operands(op, dtype)) in dtypes.SUPPORTED:
            checks.append((new_dtype_batch(), (op.name, dtype, int), f"{describe(op, (dtype,) * op.arity)} with "
                           f"{NEW_SCALAR} last"))
    check_all(checks)


# -- memory layouts --------------------------------------------------------------------------------
# Per arity, the layout of each operand; all broadcast to (4, 6) except the 1-D sets, of shape (7,).
LAYOUTS = {
    1: [("transposed",), ("reversed",), ("1-D reversed",)],
    2: [("contiguous", "row"), ("column", "transposed"), ("transposed", "0-d"), ("reversed", "strided row"),
        ("0-d", "reversed"), ("1-D reversed", "1-D")],
    3: [("contiguous", "row", "column"), ("transposed", "0-d", "reversed"), ("column", "strided row", "0-d"),
        ("1-D reversed", "1-D", "1-D reversed")],
}


def layout_view(layout: str, values: np.ndarray) -> np.ndarray:
    """A view of the given layout holding ``values`` (cycled)."""
    def filled(*shape):
        return np.resize(values, int(np.prod(shape))).reshape(shape)
    views = {
        "contiguous": lambda: filled(4, 6),
        "transposed": lambda: filled(6, 4).T,
        "reversed": lambda: filled(4, 12)[::-1, ::-2],
        "row": lambda: filled(6),
        "strided row": lambda: filled(18)[::3],
        "column": lambda: filled(4, 1),
        "0-d": lambda: filled(),
        "1-D": lambda: filled(7),
        "1-D reversed": lambda: filled(14)[::-2],
    }
    return views[layout]()


def layout_dtype(op) -> np.dtype:
    """The dtype an op's layouts are tested in: float32 where accepted (element sizes: test below)."""
    return next(d for d in (dtypes.FLOAT32, dtypes.INT64, dtypes.BOOL) + DTYPES
                if not numpy_refuses(op, (d,) * op.arity, param_sets(op)[0]))


def op_layouts(op) -> list[tuple[str, ...]]:
    """Two layout sets per op, rotating through the list, so every set meets many ops (each layout is
    a compiled-in load form; testing all of them with every op would cost a kernel per op)."""
    sets = LAYOUTS[op.arity]
    k = [o.name for o in OPS if o.arity == op.arity].index(op.name)
    return [sets[(2 * k) % len(sets)], sets[(2 * k + 1) % len(sets)]]


def layout_entries(op, dtype, layout_sets) -> list:
    signature = (dtype,) * op.arity
    columns = value_columns(op, signature, 96)
    params = param_sets(op)[0]
    entries = []
    for j, layouts in enumerate(layout_sets):
        operands = [layout_view(lay, np.roll(col, 5 * j)) for lay, col in zip(layouts, columns)]
        entries.append(((op.name, dtype, layouts), op.name, operands, params, None))
    return entries


# Every element size (int16: 2 bytes) and signedness of the narrowest (uint8).
ELEMENT_DTYPES = DTYPES + (dtypes.INT16, dtypes.UINT8)


def first_op_accepting(arity: int, dtype: np.dtype):
    return next((op for op in OPS if op.arity == arity and not op.params and not numpy_refuses(op, (dtype,) * arity)),
                None)


@functools.cache
def layout_batch() -> Batch:
    entries = [e for op in OPS for e in layout_entries(op, layout_dtype(op), op_layouts(op))]
    for dtype, arity in itertools.product(ELEMENT_DTYPES, LAYOUTS):
        op = first_op_accepting(arity, dtype)
        if op is not None:
            entries += layout_entries(op, np.dtype(dtype), LAYOUTS[arity])
    return Batch(entries)


def layout_checks(op, dtype, layout_sets) -> list:
    return [(layout_batch(), (op.name, dtype, layouts),
             describe(op, (dtype,) * op.arity, param_sets(op)[0], f" on {', '.join(layouts)}"))
            for layouts in layout_sets]


@pytest.mark.parametrize("op", OPS, ids=op_id)
def test_layouts(op):
    """Broadcast rows, columns and 0-d arrays, transposed, strided and negative-stride views."""
    check_all(layout_checks(op, layout_dtype(op), op_layouts(op)))


@pytest.mark.parametrize("dtype", ELEMENT_DTYPES, ids=str)
def test_every_layout_for_every_element_size(dtype):
    """Strides are counted in elements of each size: one op per arity in every dtype, every layout."""
    ops = [first_op_accepting(arity, dtype) for arity in LAYOUTS]
    check_all(check for op in ops if op is not None for check in layout_checks(op, dtype, LAYOUTS[op.arity]))


# -- Python scalars --------------------------------------------------------------------------------
# Values whose conversion matters: 2**31 - 1 rounds in float32, 1e300 overflows it. Zeros and ones,
# which rewrite rules read (each reading compiles another kernel), are array edge values above; ints
# out of an array's range have their own test below.
SCALARS = {bool: [True], int: [3, -7, 2**31 - 1], float: [2.5, float("nan"), 1e300, -1.5]}


def scalar_patterns(op) -> list[tuple[bool, ...]]:
    """Which operands are Python scalars in each tested call: each position (only one of a commutative
    pair), and for ternary ops all but the first."""
    positions = range(1) if "commutative" in op.props else range(op.arity)
    patterns = [tuple(i == p for i in range(op.arity)) for p in reversed(positions)]
    return patterns + ([(False,) + (True,) * (op.arity - 1)] if op.arity > 2 else [])


def scalar_operands(op, dtype, pattern, value) -> list:
    columns = value_columns(op, (dtype,) * op.arity, 16)
    return [value if is_scalar else column for is_scalar, column in zip(pattern, columns)]


def numpy_outcome(op, operands):
    """NumPy's result dtype for these operands, or the exception class it raises."""
    try:
        with np.errstate(all="ignore"):
            return np.asarray(op.numpy(*operands)).dtype
    except (TypeError, OverflowError) as exc:
        return type(exc)


@functools.cache
def scalar_batch(round_: int) -> Batch:
    """Every op with Python scalars, the ``round_``-th value of each kind: the values are kernel
    arguments, so later rounds reuse the kernels of the first wherever the graphs are the same."""
    entries = []
    for dtype, kind in itertools.product(DTYPES, SCALARS):
        value = SCALARS[kind][round_ % len(SCALARS[kind])]
        for op in (o for o in OPS if o.arity > 1):
            for pattern in scalar_patterns(op):
                operands = scalar_operands(op, dtype, pattern, value)
                if numpy_outcome(op, operands) in dtypes.SUPPORTED:
                    entries.append(((op.name, dtype, kind, pattern), op.name, operands, (), (dtype, kind)))
    return Batch(entries)


ROUNDS = max(len(v) for v in SCALARS.values())


@pytest.mark.parametrize("op", [o for o in OPS if o.arity > 1], ids=op_id)
def test_python_scalars_are_weakly_typed(op):
    """``float32_array * 2.0`` stays float32, ``bool_array + 3`` is int64: NumPy's dtype and values."""
    checks = []
    for round_, dtype, kind in itertools.product(range(ROUNDS), DTYPES, SCALARS):
        value = SCALARS[kind][round_ % len(SCALARS[kind])]
        for pattern in scalar_patterns(op):
            operands = scalar_operands(op, dtype, pattern, value)
            shown = ", ".join(repr(o) if s else dtype.name for o, s in zip(operands, pattern))
            expected = numpy_outcome(op, operands)
            if expected not in dtypes.SUPPORTED:
                # NumPy raises, or answers in a dtype exprgen lacks: exprgen must raise the same, or TypeError.
                error = expected if isinstance(expected, type) else TypeError
                with pytest.raises(error):
                    ex.apply(op.name, *operands)
                continue
            batch = scalar_batch(round_)
            key = (op.name, dtype, kind, pattern)
            if key not in batch.errors:
                assert batch.nodes[key].dtype == expected, f"{op.name}({shown}): dtype differs from NumPy's"
            checks.append((batch, key, f"{op.name}({shown})"))
    check_all(checks)


@pytest.mark.parametrize("op", [o for o in OPS if o.arity > 1], ids=op_id)
def test_python_int_out_of_range_for_the_array(op):
    """``int32_array + 2**40`` raises OverflowError as in NumPy; where NumPy answers, so does exprgen.

    Two refusals are by design: an int the result dtype cannot hold (np.where silently wraps it), and
    any int beyond int64, since Python ints reach kernels as int64 arguments ("pass it as a float").
    """
    failures = []
    for dtype, value in ((dtypes.INT32, 2**40), (dtypes.INT32, -2**31 - 1), (dtypes.INT64, 2**63), (dtypes.UINT16, -1)):
        for pattern in scalar_patterns(op):
            operands = scalar_operands(op, dtype, pattern, value)
            shown = ", ".join(repr(o) if s else dtype.name for o, s in zip(operands, pattern))
            expected = numpy_outcome(op, operands)
            if expected in (OverflowError, TypeError):   # NumPy refuses: so must exprgen (an int past int64
                with pytest.raises((expected, OverflowError)):   # is refused before any dtype rule)
                    ex.apply(op.name, *operands)
                continue
            try:
                result = ex.apply(op.name, *operands)
            except OverflowError as exc:
                by_design = not np.iinfo(np.int64).min <= value <= np.iinfo(np.int64).max or (
                    expected.kind in "iu" and not np.can_cast(np.min_scalar_type(value), expected))
                if not by_design:
                    failures.append(f"{op.name}({shown}): exprgen raised OverflowError ({exc}), NumPy gives {expected}")
                continue
            try:
                assert_matches_reference(result)
            except AssertionError as exc:
                failures.append(str(exc))
    assert not failures, "\n".join(failures)


# -- 0-d and empty arrays --------------------------------------------------------------------------
@functools.cache
def zero_d_batch(round_: int) -> Batch:
    """Every op on 0-d arrays (a 0-d result: a kernel of shape ()), the ``round_``-th edge value."""
    entries = []
    for op in OPS:
        signature = (layout_dtype(op),) * op.arity
        params = param_sets(op)[0]
        # Strides through the edge values (zeros, infinities, NaN, extremes); inputs not in step.
        operands = [np.asarray(edges[(3 * round_ + 5 * i) % len(edges)])
                    for i, edges in enumerate(edge_values(op, i, d) for i, d in enumerate(signature))]
        entries.append(((op.name,), op.name, operands, params, None))
    return Batch(entries)


@pytest.mark.parametrize("op", OPS, ids=op_id)
def test_zero_d_arrays(op):
    """0-d inputs give a 0-d result, a kernel of shape ()."""
    check_all((zero_d_batch(round_), (op.name,), describe(op, (layout_dtype(op),) * op.arity) + f" 0-d #{round_}")
              for round_ in range(6))


@pytest.mark.parametrize("op", OPS, ids=op_id)
def test_empty_arrays(op):
    """Empty results have NumPy's shape and dtype, also when broadcast against non-empty operands."""
    shapes = [((0,),) * op.arity, ((0, 3),) + ((3,),) * (op.arity - 1), ((1,),) * (op.arity - 1) + ((2, 0),)]
    for (signature, params), operand_shapes in itertools.product(accepted(op), shapes):
        operands = [np.zeros(shape, dtype) for shape, dtype in zip(operand_shapes, signature)]
        assert_matches_reference(ex.apply(op.name, *operands, params=params))


def _exact_gelu_tanh(x):
    z = 2 * (0.7978845608028654 * (x + 0.044715 * x ** 3))
    return x * (np.exp(z) / (1 + np.exp(z)))


@pytest.mark.parametrize("name, low, high, exact", [
    ("gelu_tanh", 0.5, 10.5, _exact_gelu_tanh),
    ("sigmoid", 0.5, 103.5, lambda x: np.exp(x) / (1 + np.exp(x))),
])
def test_float32_negative_tails_round_once(name, low, high, exact):
    """Float gelu_tanh carries its argument in float pairs, and both it and sigmoid compute their exp inline,
    scaled until the last multiply (prelude.h): every 7th float32 of [-high, -low], where gelu's logistic
    magnifies the argument's rounding by up to ~100 and results go subnormal, stays within the op's ULP
    bound of the float64 value rounded once."""
    bits = np.arange(np.float32(low).view(np.int32), np.float32(high).view(np.int32), 7, dtype=np.int32)
    x = -bits.view(np.float32)
    expected = exact(x.astype(np.float64)).astype(np.float32)
    assert (expected != 0).all() and (np.abs(expected) < np.finfo(np.float32).tiny).any()
    assert_close(ex.apply(name, ex.asarray(x)).numpy(), expected, ulp=opdefs.get(name).tolerance_ulp(dtypes.FLOAT32))


def test_float32_floor_divide_is_the_exact_floor_below_2_to_the_24():
    # NumPy's float32 loop is off by one for quotients past 2**22 (its a - fmod(a, b) rounds); exprgen
    # computes in float64, exact for float32 operands: the floor of the real quotient.
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(4000) * rng.choice([1, 1e3, 1e6, 1e9], 4000)).astype(np.float32)
    y = (rng.standard_normal(4000) * rng.choice([1e-3, 1, 10, 1e3], 4000)).astype(np.float32)
    x, y = np.append(x, np.float32(8781.423)), np.append(y, np.float32(-0.00075551466))
    got = ex.floor_divide(ex.asarray(x), ex.asarray(y)).numpy()
    for a, b, q in zip(x, y, got):
        exact = math.floor(fractions.Fraction(float(a)) / fractions.Fraction(float(b)))
        if abs(exact) < 2**24:
            assert q == exact, (a, b, q, exact)
