"""The array API's statistical, utility, manipulation, searching, sorting, set and linear algebra functions,
against NumPy (2.x, itself an array API namespace).

Values are compared with ``assert_close`` and the tolerance table: data are small integers (stored in the
float dtypes too), so sums, products, matmuls, means with whole results and the correctly rounded sqrt and
divide are exact in both libraries and compared exactly; where a result rounds differently (softmax in the
array-agnostic test) the bound is the table's, summed over the ops of the graph (``ulp_bound``).
"""

import numpy as np
import pytest

import exprgen as ex
from exprgen.testing import assert_close, assert_matches_reference, ulp_bound


def _ints(shape, dtype=np.float64, lo=-4, hi=5, seed=0):
    return np.random.default_rng(seed).integers(lo, hi, shape).astype(dtype)


def _check(got, want, ulp: int = 0):
    """Shape, dtype and values as NumPy's (a tuple or list of results element by element)."""
    if isinstance(want, (tuple, list)):
        assert type(got) is type(want) or isinstance(got, tuple), (type(got), type(want))
        assert len(got) == len(want)
        for g, w in zip(got, want):
            _check(g, w, ulp)
        return
    assert_close(np.asarray(got), np.asarray(want), ulp=ulp)


# -- statistical and utility ----------------------------------------------------------------------------
def test_statistical_functions_take_the_standard_keywords():
    # Each row of x has a whole mean (x and -x side by side, plus a whole offset): var/std are exact.
    half = _ints((3, 2, 3))
    xs = np.concatenate([half, -half], axis=-1) + np.array([[[1.0], [3.0]], [[2.0], [2.0]], [[0.0], [4.0]]])
    ns = _ints((3, 4), np.int32)
    x, n = ex.asarray(xs), ex.asarray(ns)
    pairs = [
        (ex.sum(n), np.sum(ns)),                                              # int32 sums to int64
        (ex.sum(n, axis=1, dtype=np.int32), np.sum(ns, axis=1, dtype=np.int32)),
        (ex.sum(x, axis=(0, 2), keepdims=True, dtype=np.float32), np.sum(xs, axis=(0, 2), keepdims=True, dtype=np.float32)),
        (ex.prod(n, axis=0, dtype=np.float64), np.prod(ns, axis=0, dtype=np.float64)),
        (ex.prod(n, axis=()), np.prod(ns, axis=())),
        (ex.mean(x, axis=-1, keepdims=True), np.mean(xs, axis=-1, keepdims=True)),
        (ex.var(x, axis=-1, correction=1), np.var(xs, axis=-1, ddof=1)),
        (ex.var(x, axis=-1, ddof=1), np.var(xs, axis=-1, ddof=1)),
        (ex.std(x, axis=(1, 2), keepdims=True), np.std(xs, axis=(1, 2), keepdims=True)),
        (ex.std(x, axis=-1, correction=0.5), np.std(xs, axis=-1, ddof=0.5)),
        (ex.max(x, axis=(0, 1)), np.max(xs, axis=(0, 1))),
        (ex.min(n, axis=-1, keepdims=True), np.min(ns, axis=-1, keepdims=True)),
        (ex.all(x > -4, axis=(0, 2)), np.all(xs > -4, axis=(0, 2))),
        (ex.any(x > 7, axis=1, keepdims=True), np.any(xs > 7, axis=1, keepdims=True)),
        (x.sum(0), xs.sum(0)),                                                # methods keep NumPy's positional axis
    ]
    for got, want in zip(ex.eval(*[g for g, _ in pairs]), [w for _, w in pairs]):
        _check(got, want)
    with pytest.raises(TypeError, match="correction= or ddof="):
        ex.var(x, correction=1, ddof=1)
    with pytest.raises(TypeError):
        ex.sum(x, 0)   # the array API's axis is keyword-only
    with pytest.raises(np.exceptions.AxisError):
        ex.max(x, axis=3)


