"""CUDA: kernels rendered for CUDA compile with NVRTC on any machine; devices fail clearly without a GPU.

The compile check needs cuda-python and the NVRTC library (both in the `test` extra), not a GPU: it
renders every kernel that a representative set of expressions schedules (every elementwise op at
float32, float64, int64 and bool, reductions with softmax, var and argmax among them, views, a gradient, scalar and broadcast
layouts) and compiles each for sm_80 and sm_90. Without cuda-python it is skipped, saying so; with
cuda-python but no loadable NVRTC library it fails, saying why. Tests marked `gpu` need a device and are
skipped without one.
"""

import functools
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np
import pytest
from peers import peer

import exprgen as ex
from exprgen.ir import dtypes
from exprgen.ir import opdefs
from exprgen.ir import views
from exprgen.backends import cuda
from exprgen.ir.graph import BUFFER, INDEX, VIEW
from exprgen.runtime.realize import rewrite
from exprgen.codegen.geometry import loop_geometry, rows_geometry
from exprgen.codegen.kinds import render
from exprgen.codegen.render import _function_name
from exprgen.schedule.fusion import schedule

ARCHS = ("sm_80", "sm_90")


def _has_cuda_python() -> bool:
    try:
        import cuda.bindings.nvrtc  # noqa: F401
    except ImportError:
        return False
    return True


needs_nvrtc = pytest.mark.skipif(not _has_cuda_python(), reason="cuda-python is not installed (pip install "
                                 "'cuda-python>=13' 'nvidia-cuda-nvrtc>=13', or the test extra): no NVRTC checks")


def _gpu_present() -> bool:
    try:
        return cuda.device_count() > 0
    except cuda.CudaUnavailable:
        return False


gpu = pytest.mark.skipif(not _gpu_present(), reason="no CUDA driver or device on this machine")


# -- which kernels the expressions schedule, laid out as realize lays them out ---------------------------

def _contiguous(node) -> tuple[tuple, tuple]:
    return node.shape, views.contiguous_strides(node.shape)


