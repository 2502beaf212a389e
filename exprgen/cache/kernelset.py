"""The standard kernel set: every op at every dtype it accepts, in the layouts programs use most.

A kernel's source depends on each array's innermost stride (render's load forms: contiguous, broadcast,
strided) and on which inputs are Python scalars (kernel arguments), never on sizes. So a few layouts per
op cover every shape of the commonest single-op expressions:

    same shape          x + y                       (4, 8) and (4, 8)
    row broadcast       x + row                     (4, 8) and (8,): today the same source as same shape
    0-d broadcast       x + w, w = asarray(np.float32(0.5)); also a column (4, 1) against (4, 8)
    Python scalar       x + 0.5, 0.5 + x; x * 2 for float x (a Python int is another argument type)
    scalar bounds       clip(x, 0.0, 6.0), where(c, 1.0, 0.0): every input but the first a scalar

Sources that coincide (a row broadcast, an int scalar on an int array) are kept once, under the first
name. ``generated/`` holds these kernels' rendered sources (committed, so a template or op change shows
up as a diff on real kernels); ``exprgen generate`` rewrites it and a test fails when it is stale.
``exprgen prebuild`` compiles the same set ahead of time.

Reductions run over the last axis and over all (``REDUCTION_LAYOUTS``). ``BUILDERS`` says how each kind
of op is laid out: a new kind joins the set with one entry there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..ir import dtypes, graph, opdefs
from ..codegen import geometry
from ..codegen.kinds import launch_geometry, render
from ..schedule.fusion import schedule

FULL, ROW, ZERO_D = (4, 8), (8,), ()
# Python scalar kinds met with arrays of each dtype kind: the array's own, and ints beside floats (x * 2).
SCALAR_KINDS = {"b": (bool,), "i": (int,), "f": (float, int)}
# (name suffix, input shape, reduced axes). A kernel's summary comment names its axes, so today a 1-D, a
# 2-D and a 3-D reduction are different sources although their code is the same; dedupe merges them
# the day the summary stops naming axes.
REDUCTION_LAYOUTS = (("_last", FULL, (1,)), ("_all", FULL, (0, 1)), ("_vector", ROW, (0,)),
                     ("_last_3d", (2,) + FULL, (2,)))


@dataclass(frozen=True)
class StandardKernel:
    name: str
    source: str
    summary: str


def _placeholder(op: opdefs.OpDef, index: int, what, shape):
    """Values for rendering only: a kernel's source never depends on them. Python scalars differ per
    input, since equal ones would be one node, one kernel argument (clip(x, 1.0, 1.0) is not the kernel
    that clip(x, 0.0, 6.0) needs)."""
    return what(index % 2 if what is bool else index + 1) if isinstance(what, type) else np.empty(shape, what)


def _dtype_variants(op: opdefs.OpDef) -> Iterator[tuple[str, np.dtype, tuple[np.dtype, ...], tuple]]:
    """(name suffix, dtype, input dtypes, params) for each dtype the op is tried at: the core five (the
    narrower and unsigned integers compile on first use)."""
    for dtype in dtypes.CORE:
        inputs = tuple(dtypes.BOOL if c == "bool" and op.cast.count("bool") < op.arity else dtype for c in op.cast)
        if op.params == ("dtype",):
            for target in dtypes.CORE:
                if target != dtype:
                    yield f"{dtype.name}_to_{target.name}", dtype, inputs, (target.name,)
        else:
            yield dtype.name, dtype, inputs, ()


def _layouts(op: opdefs.OpDef, dtype: np.dtype) -> Iterator[tuple[str, tuple]]:
    """(name suffix, per-input shape or Python scalar type) for an elementwise op at ``dtype``."""
    n = op.arity
    yield "", (FULL,) * n
    if n == 1:
        return
    yield "_row", (FULL,) * (n - 1) + (ROW,)
    for i, name in enumerate(op.inputs):
        yield f"_{name}_0d", tuple(ZERO_D if j == i else FULL for j in range(n))
    # The first input of a ternary op is its subject (clip's x, where's condition), never a scalar.
    for i, name in enumerate(op.inputs[n - 2:], start=n - 2):
        for kind in SCALAR_KINDS[dtype.kind]:
            yield f"_{name}_py{kind.__name__}", tuple(kind if j == i else FULL for j in range(n))
    if n > 2:
        for kind in SCALAR_KINDS[dtype.kind]:
            yield f"_rest_py{kind.__name__}", (FULL,) + (kind,) * (n - 1)


def _leaf(op: opdefs.OpDef, index: int, dtype: np.dtype, layout, values) -> graph.Node:
    if isinstance(layout, type):
        return graph.scalar(values(op, index, layout, None))
    return graph.buffer(values(op, index, dtype, layout))


def _elementwise(op: opdefs.OpDef, dtype: np.dtype, inputs: tuple, params: tuple, values) -> Iterator[tuple]:
    for suffix, layout in _layouts(op, dtype):
        leaves = [_leaf(op, i, d, shape, values) for i, (d, shape) in enumerate(zip(inputs, layout))]
        try:
            node = graph.apply(op.name, *leaves, params=params)
        except TypeError:
            continue  # NumPy refuses these dtypes for this op
        yield suffix, node


def _reductions(op: opdefs.OpDef, dtype: np.dtype, inputs: tuple, params: tuple, values) -> Iterator[tuple]:
    for suffix, shape, axes in REDUCTION_LAYOUTS:
        try:
            node = graph.reduce(op.name, graph.buffer(values(op, 0, inputs[0], shape)), axes)
        except TypeError:
            continue
        yield suffix, node


# How each kind of op is laid out in the standard set: (op, dtype, input dtypes, params, values) ->
# (name suffix, graph) pairs. A new kind of op joins the set with an entry here.
BUILDERS = {"unary": _elementwise, "binary": _elementwise, "ternary": _elementwise, "reduce": _reductions}


def standard_graphs(ops=None, dtypes_=None, values: Callable = _placeholder) -> Iterator[tuple[str, graph.Node]]:
    """(name, graph) for each expression of the standard set, in a stable order.

    ``ops`` / ``dtypes_``: names that narrow the set. ``values(op, input index, dtype or Python type,
    shape)`` gives each leaf's array or Python scalar (a test passes real data; rendering needs none).
    """
    wanted_ops = None if ops is None else {opdefs.get(name).name for name in ops}
    wanted_dtypes = None if dtypes_ is None else {dtypes.as_dtype(d) for d in dtypes_}
    chosen = [op for op in opdefs.canonical_ops(builtin_only=True) if wanted_ops is None or op.name in wanted_ops]
    pending = sorted(op.name for op in chosen if op.kind not in BUILDERS)
    if wanted_ops is not None and pending:
        raise ValueError(f"{', '.join(pending)}: not in the standard set (no layouts for its kind of op)")
    for op in chosen:
        if op.kind not in BUILDERS:
            continue
        for suffix, dtype, inputs, params in _dtype_variants(op):
            if wanted_dtypes is None or dtype in wanted_dtypes:
                for layout_suffix, node in BUILDERS[op.kind](op, dtype, inputs, params, values):
                    yield f"{op.name}_{suffix}{layout_suffix}", node


def render_graph(node: graph.Node, target: str = "cpu") -> tuple[str, str]:
    """(source, summary) of the one kernel computing ``node``, laid out as realize lays it out: inputs as
    they are, the output contiguous, the innermost strides taken from the same geometry; rendered for
    ``target`` ("cpu" or "cuda")."""
    (kernel,) = schedule((node,))
    layouts = [geometry.layout(n.shape, n.buffer.strides, n.dtype.itemsize) for n in kernel.inputs]
    layouts += [geometry.layout(n.shape, np.empty(n.shape, n.dtype).strides, n.dtype.itemsize) for n in kernel.outputs]
    inner_strides = launch_geometry(kernel, layouts, target).inner_strides
    return render(kernel, inner_strides, target, scratch=frozenset(range(len(kernel.outputs))))


def standard_set(ops=None, dtypes_=None, target: str = "cpu") -> Iterator[StandardKernel]:
    """The standard kernels (narrowed to ``ops`` and ``dtypes_`` if given), each source once."""
    seen: set[str] = set()
    for name, node in standard_graphs(ops, dtypes_):
        source, summary = render_graph(node, target)
        if source not in seen:
            seen.add(source)
            yield StandardKernel(name, source, summary)


def standard_kernels() -> Iterator[tuple[str, str]]:
    """(name, C++ source) for each kernel of the standard set, in a stable order."""
    for kernel in standard_set():
        yield kernel.name, kernel.source
