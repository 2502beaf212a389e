"""The array object of the array API: operators, indexing, updates, conversions, devices, DLPack, asarray,
and element reads that never compile."""

import operator

import numpy as np
import pytest
from peers import peer

import exprgen as ex
from exprgen.testing import assert_matches_reference
from exprgen.tools import cli

ARITHMETIC = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
              "//": operator.floordiv, "%": operator.mod, "**": operator.pow}
COMPARISON = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
              "!=": operator.ne}
BITWISE = {"&": operator.and_, "|": operator.or_, "^": operator.xor, "<<": operator.lshift, ">>": operator.rshift}
INPLACE = {"+": operator.iadd, "-": operator.isub, "*": operator.imul, "/": operator.itruediv,
           "//": operator.ifloordiv, "%": operator.imod, "**": operator.ipow, "&": operator.iand,
           "|": operator.ior, "^": operator.ixor, "<<": operator.ilshift, ">>": operator.irshift}

# (left, right): right is positive and small so that every operator is defined (no x // 0, no int ** -1).
OPERANDS = {
    "float32": (np.array([[-3.5, -0.0, 0.5], [2.0, np.inf, np.nan]], np.float32),
                np.array([2.0, 0.25, 3.0], np.float32)),
    "int32": (np.array([[-7, 0, 5], [12, 2**30, -2**31]], np.int32), np.array([2, 1, 3], np.int32)),
    "uint8": (np.array([[0, 7, 200], [255, 1, 16]], np.uint8), np.array([3, 1, 2], np.uint8)),
}
SCALARS = {"float32": 1.5, "int32": 3, "uint8": 2}


def _operators(dtype: str) -> dict:
    ops = {**ARITHMETIC, **COMPARISON}
    if dtype != "float32":
        ops.update(BITWISE)
    return ops


def _check_kind(got, want, what):
    assert isinstance(got, ex.Array), what
    assert (got.shape, got.dtype) == (want.shape, want.dtype), f"{what}: {got.dtype}{got.shape}, NumPy's {want}"


@pytest.mark.parametrize("dtype", sorted(OPERANDS))
def test_every_operator_and_its_reflection_matches_numpy(dtype):
    """Forward, reflected (a Python scalar on the left) and with a Python scalar on the right: NumPy's
    dtype and shape, values from the reference within the ops' tolerances (one evaluation pass)."""
    xs, ys = OPERANDS[dtype]
    x, y, s = ex.asarray(xs), ex.asarray(ys), SCALARS[dtype]
    results = []
    with np.errstate(all="ignore"):
        for symbol, op in _operators(dtype).items():
            for got, want, what in [(op(x, y), op(xs, ys), f"x {symbol} y"), (op(s, y), op(s, ys), f"s {symbol} y"),
                                    (op(x, s), op(xs, s), f"x {symbol} s")]:
                _check_kind(got, want, what)
                results.append(got)
        for got, want, what in [(-x, -xs, "-x"), (+x, +xs, "+x"), (abs(x), abs(xs), "abs"),
                                (divmod(x, y)[0], divmod(xs, ys)[0], "divmod"),
                                (divmod(s, y)[1], divmod(s, ys)[1], "rdivmod")]:
            _check_kind(got, want, what)
            results.append(got)
    if dtype != "float32":
        _check_kind(~x, ~xs, "~x")
        results.append(~x)
    assert_matches_reference(*results)


def test_bool_operators_are_numpy_s():
    ps, qs = np.array([True, True, False, False]), np.array([True, False, True, False])
    p, q = ex.asarray(ps), ex.asarray(qs)
    cases = [(p & q, ps & qs), (p | q, ps | qs), (p ^ q, ps ^ qs), (~p, ~ps), (True & q, True & qs),
             (p | False, ps | False), (p & 1, ps & 1), (p == q, ps == qs), (p != q, ps != qs)]
    values = ex.eval(*[got for got, _ in cases])
    for (got, want), value in zip(cases, values):
        assert value.dtype == want.dtype
        np.testing.assert_array_equal(value, want)


