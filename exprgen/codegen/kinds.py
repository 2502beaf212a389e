"""The kinds of kernel, as a table: each names its templates, its launch geometry and its render function.

A kernel's kind is ``Kernel.kind`` (schedule/fusion.py decides it); render, realize and the kernel set
dispatch through ``KINDS`` and nothing else asks what a kernel is. Every kind today launches by the same
convention, the entry ``(total, ndim, shape, arrays, strides, scalars, threads)`` of the templates, with
``shape``, ``strides`` and ``total`` as its geometry gives them (geometry.Launch). A new kind is one entry
here plus its templates.

The one kind without templates is "library": a call of a library op's function (ops/linalg.toml, matmul
is NumPy's and so BLAS), which the runtime makes itself, for every target that has the library (the
host's today; cuBLAS would be CUDA's). Nothing is rendered or compiled for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..schedule.fusion import Kernel
from .geometry import Launch, columns_launch, map_launch, rows_launch
from .render import TARGET_VARIABLES, render_map, render_rows, template


@dataclass(frozen=True)
class Kind:
    templates: dict[str, str]                       # target -> template path under templates/
    geometry: Callable[[Kernel, list], Launch]      # (kernel, layouts of inputs then outputs) -> Launch
    render: Callable[..., tuple[str, str]]          # (kernel, inner strides, target, scratch, template)
    # A target without a template of this kind renders the kernel as this kind (geometry and all) instead.
    fallback: str | None = None
    # The backends whose runtime makes this kind's call itself (a library kind: no template, no render).
    calls: frozenset[str] = frozenset()


KINDS = {
    "map": Kind({"cpu": "cpu/elementwise.cpp.j2", "cuda": "cuda/elementwise.cu.j2"}, map_launch, render_map),
    "rows": Kind({"cpu": "cpu/rows.cpp.j2", "cuda": "cuda/rows.cu.j2"}, rows_launch, render_rows),
    # The rows machinery with another loop (templates/cpu/columns.cpp.j2 extends rows.cpp.j2); CUDA's rows
    # template reduces these kernels as it does any other.
    "columns": Kind({"cpu": "cpu/columns.cpp.j2"}, columns_launch, render_rows, fallback="rows"),
    # Host memory either way: NumPy's matmul reads a CPU array's buffer, and CUDA host execution's.
    "library": Kind({}, map_launch, None, calls=frozenset({"cpu", "cuda-host"})),
}

# Compiled at import, so that a fresh process's first result does not wait for Jinja (a CPU-only process
# never compiles the CUDA ones).
for _kind in KINDS.values():
    if "cpu" in _kind.templates:
        template(_kind.templates["cpu"])


def kind_for(kernel: Kernel, target: str) -> Kind:
    """The kind ``kernel`` is rendered and launched as for ``target``."""
    kind = KINDS[kernel.kind]
    if target in kind.templates or target in kind.calls:
        return kind
    if kind.fallback is None:
        raise NotImplementedError(f"{kernel.kind} kernels do not run on {target} yet")
    return KINDS[kind.fallback]


def is_call(kernel: Kernel, backend: str = "cpu") -> bool:
    """Is ``kernel`` a library call the runtime makes for ``backend`` (its name), rather than a rendered
    kernel?"""
    return backend in KINDS[kernel.kind].calls


def launch_geometry(kernel: Kernel, layouts: list[tuple[tuple, tuple]], target: str = "cpu") -> Launch:
    """How ``kernel`` is launched over arrays of these layouts ((shape, element strides), inputs then
    outputs) on ``target``."""
    return kind_for(kernel, target).geometry(kernel, layouts)


def render(kernel: Kernel, inner_strides: list[int], target: str = "cpu",
           scratch: frozenset[int] = frozenset()) -> tuple[str, str]:
    """(source, summary) for ``kernel`` with these innermost strides (inputs, then outputs), in the
    language of ``target`` ("cpu" or "cuda"). ``scratch``: indices of the outputs whose buffers the kernel
    may also use as scratch before it writes them (buffers allocated for it, each element its own
    memory, shared with no input); see render._reuse."""
    if target not in TARGET_VARIABLES:
        raise ValueError(f"unknown render target {target!r}: one of {', '.join(TARGET_VARIABLES)}")
    kind = kind_for(kernel, target)
    if target in kind.calls:
        raise ValueError(f"a {kernel.kind} kernel is a library call on {target}: nothing is rendered for it")
    return kind.render(kernel, inner_strides, target, scratch, template(kind.templates[target]))
