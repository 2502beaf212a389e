"""Creation functions: values, dtypes and errors as NumPy's; index-valued results fuse and allocate nothing."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

import exprgen as ex
from exprgen.ir import graph
from exprgen.ir import interpret as reference
from exprgen.api.array import Array
from exprgen.runtime.realize import plan_for
from exprgen.testing import assert_close, assert_matches_reference

from test_cuda import ARCHS, cuda_sources, needs_nvrtc


def _same(actual: Array, expected: np.ndarray, what: str) -> None:
    """Bit for bit (NaN, -0.0 and dtype included): these are NumPy's own formulas, rounded as NumPy does."""
    assert_close(actual.numpy(), expected, ulp=0, what=what)


ARANGE = [((5,), {}), ((2, 10, 3), {}), ((10, 2, -3), {}), ((0, 1, 0.1), {}), ((1, 0, -0.1), {}),
          ((-0.0, 3), {}), ((3, 3), {}), ((5, 2), {}), ((0.5, 5, 1), {"dtype": "int64"}),
          ((0, 1, 0.1), {"dtype": "float32"}), ((np.float32(0), np.float32(1), np.float32(0.1)), {}),
          ((1e16, 1e16 + 10, 3.0), {}), ((-7, 40, 6), {"dtype": "int32"}), ((True,), {}),
          ((0.0, 1e308, 1e308), {}), ((2.0,), {"dtype": "float32"}), ((0, 5, float("inf")), {}),
          ((0, -5, float("inf")), {}), ((0, 1e-300, 1e300), {}), ((5, 0, -1), {"dtype": "uint8"})]


@pytest.mark.parametrize("args, kwargs", ARANGE, ids=[str(a) + str(k or "") for a, k in ARANGE])
def test_arange_matches_numpy(args, kwargs):
    _same(ex.arange(*args, **kwargs), np.arange(*args, **kwargs), f"arange{args}")


LINSPACE = [((0, 1, 5), {}), ((0, 1, 5), {"endpoint": False}), ((2, -3, 7), {}), ((0, 1, 0), {}), ((0, 1, 1), {}),
            ((0, 1, 1), {"endpoint": False}), ((1.5, 1.5, 4), {}), ((0, 10, 4), {"dtype": "int64"}),
            ((-1, 2, 6), {"dtype": "int32", "endpoint": False}), ((0, 5e-324, 3), {}),
            ((np.float32(0), np.float32(1), 4), {}), ((0, 1, 7), {"dtype": "float32"}), ((0, 2, 3), {"dtype": "bool"}),
            ((0, 300, 7), {"dtype": "uint8"})]


@pytest.mark.parametrize("args, kwargs", LINSPACE, ids=[str(a) + str(k or "") for a, k in LINSPACE])
def test_linspace_matches_numpy(args, kwargs):
    start, stop, num = args
    _same(ex.linspace(start, stop, num, **kwargs), np.linspace(start, stop, num, **kwargs), f"linspace{args}")


def test_eye_matches_numpy_including_offsets_beyond_the_matrix():
    cases = [((3,), {}), ((3, 5), {}), ((4, 2), {"k": 1}), ((3,), {"k": -2}), ((3, 4), {"k": 10}),
             ((3,), {"k": -10}), ((0,), {}), ((2, 3), {"dtype": "int32", "k": 1}), ((3,), {"dtype": "bool"}),
             ((3,), {"k": 2**70})]
    for args, kwargs in cases:
        _same(ex.eye(*args, **kwargs), np.eye(*args, **{**kwargs, "k": min(kwargs.get("k", 0), 99)}),
              f"eye{args}{kwargs}")


def test_constants_and_likes_match_numpy():
    base = np.arange(6, dtype=np.int32).reshape(2, 3)
    cases = [(ex.full((2, 3), 3.5), np.full((2, 3), 3.5)), (ex.full(4, 7, dtype="int32"), np.full(4, 7, np.int32)),
             (ex.full((), True), np.full((), True)), (ex.full(3, np.float32(1.5)), np.full(3, np.float32(1.5))),
             (ex.full(2, -0.0), np.full(2, -0.0)), (ex.full(2, float("nan")), np.full(2, np.nan)),
             (ex.zeros((2, 0)), np.zeros((2, 0))), (ex.ones(3, dtype="bool"), np.ones(3, bool)),
             (ex.ones((2, 2)), np.ones((2, 2))), (ex.empty(3, dtype="int64"), np.zeros(3, np.int64)),
             (ex.zeros_like(base), np.zeros_like(base)), (ex.zeros(2, device="cpu"), np.zeros(2)),
             (ex.ones_like(base, dtype="float32"), np.ones_like(base, np.float32)),
             (ex.full_like(base, 2.5), np.full_like(base, 2.5)), (ex.empty_like(ex.asarray(base)), np.zeros_like(base)),
             (ex.full_like(ex.asarray(base) * 2, 9, dtype="float64"), np.full_like(base, 9, np.float64))]
    for i, (actual, expected) in enumerate(cases):
        _same(actual, expected, f"case {i}")
    result = ex.zeros(3).numpy()
    result[0] = 1   # a constant asked for alone is a fresh array, writable as NumPy's
    assert ex.zeros(3).numpy()[0] == 0