def test_in_place_operators_rebind_and_keep_dtype_and_shape():
    xs, ys = OPERANDS["int32"]
    x, y = ex.asarray(xs), ex.asarray(ys)
    symbols = [s for s in INPLACE if s != "/"]   # int32 / int32 is float64: refused below, as NumPy does
    results = [INPLACE[s](x, y) for s in symbols]
    assert all(isinstance(r, ex.Array) and r is not x for r in results)
    with np.errstate(all="ignore"):
        for symbol, value in zip(symbols, ex.eval(*results)):
            assert value.dtype == np.int32, symbol
            np.testing.assert_array_equal(value, INPLACE[symbol](xs.copy(), ys), err_msg=symbol)
    name = x
    name += 1   # rebinds the name; the array it named is unchanged
    assert name is not x and x.numpy() is xs
    np.testing.assert_array_equal(name.numpy(), xs + 1)
    with pytest.raises(TypeError, match="keeps the dtype"):
        name /= 2
    with pytest.raises(ValueError, match="keeps the shape"):
        y += x


def test_matmul_operators():
    a, b = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(3, 4)
    x, y = ex.asarray(a), ex.asarray(b)
    np.testing.assert_array_equal((x @ y).numpy(), a @ b)
    np.testing.assert_array_equal((a @ y).numpy(), a @ b)   # __rmatmul__, NumPy on the left
    square = ex.asarray(np.eye(3) * 2)
    product = square
    product @= square
    np.testing.assert_array_equal(product.numpy(), np.eye(3) * 4)
    with pytest.raises(ValueError, match="keeps the shape"):
        z = x
        z @= y


def test_operators_refuse_bad_operands_clearly():
    x = ex.asarray(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="complex"):
        x + 1j
    with pytest.raises(TypeError):
        x << 1   # shifts are for integers, as in NumPy


# -- indexing ---------------------------------------------------------------------------------------
BASE = np.arange(60, dtype=np.float64).reshape(3, 4, 5)
KEYS = {
    "int": 1, "negative int": (-1, 2), "slices": (slice(None, None, -1), slice(1, 3)), "ellipsis": (Ellipsis, 1),
    "none": (None, 0, Ellipsis, None), "int list": [2, 0, 2], "int array on an inner axis": (slice(None), [3, 0]),
    "two int arrays": ([0, 2], [1, 3]), "broadcast int arrays": (np.array([[0], [2]]), [1, 2, 3]),
    "arrays separated by a slice": ([0, 1], slice(None), [4, 0]), "negative indices": (Ellipsis, [-1, -5]),
    "mask of all axes": BASE % 7 == 0, "mask of the first axis": np.array([True, False, True]),
    "mask on an inner axis": (slice(None), np.array([False, True, True, False])),
    "mask and int array": (np.array([True, False, True]), slice(None), [0, 4]), "true scalar mask": True,
    "empty int array": np.array([], np.int64), "0-d int array": np.array(2),
}


@pytest.mark.parametrize("name", sorted(KEYS))
def test_getitem_matches_numpy(name):
    key = KEYS[name]
    got, want = ex.asarray(BASE)[key], BASE[key]
    assert isinstance(got, ex.Array) and got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got.numpy(), want)


def test_index_arrays_and_masks_may_be_lazy_arrays_and_the_result_is_lazy_again():
    xs = np.linspace(-1, 1, 12).reshape(3, 4)
    x = ex.asarray(xs)
    y = ex.exp(x) - 1   # pending: computed once, with the mask, when indexed
    picked = y[y > 0]
    assert picked._value is not None and (picked * 2)._value is None
    np.testing.assert_array_equal((picked * 2).numpy(), y.numpy()[y.numpy() > 0] * 2)
    order = ex.asarray(np.array([3, 1])) - 1   # a pending integer index
    np.testing.assert_array_equal(x[:, order].numpy(), xs[:, [2, 0]])
    np.testing.assert_array_equal(x[ex.asarray(np.array(1)), 1:3].numpy(), xs[1, 1:3])   # 0-d: a view
    np.testing.assert_array_equal(x[:, :ex.asarray(np.array(2))].numpy(), xs[:, :2])


def test_indexing_errors():
    x = ex.asarray(BASE)
    with pytest.raises(IndexError, match="out of bounds"):
        x[[0, 3]]
    with pytest.raises(IndexError, match="out of bounds"):
        x[3]
    with pytest.raises(IndexError):
        x[np.array([True, False])]   # wrong mask length
    with pytest.raises(IndexError, match="integer"):
        x[np.array([0.0, 1.0])]
    with pytest.raises(TypeError, match="float"):
        x[1.5]
    with pytest.raises(TypeError, match="str"):
        x["a"]