def cuda_sources(*arrays) -> list[str]:
    """The CUDA source of each kernel that evaluating ``arrays`` launches: leaves read in place, kernel
    outputs contiguous, a view of an output read through the view's strides (as realize.build_plan)."""
    rewritten, _, _ = rewrite(tuple(ex.asarray(a)._graph_node() for a in arrays))
    layouts, sources = {}, []
    for kernel in schedule(rewritten):
        for node in kernel.outputs:
            layouts[id(node)] = _contiguous(node)
        arrays_layouts = []
        for node in kernel.inputs + kernel.outputs:
            if node.op is BUFFER:
                arrays_layouts.append((node.shape, tuple(s // node.dtype.itemsize for s in node.buffer.strides)))
            elif node.op is INDEX:
                arrays_layouts.append((node.shape, node.arg[0]))
            elif node.op is VIEW:
                source = node.src[0]
                shape, strides, _ = views.layout_after(source.shape, node.arg, layouts[id(source)][1])
                arrays_layouts.append((shape, strides))
            else:
                arrays_layouts.append(layouts[id(node)])
        if kernel.axes:
            (_, outer), (_, inner) = rows_geometry(kernel.shape, kernel.axes, arrays_layouts)
            strides = [o + i for o, i in zip(outer, inner)]
        else:
            _, strides = loop_geometry(kernel.shape, arrays_layouts)
        sources.append(render(kernel, [s[-1] for s in strides], "cuda", frozenset(range(len(kernel.outputs))))[0])
    return sources


def _data(dtype, shape):
    values = np.linspace(-3, 3, math.prod(shape)).reshape(shape)
    return values.astype(dtype)


def _elementwise_groups():
    """(name, arrays): every builtin elementwise op at float32, float64, int64 and bool where it accepts
    them, many ops to a kernel (the schedule puts up to 16 same-shape outputs in one), so each op function
    is compiled once per dtype. (int32 instantiates the same prelude templates as int64.)"""
    ops = [op for op in opdefs.canonical_ops(builtin_only=True) if op.kind not in ("reduce", "library")]
    for dtype in map(np.dtype, (np.float32, np.float64, np.int64, np.bool_)):
        x, row = ex.asarray(_data(dtype, (4, 8))), ex.asarray(_data(dtype, (8,)))
        flags = ex.asarray(_data(dtype, (4, 8)) > 0)
        results = []
        for op in ops:
            if op.params == ("dtype",):
                results += [ex.astype(x, other) for other in dtypes.SUPPORTED if other != dtype]
                continue
            operands = {1: (x,), 2: (x, row), 3: (flags, x, row) if op.cast[0] == "bool" else (x, row, x)}[op.arity]
            try:
                results.append(ex.apply(op.name, *operands))
            except TypeError:
                pass   # NumPy refuses this op at this dtype
        yield f"elementwise_{dtype.name}", results


def _expressions():
    """(name, arrays) of the representative set: reductions at both float dtypes (their accumulators
    differ), layouts, views and a gradient at one."""
    yield from _elementwise_groups()
    for dtype in (np.float32, np.float64):
        x, name = ex.asarray(_data(dtype, (6, 10))), np.dtype(dtype).name
        yield f"softmax_{name}", [ex.softmax(x, axis=-1), ex.log_softmax(x, axis=0), ex.logsumexp(x, axis=1)]
        yield f"var_std_mean_{name}", [ex.var(x, axis=0), ex.std(x), ex.mean(x, axis=-1, keepdims=True)]
        yield f"arg_{name}", [ex.argmax(x, axis=1), ex.argmin(x)]
        yield f"reductions_{name}", [ex.sum(x * x, axis=1), ex.prod(x, axis=0), ex.max(x), ex.min(x, axis=1),
                                     ex.any(x > 1, axis=0), ex.all(x < 2)]
    for dtype in (np.int32, np.int64, np.bool_):
        x = ex.asarray(_data(dtype, (6, 10)))
        yield f"reductions_{np.dtype(dtype).name}", [ex.sum(x, axis=1), ex.argmax(x, axis=0), ex.max(x)]
    x, w = ex.asarray(_data(np.float32, (6, 10))), ex.asarray(_data(np.float32, (10,)))
    yield "scalars", [x * 2.0 + 1, ex.clip(x, 0.0, 6.0), ex.where(x > 0, 1.0, x), 0.5 ** x]
    yield "zero_d_and_column", [x * ex.asarray(np.float32(0.5)), x - ex.asarray(_data(np.float32, (6, 1)))]
    yield "strided", [ex.exp(ex.asarray(_data(np.float32, (10, 6))).T) + x,
                      ex.tanh(ex.asarray(_data(np.float32, (6, 20)))[:, ::2])]
    yield "reduce_3d", [ex.sum(ex.asarray(_data(np.float32, (2, 3, 4))), axis=(0, 2))]
    yield "views", [ex.exp(ex.sum(x, axis=1).reshape(3, 2)), ex.flip(x, axis=0) * 2,
                    ex.broadcast_to(ex.expand_dims(w, 0), (6, 10)) + x,
                    ex.transpose(ex.max(x, axis=0, keepdims=True) + x)]
    yield "gradient", list(ex.grad(lambda a, b: ex.sum(ex.softmax(ex.sigmoid(a) * b, axis=-1) * a),
                                   argnums=(0, 1))(x, w))


@functools.cache
def representative_sources() -> dict[str, str]:
    """{source: name of the first expression that needed it}, each distinct kernel once."""
    sources: dict[str, str] = {}
    for name, arrays in _expressions():
        for i, source in enumerate(cuda_sources(*arrays)):
            sources.setdefault(source, f"{name}#{i}")
    return sources


@needs_nvrtc
def test_nvrtc_loads():
    try:
        version = cuda.nvrtc_version()
    except cuda.CudaUnavailable as exc:
        pytest.fail(f"cuda-python is installed but NVRTC cannot be used, so no CUDA kernel can be checked: {exc}")
    assert set(ARCHS) <= set(cuda.supported_archs()), f"NVRTC {version} cannot compile for {ARCHS}"


@needs_nvrtc
def test_every_representative_kernel_compiles_for_sm80_and_sm90():
    sources = representative_sources()
    assert len(sources) >= 40, "the representative set shrank: it should cover every op, reductions and views"
    cuda.nvrtc_version()   # a missing NVRTC library fails here, with its reason, not once per kernel
    jobs = [(source, arch, f"{name}.cu") for source, name in sources.items() for arch in ARCHS]
    # Threads sped nothing up here (NVRTC releases the GIL but seemed to compile one program at a time),
    # so processes share the work.
    with ProcessPoolExecutor(min(4, os.cpu_count() or 1), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(cuda.compile_cubin, *job): job for job in jobs}
        for future in as_completed(futures):
            if future.exception() is not None:
                pool.shutdown(cancel_futures=True)   # one failure says enough; do not wait for the rest
                source, arch, name = futures[future]
                pytest.fail(f"{future.exception()}\n--- {name} ---\n{source}", pytrace=False)


@needs_nvrtc
def test_every_elementwise_op_is_in_the_representative_set_at_float32_and_float64():
    text = "\n".join(representative_sources())
    missing = []
    for op in opdefs.canonical_ops(builtin_only=True):
        if op.kind in ("reduce", "library") or op.params:
            continue
        for dtype in (np.float32, np.float64):
            operands = [ex.asarray(np.ones(3, bool if cast == "bool" else dtype)) for cast in op.cast]
            try:
                (node,), _, _ = rewrite((ex.apply(op.name, *operands)._graph_node(),))
            except TypeError:
                continue   # NumPy refuses this op at this dtype
            if node.op != op.name:
                continue   # a rewrite turned it into other ops (positive(x) is x)
            signature = tuple(s.signature_item() for s in node.src)
            function = _function_name(op, op.compute_dtypes(signature), node.dtype)
            if f"eg::{function}(" not in text:
                missing.append(function)
    assert not missing, f"op functions missing from the CUDA kernels checked: {missing}"


@needs_nvrtc
def test_contiguous_aligned_arrays_are_moved_16_bytes_at_a_time():
    """The flat path's 4-wide accesses must become 128-bit loads and stores (read from NVRTC's PTX)."""
    from cuda.bindings import nvrtc

    (source,) = cuda_sources(ex.asarray(_data(np.float32, (4, 8))) * 2.0 + 1)
    names, contents = cuda._headers()
    _, program = nvrtc.nvrtcCreateProgram(source.encode(), b"k.cu", len(names), contents, names)
    options = [o.encode() for o in cuda.OPTIONS] + [b"-arch=compute_90"]
    (status,) = nvrtc.nvrtcCompileProgram(program, len(options), options)
    assert int(status) == 0
    _, size = nvrtc.nvrtcGetPTXSize(program)
    ptx = b" " * size
    nvrtc.nvrtcGetPTX(program, ptx)
    nvrtc.nvrtcDestroyProgram(program)
    text = ptx.decode()
    assert "ld.global.nc.v4.f32" in text or "ld.global.v4.f32" in text
    assert "st.global.v4.f32" in text


@needs_nvrtc
def test_a_source_error_is_reported_with_nvrtc_log():
    with pytest.raises(cuda.CompileError, match=r"(?s)broken\.cu for sm_90 failed.*error"):
        cuda.compile_cubin('#include "cuda/prelude.cuh"\nint x = eg::no_such_function(1);', "sm_90", "broken.cu")


@needs_nvrtc
def test_cuda_cache_entries_are_keyed_by_arch_nvrtc_version_and_prelude(tmp_path):
    from exprgen.cache.store import KernelCache, entry_paths, examine, trusted_owners

    (source,) = cuda_sources(ex.exp(ex.asarray(_data(np.float64, (3,)))))
    kernels = KernelCache()
    keys = {arch: kernels.key(source, "cuda", cuda.identity(None, arch)) for arch in ARCHS}
    assert len(set(keys.values())) == 2
    assert all(f"nvrtc {cuda.nvrtc_version()}" in cuda.identity(None, arch) and
               f"prelude:{cuda.prelude_digest()}" in cuda.identity(None, arch) for arch in ARCHS)
    assert kernels.build(str(tmp_path), keys["sm_90"], source, "exp", "sm_90", backend="cuda")
    paths = entry_paths(str(tmp_path), keys["sm_90"], "cuda")
    assert paths["binary"].endswith(".cubin") and examine(paths, keys["sm_90"], trusted_owners("disk"))[0] is None
    assert not kernels.build(str(tmp_path), keys["sm_90"], source, "exp", "sm_90", backend="cuda")  # present


def test_unsupported_architecture_is_refused_clearly():
    if not _has_cuda_python():
        assert "cuda-python is not installed" in cuda.problem("sm_90")
        return
    assert "cannot compile for sm_20" in cuda.problem("sm_20")
    assert "bad CUDA architecture" in cuda.problem("90")


# -- ops/: a CUDA expression where one must differ is checked like the C one ---------------------------

def test_a_cuda_expression_replaces_c_in_cuda_kernels_only():
    raw = {"kind": "unary", "c": "exp(x)", "cuda": "exp2(x)", "numpy": "np.exp(x)"}
    op = opdefs._load_entry("trial", raw, "test.toml")
    assert (op.expression("cpu"), op.expression("cuda")) == ("exp(x)", "exp2(x)")
    assert opdefs.get("exp").expression("cuda") == opdefs.get("exp").c


@pytest.mark.parametrize("cuda_expr, message", [
    ("undefined_function(x)", "unknown function"),
    ("x; asm(\"trap\")", "forbidden character"),
    ("x * 0.5", r"must be written T\(0.5\)"),
    ("y", "unknown name"),
])
def test_a_bad_cuda_expression_is_refused_at_load(cuda_expr, message):
    raw = {"kind": "unary", "c": "x", "cuda": cuda_expr, "numpy": "x"}
    with pytest.raises(ValueError, match=message):
        opdefs._load_entry("trial", raw, "test.toml")


# -- devices ------------------------------------------------------------------------------------------

def test_cpu_device_is_the_default_and_works_as_before():
    x = np.arange(6.0).reshape(2, 3)
    a = ex.asarray(x, device="cpu")
    assert a.device == "cpu" and a.to("cpu") is a and ex.sigmoid(a).device == "cpu"
    with ex.device("cpu"):
        np.testing.assert_array_equal(ex.asarray(x).numpy(), x)
    assert ex.asarray(x).numpy() is x   # still read in place, never copied


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "gpu", "cuda:-1"])
def test_an_unknown_device_is_refused(name):
    with pytest.raises(ValueError, match="unknown device"):
        ex.asarray(np.ones(2), device=name)


@pytest.mark.skipif(_gpu_present(), reason="this machine has a GPU")
@pytest.mark.parametrize("ask", [
    lambda: ex.asarray(np.ones(3), device="cuda"),
    lambda: ex.asarray(np.ones(3)).to("cuda:0"),
    lambda: ex.device("cuda:1").__enter__(),
])
def test_asking_for_cuda_without_a_gpu_says_why(ask):
    with pytest.raises(RuntimeError, match="cuda-python is not installed|no CUDA driver found|no CUDA device"):
        ask()


def test_dlpack_exchanges_cpu_arrays_without_copies():
    x = np.arange(12.0).reshape(3, 4)
    a = ex.from_dlpack(x)
    assert a.device == "cpu" and np.shares_memory(a.numpy(), x)
    y = ex.sigmoid(a)
    assert y.__dlpack_device__() == (1, 0)
    out = np.from_dlpack(y)
    assert np.shares_memory(out, y.numpy())
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-x)))


def test_dlpack_with_pytorch():
    torch = peer("torch")
    t = torch.arange(6.0, dtype=torch.float64).reshape(2, 3)
    a = ex.from_dlpack(t)
    assert np.shares_memory(a.numpy(), t.numpy())
    back = torch.from_dlpack(ex.exp(a))
    np.testing.assert_allclose(back.numpy(), np.exp(t.numpy()))


class _CudaTensor:
    """A DLPack producer claiming CUDA memory (what a PyTorch or CuPy GPU tensor reports)."""

    def __dlpack_device__(self):
        return (2, 0)


@pytest.mark.skipif(_gpu_present(), reason="this machine has a GPU")
def test_a_cuda_dlpack_tensor_without_a_gpu_says_why():
    with pytest.raises(RuntimeError, match="cuda-python is not installed|no CUDA driver found|no CUDA device"):
        ex.from_dlpack(_CudaTensor())


@gpu
def test_on_a_gpu_cuda_arrays_are_refused_as_not_wired_in_yet():
    with pytest.raises(NotImplementedError, match="cannot keep arrays on cuda:0 yet"):
        ex.asarray(np.ones(3), device="cuda")
