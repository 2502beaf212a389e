"""The CPU backend: the system C++ compiler makes a shared library, cffi (ABI mode) loads and calls it.

Flags: C++17, -O3 for a target ISA, OpenMP, no -ffast-math (it would switch the whole process to
flush denormals to zero). -fno-math-errno lets gcc call libmvec's vector math; -ffp-contract=off keeps
a*b+c rounded twice, as NumPy does; -fwrapv makes integer overflow wrap, as NumPy's does.
-mprefer-vector-width=512: on AVX-512 CPUs gcc otherwise vectorises 256 bits wide (older Xeons slowed their
clock for 512-bit code). Here 512-bit loops took 9-31% less time in the compute-bound kernels (float32, 3e7
elements, 2 threads, interleaved A/B: gelu_tanh 20.7 -> 15.5 ms, tanh 16.8 -> 11.6, sigmoid 13.4 -> 11.5,
exp 12.8 -> 11.7); the flag changes nothing where AVX-512 is absent.

The target is -march=native (run time compiles: this CPU exactly) or an x86-64 level (prebuilt kernels
that travel); the identity names it, and ``supported_isas`` says which ones this CPU runs, best first.

Kernels are loaded RTLD_NODELETE. At interpreter exit cffi dlcloses every library it opened; the last
kernel's dlclose unmapped libgomp while its worker threads still spun in it (they spin for a while after
each parallel region), and the process segfaulted: in 15-60% of runs with 2 threads, in every run with
OMP_WAIT_POLICY=active. Preloading libgomp with RTLD_GLOBAL did not help: cffi dlclosed that handle too.
A library that is never unmapped keeps its OpenMP runtime (libgomp or any other) mapped until the end.

``BACKEND`` is this module as the ``base.Compiler`` interface, and its runner calls kernels through cffi
on NumPy buffers (the pool of ``memory`` for large ones).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import hashlib
import json
import operator
import os
import platform
import shutil
import subprocess
import threading
import time

import cffi
import numpy as np

from ..errors import CompileError, CompilerMissing
from ..resources import data_dir
from .memory import pool

FLAGS = ("-std=c++17", "-O3", "-march=native", "-mprefer-vector-width=512", "-fno-math-errno", "-fno-trapping-math",
         "-ffp-contract=off", "-fwrapv", "-fopenmp", "-fPIC", "-shared", "-fno-plt", "-w")
NATIVE = "native"
# The x86-64 psABI micro-architecture levels, best first, each with the /proc/cpuinfo flags it adds to
# the level below ("x86-64" is the baseline every x86-64 CPU runs). A binary built for a level runs on
# any CPU that has its flags and all the lower levels' ones: a prebuilt kernel can travel, a native one
# cannot (its identity names this CPU's features).
ISA_LEVELS = {
    "x86-64-v4": ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"),
    "x86-64-v3": ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"),
    "x86-64-v2": ("cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"),
    "x86-64": (),
}
LIBS = ("-lm",)
# What a compiler (or its linker) says when the disk is full: the cache's to handle, not a compiler bug.
OUT_OF_SPACE = {errno.ENOSPC: os.strerror(errno.ENOSPC), errno.EDQUOT: os.strerror(errno.EDQUOT)}
SIGNATURE = ("void exprgen_kernel(int64_t total, int32_t ndim, const int64_t* shape, void** data,"
             " const int64_t* strides, const uint64_t* scalars, int32_t nthreads);")

ffi = cffi.FFI()
ffi.cdef(SIGNATURE)


@functools.cache
def compiler() -> str:
    cxx = os.environ.get("CXX")
    if cxx and not shutil.which(cxx):  # a typo in CXX must not silently pick another compiler
        raise CompilerMissing(f"CXX={cxx!r} is not an executable: fix CXX, or unset it to use g++ (install g++, "
                              f"e.g. `apt-get install g++`, if it is missing); until then exprgen runs its NumPy "
                              f"interpreter")
    for candidate in (cxx, "g++", "c++"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    tried = f"CXX={cxx!r} is not an executable, and " if cxx else ""
    raise CompilerMissing(f"no C++ compiler found ({tried}neither g++ nor c++ is on PATH): install g++ "
                          f"(e.g. `apt-get install g++`) or set CXX; until then exprgen runs its NumPy interpreter")


@functools.cache
def _cpu_flags() -> str:
    """The CPU's feature flags line: what -march=native sees (cheap to read, unlike asking the compiler)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    return ""


def _cpu_features() -> str:
    line = _cpu_flags()
    return hashlib.sha256(line.encode()).hexdigest()[:16] if line else "unknown-cpu"


@functools.cache
def supported_isas() -> tuple[str, ...]:
    """The targets this CPU runs, best first: native, then each x86-64 level it has every flag of."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return (NATIVE,)
    have = set(_cpu_flags().partition(":")[2].split())
    levels = list(ISA_LEVELS)
    return (NATIVE, *[lv for i, lv in enumerate(levels) if all(set(ISA_LEVELS[k]) <= have for k in levels[i:])])


def check_isa(isa: str) -> None:
    """ValueError unless this machine's compiler can build for ``isa`` (native, or an ISA_LEVELS key)."""
    if isa != NATIVE and platform.machine().lower() not in ("x86_64", "amd64"):
        raise ValueError(f"CPU target {isa} needs an x86-64 compiler; this machine is {platform.machine()}")


