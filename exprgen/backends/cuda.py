"""The CUDA backend: NVRTC (cuda-python) compiles kernels to cubin for one GPU architecture; the driver
API loads them and launches them on a stream.

Compiling needs no GPU: ``cuda.bindings.nvrtc`` and the NVRTC library (``pip install cuda-python
nvidia-cuda-nvrtc``) are enough, so ``exprgen prebuild --target cuda:sm_90`` and the tests' NVRTC checks
run on any machine. Running needs the NVIDIA driver (libcuda.so) and a device.

Options: C++17; ``-default-device``, so prelude.h's unannotated functions are device functions; IEEE
arithmetic as on the CPU: ``-fmad=false`` (a*b+c rounded twice, as -ffp-contract=off does there), no fast
math, no flush to zero, correctly rounded division and sqrt. The prelude headers are handed to NVRTC
from memory, so what the cache key hashes (their content) is exactly what is compiled.

NOT YET RUN ON A GPU: everything below ``# --- the device`` (driver initialisation, device properties,
module loading, launches, the memory pool, copies). It was written against the driver API's documented
behaviour and checked only for the paths a machine without a driver takes (the errors). Nothing in
exprgen calls the launch path yet: evaluation on a GPU's arrays is not wired in (see ``array.py``), so
this module as a backend (``base.Compiler``) compiles, and its ``runner`` refuses, naming the issue that
wires it in. The same kernels do run under CUDA host execution (``cuda_host``), on the CPU.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import re
import struct
import time

from ..codegen.render import CUDA_THREADS, ENTRY
from ..resources import data_dir
from ..errors import CompileError, CudaUnavailable

OPTIONS = ("-std=c++17", "-default-device", "-fmad=false", "-ftz=false", "-prec-div=true", "-prec-sqrt=true")
HEADERS = ("prelude.h", "cuda/prelude.cuh")   # under templates/, by the names the kernels #include
INSTALL = "pip install 'cuda-python>=13' 'nvidia-cuda-nvrtc>=13'"


def _nvrtc():
    try:
        from cuda.bindings import nvrtc
    except ImportError:
        raise CudaUnavailable(f"cuda-python is not installed, so CUDA kernels cannot be compiled: {INSTALL}") from None
    return nvrtc


def _check(result, what: str):
    """The values after an NVRTC or driver call's status; CudaUnavailable naming ``what`` on failure."""
    status, *values = result if isinstance(result, tuple) else (result,)
    if int(status) != 0:
        raise CudaUnavailable(f"{what} failed: {status!r}")
    return values[0] if len(values) == 1 else tuple(values)


@functools.cache
def nvrtc_version() -> str:
    """NVRTC's version, "13.5"; CudaUnavailable when cuda-python or the NVRTC library is missing."""
    nvrtc = _nvrtc()
    try:
        major, minor = _check(nvrtc.nvrtcVersion(), "nvrtcVersion")
    except CudaUnavailable:
        raise
    except Exception as exc:  # the library itself could not be found or loaded (cuda-pathfinder's errors)
        reason = " ".join(str(exc).split())
        raise CudaUnavailable(f"the NVRTC library could not be loaded ({type(exc).__name__}: {reason}): "
                              f"{INSTALL}") from None
    return f"{major}.{minor}"


@functools.cache
def supported_archs() -> tuple[str, ...]:
    """The sm_XX this NVRTC compiles for."""
    nvrtc = _nvrtc()
    nvrtc_version()
    return tuple(f"sm_{n}" for n in _check(nvrtc.nvrtcGetSupportedArchs(), "nvrtcGetSupportedArchs"))


