"""CUDA host execution (EXPRGEN_CUDA_HOST=1, exprgen/backends/cuda_host.py): device "cuda" on a machine with
no GPU, each kernel's own CUDA source compiled by the host compiler and run with CUDA's thread, barrier and
shuffle semantics (templates/cuda/host.h). The CPU suite's properties on device cuda: every elementwise op
at its edge values, reductions whose rows span several warps and blocks, views and broadcasting, index
leaves, gradients, matmul; what devices mean to a user (placement, copies out, mixing refused); and the
emulator's own refusals of a divergent barrier. tests/test_fuzz.py runs the fuzzed DAGs the same way.
"""

from __future__ import annotations

import os
import struct
import sys

import numpy as np
import pytest

import exprgen as ex
from exprgen.backends import cuda_host
from exprgen.ir import dtypes
from exprgen.ir.graph import DeviceMismatch
from exprgen.testing import assert_matches_reference, cuda_host_execution

sys.path.insert(0, os.path.dirname(__file__))
import test_ops  # noqa: E402 - the CPU suite's op tables and batches, reused on device cuda

DEVICE = "cuda:0"


@pytest.fixture(autouse=True)
def host_execution():
    with cuda_host_execution():
        yield


def on_device(*arrays):
    return [ex.asarray(a, device="cuda") for a in arrays]


# -- every elementwise op at its edge values ---------------------------------------------------------------

_batches = {}


def edge_batch(group) -> test_ops.Batch:
    if group not in _batches:
        with ex.device("cuda"):
            _batches[group] = test_ops.Batch(test_ops.edge_entries(group))
    return _batches[group]


@pytest.mark.parametrize("op", test_ops.OPS, ids=test_ops.op_id)
def test_every_op_at_its_edge_values_on_cuda(op):
    test_ops.check_all((edge_batch(test_ops.edge_group(op, sig)), (op.name, sig, params),
                        test_ops.describe(op, sig, params)) for sig, params in test_ops.accepted(op))


# -- reductions: rows over several warps, rows over several blocks, extremes ---------------------------------

@pytest.mark.parametrize("shape, axis", [((7, 1000), -1), ((1000, 7), 0), ((5, 33), 1), ((3, 4, 300), (0, 2)),
                                         ((4097,), None), ((2, 1), -1)])
def test_reductions_on_cuda(shape, axis):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(np.float32)
    (xd,) = on_device(x)
    assert_matches_reference(ex.sum(xd, axis=axis), ex.max(xd, axis=axis), ex.min(xd, axis=axis),
                             ex.mean(xd, axis=axis), ex.var(xd, axis=axis), ex.prod(xd * 0.01 + 1, axis=axis),
                             ex.logsumexp(xd, axis=axis))
    if not isinstance(axis, tuple):
        assert_matches_reference(ex.argmax(xd, axis=axis), ex.argmin(xd, axis=axis))


def test_softmax_over_rows_of_several_warps_on_cuda():
    x = np.random.default_rng(1).standard_normal((9, 777)).astype(np.float32)
    (xd,) = on_device(x)
    (value,) = assert_matches_reference(ex.softmax(xd * 2, axis=-1))
    np.testing.assert_allclose(value.sum(axis=-1), 1, rtol=1e-5)


@pytest.mark.parametrize("dtype", sorted((d for d in dtypes.INTEGERS if d != dtypes.BOOL), key=str) + [dtypes.FLOAT32],
                         ids=str)
def test_rows_of_a_dtypes_extremes_on_cuda(dtype):
    """Rows filled with the dtype's lowest and highest value: the accumulators' starting values."""
    info = np.iinfo(dtype) if dtype.kind in "iu" else np.finfo(dtype)
    x = np.empty((4, 300), dtype)
    x[:2], x[2:] = info.min, info.max
    (xd,) = on_device(x)
    values = assert_matches_reference(ex.max(xd, axis=1), ex.min(xd, axis=1), ex.argmax(xd, axis=1),
                                      ex.argmin(xd, axis=1))
    assert list(values[0]) == [info.min] * 2 + [info.max] * 2


