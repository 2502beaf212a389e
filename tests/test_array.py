"""The Array API: laziness, fusion, evaluation, out=, errors, threads and the plan cache."""

import gc
import os
import subprocess
import sys
import weakref

import numpy as np
import pytest

import exprgen as ex
from exprgen import settings
from exprgen.runtime import realize


@pytest.fixture
def x():
    return np.linspace(-3, 3, 1001, dtype=np.float32)


def test_nothing_runs_until_a_value_is_asked_for(x):
    ex.reset_stats()
    y = ex.sigmoid(ex.asarray(x) * 2.0 + 1.0)
    assert ex.stats()["kernels_launched"] == 0
    assert "pending" in repr(y) and "sigmoid" in repr(y)
    assert y.shape == (1001,) and y.dtype == np.float32 and y.ndim == 1 and y.size == 1001 and len(y) == 1001
    np.testing.assert_allclose(y.numpy(), 1 / (1 + np.exp(-(x * np.float32(2) + np.float32(1)))), rtol=1e-6)
    assert "Array([" in repr(y)


def test_an_elementwise_chain_is_one_kernel_and_asking_twice_computes_once(x):
    a = ex.asarray(x)
    y = ex.tanh(a * ex.asarray(x[::-1].copy()) + 0.5) * a - a / 3
    ex.reset_stats()
    first = y.numpy()
    assert ex.stats()["kernels_launched"] == 1
    assert y.numpy() is first and np.asarray(y) is first
    assert ex.stats()["kernels_launched"] == 1


def test_expressions_built_on_a_computed_array_read_its_buffer(x):
    a = ex.asarray(x)
    y = ex.exp(a)
    y.numpy()
    z = y + 1
    assert "exp(" not in ex.explain(z, verbose=True).split("== rewrites")[0]
    np.testing.assert_allclose(z.numpy(), np.exp(x) + 1, rtol=1e-6)


def test_logistic_written_out_becomes_sigmoid(x):
    a = ex.asarray(x)
    text = ex.explain(1 / (1 + ex.exp(-a)), verbose=True)
    assert "1/(1+exp(-x)) -> sigmoid(x)" in text
    assert "sigmoid" in text.split("== graph after rewriting")[1]


def test_eval_shares_one_kernel_between_outputs_of_one_shape(x):
    a = ex.asarray(x)
    common = ex.exp(a * 0.5)
    ex.reset_stats()
    p, q = ex.eval(common + 1, common * 2)
    assert ex.stats()["kernels_launched"] == 1
    np.testing.assert_allclose(p, np.exp(x * np.float32(0.5)) + 1, rtol=1e-6)
    np.testing.assert_allclose(q, np.exp(x * np.float32(0.5)) * 2, rtol=1e-6)


def test_eval_with_outputs_of_different_shapes_orders_its_kernels():
    col = np.arange(3, dtype=np.float64).reshape(3, 1)
    row = np.arange(4, dtype=np.float64)
    a = ex.asarray(col) * 2
    b = a + ex.asarray(row)
    va, vb = ex.eval(b, a)
    np.testing.assert_array_equal(va, col * 2 + row)
    np.testing.assert_array_equal(vb, col * 2)


def test_eval_writes_into_out_buffers(x):
    a = ex.asarray(x)
    out1, out2 = np.empty_like(x), np.empty_like(x)
    r1, r2 = ex.eval(a * 2, a + 1, out=[out1, out2])
    assert r1 is out1 and r2 is out2
    np.testing.assert_array_equal(out1, x * 2)
    np.testing.assert_array_equal(out2, x + 1)
    strided = np.zeros(2002, np.float32)[::2]
    ex.eval(a - 1, out=strided)
    np.testing.assert_array_equal(strided, x - 1)


def test_out_on_the_numpy_path(x):
    # The interpreter backend, and a one-element graph NumPy computes exactly as a kernel would: the values
    # are computed by NumPy, then written into the out= buffers (strided ones too).
    a = ex.asarray(x)
    with ex.config(backend="numpy"):
        out = np.zeros(2 * x.size, x.dtype)[::2]
        assert ex.eval(a * 2, out=out) is out
    np.testing.assert_array_equal(out, x * 2)
    one, into = ex.asarray(np.array([3], np.int64)), np.zeros(1, np.int64)
    ex.reset_stats()
    ex.eval(one * 5 + 1, out=into)
    assert into[0] == 16 and ex.stats()["kernels_launched"] == 0