def flags(isa: str = NATIVE) -> tuple[str, ...]:
    return tuple(f"-march={isa}" if flag == "-march=native" else flag for flag in FLAGS)


@functools.cache
def identity(state_dir: str, isa: str = NATIVE) -> str:
    """Compiler identity and version, flags and target ISA: what besides the source decides the binary."""
    return _identity_of(compiler_version(state_dir), isa)


@functools.cache
def compiler_version(state_dir: str) -> str:
    """The C++ compiler's version line. Asking the compiler costs a subprocess, so the answer is remembered
    on disk beside the cache, keyed by the compiler binary's path, size and mtime (a memo only: the
    identity itself holds nothing path- or time-dependent)."""
    path = compiler()
    st = os.stat(path)
    memo_name = hashlib.sha256(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:24]
    memo = os.path.join(state_dir, f"compiler-{memo_name}.json")
    try:
        with open(memo) as f:
            version = json.load(f)["version"]
        if not isinstance(version, str):
            raise ValueError(memo)
    except (OSError, ValueError, KeyError, TypeError):
        version = _version(path)
        _write_atomic(memo, json.dumps({"compiler": path, "version": version}).encode())
    return version


@functools.cache
def prelude_digest() -> str:
    """Kernels #include prelude.h, so its content is part of what decides every binary."""
    return hashlib.sha256((data_dir("templates") / "prelude.h").read_bytes()).hexdigest()[:16]


def _identity_of(version: str, isa: str = NATIVE) -> str:
    # A native binary is only good for a CPU with these very features; a level's for any CPU that has it.
    target = f"native:{_cpu_features()}" if isa == NATIVE else f"isa:{isa}"
    return f"{version}|{' '.join(flags(isa) + LIBS)}|{target}|prelude:{prelude_digest()}"


def runs_here(identity) -> bool:
    """Was a binary of this compiler ``identity`` (as a cache entry records it, its key authenticating it)
    built for this CPU: natively on one with the same features, or for an ISA level this CPU runs?"""
    if not isinstance(identity, str):
        return False
    parts = identity.rsplit("|", 2)   # version|flags|target|prelude (_identity_of); a version may hold "|"
    target = parts[1] if len(parts) == 3 else ""
    return target == f"native:{_cpu_features()}" or (target.startswith("isa:") and target[4:] in supported_isas())


def _version(path: str) -> str:
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True)
    except OSError as exc:
        raise CompilerMissing(f"the C++ compiler {path} cannot run ({exc}): install g++ "
                              f"(e.g. `apt-get install g++`) or set CXX") from None
    lines = proc.stdout.splitlines()
    if proc.returncode == 0 and lines and lines[0].strip():
        return lines[0]
    # A compiler that will not say its version is still identified by its contents.
    with open(path, "rb") as f:
        return "sha256:" + hashlib.sha256(f.read()).hexdigest()