# -- layouts, index leaves, gradients, library calls --------------------------------------------------------

def test_views_and_broadcasting_on_cuda():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((40, 30)).astype(np.float32)
    b = rng.standard_normal((30,)).astype(np.float32)
    ad, bd = on_device(a, b)
    values = assert_matches_reference(ad.T * 2, ad[::-2, 3:] + bd[3:], ex.flip(ad, axis=1) - bd, ad[:, :1] * bd,
                                      ex.reshape(ad.T, (-1,)) + 1)
    np.testing.assert_array_equal(values[0], a.T * 2)


def test_index_leaves_meet_device_arrays():
    x = ex.asarray(np.ones(1000, np.float32), device="cuda")
    y = x + ex.arange(1000, dtype="float32")
    assert y.device == DEVICE
    np.testing.assert_array_equal(y.numpy(), 1 + np.arange(1000, dtype=np.float32))


def test_gradients_on_cuda_match_the_cpu():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((64, 33)).astype(np.float64)
    x = rng.standard_normal((100, 64)).astype(np.float64)

    def loss(w, x):
        return ex.sum(ex.logsumexp(ex.tanh(x @ w), axis=1))

    value_cpu, grad_cpu = ex.value_and_grad(loss)(ex.asarray(w), ex.asarray(x))
    value_cuda, grad_cuda = ex.value_and_grad(loss)(*on_device(w, x))
    assert grad_cuda.device == DEVICE
    np.testing.assert_allclose(float(value_cuda), float(value_cpu), rtol=1e-12)
    np.testing.assert_allclose(grad_cuda.numpy(), grad_cpu.numpy(), rtol=1e-10, atol=1e-12)


def test_matmul_with_a_fused_epilogue_on_cuda():
    a, b = np.random.default_rng(4).standard_normal((2, 37, 20)), np.random.default_rng(5).standard_normal((20, 9))
    ad, bd = on_device(a, b)
    ex.reset_stats()
    (value,) = assert_matches_reference(ex.tanh(ad @ bd + 1))
    np.testing.assert_allclose(value, np.tanh(a @ b + 1), rtol=1e-12)
    assert ex.stats()["library_calls"] == 1


# -- what a device means to a user ------------------------------------------------------------------------

def test_arrays_are_placed_and_copied_out():
    x = np.arange(6.0)
    xd = ex.asarray(x, device="cuda")
    assert xd.device == DEVICE and (xd * 2).device == DEVICE
    x[0] = 100   # device memory is the array's own: later writes to the NumPy input change nothing
    out = (xd * 2).numpy()
    np.testing.assert_array_equal(out, np.arange(6.0) * 2)
    out[1] = -5   # .numpy() gives a copy: the device value is untouched
    assert float((xd * 2)[1]) == 2.0
    back = xd.to_device("cpu")
    assert back.device == "cpu" and back.to_device("cuda").device == DEVICE
    with ex.device("cuda"):
        assert ex.asarray([1.0, 2.0]).device == DEVICE
        assert ex.asarray(back).device == "cpu"   # an Array stays where it is unless told otherwise
    assert ex.asarray(xd).device == DEVICE
    assert xd.__dlpack_device__() == (2, 0)


def test_mixing_devices_is_refused():
    xd = ex.asarray(np.ones(3), device="cuda")
    with pytest.raises(DeviceMismatch, match="cpu and on cuda:0|cuda:0 and on cpu"):
        xd + ex.asarray(np.ones(3))
    with pytest.raises(DeviceMismatch):
        ex.eval(xd * 2, ex.asarray(np.ones(3)) * 2)
    assert isinstance(DeviceMismatch("x"), ValueError)
    assert (xd + 1.5).device == DEVICE   # a Python scalar goes anywhere


