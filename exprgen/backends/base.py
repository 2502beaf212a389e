"""What a backend is: the one interface realize, the cache and prebuild call, so that a backend is one
module (plus its templates) and an entry in ``registry``.

Two sorts. A **compiling** backend (cpu, cuda) renders each kernel in its ``language`` (the codegen
target: ``templates/`` for C++, ``templates/cuda/`` for CUDA), compiles the source into a binary the cache
stores under its ``name``, loads it and runs it. An **interpreting** backend (numpy) evaluates the graph
itself, op by op, with each op's NumPy reference: the truth every compiled kernel is tested against, and
what runs where no compiler is.

A compiled binary is made for a *target* within the backend: an x86-64 level or ``native`` for the CPU, an
``sm_XX`` for CUDA. ``identity(target)`` is everything besides the source that decides the binary (compiler
and version, flags, target, prelude headers): the cache key hashes it with the source.

Running a compiled kernel (``Runner``) is the backend's too: its buffers, the pointers a kernel is given,
the launch, and the wait for it. The runtime's plans (registers, layouts, steps) are the same for every
backend; only these calls differ.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Backend(Protocol):
    name: str          # the cache's directory and key part
    device_type: str   # whose memory its kernels read: "cpu" or "cuda"
    compiles: bool     # a Compiler (True) or an Interpreter (False)
    host_memory: bool  # its arrays' memory is the host's, which NumPy reads and writes (out= buffers)


class Interpreter(Backend, Protocol):
    def evaluate(self, roots: tuple) -> list[np.ndarray]:
        """The values of the graph ``roots`` (ir.graph nodes), as NumPy arrays."""


class Compiler(Backend, Protocol):
    language: str           # the codegen target its kernels are rendered for ("cpu": C++, "cuda": CUDA)
    binary_suffix: str      # an entry's files in the cache: <key><binary_suffix> beside <key><source_suffix>
    source_suffix: str
    native_target: str | None   # the target a kernel compiled at run time is built for (None: asked of
                                # the device at run time)

    def identity(self, state_dir: str, target: str) -> str:
        """What besides the source decides a binary for ``target``; raises CompilerMissing (or
        CudaUnavailable) when the compiler that would say is absent."""

    def targets_here(self) -> tuple[str, ...]:
        """The targets whose binaries this machine runs, best first (``native_target`` first)."""

    def recorded_identities(self, dirs) -> list[tuple[str, str]]:
        """(target, identity) of compilers that filled these cache directories, for targets this machine
        runs: the keys to look kernels up under on a machine without the compiler."""

    def runs_here(self, identity) -> bool:
        """Does a binary of this recorded ``identity`` run on this machine?"""

    def check_target(self, target: str, written: str) -> str:
        """``target`` as the backend names it ("" for the native one); ValueError quoting ``written`` (the
        user's spelling, "cpu:haswell") and naming the choices."""

    def problem(self, target: str) -> str | None:
        """Why kernels cannot be compiled for ``target`` on this machine, or None."""

    def prelude_digest(self) -> str:
        """A digest of the headers every kernel includes (part of every identity)."""

    def compiler(self) -> str:
        """The compiler it runs, as a message names it (a path, "NVRTC 13.0")."""

    def compile(self, source_path: str, binary_path: str, target: str) -> float:
        """Compile the file at ``source_path`` to ``binary_path``; seconds taken. CompileError quotes the
        compiler; OSError for want of disk space."""

    def load(self, binary_path: str):
        """The kernel entry point of the binary; OSError when it is not one."""

    def runner(self) -> Runner:
        """How this backend's compiled kernels are run; CudaUnavailable (or the like) saying why not."""


class Runner(Protocol):
    """The calls the runtime's step loop makes: buffers, the pointers kernels read, the launch."""

    def sizes(self, values: list[int]):
        """An int64 array argument of a kernel (the launch's shape or strides), made once per plan."""

    def pointer(self, array: np.ndarray, own: bool):
        """A pointer to ``array``'s first element; ``own``: a contiguous buffer the runtime allocated."""

    def own_pointer(self, array: np.ndarray):
        """``pointer(array, own=True)``, called once per result buffer of every evaluation."""

    def address(self, address: int):
        """A pointer to memory at ``address`` (a leaf's), made once per leaf."""

    def offset(self, pointer, nbytes: int):
        """``pointer`` moved by ``nbytes``: a view that starts inside another kernel's output."""

    def pointers(self, values: list):
        """The array of data pointers one launch reads (its slots are rewritten between calls)."""

    def scalars(self, data: bytes | None):
        """The scalar arguments of one launch, packed 8 bytes each (None: the kernel takes none)."""

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A result buffer."""

    def reusable(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A result buffer large enough to be worth reusing once the user lets it go (the pool of
        backends.memory): freshly mapped memory costs page faults on first touch."""

    def launch(self, function, total: int, ndim: int, shape, pointers, strides, scalars, threads: int) -> None:
        """Run one kernel over ``total`` elements (or rows) with ``threads`` threads."""

    def synchronize(self) -> None:
        """Wait until every launch so far is done (a no-op where launches return when done)."""