def test_out_may_be_the_input_itself(x):
    buf = x.copy()
    ex.eval(ex.asarray(buf) * 3, out=buf)
    np.testing.assert_array_equal(buf, x * 3)
    shifted = x.copy()
    ex.eval(ex.asarray(shifted[1:]) + 1, out=shifted[:-1])  # overlapping, not element for element
    np.testing.assert_array_equal(shifted[:-1], x[1:] + 1)
    interleaved = np.arange(2 * len(x), dtype=np.float32)
    evens = interleaved[::2].copy()
    ex.eval(ex.asarray(interleaved[::2]) * 2, out=interleaved[1::2])   # strided, sharing memory
    np.testing.assert_array_equal(interleaved[1::2], evens * 2)
    np.testing.assert_array_equal(interleaved[::2], evens)


@pytest.mark.parametrize("n", [3, 5_000_000])
def test_out_may_be_an_input_of_every_result_in_a_multi_result_eval(n):
    """The optimiser's step: update in place and return the loss of the old value. Results are separate
    kernels, so the update must run after every kernel that reads the old value (or be staged)."""
    w0 = np.arange(1.0, n + 1.0)
    w, loss = w0.copy(), np.empty(())
    W, G = ex.asarray(w), ex.asarray(np.ones(n))
    ex.eval(W - 0.5 * G, (W * W).sum(), out=[w, loss])
    np.testing.assert_array_equal(w, w0 - 0.5)
    np.testing.assert_allclose(loss, (w0 * w0).sum(), rtol=1e-12)
    x, top = w0.copy(), np.empty(())
    X = ex.asarray(x)
    ex.eval(X * 2, X.max(), out=[x, top])
    assert top == w0.max() and np.array_equal(x, w0 * 2)
    x, total = w0.copy(), np.empty(())
    X = ex.asarray(x)
    ex.eval(X.sum(), X * 2, out=[total, x])   # the reader listed first: the same answer
    np.testing.assert_allclose(total, w0.sum(), rtol=1e-12)
    np.testing.assert_array_equal(x, w0 * 2)


def test_out_that_is_an_input_returned_as_another_result_keeps_the_input_s_old_value():
    x0 = np.arange(6.0)
    x, y = x0.copy(), np.empty(6)
    X = ex.asarray(x)
    ex.eval(X * 2, X, out=[x, y])
    np.testing.assert_array_equal(x, x0 * 2)
    np.testing.assert_array_equal(y, x0)


@pytest.mark.parametrize("view", ["transpose", "reshaped transpose", "reversed"])
def test_out_at_an_input_s_address_with_other_strides_is_staged(view):
    """Same first address, other strides: writing element i overwrites an element not yet read."""
    a0 = np.arange(12.0).reshape(3, 4) if view != "reshaped transpose" else np.arange(16.0).reshape(4, 4)
    a = a0.copy()
    source = {"transpose": lambda a: a.T, "reshaped transpose": lambda a: a.T.reshape(4, 4).T.T,
              "reversed": lambda a: a[::-1, ::-1]}[view](a)
    expected = np.array(source) + 1
    target = a if source.shape == a.shape else a.reshape(source.shape)
    extra = np.empty(())
    ex.eval(ex.asarray(source) + 1, ex.asarray(source).sum(), out=[target, extra])
    np.testing.assert_array_equal(target, expected)
    assert extra == expected.sum() - expected.size
    b = a0.copy()
    single = {"transpose": b.T, "reshaped transpose": b.T, "reversed": b[::-1, ::-1]}[view]
    expected = np.array(single) + 1
    ex.eval(ex.asarray(single) + 1, out=b if single.shape == b.shape else b.reshape(single.shape))
    np.testing.assert_array_equal(b if single.shape == b.shape else b.reshape(single.shape), expected)


