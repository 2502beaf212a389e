"""Columns kernels: reductions over leading axes (a bias gradient, x.sum(axis=0)), many neighbouring rows
reduced at once. Each is checked against the NumPy reference with the tolerance table, and against the
rows kernel it replaces where bits must agree."""

import numpy as np
import pytest

import exprgen as ex
from exprgen.backends import cuda
from exprgen.codegen import geometry
from exprgen.codegen.kinds import launch_geometry, render
from exprgen.runtime.realize import rewrite
from exprgen.schedule import fusion
from exprgen.testing import assert_matches_reference

from test_cuda import needs_nvrtc


def _kinds(*arrays) -> list[str]:
    rewritten, _, _ = rewrite(tuple(ex.asarray(a)._graph_node() for a in arrays))
    return [k.kind for k in fusion.schedule(rewritten)]


def _data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "b":
        return rng.random(shape) < 0.5
    if np.dtype(dtype).kind in "iu":
        return rng.integers(0, 100, shape).astype(dtype)
    return (rng.standard_normal(shape) * 3).astype(dtype)


# (shape, axes): rows of any count, lanes that fill whole blocks and ragged ones, several kept dims
# (blocks never cross the last one), several reduced ones.
SHAPES = [((512, 64), 0), ((37, 9), 0), ((100, 33), 0), ((3, 5, 40), (0, 1)), ((6, 4, 70), 0),
          ((2, 3, 4, 50), (0, 1)), ((1, 9, 16), 1), ((4096, 8), 0)]


@pytest.mark.parametrize("shape,axes", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_leading_axis_reductions_are_columns_kernels_and_match_numpy(shape, axes, dtype):
    x = ex.asarray(_data(shape, dtype))
    y = x * 2 + 1
    cases = [ex.sum(y, axis=axes), ex.max(y, axis=axes), ex.min(x, axis=axes), ex.prod(x * 0 + 1, axis=axes)]
    if np.dtype(dtype).kind == "f":
        cases += [ex.mean(ex.tanh(x), axis=axes), ex.sum(ex.exp(x / 10), axis=axes, keepdims=True)]
    for case in cases:
        assert _kinds(case) == ["columns"], ex.explain(case)
        assert_matches_reference(case)


def test_several_outputs_per_row_values_and_broadcast_inputs():
    rng = np.random.default_rng(1)
    x = ex.asarray(rng.standard_normal((300, 70)).astype(np.float32))
    row = ex.asarray(rng.standard_normal(70).astype(np.float32))          # the kept axis: varies per lane
    col = ex.asarray(rng.standard_normal((300, 1)).astype(np.float32))    # the reduced axis: one per position
    dg, dbeta, scaled = ex.sum(x * row, axis=0), ex.sum(x + col, axis=0), ex.mean(x, axis=0, keepdims=True) * 3 - row
    assert _kinds(dg, dbeta, scaled) == ["columns"]
    assert_matches_reference(dg, dbeta, scaled)
    assert_matches_reference(ex.any(x > 2, axis=0), ex.all(x > -3, axis=0))


def test_strided_and_index_inputs():
    base = np.random.default_rng(2).standard_normal((80, 120))
    assert_matches_reference(ex.sum(ex.asarray(base[::2, 10:90]), axis=0))   # rows and lanes strided
    assert_matches_reference(ex.sum(ex.asarray(base.T[:40]) * 2, axis=0))     # lanes a row apart in memory
    assert_matches_reference(ex.sum(ex.reshape(ex.arange(600.0), (20, 30)), axis=0))   # an index leaf


def test_what_stays_a_rows_kernel():
    x = ex.asarray(_data((64, 32), np.float32))
    assert _kinds(ex.sum(x, axis=1)) == ["rows"]                     # the reduced axis is the inner one
    assert _kinds(ex.sum(ex.asarray(_data((64, 5), np.float32)), axis=0)) == ["rows"]   # too few lanes
    assert _kinds(ex.argmax(x, axis=0)) == ["rows"]                  # an arg-reduction counts positions
    assert _kinds(ex.softmax(x, axis=0)) == ["rows"]                 # two passes and full-shape outputs
    assert _kinds(ex.sum(x, axis=(0, 1))) == ["rows"]                # nothing kept


def test_empty_and_size_one_reductions():
    assert_matches_reference(ex.sum(ex.asarray(np.ones((0, 16), np.float32)), axis=0))
    assert_matches_reference(ex.max(ex.asarray(np.ones((1, 16), np.float64)) * 2, axis=0))
    assert ex.sum(ex.asarray(np.ones((4, 0), np.float32)), axis=0).shape == (0,)


def test_the_bits_do_not_depend_on_the_thread_count():
    xs = np.random.default_rng(3).standard_normal((2000, 600)) * 1000   # past the threshold: split across threads
    x = ex.asarray(xs)
    results = []
    for threads in (1, 2, 3):
        with ex.threads(threads):
            results.append(ex.sum(ex.sin(x), axis=0).numpy())
    for other in results[1:]:
        assert np.array_equal(other.view(np.uint64), results[0].view(np.uint64))
    np.testing.assert_allclose(results[0], np.sin(xs).sum(axis=0), rtol=1e-11, atol=1e-9)


@needs_nvrtc
def test_cuda_renders_a_columns_kernel_as_rows_and_nvrtc_compiles_it():
    x = ex.asarray(_data((64, 32), np.float32))
    (kernel,) = fusion.schedule(rewrite((ex.sum(x * 2, axis=0)._graph_node(),))[0])
    layouts = [geometry.layout(n.shape, n.buffer.strides, n.dtype.itemsize) for n in kernel.inputs]
    layouts += [geometry.layout(n.shape, np.empty(n.shape, n.dtype).strides, n.dtype.itemsize) for n in kernel.outputs]
    assert kernel.kind == "columns"
    assert launch_geometry(kernel, layouts, "cuda") == launch_geometry(kernel, layouts, "cpu")._replace(along=-1)
    source, _ = render(kernel, launch_geometry(kernel, layouts, "cuda").inner_strides, "cuda")
    assert cuda.compile_cubin(source, "sm_80")