def test_gradients_flow_through_integer_array_indexing():
    w = np.array([1.0, 2.0, 3.0])
    weights = ex.asarray(np.array([1.0, 10.0, 100.0]))
    grad = ex.grad(lambda v: (v[np.array([0, 2, 0])] * weights).sum())(w)
    np.testing.assert_array_equal(grad.numpy(), [101.0, 0.0, 10.0])
    masked = ex.grad(lambda v: (v[v > 1.5] ** 2).sum())(w)
    np.testing.assert_array_equal(masked.numpy(), [0.0, 4.0, 6.0])

    def cubes(v):
        return (v[np.array([0, 0, 2])] ** 3).sum()   # 2 v0**3 + v2**3

    second = ex.grad(lambda v: ex.grad(cubes)(v).sum())(w)   # d/dv (6 v0**2 + 3 v2**2)
    np.testing.assert_array_equal(second.numpy(), [12.0, 0.0, 18.0])


def test_take_and_take_along_axis_match_numpy():
    xs = np.arange(20.0).reshape(4, 5)
    x = ex.asarray(xs)
    idx = np.array([4, -1, 0, 0])
    np.testing.assert_array_equal(ex.take(x, idx, axis=1).numpy(), np.take(xs, idx, axis=1))
    np.testing.assert_array_equal(ex.take(x, ex.asarray(idx[1:3]), axis=-2).numpy(), np.take(xs, idx[1:3], axis=0))
    np.testing.assert_array_equal(ex.take(x, [7, 19]).numpy(), np.take(xs, [7, 19]))
    order = np.argsort(-xs, axis=1)
    np.testing.assert_array_equal(ex.take_along_axis(x, order, axis=1).numpy(), np.take_along_axis(xs, order, axis=1))
    first = np.array([[1, 0, 3, 2, 0]])
    np.testing.assert_array_equal(ex.take_along_axis(x, first, axis=0).numpy(), np.take_along_axis(xs, first, axis=0))
    with pytest.raises(TypeError, match="integer indices"):
        ex.take(x, np.array([0.5]), axis=0)
    with pytest.raises(IndexError):
        ex.take(x, [5], axis=1)
    with pytest.raises(ValueError, match="as many dimensions"):
        ex.take_along_axis(x, np.array([0, 1]), axis=1)
    with pytest.raises(np.exceptions.AxisError):
        ex.take(x, [0], axis=2)


# -- functional updates -------------------------------------------------------------------------------
@pytest.mark.parametrize("method, ufunc", [("add", np.add), ("multiply", np.multiply), ("min", np.minimum),
                                           ("max", np.maximum)])
def test_at_updates_match_numpy_with_repeated_indices(method, ufunc):
    xs = np.arange(12.0).reshape(3, 4) - 5
    x = ex.asarray(xs)
    for key, value in [(([0, 0, 2], [1, 1, 3]), np.array([2.0, 3.0, -4.0])), ((1, slice(None, None, 2)), 1.5),
                       ((xs > 2,), -1.0), ((Ellipsis, [0, 0]), ex.asarray(np.array([[1.0, 2.0]])))]:
        got = getattr(x.at[key], method)(value)
        want = xs.copy()
        ufunc.at(want, key, np.asarray(value))
        np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_array_equal(x.numpy(), np.arange(12.0).reshape(3, 4) - 5)   # x itself is unchanged


def test_at_set_and_its_errors():
    xs = np.zeros((2, 3), np.int32)
    x = ex.asarray(xs)
    want = xs.copy()
    want[0, 1:] = [7, 8]
    np.testing.assert_array_equal(x.at[0, 1:].set(np.array([7, 8])).numpy(), want)
    pending = ex.asarray(np.arange(6, dtype=np.int32).reshape(2, 3)) * 2
    np.testing.assert_array_equal(pending.at[pending > 4].set(-1).numpy(), np.array([[0, 2, 4], [-1, -1, -1]]))
    for method in ("set", "add"):
        with pytest.raises(TypeError, match="float64 values into a int32"):
            getattr(x.at[0], method)(0.5)   # NumPy's ufunc.at would truncate it
    with pytest.raises(IndexError):
        x.at[2].set(1)
    with pytest.raises(ValueError):
        x.at[0].set(np.ones(2, np.int32))   # 2 values for 3 places
    with pytest.raises(TypeError, match=r"immutable.*x\.at\[key\]\.set\(v\).*ex\.where"):
        x[0, 0] = 1
    with pytest.raises(NotImplementedError, match="not differentiable"):
        ex.grad(lambda v: v.at[0].set(1.0).sum())(np.ones(3))


