"""Reductions, views and the scheduler that fuses across them."""

import math
import tracemalloc

import numpy as np
import pytest

import exprgen as ex
from exprgen import settings
from exprgen.runtime.realize import plan_for
from exprgen.ir.interpret import evaluate
from exprgen.ir import dtypes as eg_dtypes
from exprgen.testing import assert_close, assert_matches_reference, check_values, tolerance

AXES = [None, 0, 1, 2, -1, (0, 1), (0, 2), (1, 2), (0, 1, 2), ()]
REDUCTIONS = ["sum", "prod", "max", "min", "any", "all", "mean", "var", "std"]
DTYPES = [np.bool_, np.int32, np.int64, np.float32, np.float64]


def _data(dtype, shape=(3, 4, 5), seed=0):
    rng = np.random.default_rng(seed)
    if dtype == np.bool_:
        return rng.random(shape) < 0.6
    if np.dtype(dtype).kind == "i":
        return rng.integers(-5, 6, shape).astype(dtype)
    return (rng.standard_normal(shape) * 2).astype(dtype)


def _numpy(name, x, **kw):
    with np.errstate(all="ignore"):
        return getattr(np, name)(x, **kw)


def _check(make, want):
    """The kernel's value of ``make()`` within the reference's error bound (for a float sum, the sum's own
    condition: no absolute tolerance, which would pass a 1e-3 relative error on a small sum), NumPy's
    within the same bound, and the same dtype and shape as NumPy's."""
    want = np.asarray(want)
    (got,) = assert_matches_reference(make())
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    if want.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want)
    else:
        check_values([want], make())


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", REDUCTIONS)
def test_every_reduction_axis_and_keepdims(name, dtype):
    xs = _data(dtype)
    x = ex.asarray(xs)
    if name in ("var", "std", "mean") and dtype == np.bool_:
        axes = [None, 1]
    else:
        axes = AXES if dtype in (np.float64, np.int32) else [None, -1, (0, 2)]
    for axis in axes:
        for keepdims in (False, True):
            _check(lambda: getattr(ex, name)(x, axis=axis, keepdims=keepdims),
                   _numpy(name, xs, axis=axis, keepdims=keepdims))


