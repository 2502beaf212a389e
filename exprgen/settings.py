"""User settings: threads, backend, cache location and deployment switches, from the environment or code.

Environment variables (all optional):
  EXPRGEN_NUM_THREADS   threads for large arrays (default: the CPUs this process may use; at most
                        MAX_THREADS_PER_CPU times as many, see ``_capped``)
  EXPRGEN_BACKEND       "cpu" (compiled C++, the default) or "numpy" (the reference interpreter); read
                        at import, ex.config(backend=...) changes it later
  EXPRGEN_CACHE_DIR     kernel cache directory (default ~/.cache/exprgen)
  EXPRGEN_PREBUILT_DIR  read-only prebuilt kernel directories, separated by os.pathsep
  EXPRGEN_NO_COMPILE    "1": a kernel that no cache tier holds is an error, never a compile
  CXX                   the C++ compiler (default g++, else c++)

Options set in code with ``ex.config(fast_math=..., debug=...)`` (see ``configure``).
"""

from __future__ import annotations

import contextlib
import operator
import os
import threading
import warnings

import threadpoolctl

from .backends import registry

# Below this many elements a kernel runs on one thread: waking a team costs more than it saves. The team
# sleeps between kernels (backends/cpu.py: passive waiting), so waking it costs ~20 us. Measured (float32,
# 2 cores, out= given, 1 vs 2 threads): at 2**18 elements x+1 55 vs 74 us, sigmoid 68 vs 77, gelu 105 vs 92;
# at 2**19 x+1 75 vs 85, sigmoid 122 vs 101, gelu 191 vs 148.
PARALLEL_THRESHOLD = 1 << 19


# More threads than CPUs only queue for one, and an OpenMP team of thousands fails to start (libgomp's
# "Thread creation failed" at 60000, a crash at 100000): a count over this many per CPU is cut down.
MAX_THREADS_PER_CPU = 4


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _capped(count: int, asked_by: str) -> int:
    """``count`` threads, or MAX_THREADS_PER_CPU per usable CPU where it asks for more. A warning, not an
    error: the count changes the speed, never the values (an element or row is computed the same way on
    any thread), and a count tuned on a large machine should still run where fewer CPUs are available. A
    few per CPU stay allowed, for whoever measures oversubscription."""
    cpus = _usable_cpus()
    cap = MAX_THREADS_PER_CPU * cpus
    if count <= cap:
        return count
    warnings.warn(f"{asked_by} asks for {count} threads; using {cap} ({MAX_THREADS_PER_CPU} per CPU, of the {cpus} "
                  f"this process may use): more would only wait for a CPU, and too many fail to start",
                  RuntimeWarning, stacklevel=4)
    return cap


def _default_threads() -> int:
    env = os.environ.get("EXPRGEN_NUM_THREADS")
    if not env:
        return _usable_cpus()
    try:
        count = int(env)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"EXPRGEN_NUM_THREADS must be a positive integer, got {env!r}")
    return _capped(count, "EXPRGEN_NUM_THREADS")


def _checked_threads(n) -> int:
    """``n`` as a Python int (NumPy integers too, as anything with ``__index__``) when it is at least 1,
    capped as ``_capped`` says."""
    try:
        count = operator.index(n)
    except TypeError:
        count = None
    if count is None or isinstance(n, bool) or count < 1:
        raise ValueError(f"the number of threads must be a positive integer, got {n!r}")
    return _capped(count, "the thread count")


_state = threading.local()
_global_threads = None


def get_num_threads() -> int:
    global _global_threads
    local = getattr(_state, "threads", None)
    if local is not None:
        return local
    if _global_threads is None:
        _global_threads = _default_threads()
    return _global_threads


def set_num_threads(n: int) -> None:
    """Threads that large kernels, and the BLAS behind matmul, use from now on (in this process); at most
    MAX_THREADS_PER_CPU per CPU."""
    global _global_threads, _blas_asked
    _global_threads = _checked_threads(n)
    with _blas_lock:
        _blas_asked = _global_threads
        _limit_blas()


def threads(n: int):
    """``with ex.threads(1): ...`` runs kernels in the block on ``n`` threads (this Python thread only),
    and the BLAS behind matmul on at most ``n``: BLAS has one pool for the process, so while blocks are open
    in several Python threads it takes the smallest count any of them asks for. (OpenBLAS 0.3.31, NumPy's,
    ignores a limit set from another Python thread once the main thread has set one.)"""
    return _threads_block(_checked_threads(n))   # checked here: a warning then names the caller's line