def check_arch(arch: str) -> None:
    """CudaUnavailable unless this NVRTC compiles for ``arch`` ("sm_90")."""
    if not re.fullmatch(r"sm_\d{2,3}[a-z]?", arch):
        raise ValueError(f"bad CUDA architecture {arch!r}: write sm_XX, e.g. sm_80 or sm_90")
    supported = supported_archs()
    if arch.rstrip("abcdefghijklmnopqrstuvwxyz") not in supported:
        raise CudaUnavailable(f"NVRTC {nvrtc_version()} cannot compile for {arch}; it supports "
                              f"{', '.join(supported)}")


def problem(arch: str) -> str | None:
    """Why kernels cannot be compiled for ``arch`` on this machine, or None."""
    try:
        check_arch(arch)
    except (CudaUnavailable, ValueError) as exc:
        return str(exc)
    return None


@functools.cache
def _headers() -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """(names, contents) of the prelude headers."""
    root = data_dir("templates")
    return tuple(h.encode() for h in HEADERS), tuple((root / h).read_bytes() for h in HEADERS)


@functools.cache
def prelude_digest() -> str:
    digest = hashlib.sha256()
    for name, content in zip(*_headers()):
        digest.update(name + b"\0" + content + b"\0")
    return digest.hexdigest()[:16]


def identity(state_dir: str | None, arch: str) -> str:
    """What besides the source decides a cubin: NVRTC's version, the options, the architecture and the
    prelude headers. (``state_dir``: unused, as asking NVRTC its version costs nothing; the parameter
    matches ``cpu.identity``, so the cache calls either alike.)"""
    return f"nvrtc {nvrtc_version()}|{' '.join(OPTIONS)}|arch:{arch}|prelude:{prelude_digest()}"


def compile_cubin(source: str, arch: str, name: str = "exprgen_kernel.cu") -> bytes:
    """The cubin of ``source`` for ``arch``. CompileError quotes NVRTC's log and names the source."""
    nvrtc = _nvrtc()
    check_arch(arch)
    names, contents = _headers()
    program = _check(nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), len(names), contents, names),
                     "nvrtcCreateProgram")
    try:
        options = [o.encode() for o in OPTIONS] + [f"-arch={arch}".encode()]
        (status,) = nvrtc.nvrtcCompileProgram(program, len(options), options)
        if int(status) != 0:
            size = _check(nvrtc.nvrtcGetProgramLogSize(program), "nvrtcGetProgramLogSize")
            log = b" " * size
            _check(nvrtc.nvrtcGetProgramLog(program, log), "nvrtcGetProgramLog")
            raise CompileError(f"compiling {name} for {arch} failed (this is an exprgen bug; please report it):\n"
                               f"NVRTC {nvrtc_version()} {' '.join(o.decode() for o in options)}\n"
                               f"{log.rstrip(b' ').rstrip(bytes(1)).decode(errors='replace').strip()}")
        size = _check(nvrtc.nvrtcGetCUBINSize(program), "nvrtcGetCUBINSize")
        cubin = b" " * size
        _check(nvrtc.nvrtcGetCUBIN(program, cubin), "nvrtcGetCUBIN")
        return cubin
    finally:
        nvrtc.nvrtcDestroyProgram(program)


def compile(source_path: str, output_path: str, arch: str) -> float:  # noqa: A001 - the interface's name
    """Compile the file at ``source_path`` into a cubin at ``output_path``; seconds taken. (The
    interface's, for the cache.)"""
    start = time.perf_counter()
    with open(source_path) as f:
        source = f.read()
    cubin = compile_cubin(source, arch, name=source_path)
    with open(output_path, "wb") as f:
        f.write(cubin)
    return time.perf_counter() - start


# -- this module as a backend (base.Compiler) ------------------------------------------------------
name = device_type = language = "cuda"
compiles = True
host_memory = False
binary_suffix, source_suffix = ".cubin", ".cu"
native_target = None   # every build names its sm_XX; a run-time compile will ask the device (issue #19)


def compiler() -> str:
    return f"NVRTC {nvrtc_version()}"