def test_cumulative_sum_and_prod():
    xs, ns = _ints((3, 4)), _ints((5,), np.int32, 1, 4)
    x, n = ex.asarray(xs), ex.asarray(ns)
    pairs = [
        (ex.cumulative_sum(x * 2, axis=1), np.cumulative_sum(xs * 2, axis=1)),   # a lazy input, evaluated first
        (ex.cumulative_sum(x, axis=0, include_initial=True), np.cumulative_sum(xs, axis=0, include_initial=True)),
        (ex.cumulative_sum(n), np.cumulative_sum(ns)),                               # int32 -> int64
        (ex.cumulative_sum(n, dtype=np.int32), np.cumulative_sum(ns, dtype=np.int32)),
        (ex.cumulative_prod(n, include_initial=True), np.cumulative_prod(ns, include_initial=True)),
        (ex.cumulative_prod(x, axis=-1, dtype=np.float32), np.cumulative_prod(xs, axis=-1, dtype=np.float32)),
        (ex.cumulative_sum(ex.asarray(np.zeros((0,), np.float32))), np.zeros((0,), np.float32)),
    ]
    for got, want in pairs:
        _check(got, want)
    _check(ex.cumulative_sum(n) + 1, np.cumulative_sum(ns) + 1)   # the result is lazy again
    with pytest.raises(ValueError, match="needs axis="):
        ex.cumulative_sum(x)
    with pytest.raises(ValueError, match="at least one dimension"):
        ex.cumulative_prod(ex.asarray(np.float64(2.0)))


def test_diff():
    xs, bs = _ints((3, 5)), np.array([True, True, False, True, False])
    x, b = ex.asarray(xs), ex.asarray(bs)
    pairs = [
        (ex.diff(x), np.diff(xs)),
        (ex.diff(x, axis=0, n=2), np.diff(xs, axis=0, n=2)),
        (ex.diff(x, n=0), xs),
        (ex.diff(x, n=7), np.diff(xs, n=7)),
        (ex.diff(b), np.diff(bs)),
        (ex.diff(x, axis=0, prepend=xs[:1] * 3, append=0.5), np.diff(xs, axis=0, prepend=xs[:1] * 3, append=0.5)),
        (ex.diff(ex.asarray(_ints((4,), np.int32)), append=np.array([7], np.int32)),
         np.diff(_ints((4,), np.int32), append=np.array([7], np.int32))),
    ]
    for got, want in zip(ex.eval(*[g for g, _ in pairs]), [w for _, w in pairs]):
        _check(got, want)
    with pytest.raises(ValueError, match="at least one dimension"):
        ex.diff(ex.asarray(np.float64(1.0)))
    with pytest.raises(ValueError, match="must not be negative"):
        ex.diff(x, n=-1)
    with pytest.raises(np.exceptions.AxisError):
        ex.diff(x, axis=2)


def test_zero_dimensional_and_empty_arrays():
    s, e = np.float64(-2.0), np.zeros((0, 3), np.int32)
    x, z = ex.asarray(s), ex.asarray(e)
    pairs = [
        (ex.sum(x), np.sum(s)), (ex.max(x, keepdims=True), np.max(s, keepdims=True)), (ex.argmax(x), np.argmax(s)),
        (ex.count_nonzero(x), np.count_nonzero(s)), (ex.std(x), np.std(s)), (ex.all(x), np.all(s)),
        (ex.sum(z, axis=0), np.sum(e, axis=0)), (ex.count_nonzero(z), np.count_nonzero(e)),
        (ex.any(z, axis=1), np.any(e, axis=1)), (ex.prod(z, axis=0, dtype=np.int32), np.prod(e, axis=0, dtype=np.int32)),
    ]
    for got, want in zip(ex.eval(*[g for g, _ in pairs]), [w for _, w in pairs]):
        _check(got, want)
    for got, want in [(ex.roll(z, 2, axis=0), np.roll(e, 2, axis=0)), (ex.tile(z, (2, 0)), np.tile(e, (2, 0))),
                      (ex.repeat(z, 3, axis=1), np.repeat(e, 3, axis=1)), (ex.diff(z, axis=0), np.diff(e, axis=0)),
                      (ex.vecdot(z, z), np.vecdot(e, e)), (ex.tile(x, (2,)), np.tile(s, (2,))),
                      (ex.expand_dims(x), np.expand_dims(s, 0)), (ex.cumulative_sum(z, axis=0), np.cumulative_sum(e, axis=0))]:
        _check(got, want)
    with pytest.raises(ValueError, match="zero-dimensional"):
        ex.vecdot(x, x)