def test_what_host_execution_cannot_give_is_refused():
    xd = ex.asarray(np.ones(3), device="cuda")
    with pytest.raises(RuntimeError, match="one device, cuda:0"):
        ex.asarray(np.ones(3), device="cuda:1")
    with pytest.raises(BufferError, match="to_device"):
        xd.__dlpack__()
    with pytest.raises(ValueError, match="copy=False"):
        ex.asarray(np.ones(3), device="cuda", copy=False)
    with pytest.raises(NotImplementedError, match="CPU only"):
        ex.jit(lambda a: a * 2)(xd)


def test_device_kernels_are_cached_as_their_cuda_source():
    """A host-executed kernel's cache entry holds the CUDA source NVRTC compiles for a GPU, under its own
    backend (its binary is a host library)."""
    xd = ex.asarray(np.linspace(0, 1, 500, dtype=np.float32), device="cuda")
    text = ex.explain(ex.sigmoid(xd * 3))
    (path,) = [line.split("source ")[-1] for line in text.splitlines() if "source " in line]
    assert f"{os.sep}cuda-host{os.sep}" in path and path.endswith(".cu")
    with open(path) as f:
        source = f.read()
    assert '#include "cuda/prelude.cuh"' in source and "__global__" in source


# -- the emulator itself -----------------------------------------------------------------------------------

KERNEL = r"""
#include "cuda/prelude.cuh"
struct Params { int64_t total; int64_t* out; };
extern "C" __global__ void exprgen_kernel(const Params p) {
  __shared__ int64_t parts[32];
  %s
}
"""


def _run(tmp_path, body: str, blocks: int = 2, threads: int = 64) -> np.ndarray:
    source = tmp_path / "k.cu"
    source.write_text(KERNEL % body)
    binary = str(tmp_path / "k.so")
    cuda_host.compile(str(source), binary)
    kernel = cuda_host.load(binary)
    out = np.zeros(blocks * threads, np.int64)
    params = struct.pack("<qQ", blocks * threads, out.ctypes.data)
    status = kernel.entry(blocks, threads, params, len(params))
    if status:
        raise RuntimeError(cuda_host.STATUS[status])
    return out


def test_threads_see_cuda_indices_barriers_and_shuffles(tmp_path):
    out = _run(tmp_path, """
  const int64_t me = blockIdx.x * blockDim.x + threadIdx.x;
  int v = (int)threadIdx.x;
  for (int d = 16; d > 0; d >>= 1) v += __shfl_down_sync(0xffffffffu, v, d);   // lane 0: its warp's sum
  if ((threadIdx.x & 31) == 0) parts[threadIdx.x >> 5] = v;
  __syncthreads();
  p.out[me] = parts[0] + parts[1] + 1000 * gridDim.x;""")
    assert list(out) == [sum(range(64)) + 2000] * 128


def test_a_divergent_barrier_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="different barriers"):
        _run(tmp_path, """
  if (threadIdx.x < 16) __syncthreads();   // half a warp at the barrier, the other half at a shuffle
  else { int v = __shfl_down_sync(0xffffffffu, 1, 1); p.out[0] = v; }""")


def test_a_barrier_after_threads_returned_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="returned"):
        _run(tmp_path, """
  if (threadIdx.x == 3) return;
  __syncthreads();""")


def test_a_shuffle_reading_a_returned_lane_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="lane that had already returned"):
        _run(tmp_path, """
  if (threadIdx.x == 1) return;
  p.out[threadIdx.x] = __shfl_down_sync(0xffffffffu, 7, 1);""")


# -- regressions from review ----------------------------------------------------------------------------

def test_two_python_threads_launching_one_kernel_get_their_own_results():
    """The launch copied its parameters before taking the library's lock: another thread's pointers won."""
    from concurrent.futures import ThreadPoolExecutor

    inputs = [np.random.default_rng(k).standard_normal(20000).astype(np.float32) for k in range(8)]
    alone = [ex.sin(ex.asarray(a, device="cuda")).numpy() for a in inputs]   # one at a time (and compiled)
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda a: ex.sin(ex.asarray(a, device="cuda")).numpy(), inputs * 2))
    for expected, value in zip(alone * 2, got):
        np.testing.assert_array_equal(value, expected)


