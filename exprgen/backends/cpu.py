"""The CPU backend: the system C++ compiler makes a shared library, cffi (ABI mode) loads and calls it.

Flags: C++17, -O3 for this machine's ISA, OpenMP, no -ffast-math (it would switch the whole process to
flush denormals to zero). -fno-math-errno lets gcc call libmvec's vector math; -ffp-contract=off keeps
a*b+c rounded twice, as NumPy does; -fwrapv makes integer overflow wrap, as NumPy's does.

libgomp is loaded with RTLD_GLOBAL before the first kernel: an OpenMP library dlopen'ed privately by cffi
crashed at interpreter exit in 15-60% of runs here.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import time

import cffi

from ..resources import data_dir

FLAGS = ("-std=c++17", "-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off",
         "-fwrapv", "-fopenmp", "-fPIC", "-shared", "-fno-plt", "-w")
LIBS = ("-lm",)
SIGNATURE = ("void exprgen_kernel(int64_t total, int32_t ndim, const int64_t* shape, void** data,"
             " const int64_t* strides, const uint64_t* scalars, int32_t nthreads);")

ffi = cffi.FFI()
ffi.cdef(SIGNATURE)


class CompilerMissing(RuntimeError):
    pass


class CompileError(RuntimeError):
    pass


@functools.cache
def compiler() -> str:
    for candidate in (os.environ.get("CXX"), "g++", "c++"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    raise CompilerMissing("no C++ compiler found (set CXX, or install g++: apt-get install g++); "
                          "exprgen falls back to its NumPy interpreter")


def _cpu_features() -> str:
    """What -march=native sees: the CPU's feature flags (cheap to read, unlike asking the compiler)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return hashlib.sha256(line.encode()).hexdigest()[:16]
    except OSError:
        pass
    return "unknown-cpu"


@functools.cache
def identity(state_dir: str) -> str:
    """Compiler identity and version, flags and target ISA: what besides the source decides the binary.

    Asking the compiler its version costs a subprocess, so the answer is remembered on disk beside the
    cache, keyed by the compiler binary's path, size and mtime (a memo only: the identity itself holds
    nothing path- or time-dependent).
    """
    path = compiler()
    st = os.stat(path)
    memo_name = hashlib.sha256(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:24]
    memo = os.path.join(state_dir, f"compiler-{memo_name}.json")
    try:
        with open(memo) as f:
            version = json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        _write_atomic(memo, json.dumps({"compiler": path, "version": version}).encode())
    return f"{version}|{' '.join(FLAGS + LIBS)}|native:{_cpu_features()}"


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        pass


def compile_source(source_path: str, output_path: str) -> float:
    """Compile to ``output_path``; seconds taken. CompileError quotes the compiler and names the source."""
    start = time.perf_counter()
    cmd = [compiler(), *FLAGS, f"-I{data_dir('templates')}", source_path, "-o", output_path, *LIBS]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CompileError(f"compiling {source_path} failed (this is an exprgen bug; please report it):\n"
                           f"$ {' '.join(cmd)}\n{proc.stderr.strip()}")
    return time.perf_counter() - start


_openmp_loaded = []


def _load_openmp_globally() -> None:
    if _openmp_loaded:
        return
    for name in ("libgomp.so.1", "libgomp.so"):
        try:
            _openmp_loaded.append(ffi.dlopen(name, ffi.RTLD_NOW | ffi.RTLD_GLOBAL))
            return
        except OSError:
            continue


def load(path: str):
    """The kernel entry point of the shared library at ``path``."""
    _load_openmp_globally()
    lib = ffi.dlopen(path, ffi.RTLD_NOW | ffi.RTLD_LOCAL)
    entry = lib.exprgen_kernel
    _libraries.append(lib)  # a library must outlive every call of its function
    return entry


_libraries: list = []