# -- manipulation ---------------------------------------------------------------------------------------
def test_manipulation_functions():
    xs, ys = _ints((2, 3, 4), np.int32), _ints((3, 1), np.float32)
    x, y = ex.asarray(xs), ex.asarray(ys)
    pairs = [
        (ex.broadcast_arrays(x, y), list(np.broadcast_arrays(xs, ys))),
        (ex.broadcast_to(y, (2, 3, 5)), np.broadcast_to(ys, (2, 3, 5))),
        (ex.concat([x, x + 1], axis=None), np.concat([xs, xs + 1], axis=None)),
        (ex.concat([x[:, :, :1], y[None].astype(np.float64) * 0 + x[:, :, :1]], axis=-1),
         np.concat([xs[:, :, :1], ys[None].astype(np.float64) * 0 + xs[:, :, :1]], axis=-1)),
        (ex.expand_dims(x), np.expand_dims(xs, 0)),
        (ex.expand_dims(x, axis=-1), np.expand_dims(xs, -1)),
        (ex.flip(x, axis=(0, 2)), np.flip(xs, (0, 2))),
        (ex.moveaxis(x, 0, -1), np.moveaxis(xs, 0, -1)),
        (ex.moveaxis(x, (0, 1), (2, 0)), np.moveaxis(xs, (0, 1), (2, 0))),
        (ex.permute_dims(x, (2, 0, 1)), np.permute_dims(xs, (2, 0, 1))),
        (ex.repeat(x, 2, axis=1), np.repeat(xs, 2, axis=1)),
        (ex.repeat(x, 3), np.repeat(xs, 3)),
        (ex.repeat(x * 2, ex.asarray(np.array([0, 2, 1])), axis=1), np.repeat(xs * 2, [0, 2, 1], axis=1)),
        (ex.repeat(y, np.array([2]), axis=0), np.repeat(ys, [2], axis=0)),
        (ex.reshape(x, (4, -1), copy=True), np.reshape(xs, (4, -1), copy=True)),
        (ex.roll(x, 1, axis=2), np.roll(xs, 1, axis=2)),
        (ex.roll(x, (-1, 5), axis=(0, 1)), np.roll(xs, (-1, 5), axis=(0, 1))),
        (ex.roll(x, 7), np.roll(xs, 7)),
        (ex.roll(x, (1, 2), axis=-1), np.roll(xs, (1, 2), axis=-1)),
        (ex.squeeze(y, axis=1), np.squeeze(ys, 1)),
        (ex.stack([y, y * 2], axis=-1), np.stack([ys, ys * 2], axis=-1)),
        (ex.tile(y, (2, 1, 3)), np.tile(ys, (2, 1, 3))),
        (ex.tile(x * 2, (2,)), np.tile(xs * 2, (2,))),
        (ex.unstack(x, axis=1), tuple(np.unstack(xs, axis=1))),
    ]
    for got, want in pairs:
        _check(got, want)
    assert isinstance(ex.broadcast_arrays(x, y), list)


