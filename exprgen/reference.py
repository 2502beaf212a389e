"""A NumPy interpreter of any graph, built from the ops' NumPy references.

It is the oracle of every test and the backend used when ``EXPRGEN_BACKEND=numpy`` is set or no C++
compiler exists. ``HELPERS`` are the functions NumPy lacks (``erf``) that op references may call; they
follow NumPy's float typing (float32 in, float32 out; integers give float64).
"""

from __future__ import annotations

import math

import numpy as np

from .graph import BUFFER, SCALAR, Node, toposort


def _float_typed(scalar_fn):
    """Lift a float64 scalar function to arrays with the typing of a NumPy float ufunc."""
    vectorised = np.vectorize(scalar_fn, otypes=[np.float64])

    def apply(x):
        x = np.asarray(x)
        result = np.sqrt(np.empty(0, x.dtype)).dtype
        return vectorised(x.astype(np.float64)).astype(result) if x.size else np.empty(x.shape, result)

    return apply


erf = _float_typed(math.erf)


HELPERS = {"erf": erf}


def _value(node: Node, values: dict):
    if node.op is BUFFER:
        return node.buffer
    if node.op is SCALAR:
        return node.arg
    from . import opdefs

    args = [values[id(s)] for s in node.src]
    with np.errstate(all="ignore"):
        result = np.asarray(opdefs.get(node.op).numpy(*args, *node.arg))
    if result.dtype != node.dtype:
        raise AssertionError(f"reference for {node.op} gave {result.dtype}, graph says {node.dtype}")
    return result


def evaluate(roots) -> list[np.ndarray]:
    """The value of each root, computed op by op with NumPy."""
    values: dict[int, object] = {}
    for node in toposort(roots):
        values[id(node)] = _value(node, values)
    return [np.asarray(values[id(r)]).reshape(r.shape) for r in roots]
