"""A NumPy interpreter of any graph, built from the ops' NumPy references.

It is the oracle of every test and the backend used when ``EXPRGEN_BACKEND=numpy`` is set or no C++
compiler exists. The references it runs may call the helpers of ``numpy_helpers`` (``erf``, ``power``).
"""

from __future__ import annotations

import numpy as np

from .dtypes import FLOAT32
from . import opdefs, views
from .graph import BUFFER, INDEX, SCALAR, VIEW, Node, toposort


def index_values(node: Node) -> np.ndarray:
    """An index leaf's elements: each one's offset in its layout (graph.INDEX)."""
    strides, offset = node.arg
    grids = np.indices(node.shape, dtype=np.int64, sparse=True)
    return offset + sum((g * s for g, s in zip(grids, strides)), np.zeros(node.shape, np.int64))


def _value(node: Node, values: dict, exact_float32: bool):
    if node.op is BUFFER:
        return node.buffer
    if node.op is SCALAR:
        return node.arg
    if node.op is INDEX:
        return index_values(node)
    if node.op is VIEW:
        return views.apply(np.asarray(values[id(node.src[0])]), node.arg)
    op = opdefs.get(node.op)
    args = [values[id(s)] for s in node.src]
    with np.errstate(all="ignore"):
        result = np.asarray(op.numpy(*args, *node.arg))
    if result.dtype != node.dtype:
        raise AssertionError(f"reference for {node.op} gave {result.dtype}, graph says {node.dtype}")
    if node.weak_type is not None:   # over Python scalars alone: a Python scalar, weak to what it meets
        return node.weak_type(result.item())
    if exact_float32 and op.widen:
        compute = op.compute_dtypes(tuple(s.signature_item() for s in node.src), node.arg)
        if FLOAT32 in compute:
            return _float32_via_float64(op, node, args, compute)
    return result


def _float32_via_float64(op, node: Node, args: list, compute: tuple) -> np.ndarray:
    # Operands are converted as the kernel converts them (a weak 0.1 meeting float32 becomes 0.1f),
    # then widened, so the only rounding left is the final one.
    with np.errstate(all="ignore"):
        wide = [np.asarray(a).astype(d).astype(np.float64 if d == FLOAT32 else d) for a, d in zip(args, compute)]
        return np.asarray(op.numpy(*wide, *node.arg)).astype(node.dtype)


def evaluate(roots, *, exact_float32: bool = False) -> list[np.ndarray]:
    """The value of each root, computed op by op with NumPy.

    ``exact_float32``: compute every op that works in float32 in float64 from its float32 operands and
    round once, the truth a float32 kernel is measured against (NumPy's float32 functions err too).
    """
    values: dict[int, object] = {}
    for node in toposort(roots):
        values[id(node)] = _value(node, values, exact_float32)
    return [np.asarray(values[id(r)]).reshape(r.shape) for r in roots]
