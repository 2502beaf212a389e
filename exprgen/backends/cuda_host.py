"""CUDA on the host (``EXPRGEN_CUDA_HOST=1``): device ``cuda`` on a machine with no GPU, for tests.

Each kernel's own CUDA source, the text NVRTC compiles for a GPU (templates/cuda), is compiled by the
host C++ compiler after ``templates/cuda/host.h``, which gives ``threadIdx``, ``blockIdx``, ``blockDim``,
``gridDim``, ``__shared__``, ``__syncthreads()`` and the warp shuffles their CUDA meaning: every thread of
a block is a fiber, blocks run one after another (Triton's interpreter mode, for CUDA C++). Slow, and
exact in logic: the index arithmetic, the grid-stride loops, the shared-memory and shuffle reductions and
the packing of the launch's parameters are the GPU's. It cannot show races that the sequential order
hides, timing or occupancy (README, CUDA).

Device memory is host memory, from this backend's own pool (as a GPU's pool reuses freed buffers). A
launch packs the same ``Params`` block ``cuda.Function.launch`` gives ``cuLaunchKernel``, with at most
HOST_BLOCKS blocks of CUDA_THREADS threads: few enough to stay fast, enough for every grid-stride loop to
take more than one turn and every block to take more than one row.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct

import cffi
import numpy as np

from ..codegen.render import CUDA_THREADS
from ..errors import CompilerMissing
from ..resources import data_dir
from . import cpu, cuda
from .memory import BufferPool

ENABLE = "EXPRGEN_CUDA_HOST"
HOST_BLOCKS = 3
# -O1: a test compiles hundreds of kernels; the arithmetic is IEEE either way (no fast math), and
# -ffp-contract=off is NVRTC's -fmad=false. No -march: host.h's fibers are plain x86-64.
FLAGS = ("-std=c++17", "-O1", "-fno-math-errno", "-ffp-contract=off", "-fwrapv", "-fPIC", "-shared", "-w",
         "-include", "cuda/host.h")
ENTRY = "exprgen_host_launch"
SIGNATURE = f"int {ENTRY}(unsigned blocks, unsigned threads, const void* params, long size);"
STATUS = {1: "the parameter block's size is not the kernel's (an exprgen bug)",
          2: "a warp shuffle read a lane that had already returned",
          3: "threads of one block wait at different barriers (__syncthreads in divergent code)",
          4: "__syncthreads was reached after some threads of the block had returned",
          5: "no memory for the block's fibers"}

ffi = cffi.FFI()
ffi.cdef(SIGNATURE)


def enabled() -> bool:
    return os.environ.get(ENABLE, "") not in ("", "0")


# -- this module as a backend (base.Compiler) ------------------------------------------------------
name = "cuda-host"
device_type = language = "cuda"
compiles = True
host_memory = True
binary_suffix, source_suffix = ".so", ".cu"
native_target = "host"


@functools.cache
def prelude_digest() -> str:
    return hashlib.sha256(cuda.prelude_digest().encode()
                          + (data_dir("templates") / "cuda" / "host.h").read_bytes()).hexdigest()[:16]


def identity(state_dir: str, target: str = native_target) -> str:
    return f"{cpu.compiler_version(state_dir)}|{' '.join(FLAGS)}|target:{target}|prelude:{prelude_digest()}"


def targets_here() -> tuple[str, ...]:
    return (native_target,)


def recorded_identities(dirs) -> list[tuple[str, str]]:
    return []   # kernels for tests, compiled where they run


def runs_here(identity) -> bool:
    return isinstance(identity, str) and f"|target:{native_target}|" in identity


def check_target(target: str, written: str) -> str:
    if target not in ("", native_target):
        raise ValueError(f"unknown CUDA host target {written!r}: host execution has one target, this CPU")
    return native_target


def problem(target: str) -> str | None:
    try:
        cpu.compiler()
    except CompilerMissing as exc:
        return str(exc)
    return None


def compiler() -> str:
    return cpu.compiler()


def compile(source_path: str, binary_path: str, target: str = native_target) -> float:  # noqa: A001
    """The CUDA source at ``source_path`` with the launch entry after it, compiled for this CPU."""
    with open(source_path) as f:
        source = f.read()
    wrapper = f"{binary_path}.{os.getpid()}.host.cpp"
    with open(wrapper, "w") as f:
        f.write(f'#line 1 "{os.path.basename(source_path)}"\n{source}\n'
                f'extern "C" int {ENTRY}(unsigned blocks, unsigned threads, const void* params, long size) '
                f'{{ return eg_host::launch(exprgen_kernel, blocks, threads, params, size); }}\n')
    try:
        return cpu.run_compiler(FLAGS, wrapper, binary_path, named=source_path)
    finally:
        os.unlink(wrapper)


def load(path: str) -> HostKernel:
    lib = ffi.dlopen(path, ffi.RTLD_NOW | ffi.RTLD_LOCAL | ffi.RTLD_NODELETE)
    try:
        return HostKernel(getattr(lib, ENTRY), path)
    except AttributeError as exc:
        raise OSError(str(exc)) from None


class HostKernel:
    """A loaded kernel, called as a CPU kernel is (``cpu.SIGNATURE``'s arguments): it packs the launch's
    ``Params`` as ``cuda.Function.launch`` does (total, ndim, the geometry's address: shape then strides,
    the arrays' addresses, the scalars) and runs the grid."""

    def __init__(self, entry, path: str):
        self.entry, self.path = entry, path

    def __call__(self, total, ndim, shape, pointers, strides, scalars, threads) -> None:
        geometry = ffi.new("int64_t[]", list(shape) + list(strides))
        addresses = [int(ffi.cast("uintptr_t", p)) for p in pointers]
        params = (struct.pack(f"<qqQ{len(addresses)}Q", total, ndim, int(ffi.cast("uintptr_t", geometry)), *addresses)
                  + bytes(ffi.buffer(scalars)))
        status = self.entry(min(max(total, 1), HOST_BLOCKS), CUDA_THREADS, params, len(params))
        if status:
            raise RuntimeError(f"CUDA host execution of {self.path[:-3]}.cu stopped: "
                               f"{STATUS.get(status, f'status {status}')}")


class Runner(cpu.HostRunner):
    """Launches are calls, as the CPU's; buffers are "device" memory, from this backend's pool."""

    def __init__(self):
        self.pool = BufferPool()
        self.reusable = self.pool.empty


_RUNNER = Runner()


def runner() -> Runner:
    return _RUNNER


def to_device(array: np.ndarray) -> np.ndarray:
    """A copy of ``array`` in device memory (here: a buffer of its own, C-contiguous)."""
    return np.array(array, order="C", copy=True)
