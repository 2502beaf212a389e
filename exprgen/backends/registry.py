"""Every backend by name: the one place that lists them. A new backend is a module implementing
``base.Compiler`` (or ``base.Interpreter``) plus its templates, and an entry here."""

from __future__ import annotations

from . import cpu, cuda, cuda_host, numpy

BACKENDS = {module.name: module for module in (cpu, cuda, cuda_host, numpy)}
# What evaluates the graph of a CPU array, as ``ex.config(backend=...)`` and $EXPRGEN_BACKEND choose.
HOST = tuple(name for name, backend in BACKENDS.items() if backend.device_type == "cpu")
COMPILED = tuple(name for name, backend in BACKENDS.items() if backend.compiles)


def get(name: str):
    """The backend called ``name``; ValueError naming the ones there are."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}: one of {', '.join(BACKENDS)}") from None


# The interpreter that answers when nothing is compiled (one element computed exactly, no compiler).
reference = numpy


def for_device(device: str) -> str:
    """The backend that evaluates graphs on CUDA ``device``: the GPU's, or with $EXPRGEN_CUDA_HOST set
    the host execution of the same CUDA kernels (``cuda_host``)."""
    return cuda_host.name if cuda_host.enabled() else cuda.name