def test_creation_functions_place_their_arrays():
    x = ex.asarray(np.arange(6.0).reshape(2, 3), device="cuda")
    made = [ex.zeros((2, 3), device="cuda"), ex.ones_like(x), ex.zeros_like(x), ex.full_like(x, 2.0),
            ex.arange(3.0, device="cuda"), ex.linspace(0, 1, 3, device="cuda"), ex.eye(2, 3, device="cuda")]
    assert [m.device for m in made] == [DEVICE] * len(made)
    with ex.device("cuda"):
        assert ex.full((2,), 7).device == DEVICE
    np.testing.assert_array_equal((x + ex.zeros_like(x) + ex.arange(3.0)[::-1]).numpy(), np.arange(6.0).reshape(2, 3)
                                  + [2, 1, 0])
    assert (x + ex.tril(ex.ones((2, 3)))).device == DEVICE   # constants and indices go with any device
    _, pullback = ex.vjp(ex.sin, x)
    assert pullback(ex.ones_like(x))[0].device == DEVICE


def test_jit_refuses_device_arrays_it_captures_or_is_called_under():
    x = ex.asarray(np.ones(3), device="cuda")
    with pytest.raises(NotImplementedError, match="CPU only"):
        ex.jit(lambda s: x * s)(2.0)
    with ex.device("cuda"), pytest.raises(NotImplementedError, match="CPU only"):
        ex.jit(lambda v: ex.sin(v))(np.ones(3))


def test_elements_and_rows_stay_on_the_device_and_copy_out():
    x = ex.asarray(np.arange(6.0).reshape(2, 3), device="cuda")
    element, row = x[0, 1], x[1]
    assert element.device == row.device == DEVICE and [r.device for r in x] == [DEVICE] * 2
    value = row.numpy()
    value[:] = 100
    np.testing.assert_array_equal((x[1] + 0).numpy(), [3.0, 4.0, 5.0])
    assert float(element) == 1.0
    assert (element.to_device("cpu") + ex.asarray(np.ones(1))).device == "cpu"


def test_functions_numpy_computes_keep_the_device_and_refuse_mixing():
    x = ex.asarray(np.array([3.0, 1.0, 2.0, 1.0]), device="cuda")
    results = [ex.argsort(x), *ex.nonzero(x), ex.searchsorted(ex.sort(x), x), *ex.unique_counts(x),
               *ex.unique_inverse(x), x == None]  # noqa: E711 - NumPy's comparison with None
    assert [r.device for r in results] == [DEVICE] * len(results)
    cpu = ex.asarray(np.array([1.0, 2.0]))
    with pytest.raises(DeviceMismatch):
        ex.searchsorted(ex.sort(x), cpu)
    with pytest.raises(DeviceMismatch):
        x.at[0].set(cpu[1])


def test_numpy_scalars_go_with_any_device():
    x = ex.asarray(np.ones(3, np.float32), device="cuda")
    for y in (x + np.float32(2), ex.clip(x, np.float32(0), np.float32(3)), x * ex.exp(2.0)):
        assert y.device == DEVICE and y.dtype == np.float32 or y.dtype == np.float64


def test_eval_into_out_buffers_leaves_the_device_value_alone():
    x = ex.asarray(np.arange(4.0), device="cuda")
    y = x * 2
    out = np.empty(4)
    assert ex.eval(y, out=out) is out
    out[:] = -1
    np.testing.assert_array_equal(y.numpy(), [0.0, 2.0, 4.0, 6.0])


def test_the_namespace_lists_the_host_device():
    info = ex.__array_namespace_info__()
    assert info.devices() == ["cpu", DEVICE]
    assert info.default_dtypes(device="cuda")["real floating"] == np.float64