# An input view and an out= buffer over the same 4x4 matrix, at the same first address and of the same
# shape, with other strides: only the strides tell that element i of the result is not element i read.
SAME_ADDRESS_VIEWS = {"transpose": (lambda a: a.T, lambda a: a),
                      "reshaped transpose": (lambda a: a.reshape(2, 8).T, lambda a: a.reshape(8, 2)),
                      "reversed": (lambda a: a[::-1], lambda a: a[::-1].T)}


@pytest.mark.parametrize("results", ["single", "first of two", "second of two"])
@pytest.mark.parametrize("view", SAME_ADDRESS_VIEWS)
def test_out_at_an_input_s_address_with_other_strides_is_staged_even_with_nothing_read_after(view, results):
    """No kernel reads the input after the one writing the result (the other result reads another
    array), so comparing addresses and shapes alone would let the kernel write over elements it has not
    read yet: NumPy's answer is the input's old values plus one."""
    source_of, target_of = SAME_ADDRESS_VIEWS[view]
    a = np.arange(16.0).reshape(4, 4)
    source, target = source_of(a), target_of(a)
    assert source.__array_interface__["data"] == target.__array_interface__["data"]
    assert source.shape == target.shape and source.strides != target.strides
    expected = np.array(source) + 1
    other, other_out = np.arange(5.0), np.empty(5)
    if results == "single":
        ex.eval(ex.asarray(source) + 1, out=target)
    elif results == "first of two":
        ex.eval(ex.asarray(source) + 1, ex.asarray(other) * 2, out=[target, other_out])
    else:
        ex.eval(ex.asarray(other) * 2, ex.asarray(source) + 1, out=[other_out, target])
    np.testing.assert_array_equal(target, expected)
    if results != "single":
        np.testing.assert_array_equal(other_out, other * 2)


def test_a_graph_built_again_is_evaluated_under_the_options_of_the_moment():
    """A repeated graph skips planning, yet a change of backend, fast_math or rule set still counts."""
    x = ex.asarray(np.array([-1.0, 0.5, 2.0]))
    kept = ex.where(x > 0, x, 0) * 2   # keeps the graph alive: building it again gives the same nodes
    np.testing.assert_array_equal(kept.numpy(), [0.0, 1.0, 4.0])

    def again(launched: int, misses: int):
        ex.reset_stats()
        np.testing.assert_array_equal((ex.where(x > 0, x, 0) * 2).numpy(), [0.0, 1.0, 4.0])
        stats = ex.stats()
        assert (stats["kernels_launched"], stats["plan_cache"]["misses"]) == (launched, misses), stats

    again(launched=1, misses=0)
    with ex.config(backend="numpy"):
        again(launched=0, misses=0)
    with ex.config(fast_math=True):
        again(launched=1, misses=1)
        assert "relu" in ex.explain(ex.where(x > 0, x, 0) * 2)
    v = ex.rules.var("v")
    rule = ex.rules.register(v * 2, lambda v: v + v, algebra="v*2 -> v+v")
    try:
        again(launched=1, misses=1)
    finally:
        ex.rules.unregister(rule)
    again(launched=1, misses=1)


def test_out_errors(x):
    a = ex.asarray(x)
    with pytest.raises(ValueError, match="float32"):
        ex.eval(a * 2, out=np.empty(1001, np.float64))
    with pytest.raises(ValueError, match="one buffer per array"):
        ex.eval(a, a * 2, out=[np.empty_like(x)])
    frozen = np.empty_like(x)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        ex.eval(a * 2, out=frozen)


def test_shape_mismatch_names_both_shapes_at_the_operation():
    a, b = ex.asarray(np.zeros((3, 4))), ex.asarray(np.zeros(5))
    with pytest.raises(ValueError, match=r"cannot broadcast shapes \(3, 4\) and \(5,\)"):
        a + b


@pytest.mark.parametrize("bad", [np.zeros(3, np.complex64), np.array(["a"]), np.array([object()]),
                                 np.zeros(3, np.float16)])
def test_unsupported_dtypes_raise_type_error_naming_them(bad):
    with pytest.raises(TypeError, match=bad.dtype.name):
        ex.asarray(bad)