def check_target(target: str, written: str) -> str:
    """``target`` as an architecture name; ValueError quoting ``written`` (how the user named it)."""
    if not re.fullmatch(r"sm_\d{2,3}[a-z]?", target):
        raise ValueError(f"bad CUDA target {written!r}: name an architecture, e.g. cuda:sm_80 or cuda:sm_90")
    return target


def targets_here() -> tuple[str, ...]:
    """Nothing runs CUDA kernels yet (issue #19), so no target is this machine's."""
    return ()


def recorded_identities(dirs) -> list[tuple[str, str]]:
    return []   # NVRTC says its version without a subprocess: nothing to look up without it


def runs_here(identity) -> bool:
    return False


def load(path: str) -> Function:
    """The kernel of the cubin at ``path`` on cuda:0 (the device arrays will choose: issue #19)."""
    with open(path, "rb") as f:
        cubin = f.read()
    return device(0).load(cubin)


def runner():
    raise CudaUnavailable("exprgen does not run kernels on CUDA devices yet (issue #19: device arrays, "
                          "launches, the memory pool); CUDA kernels can be compiled and prebuilt: "
                          "exprgen prebuild --target cuda:sm_90")


# --- the device: NOT YET RUN ON A GPU (see the module docstring) ---------------------------------------

def parse_device(device: str) -> int:
    """The ordinal of "cuda" (0) or "cuda:N"; ValueError for anything else."""
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if not match:
        raise ValueError(f"bad CUDA device {device!r}: write cuda or cuda:N")
    return int(match.group(1) or 0)


@functools.cache
def _driver():
    """cuda.bindings.driver, initialised; CudaUnavailable saying why it cannot be."""
    try:
        from cuda.bindings import driver
    except ImportError:
        raise CudaUnavailable(f"cuda-python is not installed, so exprgen cannot use a GPU: {INSTALL}") from None
    try:
        status = driver.cuInit(0)[0]
    except Exception as exc:  # cuda-pathfinder raises when libcuda.so is absent
        raise CudaUnavailable(f"no CUDA driver found (libcuda.so could not be loaded: {' '.join(str(exc).split())}); "
                              f"install the NVIDIA driver to run on a GPU. Kernels can still be compiled here: "
                              f"exprgen prebuild --target cuda:sm_90") from None
    if int(status) != 0:
        raise CudaUnavailable(f"the CUDA driver did not initialise ({status!r}): no usable GPU")
    return driver


def device_count() -> int:
    driver = _driver()
    return _check(driver.cuDeviceGetCount(), "cuDeviceGetCount")


@functools.cache
def device(ordinal: int = 0) -> Device:
    """The device ``cuda:<ordinal>``, set up once; CudaUnavailable when there is none."""
    count = device_count()
    if count == 0:
        raise CudaUnavailable("no CUDA device: the driver is installed but sees no GPU (check nvidia-smi and "
                              "CUDA_VISIBLE_DEVICES)")
    if not 0 <= ordinal < count:
        raise CudaUnavailable(f"no CUDA device cuda:{ordinal}: this machine has {count} (cuda:0 to cuda:{count - 1})")
    return Device(ordinal)