def test_manipulation_errors():
    x = ex.asarray(_ints((2, 3), np.int32))
    with pytest.raises(ValueError, match="as many axes"):
        ex.moveaxis(x, (0, 1), 0)
    with pytest.raises(ValueError, match="duplicate"):
        ex.moveaxis(x, (0, 0), (0, 1))
    with pytest.raises(ValueError, match="must not be negative"):
        ex.repeat(x, -1, axis=0)
    with pytest.raises(ValueError, match="size 1 or 3"):
        ex.repeat(x, np.array([1, 2]), axis=1)
    with pytest.raises(ValueError, match="must not be negative"):
        ex.tile(x, (2, -1))
    with pytest.raises(ValueError, match="one length"):
        ex.roll(x, (1, 2, 3), axis=(0, 1))
    with pytest.raises(ValueError, match="cannot be unstacked"):
        ex.unstack(ex.asarray(np.int32(3)))
    with pytest.raises(ValueError, match="cannot squeeze"):
        ex.squeeze(x, axis=0)
    with pytest.raises(ValueError):
        ex.reshape(ex.asarray(np.ones((3, 4)).T), (12,), copy=False)   # a transposed buffer needs a copy
    with pytest.raises(ValueError, match="must match except along axis"):
        ex.concat([x, ex.asarray(np.ones((3, 3)))], axis=1)