def test_dtype_errors_come_from_numpy_rules():
    with pytest.raises(TypeError, match="subtract"):
        ex.asarray(np.array([True])) - ex.asarray(np.array([False]))
    with pytest.raises(TypeError, match="float16"):
        ex.exp(ex.asarray(np.array([True])))
    with pytest.raises(OverflowError, match="int32"):
        ex.asarray(np.zeros(3, np.int32)) + 2**40


def test_python_scalars_are_weakly_typed():
    f32 = ex.asarray(np.ones(3, np.float32))
    i32 = ex.asarray(np.ones(3, np.int32))
    assert (f32 * 2.0).dtype == np.float32
    assert (i32 + 1).dtype == np.int32
    assert (i32 + 1.5).dtype == np.float64
    assert (2.0 - f32).dtype == np.float32
    np.testing.assert_array_equal((i32 * 3).numpy(), np.full(3, 3, np.int32))


def test_changing_a_scalar_or_a_size_never_recompiles():
    (ex.asarray(np.arange(5.0)) * 1.5 + 1).numpy()
    ex.reset_stats()
    for scale, n in [(2.0, 10), (3.0, 10), (-1.5, 1000), (0.25, 7)]:
        data = np.arange(n, dtype=np.float64)
        np.testing.assert_array_equal((ex.asarray(data) * scale + 1).numpy(), data * scale + 1)
    assert ex.stats()["compiles"] == 0


def test_strided_and_negative_stride_inputs_are_read_in_place():
    base = np.arange(60, dtype=np.float64).reshape(6, 10)
    views = [base[::2, 1::3], base[::-1], base.T, base[:, ::-2], base[3]]
    for view in views:
        a = ex.asarray(view)
        assert np.shares_memory(a.numpy(), base)
        np.testing.assert_array_equal((a * 2 + 1).numpy(), view * 2 + 1)
    np.testing.assert_array_equal((ex.asarray(base.T) + ex.asarray(base[0][::-1])[:, None]).numpy(),
                                  base.T + base[0][::-1][:, None])
    np.testing.assert_array_equal((ex.asarray(base.T) * ex.asarray(base[:, 0])).numpy(), base.T * base[:, 0])


def test_broadcasting_rows_columns_and_0d():
    col = np.arange(4.0).reshape(4, 1)
    row = np.arange(5.0)
    zero_d = np.array(2.5)
    got = (ex.asarray(col) * ex.asarray(row) + ex.asarray(zero_d)).numpy()
    np.testing.assert_array_equal(got, col * row + zero_d)
    assert (ex.asarray(zero_d) * 2).numpy().shape == ()


def test_empty_arrays_give_empty_results_without_a_launch():
    ex.reset_stats()
    y = ex.exp(ex.asarray(np.zeros((0, 3), np.float32))) + 1
    value = y.numpy()
    assert value.shape == (0, 3) and value.dtype == np.float32
    assert ex.stats()["kernels_launched"] == 0


def test_scalar_conversions():
    one = ex.asarray(np.array([2.5]))
    assert float(one * 2) == 5.0 and int(one * 2) == 5 and bool(one > 1) is True
    with pytest.raises(TypeError, match="one element"):
        float(ex.asarray(np.ones(3)))
    with pytest.raises(ValueError, match="ambiguous"):
        bool(ex.asarray(np.ones(3)) > 0)