@pytest.mark.parametrize("dtype", [np.int32, np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_arg_reductions(name, dtype):
    xs = _data(dtype)
    xs.flat[[7, 30, 31]] = xs.max() if name == "argmax" else xs.min()   # ties: the first wins
    x = ex.asarray(xs)
    for axis in (None, 0, 1, 2, -1):
        for keepdims in (False, True):
            np.testing.assert_array_equal(getattr(ex, name)(x, axis=axis, keepdims=keepdims).numpy(),
                                          getattr(np, name)(xs, axis=axis, keepdims=keepdims))


def _extreme_rows(dtype):
    """Rows of the dtype's lowest value, of its highest, and both mixed with ties (first occurrence wins)
    and a middle value; floats add rows of -inf and inf. A max or min that starts from a wrong identity
    (int8's -127 for -128) gets the all-lowest row wrong, and its arg gives the identity's index."""
    if dtype.kind == "b":
        lo, hi, mid = False, True, True
    elif dtype.kind in "iu":
        lo, hi, mid = np.iinfo(dtype).min, np.iinfo(dtype).max, 1
    else:
        lo, hi, mid = np.finfo(dtype).min, np.finfo(dtype).max, 0
    rows = [[lo] * 7, [hi] * 7, [lo, hi, hi, lo, mid, lo, hi]]
    if dtype.kind == "f":
        rows += [[-np.inf] * 7, [np.inf] * 7]
    return np.array(rows, dtype)


@pytest.mark.parametrize("dtype", eg_dtypes.SUPPORTED, ids=str)
def test_rows_of_a_dtype_s_lowest_and_highest_values_reduce_as_numpy(dtype):
    """max, min, argmax, argmin, sum and prod of rows at the dtype's extremes, along the rows and over
    all, exactly as NumPy: integer sums and products wrap as NumPy's do (int8 sums in int64, int64 and
    uint64 ones wrap in their own dtype). A float sum or product whose partial results overflow depends
    on the order of the terms (max + max - max is inf or max): the mixed row's is left out, every other
    one is the same in any order (the full ones meet -inf and inf, so are NaN)."""
    xs = _extreme_rows(dtype)
    x = ex.asarray(xs)
    names = ["max", "min", "argmax", "argmin", "sum", "prod"]
    for axis in (None, 1):
        got = ex.eval(*[getattr(ex, name)(x, axis=axis) for name in names])
        for name, value in zip(names, got):
            want, value = np.asarray(_numpy(name, xs, axis=axis)), np.asarray(value)
            if dtype.kind == "f" and name in ("sum", "prod") and axis == 1:
                want, value = np.delete(want, 2), np.delete(value, 2)   # the mixed row: the order decides
            assert_close(value, want, ulp=tolerance(name, want.dtype), what=f"{name}(axis={axis}) of {xs!r}")


def test_nan_propagates_like_numpy():
    xs = np.array([[1.0, np.nan, 3.0, np.nan], [4.0, 2.0, -np.inf, 0.0], [np.nan] * 4])
    x = ex.asarray(xs)
    for name in ("sum", "prod", "max", "min", "mean", "argmax", "argmin"):
        for axis in (None, 0, 1):
            np.testing.assert_array_equal(getattr(ex, name)(x, axis=axis).numpy(), _numpy(name, xs, axis=axis),
                                          err_msg=f"{name} axis={axis}")


def test_empty_and_size_one_axes():
    for shape, axis in [((0, 3), 0), ((3, 0), 1), ((0, 3), None), ((1, 4), 0), ((4, 1), 1), ((0, 0), 1)]:
        xs = np.zeros(shape, np.float64)
        x = ex.asarray(xs)
        for name in ("sum", "prod", "any", "all", "mean"):
            _check(lambda: getattr(ex, name)(x, axis=axis), _numpy(name, xs, axis=axis))
        for name in ("max", "argmin"):
            try:
                want = _numpy(name, xs, axis=axis)
            except ValueError:
                with pytest.raises(ValueError, match="zero-size|empty"):
                    getattr(ex, name)(x, axis=axis)
            else:
                np.testing.assert_array_equal(getattr(ex, name)(x, axis=axis).numpy(), want)


def test_integer_sums_accumulate_in_int64():
    xs = np.full(1000, 2**30, np.int32)
    assert ex.sum(ex.asarray(xs)).numpy() == 1000 * 2**30
    assert ex.sum(ex.asarray(xs)).dtype == np.int64
    assert ex.sum(ex.asarray(np.ones(5, bool))).numpy() == 5


def test_integer_means_accumulate_in_float64_as_numpy_does():
    """An int64 sum of four 2**62 wraps to 0: mean, var and std must add integers up in float64."""
    cases = [np.full(4, 2**62, np.int64), np.full(2, 2**63, np.uint64), np.array([2**62] * 3 + [2**62 + 2**40]),
             np.array([True, False, True]), np.array([[7, -3], [2**31 - 1, 5]], np.int32)]
    for xs in cases:
        for name in ("mean", "var", "std"):
            got, want = getattr(ex, name)(ex.asarray(xs)).numpy(), getattr(np, name)(xs)
            assert got.dtype == want.dtype == np.float64, (name, xs.dtype)
            np.testing.assert_allclose(got, want, rtol=1e-15, err_msg=f"{name} {xs.dtype}")
    xs = np.array([1, 2, 4], np.int64)
    assert ex.mean(ex.asarray(xs), dtype=np.float32).dtype == np.float32
    np.testing.assert_allclose(ex.var(ex.asarray(xs), dtype=np.float32).numpy(), np.var(xs, dtype=np.float32),
                               rtol=1e-6)


def test_numpy_reduction_functions_call_the_array_methods():
    """np.sum(a) and the like call a.sum(axis=..., dtype=None, out=None): the result stays lazy, and an
    out= buffer is computed into and returned, as NumPy does."""
    xs = np.array([[1.0, -2.0], [3.0, 4.0]])
    a = ex.asarray(xs)
    for f in (np.sum, np.mean, np.max, np.min, np.prod, np.std, np.var, np.any, np.all, np.argmax, np.argmin):
        got = f(a)
        assert isinstance(got, ex.Array), f.__name__
        np.testing.assert_allclose(got.numpy(), f(xs), rtol=1e-15, err_msg=f.__name__)
    np.testing.assert_allclose(np.std(a, axis=0, ddof=1).numpy(), np.std(xs, axis=0, ddof=1), rtol=1e-15)
    with pytest.raises(TypeError):   # NumPy's positional dtype is not taken for out
        a.sum(0, np.float64)
    assert ex.mean(ex.asarray(np.array([1, 2, 4])), dtype=np.int64).numpy() == np.mean([1, 2, 4], dtype=np.int64)
    out = np.empty(2)
    assert np.sum(a, axis=1, out=out) is out
    np.testing.assert_array_equal(out, xs.sum(1))
    assert a.max(0, out=out) is out
    np.testing.assert_array_equal(out, xs.max(0))


def test_float32_sum_is_at_least_as_accurate_as_numpy_at_1e7():
    xs = np.random.default_rng(1).random(10_000_000, dtype=np.float32) + np.float32(0.5)
    exact = math.fsum(xs.astype(np.float64))
    ours = float(ex.sum(ex.asarray(xs)).numpy())
    numpys = float(np.sum(xs))
    assert abs(ours - exact) <= abs(numpys - exact) + np.spacing(np.float32(exact))


def test_the_issue_examples_fuse():
    rng = np.random.default_rng(2)
    pred, target = rng.standard_normal(10_000).astype(np.float32), rng.standard_normal(10_000).astype(np.float32)
    logits = rng.standard_normal((64, 33)).astype(np.float32)
    xs = rng.standard_normal((50, 40))
    ex.reset_stats()
    loss = ((ex.asarray(pred) - ex.asarray(target)) ** 2).mean()
    np.testing.assert_allclose(loss.numpy(), ((pred - target) ** 2).mean(), rtol=1e-6)
    assert ex.stats()["kernels_launched"] == 1
    ex.reset_stats()
    p = ex.softmax(ex.asarray(logits), axis=-1).numpy()
    e = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(p, e / e.sum(-1, keepdims=True), rtol=1e-6, atol=1e-7)
    assert ex.stats()["kernels_launched"] <= 2
    ex.reset_stats()
    x = ex.asarray(xs)
    z = (x - x.mean(axis=1, keepdims=True)) / ex.sqrt(x.var(axis=1, keepdims=True) + 1e-5)
    assert "reduces axes (1,)" in ex.explain(z)
    ex.reset_stats()
    want = (xs - xs.mean(1, keepdims=True)) / np.sqrt(xs.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(z.numpy(), want, rtol=1e-12)
    assert ex.stats()["kernels_launched"] == 1


@pytest.mark.parametrize("axis", [-1, 0, None])
def test_logsumexp_softmax_log_softmax(axis):
    xs = np.random.default_rng(3).standard_normal((7, 9)) * 30
    xs[2] = -np.inf
    xs[4, 3] = xs[5, 5] = np.inf
    x = ex.asarray(xs)
    with np.errstate(all="ignore"):
        top = np.max(xs, axis=axis, keepdims=True)
        safe = np.where(np.isfinite(top), top, 0)
        lse = np.log(np.sum(np.exp(xs - safe), axis=axis, keepdims=True)) + safe
        np.testing.assert_allclose(ex.logsumexp(x, axis=axis, keepdims=True).numpy(), lse, rtol=1e-12)
        # softmax shifts by the max as it is (scipy.special.softmax): NaN throughout a row holding +inf
        soft = np.exp(xs - top) / np.sum(np.exp(xs - top), axis=axis, keepdims=True)
        np.testing.assert_allclose(ex.softmax(x, axis=axis).numpy(), soft, rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(ex.log_softmax(x, axis=axis).numpy(), xs - lse, rtol=1e-12, atol=1e-12,
                                   equal_nan=True)


VIEW_CHAINS = {
    "issue": lambda a: a[::2, 1:].T.reshape(-1),
    "negative steps": lambda a: a[::-1, ::-3],
    "int and None": lambda a: a[1, None, ::2],
    "ellipsis": lambda a: a[..., 2],
    "transpose": lambda a: a.transpose(1, 0),
    "swapaxes": lambda a: a.swapaxes(0, 1)[::2],
    "expand_squeeze": lambda a: a[:, None, :].squeeze(1)[:, ::-1],
    "broadcast": lambda a: a[0].reshape(1, -1)[0, ::2],
    "flip": lambda a: a[::-1].T[::-1],
    "view of view of view": lambda a: a.T[2:].T.reshape(3, 2, -1)[:, ::-1],
}


def _numpy_chain(name, a):
    mapping = {"expand_squeeze": lambda b: np.squeeze(b[:, None, :], 1)[:, ::-1]}
    return mapping.get(name, VIEW_CHAINS[name])(a)


@pytest.mark.parametrize("name", sorted(VIEW_CHAINS))
def test_views_match_numpy_views(name):
    base = np.arange(6 * 10, dtype=np.float64).reshape(6, 10)
    strided = np.arange(12 * 20, dtype=np.float64).reshape(12, 20)[::2, ::2]
    for data in (base, strided):
        want = _numpy_chain(name, data)
        view = VIEW_CHAINS[name](ex.asarray(data))
        np.testing.assert_array_equal(view.numpy(), want)
        if np.shares_memory(want, data):
            assert np.shares_memory(view.numpy(), data), "a view of a buffer must not copy"
        # the same view of a lazy expression and of a reduction's result
        np.testing.assert_array_equal(VIEW_CHAINS[name](ex.asarray(data) * 2 + 1).numpy(), want * 2 + 1)
    cube = np.arange(2 * 6 * 10, dtype=np.float64).reshape(2, 6, 10)
    np.testing.assert_array_equal(VIEW_CHAINS[name](ex.sum(ex.asarray(cube), axis=0)).numpy(),
                                  _numpy_chain(name, cube.sum(0)))


def test_view_functions():
    xs = np.arange(24.0).reshape(2, 3, 4)
    x = ex.asarray(xs)
    np.testing.assert_array_equal(ex.permute_dims(x, (2, 0, 1)).numpy(), np.permute_dims(xs, (2, 0, 1)))
    np.testing.assert_array_equal(ex.expand_dims(x, (0, -1)).numpy(), np.expand_dims(xs, (0, -1)))
    np.testing.assert_array_equal(ex.broadcast_to(x[:, :1], (2, 3, 4)).numpy(), np.broadcast_to(xs[:, :1], (2, 3, 4)))
    np.testing.assert_array_equal(ex.flip(x, axis=(0, 2)).numpy(), np.flip(xs, (0, 2)))
    np.testing.assert_array_equal(x.T.numpy(), xs.T)
    np.testing.assert_array_equal(ex.reshape(x * 1.5, (4, -1)).numpy(), (xs * 1.5).reshape(4, -1))
    with pytest.raises(TypeError, match="immutable"):
        x[0] = 1


def test_errors_name_the_problem():
    x = ex.asarray(np.zeros((3, 4)))
    with pytest.raises(np.exceptions.AxisError, match="axis 2 is out of bounds"):
        x.sum(axis=2)
    with pytest.raises(ValueError, match=r"shape \(3, 4\).*into shape \(5,\)"):
        x.reshape(5)
    with pytest.raises(IndexError, match="index 3 is out of bounds"):
        x[3]
    with pytest.raises(ValueError, match="cannot squeeze axis 1"):
        ex.squeeze(x, 1)
    with pytest.raises(TypeError, match="reduction"):
        ex.apply("sum", x)
    with pytest.raises(TypeError, match="sequence of integers"):   # NumPy refuses a float, never truncates
        x.reshape((2.0, 6))
    assert x.reshape(np.int64(12)).shape == (12,) and x.reshape([np.int32(6), 2]).shape == (6, 2)


def test_a_chain_of_reductions_holds_no_intermediates():
    """Each step normalises the previous one's columns: recomputed inline, so memory stays flat."""
    xs = np.random.default_rng(4).standard_normal((2000, 500))
    y = ex.asarray(xs)
    for _ in range(6):
        y = y - y.mean(axis=0, keepdims=True)
    tracemalloc.start()
    value = y.numpy()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1.5 * value.nbytes, f"peak {peak} bytes for a {value.nbytes}-byte result"
    want = xs.copy()
    for _ in range(6):
        want = want - want.mean(axis=0, keepdims=True)
    np.testing.assert_allclose(value, want, atol=1e-12)


def test_softmax_of_a_400mb_array_allocates_the_output_and_o_rows():
    rows, cols = 10_000, 10_000
    xs = np.ones((rows, cols), np.float32)
    xs[:, 0] = 2.0
    x = ex.asarray(xs)
    tracemalloc.start()
    p = ex.softmax(x, axis=-1).numpy()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak <= p.nbytes + 64 * rows + (1 << 20), f"peak {peak} for a {p.nbytes}-byte output"
    e = math.e
    np.testing.assert_allclose(p[0, :2], [e / (e + cols - 1), 1 / (e + cols - 1)], rtol=1e-5)


def test_reference_interpreter_agrees_on_reductions_and_views():
    xs = _data(np.float64, (4, 5, 6))
    x = ex.asarray(xs)
    y = ex.softmax(x[::-1, 1:] * 2, axis=1).sum(axis=(0, 2))
    (reference,) = evaluate([y._graph_node()])
    np.testing.assert_allclose(y.numpy(), reference, rtol=1e-12)


def test_concatenate_and_stack_materialise_into_one_buffer():
    a, b = np.arange(6.0).reshape(2, 3), np.arange(9.0).reshape(3, 3)
    joined = ex.concatenate([ex.asarray(a) * 2, ex.exp(ex.asarray(b))], axis=0)
    np.testing.assert_allclose(joined.numpy(), np.concatenate([a * 2, np.exp(b)]))
    ex.reset_stats()
    stacked = ex.stack([ex.asarray(a) + 1, ex.asarray(a) * 2, ex.asarray(a)], axis=-1)
    np.testing.assert_array_equal(stacked.numpy(), np.stack([a + 1, a * 2, a], axis=-1))
    assert ex.stats()["kernels_launched"] == 1
    assert ex.concatenate([np.ones(2, np.int32), np.ones(3)]).dtype == np.float64
    with pytest.raises(ValueError, match="except along axis 0"):
        ex.concatenate([a, np.ones((2, 2))], axis=0)
    with pytest.raises(ValueError, match="same shape"):
        ex.stack([a, b])


def _functions_calling(source: str, call: str) -> list[str]:
    """The kernel functions (phase0, map_phase, ...) whose bodies call ``call``; of map_phase, only its
    loop over the elements a pass stored (the rest, each run's last len % L, recomputes)."""
    chunks = [chunk.split("e0 = blocked;")[0] for chunk in source.split("\ninline void ")[1:]]
    return sorted(chunk.split("(", 1)[0] for chunk in chunks if call in chunk)


@pytest.mark.parametrize("shape, axis", [((37, 1001), -1), ((3, 9000), 1), ((300, 21), 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_value_the_sum_pass_computes_is_stored_in_the_output_not_recomputed(shape, axis, dtype):
    # The last pass reads exp(x - max) back from the output row the sum's pass stored it in: the same bits
    # as recomputing it (an out= buffer is never used as scratch, so out= still recomputes), exp once but
    # in each run's last len % L elements.
    # (3, 9000) splits each row across threads; (300, 21) reduces columns, so each row is strided.
    xs = _data(dtype, shape, seed=5) * 20
    xs[1, :7] = [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-30, -88.0]
    x = ex.asarray(xs)
    top = ex.max(x, axis=axis, keepdims=True)
    e = ex.exp(x - top)
    # log_softmax's last pass would save only x - max: it recomputes that (a store and a load cost as much).
    for expr, reused in ((ex.softmax(x, axis=axis), True), (ex.log_softmax(x, axis=axis), False),
                         (x * e / ex.sum(e, axis=axis, keepdims=True), True)):
        (step,) = plan_for((expr._graph_node(),)).steps
        (got,) = assert_matches_reference(expr)
        recomputed = ex.eval(expr, out=np.empty(shape, dtype))
        np.testing.assert_array_equal(got.view(f"u{got.itemsize}"), recomputed.view(f"u{got.itemsize}"))
        assert ("e0 = blocked;" in step.source) == reused
        assert _functions_calling(step.source, "eg::exp_") == ["phase1"], step.source
    in_place = xs.copy()
    ex.eval(ex.softmax(ex.asarray(in_place), axis=axis), out=in_place)
    np.testing.assert_array_equal(in_place, ex.softmax(x, axis=axis).numpy())


def test_reductions_give_the_same_bits_for_any_thread_count():
    # A row is cut into parts by its length alone and their partials merged in part order, whether one
    # thread folds it or several share it, so neither the thread count nor which thread takes which part
    # changes the result.
    # float64 sums show any change of order; a row of x[0] alone is past the size kernels split across threads
    xs = _data(np.float64, (2, settings.PARALLEL_THRESHOLD + 1), seed=11) * 1000
    x = ex.asarray(xs)
    results = []
    for threads in (1, 2, 3, 4):
        with ex.threads(threads):
            results.append([ex.sum(x[0]).numpy(), ex.softmax(x, axis=1).numpy(), ex.var(x, axis=1).numpy()])
    for other in results[1:]:
        for got, first in zip(other, results[0]):
            np.testing.assert_array_equal(got.view(np.uint64), first.view(np.uint64))
    np.testing.assert_allclose(results[0][0], xs[0].sum(), rtol=1e-12)