def test_values_and_offsets_are_arguments_not_compiled_in():
    """A fill value, arange's start and step, and an index leaf's offset (a slice of an arange) change no
    plan: the second of each pair reuses the first's plan (no compile, no kernel cache lookup)."""
    x = ex.asarray(np.arange(8.0))
    pairs = [(lambda: ex.full(8, 3.0) * x, np.full(8, 3.0) * np.arange(8.0)),
             (lambda: ex.full(8, 4.0) * x, np.full(8, 4.0) * np.arange(8.0)),
             (lambda: ex.arange(8) * x, np.arange(8) * np.arange(8.0)),
             (lambda: ex.arange(3, 27, 3) * x, np.arange(3, 27, 3) * np.arange(8.0)),
             (lambda: ex.arange(10)[:-2] * x, np.arange(10)[:-2] * np.arange(8.0)),
             (lambda: ex.arange(10)[2:] * x, np.arange(10)[2:] * np.arange(8.0))]
    for i, (build, expected) in enumerate(pairs):
        ex.reset_stats()
        assert_close(build().numpy(), expected, what=f"case {i}")
        stats = ex.stats()
        if i % 2:
            assert stats["compiles"] == 0 and sum(stats["cache_hits"].values()) == 0, stats
            assert stats["plan_cache"]["hits"] == 1, stats


@pytest.mark.parametrize("k", [-1, 0, 2, 10, -10])
def test_tril_and_triu_of_a_stack_match_numpy(k):
    x = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4) - 5.5
    flags = x > 0
    for name in ("tril", "triu"):
        ours, numpys = getattr(ex, name), getattr(np, name)
        results = ex.eval(ours(x, k=k), ours(flags, k=k), ours(x[0].T, k=k))
        for value, expected in zip(results, (numpys(x, k=k), numpys(flags, k=k), numpys(x[0].T, k=k))):
            assert_close(value, expected, what=f"{name}(k={k})")


@pytest.mark.parametrize("indexing", ["xy", "ij"])
def test_meshgrid_matches_numpy(indexing):
    a, b, c = np.arange(3.0), np.array([10.0, 20.0]), np.arange(4, dtype=np.int32)
    for arrays in ((a, b, c), (a, b), (b,), ()):
        ours = ex.meshgrid(*arrays, indexing=indexing)
        expected = np.meshgrid(*arrays, indexing=indexing)
        assert len(ours) == len(expected)
        for value, want in zip(ours, expected):
            _same(value, want, f"meshgrid of {len(arrays)} ({indexing})")


def test_views_of_an_index_leaf_are_index_leaves_or_its_arithmetic():
    iota = np.arange(24).reshape(2, 3, 4)
    a = ex.arange(24).reshape(2, 3, 4)
    views = [(ex.permute_dims(a, (2, 0, 1)), iota.transpose(2, 0, 1)), (a[:, ::-1, 1::2], iota[:, ::-1, 1::2]),
             (a[1], iota[1]),
             (ex.broadcast_to(a[:, :1], (5, 2, 3, 4))[2], np.broadcast_to(iota[:, :1], (5, 2, 3, 4))[2]),
             (ex.flip(a, axis=(0, 2)), np.flip(iota, axis=(0, 2))),
             (ex.permute_dims(a, (2, 1, 0)).reshape(-1), iota.T.reshape(-1)),          # not a view: NumPy copies
             (ex.permute_dims(a[:, 1:], (2, 1, 0)).reshape(4, 4)[::2], iota[:, 1:].T.reshape(4, 4)[::2])]
    index = graph.index((2, 3, 4))
    assert graph.view(index, (("transpose", (2, 0, 1)),)).op is graph.INDEX
    for i, (ours, expected) in enumerate(views):
        assert_close(ours * 1, expected, what=f"view {i}")
    assert_close(reference.index_values(graph.view(index, (("flip", (1,)),))), iota[:, ::-1], what="reference")