def test_operators_and_their_reflections():
    xs = np.array([-3.0, -0.5, 0.0, 2.0, 7.0])
    ys = np.array([2.0, 3.0, -1.5, 0.5, 2.0])
    a, b = ex.asarray(xs), ex.asarray(ys)
    cases = {
        "add": (a + b, xs + ys), "radd": (1 + a, 1 + xs), "sub": (a - b, xs - ys), "rsub": (1 - a, 1 - xs),
        "mul": (a * b, xs * ys), "div": (a / b, xs / ys), "rdiv": (1 / b, 1 / ys),
        "floordiv": (a // b, xs // ys), "mod": (a % b, xs % ys), "rmod": (5 % b, 5 % ys),
        "pow": (b ** 2, ys ** 2), "rpow": (2 ** a, 2 ** xs), "neg": (-a, -xs), "pos": (+a, +xs),
        "abs": (abs(a), abs(xs)), "lt": (a < b, xs < ys), "le": (a <= b, xs <= ys), "gt": (a > b, xs > ys),
        "ge": (a >= b, xs >= ys), "eq": (a == b, xs == ys), "ne": (a != b, xs != ys),
        "and": ((a > 0) & (b > 0), (xs > 0) & (ys > 0)), "or": ((a > 0) | (b > 0), (xs > 0) | (ys > 0)),
        "xor": ((a > 0) ^ (b > 0), (xs > 0) ^ (ys > 0)), "invert": (~(a > 0), ~(xs > 0)),
        "round": (round(a), np.round(xs)), "numpy_ufunc": (np.exp(a), np.exp(xs)),
        "numpy_on_left": (xs * b, xs * ys),
    }
    for name, (got, want) in cases.items():
        assert isinstance(got, ex.Array), name
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-15, err_msg=name)
        assert got.numpy().dtype == want.dtype, name


def test_functions_with_numpy_keywords():
    xs = np.array([-2.0, -0.4, 0.5, 1.5, 2.5, np.nan])
    a = ex.asarray(xs)
    np.testing.assert_array_equal(ex.clip(a, -1, 1).numpy(), np.clip(xs, -1, 1))
    np.testing.assert_array_equal(ex.clip(a, None, 1).numpy(), np.clip(xs, None, 1))
    np.testing.assert_array_equal(ex.round(a, 1).numpy(), np.round(xs, 1))
    np.testing.assert_array_equal(ex.where(a > 0, a, 0.0).numpy(), np.where(xs > 0, xs, 0.0))
    np.testing.assert_array_equal(a.astype("int32").numpy()[:5], xs[:5].astype(np.int32))
    assert ex.gelu(a, approximate="tanh").dtype == np.float64
    with pytest.raises(ValueError, match="approximate"):
        ex.gelu(a, approximate="fast")


def test_round_keeps_integer_dtypes_and_clip_takes_bounds_that_cannot_bind():
    """NumPy rounds integers with decimals < 0 in float64 and casts back (keeping the dtype); a Python int
    clip bound beyond the dtype's range on the side where it cannot bind is accepted, the other raises."""
    ints = np.array([15, 25, -15, 2**62 + 1, -(2**62) - 3], np.int64)
    for arr, decimals in [(ints, -1), (ints, -3), (ints, 2), (ints[:3].astype(np.int32), -1),
                          (np.array([15, 250], np.uint8), -1), (np.array([-128, 127], np.int8), -1)]:
        got, want = ex.round(ex.asarray(arr), decimals).numpy(), np.round(arr, decimals)
        assert got.dtype == want.dtype, (arr.dtype, decimals)
        np.testing.assert_array_equal(got, want, err_msg=f"{arr.dtype} {decimals}")
    xs = np.array([1.5, -2.25, np.inf])
    with np.errstate(invalid="ignore"):
        for decimals in (400, -400):   # the scale overflows to inf: NaN, as in NumPy
            np.testing.assert_array_equal(ex.round(ex.asarray(xs), decimals).numpy(), np.round(xs, decimals))
    with pytest.raises(TypeError, match="bool"):
        ex.round(ex.asarray(np.array([True])), 1)
    img = np.array([0, 17, 250, 255], np.uint8)
    for lo, hi in [(0, 300), (-1000, 100), (None, 2**70), (-5, None), (-5, 3)]:
        got, want = ex.clip(ex.asarray(img), lo, hi).numpy(), np.clip(img, lo, hi)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)
    for lo, hi in [(300, 400), (0, -5)]:
        with pytest.raises(OverflowError):
            np.clip(img, lo, hi)
        with pytest.raises(OverflowError):
            ex.clip(ex.asarray(img), lo, hi)


