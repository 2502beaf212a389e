"""The standard kernel set: every op at every dtype it accepts, on contiguous inputs.

``generated/`` holds these kernels' rendered sources (committed, so a template or op change shows up as a
diff on real kernels); ``exprgen generate`` rewrites it and a test fails when it is stale. Prebuilding
(compiling them ahead of time) starts from the same set.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from . import dtypes, graph, opdefs
from .render import render
from .schedule import schedule


def _variants(op: opdefs.OpDef) -> Iterator[tuple[str, tuple[np.dtype, ...], tuple]]:
    for dtype in dtypes.SUPPORTED:
        inputs = tuple(dtypes.BOOL if c == "bool" and op.cast.count("bool") < op.arity else dtype for c in op.cast)
        if op.params == ("dtype",):
            for target in dtypes.SUPPORTED:
                if target != dtype:
                    yield f"{dtype.name}_to_{target.name}", inputs, (target.name,)
        else:
            yield dtype.name, inputs, ()


def standard_kernels() -> Iterator[tuple[str, str]]:
    """(name, C++ source) for each kernel of the standard set, in a stable order."""
    for op in opdefs.canonical_ops(builtin_only=True):
        for suffix, inputs, params in _variants(op):
            leaves = [graph.buffer(np.empty(1, d)) for d in inputs]
            try:
                node = graph.apply(op.name, *leaves, params=params)
            except TypeError:
                continue  # NumPy refuses this dtype for this op
            (kernel,) = schedule((node,))
            source, _ = render(kernel, [1] * (len(kernel.inputs) + len(kernel.outputs)))
            yield f"{op.name}_{suffix}", source