def test_reference_interpreter_agrees():
    x = ex.asarray(np.linspace(-2, 2, 12).reshape(3, 4))
    arrays = [ex.arange(12.0).reshape(3, 4) * x, ex.eye(3, 4, k=1) + x, ex.tril(x, k=-1), ex.linspace(0, 1, 4) - x,
              ex.sum(ex.arange(3, 0, -1) * x.T, axis=0), ex.flip(ex.arange(12).reshape(4, 3), axis=1).T]
    interpreted = reference.evaluate(tuple(a._graph_node() for a in arrays))
    for value, array in zip(interpreted, assert_matches_reference(*arrays)):
        assert_close(value, array, what="the NumPy interpreter against the kernels")


def test_arange_reduction_is_one_kernel_and_allocates_nothing_of_its_size():
    n = 10_000_000
    total = (ex.arange(n) * 2).sum()
    plan = plan_for((total._graph_node(),))
    assert len(plan.steps) == 1 and [math.prod(shape) for _, shape, *_ in plan.allocations] == [1]
    assert f"index<[{n}], strides [1], offset 0>" in ex.explain(total, verbose=True)
    ex.reset_stats()
    tracemalloc.start()
    try:
        value = int(total)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert value == n * (n - 1)
    assert ex.stats()["kernels_launched"] == 1
    assert peak < 8 * n // 100, f"evaluating allocated {peak} bytes at peak; an arange of {n} would be {8 * n}"


def test_index_valued_creations_fuse_into_their_consumer():
    x = ex.asarray(np.ones((30, 40)))
    fused = ex.sum(ex.eye(30, 40) * x + ex.linspace(0, 1, 40) + ex.tril(x), axis=1)
    plan = plan_for((fused._graph_node(),))
    assert len(plan.steps) == 1
    assert [shape for _, shape, *_ in plan.allocations] == [(30, 1)]
    assert_matches_reference(fused)


def test_gradients_flow_through_consumers_of_index_values():
    w = np.linspace(-1, 1, 6)
    dw = ex.grad(lambda w: ex.sum(w * ex.arange(6.0) + ex.tril(ex.reshape(w, (2, 3)) * ex.eye(2, 3)).reshape(-1)))(w)
    expected = np.arange(6.0) + np.eye(2, 3).reshape(-1)
    assert_close(dw, expected, what="d/dw sum(w * arange + tril(w * eye))")


@pytest.mark.parametrize("call, error", [
    (lambda: ex.zeros(-1), ValueError), (lambda: ex.ones((2, -3)), ValueError), (lambda: ex.zeros(2.5), TypeError),
    (lambda: ex.zeros((2**40, 2**40)), ValueError), (lambda: ex.full(3, 1j), TypeError),
    (lambda: ex.full(3, "a"), TypeError), (lambda: ex.full(3, 2**40, dtype="int32"), OverflowError),
    (lambda: ex.zeros(3, dtype="complex128"), TypeError), (lambda: ex.arange(0, 5, 0), ZeroDivisionError),
    (lambda: ex.arange(0, float("nan")), ValueError), (lambda: ex.arange(0, float("inf")), ValueError),
    (lambda: ex.arange(0, -float("inf")), ValueError),
    (lambda: ex.arange(2**70), ValueError), (lambda: ex.arange(3, dtype="bool"), TypeError),
    (lambda: ex.arange(1j), TypeError), (lambda: ex.linspace(0, 1, -1), ValueError),
    (lambda: ex.linspace(0, 1, 2.5), TypeError), (lambda: ex.linspace(0, 1j, 3), TypeError),
    (lambda: ex.eye(2.5), TypeError), (lambda: ex.eye(3, k=0.5), TypeError), (lambda: ex.eye(-2), ValueError),
    (lambda: ex.tril(np.arange(3.0)), ValueError), (lambda: ex.meshgrid(np.arange(2), indexing="yx"), ValueError),
    (lambda: ex.zeros(3, device="tpu"), ValueError)])
def test_bad_input_is_refused_clearly(call, error):
    with pytest.raises(error):
        call()


def test_a_requested_index_leaf_is_computed_into_a_buffer():
    value = Array(graph.view(graph.index((3, 4)), (("transpose", (1, 0)),))).numpy()
    assert_close(value, np.arange(12).reshape(3, 4).T, what="index leaf")
    assert value.flags.writeable


@needs_nvrtc
def test_index_leaves_render_and_compile_for_cuda():
    from exprgen.backends import cuda

    x = ex.asarray(np.ones((6, 10), np.float32))
    sources = cuda_sources((ex.arange(60) * 2).sum(), ex.eye(6, 10, dtype="float32") * x,
                           ex.triu(x, k=1), ex.arange(60.0).reshape(10, 6).T * x)
    assert any("values, not memory" in s for s in sources)
    for source in sources:
        for arch in ARCHS:
            cuda.compile_cubin(source, arch)