@contextlib.contextmanager
def _threads_block(count: int):
    previous = getattr(_state, "threads", None)
    _state.threads = count
    with _blas_lock:
        _open_blocks.append(count)
        _limit_blas()
    try:
        yield
    finally:
        _state.threads = previous
        with _blas_lock:
            _open_blocks.remove(count)
            _limit_blas()


# BLAS's pool, limited from the one state below (under _blas_lock): the counts of the ex.threads blocks open
# in any Python thread, else what set_num_threads asked, else the pool's own sizes as exprgen found them.
_blas_lock = threading.Lock()
_open_blocks: list[int] = []
_blas_asked: int | None = None
_blas_controller = None
_blas_own: dict[str, int] = {}


def _limit_blas() -> None:
    global _blas_controller
    if _blas_controller is None:
        # Finding the loaded BLAS libraries (NumPy's, loaded before exprgen) reads every loaded library's
        # symbols (~1 ms), so it is done once; limiting them is ~6 us.
        _blas_controller = threadpoolctl.ThreadpoolController().select(user_api="blas")
        _blas_own.update((lib.prefix, lib.num_threads) for lib in _blas_controller.lib_controllers)
    wanted = min(_open_blocks) if _open_blocks else _blas_asked
    _blas_controller.limit(limits=_blas_own if wanted is None else wanted)


class _Options(threading.local):
    """Evaluation options: a process-wide default plus per-thread overrides from ``ex.config``."""

    def __init__(self):
        self.stack: list[dict] = []


def _backend_from_environment() -> str:
    name = os.environ.get("EXPRGEN_BACKEND", "cpu").lower()
    if name not in BACKENDS:
        raise ValueError(f"EXPRGEN_BACKEND must be one of {BACKENDS}, not {name!r}")
    return name


BACKENDS = registry.HOST   # "cpu" and "numpy": what evaluates a CPU array's graph
# Read once: looking at os.environ on every evaluation would cost more than a small kernel's launch.
_DEFAULTS = {"fast_math": False, "debug": False, "backend": _backend_from_environment()}
_options = _Options()


def option(name: str):
    stack = _options.stack
    if stack:
        for layer in reversed(stack):
            if name in layer:
                return layer[name]
    return _DEFAULTS[name]


def evaluation_options() -> tuple[bool, str]:
    """(fast_math, backend) as ``option`` reads them: every evaluation asks, so one call answers both."""
    if _options.stack:
        return option("fast_math"), option("backend")
    return _DEFAULTS["fast_math"], _DEFAULTS["backend"]


class configure:  # noqa: N801 - used as ex.config(...), a function or a context manager
    """``ex.config(fast_math=True)`` sets options for the process; ``with ex.config(fast_math=True):``
    sets them for the block only (this thread).

    fast_math: also run the ``fast`` rewrite rules (they may change rounding).
    debug: check each user rule against the reference interpreter the first time it fires.
    backend: "cpu" (compiled kernels) or "numpy" (the reference interpreter); default $EXPRGEN_BACKEND.
    """

    def __init__(self, **options):
        unknown = set(options) - set(_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown option(s) {sorted(unknown)}; known: {sorted(_DEFAULTS)}")
        for name, value in options.items():
            if name == "backend":
                if value not in BACKENDS:
                    raise ValueError(f"backend must be one of {BACKENDS}, not {value!r}")
            elif not isinstance(value, bool):
                raise TypeError(f"option {name} must be True or False, not {value!r}")
        self.options = options
        self.previous = dict(_DEFAULTS)
        _DEFAULTS.update(options)

    def __enter__(self):
        _DEFAULTS.update(self.previous)   # inside a with-block the options are this thread's only
        _options.stack.append(self.options)
        return self

    def __exit__(self, *exc):
        _options.stack.pop()


def cache_dir() -> str:
    """The user cache directory, absolute: a relative EXPRGEN_CACHE_DIR is taken from the working directory
    exprgen was imported in, not from whatever directory the process has moved to since (a second cache)."""
    wanted = os.environ.get("EXPRGEN_CACHE_DIR")
    if not wanted:
        return os.path.join(os.path.expanduser("~"), ".cache", "exprgen")
    return wanted if os.path.isabs(wanted) or _IMPORTED_IN is None else os.path.join(_IMPORTED_IN, wanted)


try:
    _IMPORTED_IN = os.getcwd()
except OSError:   # the working directory was removed: a relative cache directory is then taken as it comes
    _IMPORTED_IN = None


def prebuilt_dirs() -> list[str]:
    return [d for d in os.environ.get("EXPRGEN_PREBUILT_DIR", "").split(os.pathsep) if d]


def no_compile() -> bool:
    return os.environ.get("EXPRGEN_NO_COMPILE", "") not in ("", "0")