# -- attributes, conversions, devices -----------------------------------------------------------------
def test_matrix_transposes():
    xs = np.arange(24.0).reshape(2, 3, 4)
    x = ex.asarray(xs)
    np.testing.assert_array_equal(x.mT.numpy(), np.swapaxes(xs, -1, -2))
    np.testing.assert_array_equal(x[0].T.numpy(), xs[0].T)
    assert x.mT._graph_node().op == "buffer" and np.shares_memory(x.mT.numpy(), xs)   # a view
    with pytest.raises(ValueError, match="at least two dimensions"):
        x[0, 0].mT


def test_device_and_to_device():
    x = ex.asarray(np.ones(3))
    assert x.device == "cpu" and ex.asarray(np.ones(2), device=x.device).device == "cpu"
    assert x.to_device("cpu") is x and x.to_device(x.device) is x
    with pytest.raises(ValueError, match="stream"):
        x.to_device("cpu", stream=1)
    with pytest.raises(ValueError, match="unknown device"):
        x.to_device("tpu")


def test_array_namespace_versions():
    x = ex.asarray(np.ones(2))
    for version in (None, "2024.12", "2023.12"):
        assert x.__array_namespace__(api_version=version) is ex
    for version in ("2022.12", "2025.12"):
        with pytest.raises(ValueError, match="2024.12"):
            x.__array_namespace__(api_version=version)


def test_python_scalar_conversions():
    x = ex.asarray(np.array([[2.75]], np.float32))
    assert float(x) == 2.75 and int(x) == 2 and bool(x) is True and complex(x) == 2.75
    n = ex.asarray(np.array(3, np.int64))
    assert operator.index(n) == 3 and list(range(10))[n] == 3 and [0, 1, 2, 3][n - 1] == 2
    assert bool(ex.asarray(np.array(0.0))) is False and int(ex.asarray(np.array(True))) == 1
    many = ex.asarray(np.ones(2))
    for convert in (float, int, complex):
        with pytest.raises(TypeError, match="one element"):
            convert(many)
    with pytest.raises(ValueError, match="ambiguous"):
        bool(many)
    with pytest.raises(TypeError, match="integer"):
        operator.index(ex.asarray(np.array(1.0)))
    with pytest.raises(TypeError, match="integer"):
        operator.index(ex.asarray(np.array(True)))
    with pytest.raises(ValueError):
        int(ex.asarray(np.array(np.nan)))


def test_repr_and_format_are_numpy_s():
    computed = ex.asarray(np.arange(4.0).reshape(2, 2)) + 1
    computed.numpy()
    assert repr(computed) == "Array([[1., 2.],\n       [3., 4.]], dtype=float64)"   # rows under the first
    for shape in [(0, 3), (3, 0)]:
        empty = ex.asarray(np.zeros(shape)) + 1
        empty.numpy()
        assert repr(empty) == f"Array([], shape={shape}, dtype=float64)"
    loss = ex.asarray(np.array([1.0, 2.0, 4.0])).mean()
    assert f"{loss:.4f}" == "2.3333" and f"{loss:>8.2e}" == format(7 / 3, ">8.2e")
    assert f"{loss}" == repr(loss)
    with pytest.raises(TypeError, match="format"):
        f"{computed:.2f}"


def test_iteration_reads_the_first_axis():
    xs = np.arange(6.0).reshape(3, 2)
    rows = list(ex.asarray(xs) * 2)
    assert len(rows) == 3 and all(isinstance(r, ex.Array) for r in rows)
    np.testing.assert_array_equal(np.stack([r.numpy() for r in rows]), xs * 2)
    with pytest.raises(TypeError, match="0-d"):
        iter(ex.asarray(np.array(1.0)))