class Device:
    """One GPU: its primary context, one stream every launch and copy goes to (so they run in order,
    asynchronously), and its memory pool (allocations and frees are stream-ordered; freed memory stays
    in the pool for the next result instead of going back to the driver)."""

    def __init__(self, ordinal: int):
        driver = _driver()
        self.driver = driver
        self.ordinal = ordinal
        self.handle = _check(driver.cuDeviceGet(ordinal), "cuDeviceGet")
        attribute = driver.CUdevice_attribute
        major = _check(driver.cuDeviceGetAttribute(attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                                                   self.handle), "cuDeviceGetAttribute")
        minor = _check(driver.cuDeviceGetAttribute(attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                                                   self.handle), "cuDeviceGetAttribute")
        self.arch = f"sm_{major}{minor}"
        self.sms = _check(driver.cuDeviceGetAttribute(attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                                                      self.handle), "cuDeviceGetAttribute")
        self.context = _check(driver.cuDevicePrimaryCtxRetain(self.handle), "cuDevicePrimaryCtxRetain")
        self.activate()
        self.stream = _check(driver.cuStreamCreate(driver.CUstream_flags.CU_STREAM_NON_BLOCKING), "cuStreamCreate")
        self.pool = _check(driver.cuDeviceGetDefaultMemPool(self.handle), "cuDeviceGetDefaultMemPool")
        keep_everything = driver.cuuint64_t(2**64 - 1)
        _check(driver.cuMemPoolSetAttribute(self.pool, driver.CUmemPool_attribute.CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                                            keep_everything), "cuMemPoolSetAttribute")

    def activate(self) -> None:
        _check(self.driver.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")

    def allocate(self, nbytes: int) -> int:
        """A device pointer to ``nbytes`` from the pool, usable by work queued on the stream after now."""
        return int(_check(self.driver.cuMemAllocAsync(max(nbytes, 1), self.stream), "cuMemAllocAsync"))

    def free(self, pointer: int) -> None:
        """Back to the pool once the work queued so far on the stream is done."""
        _check(self.driver.cuMemFreeAsync(pointer, self.stream), "cuMemFreeAsync")

    def upload(self, pointer: int, host_address: int, nbytes: int) -> None:
        """Copy host memory to the device, in stream order; the host memory must stay alive and unchanged
        until the stream passes this point (``synchronize``)."""
        _check(self.driver.cuMemcpyHtoDAsync(pointer, host_address, nbytes, self.stream), "cuMemcpyHtoDAsync")

    def download(self, host_address: int, pointer: int, nbytes: int) -> None:
        """Copy device memory into host memory and wait for it (and everything queued before it)."""
        _check(self.driver.cuMemcpyDtoHAsync(host_address, pointer, nbytes, self.stream), "cuMemcpyDtoHAsync")
        self.synchronize()

    def synchronize(self) -> None:
        _check(self.driver.cuStreamSynchronize(self.stream), "cuStreamSynchronize")

    def load(self, cubin: bytes) -> Function:
        """The kernel entry point of ``cubin`` (compiled for ``self.arch``)."""
        self.activate()
        module = _check(self.driver.cuModuleLoadData(cubin), "cuModuleLoadData")
        return Function(self, module, _check(self.driver.cuModuleGetFunction(module, ENTRY.encode()), "cuModuleGetFunction"))

    def blocks(self, work: int) -> int:
        """Blocks for ``work`` independent items (elements or rows) of a grid-stride kernel: enough to fill
        every SM several times over, never more than there is work for."""
        return max(1, min((work + CUDA_THREADS - 1) // CUDA_THREADS, self.sms * 32))


class Function:
    """A loaded kernel. Its one parameter is the template's ``Params``: total, ndim, the geometry's
    device pointer, the arrays' device pointers, then the scalars (each scalar's bytes, zero-padded to
    8), every field 8 bytes."""

    def __init__(self, device: Device, module, function):
        self.device = device
        self.module = module  # the function lives as long as its module
        self.function = function

    def launch(self, blocks: int, total: int, ndim: int, geometry: int, pointers: list[int],
               scalars: bytes) -> None:
        """Queue one launch on the device's stream; returns at once (``Device.synchronize`` waits)."""
        params = struct.pack(f"<qqQ{len(pointers)}Q", total, ndim, geometry, *pointers) + (scalars or bytes(8))
        block = ctypes.create_string_buffer(params, len(params))
        arguments = (ctypes.c_void_p * 1)(ctypes.addressof(block))
        _check(self.device.driver.cuLaunchKernel(self.function, blocks, 1, 1, CUDA_THREADS, 1, 1, 0,
                                                 self.device.stream, ctypes.addressof(arguments), 0),
               "cuLaunchKernel")