def test_comparing_with_none_and_the_arrays_asarray_refuses_or_unwraps(tmp_path):
    xs = np.array([0.0, np.nan, 2.0])
    a = ex.asarray(xs)
    np.testing.assert_array_equal((a == None).numpy(), xs == None)  # noqa: E711 - the comparison under test
    np.testing.assert_array_equal((a != None).numpy(), xs != None)  # noqa: E711
    np.testing.assert_array_equal((None == a).numpy(), None == xs)  # noqa: E711
    with pytest.raises(TypeError, match="mask"):
        ex.asarray(np.ma.masked_array([1.0, 2.0], mask=[False, True]))
    assert ex.asarray(np.ma.masked_array([1.0, 2.0])).numpy().tolist() == [1.0, 2.0]   # nothing masked
    mapped = np.memmap(tmp_path / "data", dtype=np.float64, mode="w+", shape=(3,))
    mapped[:] = [1.0, 2.0, 3.0]
    read = ex.asarray(mapped).numpy()   # a subclass is read in place, as a plain ndarray (np.asarray's rule)
    assert type(read) is np.ndarray and np.shares_memory(read, mapped)
    np.testing.assert_array_equal((ex.asarray(mapped) * 2).numpy(), [2.0, 4.0, 6.0])


def test_thread_settings():
    big = np.random.default_rng(0).standard_normal(2 * settings.PARALLEL_THRESHOLD)   # split across threads
    expected = np.tanh(big) * 2
    for n in (1, 2, 3):
        with ex.threads(n):
            assert ex.get_num_threads() == n
            np.testing.assert_allclose((ex.tanh(ex.asarray(big)) * 2).numpy(), expected, rtol=1e-14)
    previous = ex.get_num_threads()
    ex.set_num_threads(1)
    assert ex.get_num_threads() == 1
    ex.set_num_threads(previous)
    for bad in (0, -1, True, 2.0, "2"):
        with pytest.raises(ValueError, match="positive integer"):
            ex.set_num_threads(bad)
    ex.set_num_threads(np.int64(2))   # any integer, NumPy's too
    assert ex.get_num_threads() == 2 and type(ex.get_num_threads()) is int
    ex.set_num_threads(previous)


