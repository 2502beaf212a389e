"""The NumPy backend: the reference interpreter (``ir.interpret``) as a backend, so ``ex.config(
backend="numpy")`` and a machine without a C++ compiler evaluate through the same interface as compiled
kernels. Nothing is rendered, compiled or cached: each op runs as its NumPy reference."""

from __future__ import annotations

from ..ir import interpret

name = "numpy"
device_type = "cpu"
compiles = False
host_memory = True
evaluate = interpret.evaluate
