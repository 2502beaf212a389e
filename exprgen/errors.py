"""Every exception exprgen raises of its own, in one place (each also exported as ``ex.<Name>``).

Users catch these by what went wrong, whichever stage found it: a kernel that failed to compile is a
``CompileError`` whether the C++ compiler or NVRTC said so.
"""

from __future__ import annotations


class CompilerMissing(RuntimeError):
    """No working C++ compiler: exprgen warns once and evaluates with its NumPy interpreter instead."""


class CompileError(RuntimeError):
    """A backend's compiler refused a kernel exprgen rendered: an exprgen bug (the message quotes the
    compiler and keeps the source)."""


class CudaUnavailable(RuntimeError):
    """CUDA cannot be used here; the message says why (no cuda-python, no NVRTC, no driver, no device)."""


class NoCompileError(RuntimeError):
    """``EXPRGEN_NO_COMPILE`` is set and a kernel is in no cache tier; the message says how to prebuild it."""


class LockTimeout(RuntimeError):
    """Another process has held a kernel's compile lock for ``cache.store.LOCK_WAIT_SECONDS``."""


class RewriteError(RuntimeError):
    """Rewriting did not reach a fixpoint: two rules undo each other."""


class RewriteCheckError(AssertionError):
    """Debug mode: a user rule changed a value it claims to keep."""


class TraceError(RuntimeError):
    """Inside ``ex.jit``, a value was asked of an array computed from the traced arguments, which have no
    values while the function is traced (``float(loss)``, ``if x > 0:``, ``.numpy()``)."""