def test_exprgen_imports_in_a_removed_working_directory(tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    script = (f"import os; os.chdir({str(gone)!r}); os.rmdir({str(gone)!r}); import numpy as np, exprgen as ex; "
              "print(float((ex.asarray(np.ones(3)) * 2).sum()))")
    env = dict(os.environ, EXPRGEN_CACHE_DIR=str(tmp_path / "cache"))
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.strip() == "6.0", run.stderr


@pytest.mark.parametrize("value", ["abc", "0", "\u00b2"])
def test_a_bad_thread_count_in_the_environment_is_named(value, tmp_path):
    script = "import numpy as np, exprgen as ex; ex.sigmoid(ex.asarray(np.ones(1 << 20))).numpy()"   # split: asks
    env = dict(os.environ, EXPRGEN_NUM_THREADS=value, EXPRGEN_CACHE_DIR=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert run.returncode != 0 and f"EXPRGEN_NUM_THREADS must be a positive integer, got {value!r}" in run.stderr


def test_large_outputs_come_from_a_pool_that_never_hands_out_a_buffer_in_use():
    data = np.arange(1 << 19, dtype=np.float64)
    a = ex.asarray(data)
    kept = (a + 1).numpy()
    view = (a + 2).numpy()[10:]
    again = (a + 3).numpy()
    assert not np.shares_memory(kept, again) and not np.shares_memory(view, again)
    np.testing.assert_array_equal(kept, data + 1)
    np.testing.assert_array_equal(view, data[10:] + 2)


def test_the_pool_keeps_idle_buffers_only_up_to_its_byte_budget(monkeypatch):
    """Dropped results of ever new sizes were all kept (eight of 100 MB: 800 MB resident for nothing)."""
    from exprgen.backends import memory

    monkeypatch.setattr(memory, "MAX_IDLE_BYTES", 6 << 20)
    x = ex.asarray(np.ones(1))
    kept = [(ex.broadcast_to(x, (300_000 + i,)) * 2.0).numpy() for i in range(3)]   # in use: never let go
    for i in range(6):
        (ex.broadcast_to(x, (400_000 + i,)) * 3.0).numpy()   # 3.2 MB each, dropped at once
    idle = [b for b in memory.pool._buffers if not any(np.shares_memory(b, k) for k in kept)]
    assert 0 < sum(b.nbytes for b in idle) <= (6 << 20) + 400_005 * 8   # trimmed as each one was allocated
    assert all((k == 2.0).all() for k in kept) and len(memory.pool._buffers) - len(idle) == 3


@pytest.mark.parametrize("offset", [0, 1, 5, 16])
def test_large_outputs_are_streamed_whole_whatever_their_alignment(offset):
    """Outputs of eg::STREAM_BYTES (16 MB) and more go out with streaming stores from their first 64-byte
    line on: every element arrives, none outside the buffer is touched, for any alignment of out=, two
    outputs of other widths and alignments at once, and a strided output (stored plainly)."""
    rng = np.random.default_rng(offset)
    n = (16 << 20) // 4 + 4099   # float32: just over the threshold, and not a whole number of blocks
    x, y = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    a = ex.asarray(x)
    summed, bigger = x * np.float32(2) + y, x > y   # the same bits in any loop: exact comparisons apply
    np.testing.assert_array_equal((a * 2 + y).numpy(), summed)
    base = np.full(n + offset + 7, 7, np.float32)
    wide = np.full(n + 3, -1.0)   # float64 output at another alignment
    flags = np.ones(n + offset + 2, bool)
    ex.eval(a * 2 + y, (a * 2 + y).astype(np.float64), a > y,
            out=(base[offset:offset + n], wide[3:], flags[offset + 2:]))
    np.testing.assert_array_equal(base[offset:offset + n], summed)
    assert (base[:offset] == 7).all() and (base[offset + n:] == 7).all()
    np.testing.assert_array_equal(wide[3:], summed.astype(np.float64))
    assert (wide[:3] == -1).all()
    np.testing.assert_array_equal(flags[offset + 2:], bigger)
    assert flags[:offset + 2].all()
    strided = np.zeros(2 * n, np.float32)
    ex.eval(a * 2 + y, out=strided[::2])
    np.testing.assert_array_equal(strided[::2], summed)
    assert not strided[1::2].any()


def test_a_large_input_is_released_with_the_last_reference_to_it_and_small_graphs_stay_warm():
    big = np.ones(1 << 20, np.float32)
    alive = weakref.ref(big)
    x = ex.asarray(big)
    assert float((ex.exp(x) * 2).sum()) == pytest.approx(2 * np.e * (1 << 20), rel=1e-6)
    del x, big
    gc.collect()
    assert alive() is None
    # A computed result kept (a loss in a list) keeps its value, not its graph's inputs: the first batch
    # was also held by the rewriter's log (a rule fired on it) until the next rewrite.
    losses, batches = [], []
    for step in range(3):
        batch = np.full(1 << 20, step, np.float32)
        batches.append(weakref.ref(batch))
        losses.append(((ex.asarray(batch) - 0.5) ** 2).mean())
        float(losses[-1])
        del batch
    gc.collect()
    assert not any(b() for b in batches) and [float(loss) for loss in losses] == [0.25, 0.25, 2.25]
    assert "already computed" in ex.explain(losses[0])
    # A small expression built again (its Array long gone) finds its node, which remembers its bound plan.
    small = ex.asarray(np.float32([0.5]))
    ex.sigmoid(small).numpy()
    gc.collect()
    assert any(isinstance(options, tuple) for options in ex.sigmoid(small)._graph_node().ways)


def test_numpy_backend_gives_the_same_values(x):
    compiled = (ex.sin(ex.asarray(x)) * 3).numpy()
    ex.reset_stats()
    with ex.config(backend="numpy"):
        interpreted = (ex.sin(ex.asarray(x)) * 3).numpy()
    assert ex.stats()["kernels_launched"] == 0
    np.testing.assert_allclose(interpreted, compiled, rtol=1e-6)


SCALAR_EXPRESSIONS = {
    "x*c+1": lambda x, g, c: x * c + 1.0,
    "x - c*g": lambda x, g, c: x - c * g,
    "maximum(x, c)": lambda x, g, c: ex.maximum(x, c),
    "exp(x)*c": lambda x, g, c: ex.exp(x) * c,
    "x**c": lambda x, g, c: x ** (c + 3),
    "x/c": lambda x, g, c: x / c,
}


@pytest.mark.parametrize("name", SCALAR_EXPRESSIONS)
def test_a_new_scalar_value_reuses_the_plan(name):
    """300 learning rates gave 300 plan misses: every rule that looked at a scalar made the plan specific to
    its value, though only a rule that fires depends on it."""
    build = SCALAR_EXPRESSIONS[name]
    x0 = np.linspace(0.5, 2.0, 64)
    x, g = ex.asarray(x0), ex.asarray(np.full(64, 0.25))
    ex.reset_stats()
    for c in np.linspace(0.013, 0.9, 50):
        np.testing.assert_allclose(build(x, g, float(c)).numpy(), build(x0, 0.25, float(c)), rtol=1e-14)
    assert ex.stats()["plan_cache"]["misses"] == 1
    assert "a new value of any of them reuses this plan" in ex.explain(build(x, g, 0.3))


def test_a_plan_a_rule_made_for_one_scalar_value_is_kept_for_it_and_bounded():
    x0 = np.linspace(-2.0, 2.0, 9)
    x = ex.asarray(x0)
    ex.reset_stats()
    for c in (1.0, 3.0, 1.0, 3.0, 5.0):
        np.testing.assert_array_equal((x * c).numpy(), x0 * c)
    assert ex.stats()["plan_cache"]["misses"] == 2   # the plan for 1.0, and one for any other value
    assert "for these scalar values only" in ex.explain(x * 1.0)   # x*1 -> x read the 1
    for k in range(40):   # rules that fire on each value (x/2**k): bounded, and still right
        np.testing.assert_array_equal((x / 2.0 ** k).numpy(), x0 / 2.0 ** k)
    assert max(map(len, realize._plans.values())) <= realize._MAX_PLANS_PER_STRUCTURE


def test_out_buffers_that_overlap_each_other_take_the_later_result_where_they_overlap():
    """As NumPy's multi-output ufuncs: kernels writing both interleaved their elements."""
    X = ex.asarray(np.arange(6.0))
    big = np.zeros(8)
    ex.eval(X + 1, X * 10, out=[big[:6], big[2:]])
    np.testing.assert_array_equal(big, [1, 2, 0, 10, 20, 30, 40, 50])
    interleaved = np.zeros(12)
    ex.eval(X + 1, X * 10, out=[interleaved[::2], interleaved[1::2]])   # sharing a range, not an element
    np.testing.assert_array_equal(interleaved, np.ravel([np.arange(6.0) + 1, np.arange(6.0) * 10], order="F"))


def test_a_node_is_fixed_once_made_and_learns_only_its_named_annotations():
    node = ex.exp(ex.asarray(np.float32([1.0])))._graph_node()
    with pytest.raises(AttributeError, match="immutable"):
        node.op = "log"
    with pytest.raises(AttributeError, match="not a node annotation"):
        node.annotate("op", "log")
    assert node.op == "exp" and node.view_of is None and node.custom_vjp is None
    base = ex.asarray(np.arange(6.0).reshape(2, 3))
    view = base.T._graph_node()   # a transposed buffer is a buffer over the same memory
    assert view.view_of is not None and view.view_of[0] is base._graph_node()


def test_explain_summarises_by_default_and_shows_everything_with_verbose():
    x = ex.asarray(np.random.default_rng(1).standard_normal((64, 32)))

    def f(x):
        centred = x - ex.mean(x, axis=-1, keepdims=True)
        return ex.sum(ex.softmax(centred / ex.sqrt(ex.var(x, axis=-1, keepdims=True) + 1e-5), axis=-1) ** 2)
    value, grad = ex.value_and_grad(f)(x)
    summary, full = ex.explain(value, grad), ex.explain(value, grad, verbose=True)
    kernels = summary.count("-- kernel ")
    assert kernels >= 2 and summary.count("   key ") == kernels and "x**2 -> x*x" in summary
    assert len(summary.splitlines()) < 15 * kernels and max(map(len, summary.splitlines())) <= 260
    assert "extern \"C\"" not in summary and full.count("extern \"C\"") == kernels   # each kernel's source
    assert "== graph after rewriting" in full and len(full.splitlines()) > 10 * len(summary.splitlines())