def recorded_identities(dirs) -> list[tuple[str, str]]:
    """(isa, identity) of the compilers that filled these cache directories, from their memos, for each
    target this CPU runs (best first).

    A machine without a compiler cannot ask one its version, yet can still run kernels a build machine
    left in a cache or prebuilt directory: these are the identities to look them up under.
    """
    versions: list[str] = []
    for directory in dirs:
        for memo in sorted(glob.glob(os.path.join(glob.escape(directory), "compiler-*.json"))):
            try:
                with open(memo) as f:
                    version = json.load(f)["version"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if isinstance(version, str) and version not in versions:
                versions.append(version)
    return [(isa, _identity_of(v, isa)) for isa in supported_isas() for v in versions]


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        pass


def compile_source(source_path: str, output_path: str, isa: str = NATIVE) -> float:
    """Compile to ``output_path``; seconds taken (see ``run_compiler``)."""
    return run_compiler(flags(isa), source_path, output_path, named=source_path)


def run_compiler(options: tuple[str, ...], source_path: str, output_path: str, named: str) -> float:
    """Compile ``source_path`` (a kernel's file ``named``) to the shared library ``output_path`` with these
    options; seconds taken. CompileError quotes the compiler and names the source; OSError(ENOSPC or
    EDQUOT) when it failed for want of space (``ld: final link failed: No space left on device``), as
    writing the file from Python would."""
    start = time.perf_counter()
    cmd = [compiler(), *options, f"-I{data_dir('templates')}", source_path, "-o", output_path, *LIBS]
    # In the C locale, so that the messages read below are the English ones whatever the user's language.
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    if proc.returncode != 0 or not os.path.exists(output_path):
        said = proc.stderr.strip() or "(it printed nothing)"
        for code, message in OUT_OF_SPACE.items():
            line = next((line for line in said.splitlines() if message in line), None)
            if line:
                raise OSError(code, f"the compiler could not write its output: {line.strip()}", output_path)
        how = f"exited with status {proc.returncode}" if proc.returncode else f"wrote no {output_path}"
        raise CompileError(f"compiling {named} failed: the compiler {how} (if it is a working C++ "
                           f"compiler, this is an exprgen bug; please report it):\n$ {' '.join(cmd)}\n{said}")
    return time.perf_counter() - start


def load(path: str):
    """The kernel entry point of the shared library at ``path``; OSError when it is no kernel library (the
    loader refuses it, or it lacks the entry point)."""
    with _load_lock:
        if _libraries:
            lib = ffi.dlopen(path, ffi.RTLD_NOW | ffi.RTLD_LOCAL | ffi.RTLD_NODELETE)
        else:
            with _openmp_waits_passively():
                lib = ffi.dlopen(path, ffi.RTLD_NOW | ffi.RTLD_LOCAL | ffi.RTLD_NODELETE)
        _libraries.append(lib)  # a library must outlive every call of its function
    try:
        return lib.exprgen_kernel
    except AttributeError as exc:
        raise OSError(str(exc)) from None


_libraries: list = []
_load_lock = threading.Lock()
# OpenMP's variables that say how a team waits between parallel regions; the user's, if set, are kept.
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


@contextlib.contextmanager
def _openmp_waits_passively():
    """While the first kernel loads (and with it libgomp, whose constructor reads the environment once),
    OMP_WAIT_POLICY=passive, unless the user chose a policy; the environment is given back after.

    An idle team otherwise spins for a while after every kernel, on the cores the BLAS behind NumPy's
    matmul (its own thread pool) needs next. A 2-layer MLP step (512x256 -> 512 -> 10, value_and_grad,
    2 cores) took 40 ms with spinning teams and 5.4-6.3 ms with passive ones; GOMP_SPINCOUNT=30000 gave
    12 ms, 1000 gave 4.9 ms (as passive). The price is waking a sleeping team, ~20 us: a lone
    1e5-element kernel took 45 -> 65 us, so settings.PARALLEL_THRESHOLD is measured with passive teams.
    A libgomp loaded before exprgen's first kernel (by another library) keeps the policy it read."""
    if any(name in os.environ for name in WAIT_VARIABLES):
        yield
        return
    os.environ["OMP_WAIT_POLICY"] = "passive"
    try:
        yield
    finally:
        os.environ.pop("OMP_WAIT_POLICY", None)


# -- this module as a backend (base.Compiler) ------------------------------------------------------
name = device_type = language = "cpu"
compiles = True
host_memory = True
binary_suffix, source_suffix = ".so", ".cpp"
native_target = NATIVE
targets_here = supported_isas


def check_target(target: str, written: str) -> str:
    """``target`` as an ISA name ("" is native); ValueError quoting ``written`` (how the user named it)."""
    isa = target or NATIVE
    if isa != NATIVE and isa not in ISA_LEVELS:
        raise ValueError(f"unknown CPU target {written!r}: use cpu (this machine) or cpu:LEVEL with LEVEL "
                         f"one of {', '.join(ISA_LEVELS)}")
    return isa


def problem(isa: str) -> str | None:
    try:
        check_isa(isa)
        compiler()
    except (ValueError, CompilerMissing) as exc:
        return str(exc)
    return None


compile = compile_source  # noqa: A001 - the interface's name


class HostRunner:
    """Kernels are functions of this process: a launch is a call that returns when the kernel is done.
    Pointers are cffi's; a result buffer is NumPy's (from the pool when large)."""

    _POINTERS = ffi.typeof("void*[]")      # resolved once: a cdecl string is parsed on every call
    _SCALARS = ffi.typeof("uint64_t[]")
    _NO_SCALARS = ffi.new(_SCALARS, 1)

    def sizes(self, values):
        return ffi.new("int64_t[]", values or [0])

    def pointer(self, array, own: bool):
        # from_buffer for our own contiguous buffers (fast), the array interface for anything else
        # (strided views, user out= buffers).
        return ffi.from_buffer(array) if own else ffi.cast("void*", array.__array_interface__["data"][0])

    def address(self, address: int):
        return ffi.cast("void*", address)

    def offset(self, pointer, nbytes: int):
        return ffi.cast("char*", pointer) + nbytes

    def pointers(self, values):
        return ffi.new(self._POINTERS, values)

    def scalars(self, data):
        return ffi.from_buffer(self._SCALARS, data) if data else self._NO_SCALARS

    empty = np.empty
    reusable = pool.empty

    # A launch is the call itself: operator.call, not a method around it (a warm 1-element evaluation
    # costs about 3 us, a Python frame per launch a tenth of that).
    launch = operator.call
    own_pointer = ffi.from_buffer

    def synchronize(self) -> None:
        pass


RUNNER = HostRunner()


def runner() -> HostRunner:
    return RUNNER