# -- asarray and DLPack -------------------------------------------------------------------------------
def test_asarray_copy_semantics():
    a = np.arange(4.0)
    assert np.shares_memory(ex.asarray(a).numpy(), a)
    assert np.shares_memory(ex.asarray(a, copy=False).numpy(), a)
    copied = ex.asarray(a, copy=True)
    assert not np.shares_memory(copied.numpy(), a)
    np.testing.assert_array_equal(copied.numpy(), a)
    converted = ex.asarray(a, dtype=np.float32)
    assert converted.dtype == np.float32
    np.testing.assert_array_equal(converted.numpy(), a.astype(np.float32))
    with pytest.raises(ValueError):
        ex.asarray(a, dtype=np.float32, copy=False)
    with pytest.raises(ValueError):
        ex.asarray([1.0, 2.0], copy=False)
    with pytest.raises(ValueError, match="byte order"):
        ex.asarray(a.astype(">f8"), copy=False)
    assert ex.asarray([1, 2]).dtype == np.int64 and ex.asarray([1.5], dtype="float32").dtype == np.float32
    assert ex.asarray(True).dtype == np.bool_ and ex.asarray(2.0).shape == ()
    x = ex.asarray(a)
    assert ex.asarray(x) is x and ex.asarray(x, copy=False) is x and ex.asarray(x, dtype=np.float64) is x
    fresh = ex.asarray(x, copy=True)
    assert fresh is not x and not np.shares_memory(fresh.numpy(), a)
    np.testing.assert_array_equal(fresh.numpy(), a)
    assert ex.asarray(x, dtype=np.int32).numpy().dtype == np.int32
    with pytest.raises(ValueError, match="copy=False"):
        ex.asarray(x, dtype=np.int32, copy=False)
    with pytest.raises(TypeError):
        ex.asarray(a, np.float32)   # dtype is keyword-only, as in the array API
    assert np.asarray(x, copy=False) is a
    with pytest.raises(ValueError, match="needs a copy"):
        np.asarray(x, dtype=np.float32, copy=False)


def test_dlpack_with_numpy_is_zero_copy():
    a = np.arange(6.0).reshape(2, 3)
    x = ex.from_dlpack(a)
    assert np.shares_memory(x.numpy(), a)
    assert not np.shares_memory(ex.from_dlpack(a, copy=True).numpy(), a)
    y = ex.asarray(a) * 2
    assert y.__dlpack_device__() == (1, 0)
    back = np.from_dlpack(y)
    assert np.shares_memory(back, y.numpy())
    np.testing.assert_array_equal(back, a * 2)
    again = ex.from_dlpack(y)
    assert np.shares_memory(again.numpy(), y.numpy())
    with pytest.raises((RuntimeError, BufferError, ValueError)):
        y.__dlpack__(stream=1)


def test_dlpack_with_torch_is_zero_copy():
    torch = peer("torch")
    t = torch.arange(6, dtype=torch.float32)
    x = ex.from_dlpack(t)
    t[0] = 42.0
    assert float(x[0]) == 42.0   # the same memory
    y = ex.asarray(np.arange(4.0)) + 1
    u = torch.from_dlpack(y)
    assert u.data_ptr() == y.numpy().ctypes.data
    np.testing.assert_array_equal(u.numpy(), np.arange(4.0) + 1)


# -- reading elements ---------------------------------------------------------------------------------
def test_reading_ten_thousand_elements_compiles_and_launches_nothing():
    xs = np.linspace(-1, 1, 10_000, dtype=np.float32)
    ms = np.arange(10_000, dtype=np.int64).reshape(100, 100)
    x, m = ex.asarray(xs), ex.asarray(ms) * 3
    m.numpy()   # realised
    ex.reset_stats()
    positive = sum(bool(x[i] > 0) for i in range(10_000))
    total = sum(float(x[i]) for i in range(0, 10_000, 7))
    corner = [int(m[i, 99 - i]) for i in range(100)]
    diagonal = [int(m[i][i]) for i in range(100)]
    steps = [float(x[i + 1] - x[i]) for i in range(0, 10_000, 97)]
    stats = ex.stats()
    assert stats["compiles"] == 0 and stats["kernels_launched"] == 0 and stats["plan_cache"]["misses"] == 0
    assert positive == int((xs > 0).sum()) and total == float(sum(float(v) for v in xs[::7]))
    assert corner == [int(ms[i, 99 - i]) * 3 for i in range(100)] and diagonal == list(np.diag(ms) * 3)
    assert steps == [float(xs[i + 1] - xs[i]) for i in range(0, 10_000, 97)]