# -- searching -----------------------------------------------------------------------------------------
def test_searching_functions():
    xs = np.array([[1.0, 3.0, np.nan, 3.0], [2.0, -1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    x = ex.asarray(xs)
    pairs = [
        (ex.argmax(x, axis=1), np.argmax(xs, axis=1)),       # the first NaN wins, else the first maximum
        (ex.argmin(x, axis=0, keepdims=True), np.argmin(xs, axis=0, keepdims=True)),
        (ex.argmax(x), np.argmax(xs)),
        (ex.count_nonzero(x), np.count_nonzero(xs)),        # NaN is not zero
        (ex.count_nonzero(x, axis=(0, 1), keepdims=True), np.count_nonzero(xs, axis=(0, 1), keepdims=True)),
        (ex.count_nonzero(x > 1, axis=1), np.count_nonzero(xs > 1, axis=1)),
        (ex.where(x > 1, x, 0.5), np.where(xs > 1, xs, 0.5)),
    ]
    for got, want in zip(ex.eval(*[g for g, _ in pairs]), [w for _, w in pairs]):
        _check(got, want)
    _check(ex.nonzero(x), np.nonzero(xs))
    _check(ex.nonzero(ex.asarray(np.zeros((2, 0)))), np.nonzero(np.zeros((2, 0))))
    with pytest.raises(ValueError, match="zero-dimensional"):
        ex.nonzero(ex.asarray(np.float64(1.0)))

    sorted_xs, queries = np.array([0.0, 1.0, 1.0, 2.0, 5.0]), np.array([[1.0, -3.0], [2.5, 9.0]])
    shuffled = np.array([5.0, 1.0, 0.0, 2.0, 1.0])
    for side in ("left", "right"):
        _check(ex.searchsorted(ex.asarray(sorted_xs), ex.asarray(queries) * 1, side=side),
               np.searchsorted(sorted_xs, queries, side=side))
        _check(ex.searchsorted(ex.asarray(shuffled), ex.asarray(queries), side=side, sorter=np.argsort(shuffled)),
               np.searchsorted(shuffled, queries, side=side, sorter=np.argsort(shuffled)))
    with pytest.raises(ValueError, match="1-D x1"):
        ex.searchsorted(x, x)
    with pytest.raises(ValueError, match="side"):
        ex.searchsorted(ex.asarray(sorted_xs), 1.0, side="middle")
    with pytest.raises(ValueError, match="zero-size"):
        ex.argmax(ex.asarray(np.zeros((0, 3))), axis=0)


# -- sorting and sets -----------------------------------------------------------------------------------
def test_sort_and_argsort():
    xs = np.array([[3.0, np.nan, 1.0, 3.0, -0.5], [2.0, 2.0, 2.0, 0.0, np.nan]])
    ties = np.array([2, 1, 2, 3, 1, 2], np.int32)
    x, t = ex.asarray(xs), ex.asarray(ties)
    _check(ex.sort(x * 1), np.sort(xs))                                          # NaN last
    _check(ex.argsort(x, axis=0), np.argsort(xs, axis=0, kind="stable"))
    _check(ex.sort(x, descending=True), np.flip(np.sort(xs), -1))                # NaN first
    _check(ex.sort(t, stable=False), np.sort(ties))
    # A stable descending sort keeps equal elements in their order (not reversed).
    _check(ex.argsort(t, descending=True), np.array(sorted(range(6), key=lambda i: -ties[i])))
    _check(ex.argsort(x, axis=1, descending=True),
           np.stack([np.array(sorted(range(5), key=lambda i: (not np.isnan(r[i]), -np.nan_to_num(r[i]))))
                     for r in xs]))
    _check(ex.sort(ex.asarray(np.zeros((0,), np.float32))), np.zeros((0,), np.float32))
    with pytest.raises(np.exceptions.AxisError):
        ex.sort(ex.asarray(np.float64(1.0)))


def test_unique_functions():
    xs = np.array([[2.0, np.nan, 1.0], [2.0, np.nan, -0.0]])
    ns = np.array([3, 1, 3, 3, 0], np.int32)
    for data in (xs, ns):
        x = ex.asarray(data)
        _check(ex.unique_values(x), np.unique_values(data))          # each NaN is distinct
        _check(ex.unique_counts(x), tuple(np.unique_counts(data)))
        _check(ex.unique_inverse(x), tuple(np.unique_inverse(data)))
        _check(ex.unique_all(x), tuple(np.unique_all(data)))
    result = ex.unique_all(ex.asarray(ns))
    assert result._fields == ("values", "indices", "inverse_indices", "counts")
    assert ex.unique_counts(ex.asarray(ns))._fields == ("values", "counts")
    assert ex.unique_inverse(ex.asarray(ns))._fields == ("values", "inverse_indices")
    assert result.values.dtype == np.int32 and result.inverse_indices.shape == ns.shape
    _check(ex.unique_values(ex.asarray(np.zeros((0, 2)))), np.zeros((0,)))


# -- linear algebra -------------------------------------------------------------------------------------
@pytest.mark.parametrize("shapes", [((3, 4), (4, 2)), ((4,), (4, 2)), ((3, 4), (4,)), ((4,), (4,)),
                                    ((2, 1, 3, 4), (5, 4, 2)), ((0, 4), (4, 3))])
def test_matmul_shapes(shapes):
    a, b = _ints(shapes[0]), _ints(shapes[1], seed=1)
    _check(ex.matmul(ex.asarray(a), ex.asarray(b)), np.matmul(a, b))


def test_matmul_dtypes_fusion_and_errors():
    a, b = _ints((3, 4), np.float32), _ints((4, 2), np.float32, seed=1)
    x = ex.asarray(a)
    # Nothing runs at the call. Then: both producers computed by one exprgen kernel, NumPy's BLAS in
    # between, the consumers fused after it.
    q, r = _ints((4, 4), np.float32, seed=2), _ints((4, 4), np.float32, seed=3)
    ex.reset_stats()
    product = ex.matmul(ex.asarray(q) * 2, ex.asarray(r) - 1)
    result = ex.exp(product * 0) + product
    assert ex.stats()["kernels_launched"] == ex.stats()["library_calls"] == 0
    _check(result, np.exp(((q * 2) @ (r - 1)) * 0) + (q * 2) @ (r - 1))
    assert (ex.stats()["kernels_launched"], ex.stats()["library_calls"]) == (2, 1)
    for da, db in [(np.int32, np.int32), (np.int64, np.float32), (np.bool_, np.bool_)]:
        _check(ex.matmul(ex.asarray(a.astype(da)), ex.asarray(b.astype(db))), np.matmul(a.astype(da), b.astype(db)))
    _check(ex.matrix_transpose(ex.asarray(_ints((2, 3, 4)))), np.matrix_transpose(_ints((2, 3, 4))))
    with pytest.raises(ValueError, match="zero-dimensional"):
        ex.matmul(x, ex.asarray(np.float32(2)))
    with pytest.raises(ValueError, match="contracted axis"):
        ex.matmul(x, x)
    with pytest.raises(ValueError, match="broadcast"):
        ex.matmul(ex.asarray(_ints((2, 3, 4))), ex.asarray(_ints((3, 4, 2))))
    with pytest.raises(ValueError, match="at least two dimensions"):
        ex.matrix_transpose(ex.asarray(a[0]))


def test_tensordot_and_vecdot():
    a, b = _ints((2, 3, 4)), _ints((3, 4, 5), seed=1)
    x, y = ex.asarray(a), ex.asarray(b)
    for axes, other in [(0, b), (2, b), (1, b.transpose(1, 0, 2)), (([1, 2], [0, 1]), b),
                        (([2, 1], [0, 1]), b.transpose(1, 0, 2)), (((0,), (-1,)), b.reshape(6, 5, 2))]:
        _check(ex.tensordot(x, ex.asarray(other), axes=axes), np.tensordot(a, other, axes=axes))
    with pytest.raises(ValueError, match="differ in size"):
        ex.tensordot(x, y, axes=([0], [0]))
    with pytest.raises(ValueError, match="between 0"):
        ex.tensordot(x, y, axes=4)

    u, v = _ints((2, 3, 4), np.int32), _ints((3, 4), np.int32, seed=2)
    pairs = [
        (ex.vecdot(ex.asarray(u), ex.asarray(v)), np.vecdot(u, v)),                    # int32 stays int32
        (ex.vecdot(ex.asarray(u), ex.asarray(v), axis=-2), np.vecdot(u, v, axis=-2)),
        (ex.vecdot(x, x * 0.5), np.vecdot(a, a * 0.5)),
        (ex.vecdot(ex.asarray(u > 0), ex.asarray(v > 0)), np.vecdot(u > 0, v > 0)),
    ]
    for got, want in zip(ex.eval(*[g for g, _ in pairs]), [w for _, w in pairs]):
        _check(got, want)
    with pytest.raises(ValueError, match="from -2 to -1"):
        ex.vecdot(ex.asarray(u), ex.asarray(v), axis=0)
    with pytest.raises(ValueError, match="along axis"):
        ex.vecdot(x, ex.asarray(np.ones(3)))


# -- gradients -----------------------------------------------------------------------------------------
def test_gradients():
    a, b, c = _ints((3, 4)), _ints((2, 4, 5), seed=1), _ints((2, 3, 5), seed=2)
    v = _ints((4,), seed=3)
    # d/da sum((a @ b) * c) = sum over the batch of c @ b^T; d/dv of sum(v @ b) = sum of b over its last axis.
    got = ex.grad(lambda a: (ex.matmul(a, ex.asarray(b)) * ex.asarray(c)).sum())(a)
    _check(got, (c @ b.transpose(0, 2, 1)).sum(0))
    _check(ex.grad(lambda v: ex.matmul(v, ex.asarray(b)).sum())(v), b.sum((0, 2)))
    # Gradient of a gradient: d/da sum((a @ b2)^2) = 2 (a @ b2) @ b2^T; then along the direction w.
    b2, w = b[0], _ints((3, 4), seed=4)
    hvp = ex.grad(lambda a: (ex.grad(lambda a: (ex.matmul(a, ex.asarray(b2)) ** 2).sum())(a) * ex.asarray(w)).sum())(a)
    _check(hvp, 2 * (w @ b2) @ b2.T)
    _check(ex.grad(lambda v: ex.vecdot(v, ex.asarray(a)).sum())(v), a.sum(0))
    _check(ex.grad(lambda v: (ex.cumulative_sum(v, include_initial=True) * ex.asarray(np.arange(5.0))).sum())(v),
           np.array([10.0, 9.0, 7.0, 4.0]))
    _check(ex.grad(lambda v: (ex.tile(v, (2,)) * ex.asarray(np.arange(8.0))).sum())(v), np.array([4.0, 6, 8, 10]))
    _check(ex.grad(lambda v: (ex.stack([v, v * 3], axis=1) ** 2).sum())(v), 20 * v)
    # Sorting: each element's gradient is the weight of the place it was sorted to (and back again).
    weights, order = np.arange(1.0, 5.0), np.argsort(-v, kind="stable")
    unsorted = np.empty(4)
    unsorted[order] = weights
    sorted_grad = ex.grad(lambda v: (ex.sort(v, descending=True) * ex.asarray(weights)).sum())
    _check(sorted_grad(v), unsorted)
    squares_grad = ex.grad(lambda v: (ex.sort(v) ** 2).sum())       # 2 v, unsorted back by the permutation
    _check(ex.grad(lambda v: (squares_grad(v) * ex.asarray(weights)).sum())(v), 2 * weights)
    # A sorted constant carries no gradient and raises nothing; values NumPy finds as a set have no gradient.
    _check(ex.grad(lambda u: (u * ex.unique_values(ex.asarray(v))).sum())(np.unique_values(v)), np.unique_values(v))
    with pytest.raises(NotImplementedError, match="unique_values is not differentiable"):
        ex.grad(lambda v: ex.unique_values(v).sum())(v)
    with pytest.raises(NotImplementedError, match="cumulative_prod is not differentiable"):
        ex.grad(lambda v: ex.cumulative_prod(v).sum())(v)
    with pytest.raises(NotImplementedError, match="repeat with an array of counts"):
        ex.grad(lambda v: ex.repeat(v, np.array([1, 2, 1, 0])).sum())(v)


# -- the array API's purpose: code written against any namespace ----------------------------------------
def _scores(x, w):
    """Array-agnostic: standardise the columns, score them, and summarise (only ``xp`` functions)."""
    xp = x.__array_namespace__()
    z = (x - xp.mean(x, axis=0, keepdims=True)) / xp.std(x, axis=0, correction=1, keepdims=True)
    logits = xp.matmul(z, w)
    e = xp.exp(logits - xp.max(logits, axis=-1, keepdims=True))
    p = e / xp.sum(e, axis=-1, keepdims=True)
    exact = (z, logits, xp.argmax(logits, axis=-1), xp.where(logits > 0, logits, -logits),
             xp.concat([xp.flip(xp.sort(logits, axis=0, stable=True), axis=0), xp.cumulative_sum(x, axis=0)], axis=1),
             xp.unique_values(xp.round(x)), xp.vecdot(x, x), xp.count_nonzero(xp.diff(x, axis=0)),
             xp.tensordot(x, w, axes=1), xp.moveaxis(xp.roll(x, 1, axis=0), 0, 1))
    return exact, p


def test_array_agnostic_function_on_numpy_and_exprgen():
    # Columns with whole means (x and -x, plus whole offsets): standardising is exact in both libraries.
    half = _ints((3, 4))
    xs = np.concatenate([half, -half]) + np.arange(4.0)
    xs[0] += 2.0
    xs[1] -= 2.0
    ws = _ints((4, 3), seed=1)
    exact_np, p_np = _scores(xs, ws)
    exact_ex, p_ex = _scores(ex.asarray(xs), ex.asarray(ws))
    assert all(isinstance(a, ex.Array) for a in exact_ex)
    _check(list(exact_ex), list(exact_np))
    bound = 2 * ulp_bound(p_ex._graph_node())   # each library within the table's bound of the exact value
    (p_value,) = assert_matches_reference(p_ex)
    _check(p_value, p_np, ulp=bound)