def test_one_element_expressions_computed_by_numpy_are_bit_identical_to_kernels():
    """Exact ops on one element (elements read from a computed array, or a graph of one-element nodes) are
    computed by NumPy at evaluation. The same ops over whole arrays run in a kernel."""
    xs = np.array([1.5, -0.0, 0.0, np.inf, -np.inf, np.nan, 3e-45, 7.0, -2.5, 1e38], np.float32)
    ys = np.array([0.0, -0.0, 2.0, np.inf, 3.0, 1.0, 2.0, -3.0, 0.5, 10.0], np.float32)
    x, y = ex.asarray(xs), ex.asarray(ys)

    def expressions(a, b):
        return [a + b, a - b, a * b, a / b, a % b, ex.sqrt(a), ex.maximum(a, b), ex.minimum(a, b), a < b,
                a == b, ex.where(a > b, a, b), ex.astype(a, "float64") * 3, ex.astype(a * 1e9, "int64") // 7,
                ex.round(a), ex.floor(a), -a, abs(b), ex.sign(a), ex.isnan(a / b)]

    whole = ex.eval(*expressions(x, y))
    ex.reset_stats()
    for i in range(len(xs)):
        for a, b in [(x[i], y[i]), ((x * 1.0)[i], (y * 1.0)[i])]:
            for value, full in zip([e.numpy() for e in expressions(a, b)], whole):
                assert value.dtype == full.dtype and value.tobytes() == full[i].tobytes(), (i, value, full[i])
    assert ex.stats()["kernels_launched"] == 0


def test_inexact_ops_and_reductions_of_many_elements_still_run_kernels():
    xs = np.linspace(0, 1, 1000)
    x = ex.asarray(xs)
    ex.reset_stats()
    assert float(ex.exp(x[3])) == pytest.approx(np.exp(xs[3]), rel=1e-15)   # exp is held to ULPs, not exact
    assert float(x.sum()) == pytest.approx(xs.sum(), rel=1e-12)
    assert ex.stats()["kernels_launched"] == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.uint8, np.bool_])
def test_numpy_habits_real_imag_item_tolist_copy(dtype):
    a = np.arange(6).reshape(2, 3).astype(dtype)
    x = ex.asarray(a)
    for got, want in ((x.real, a.real), (x.imag, a.imag)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got.numpy(), want)
    assert x.item(1, 2) == a.item(1, 2) and type(x.item(4)) is type(a.item(4))
    assert ex.asarray(a[:1, :1]).item() == a[:1, :1].item()
    with pytest.raises(ValueError, match="size 1"):   # NumPy's own message: only one element converts
        x.item()
    assert x.tolist() == a.tolist() and type(x.tolist()[0][0]) is type(a.tolist()[0][0])
    copied = ex.copy(x * 1)
    assert copied.dtype == (a * 1).dtype and not np.shares_memory(ex.copy(x).numpy(), a)
    np.testing.assert_array_equal(copied.numpy(), a * 1)


def test_the_cli_says_its_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"exprgen {ex.__version__}"


def test_a_numpy_ufunc_computes_into_out_and_refuses_what_it_cannot_do():
    a = np.linspace(-2, 2, 7)
    x = ex.asarray(a)
    o = np.empty(7)
    assert np.tanh(x, out=o) is o
    np.testing.assert_array_equal(o, ex.tanh(x).numpy())
    assert np.add(x, 1, out=(o,)) is o and np.array_equal(o, a + 1)
    in_place = a.copy()
    np.multiply(ex.asarray(in_place), 2, out=in_place)   # the input itself, element for element
    np.testing.assert_array_equal(in_place, a * 2)
    with pytest.raises(TypeError, match="not where"):
        np.tanh(x, where=a > 0)
    with pytest.raises(TypeError, match="immutable"):
        np.tanh(x, out=ex.asarray(o))
    # NumPy's rules for out=: the result cast under "same_kind", broadcast to out's shape
    narrow, wide = np.empty(7, np.float32), np.empty((3, 7))
    np.testing.assert_array_equal(np.tanh(x, out=narrow), np.tanh(a, out=np.empty(7, np.float32)))
    np.testing.assert_array_equal(np.sin(x, out=wide), np.sin(a, out=np.empty((3, 7))))
    accumulated = np.ones((3, 7), np.float32)
    accumulated += x                               # float64 into float32, a row into every row
    expected = np.ones((3, 7), np.float32)
    expected += a                                  # NumPy's own: computed in float64, then cast
    np.testing.assert_array_equal(accumulated, expected)
    with pytest.raises(TypeError, match="Cannot cast ufunc 'add' output from dtype\\('float64'\\)"):
        np.add(x, 1, out=np.empty(7, np.int64))
    with pytest.raises(ValueError, match="non-broadcastable output operand"):
        np.add(ex.asarray(np.ones((2, 7))), 1, out=np.empty(7))
