"""The rule tables the rewriter runs by default.

Each rule states its algebra and is exact under IEEE arithmetic (bit-identical results, NaN, inf and
signed zeros included) or recognises a big op whose kernel is at least as accurate as the small ops it
replaces. The engine (``pattern.py``) refuses any replacement that changes a node's dtype or shape, so
``int32 * 1.0`` (a float64) is never "simplified" to the int32 operand.
"""

from __future__ import annotations

import numpy as np

from . import graph, opdefs
from .graph import LEAVES, SCALAR, Node
from .pattern import Pat, Rule

x = Pat.var("x")


def unary(name: str):
    return lambda x: graph.apply(name, x)


def _fold(node: Node, reads: set) -> Node | None:
    """An op whose inputs are all Python scalars is computed once, here, by its NumPy reference."""
    if node.op in LEAVES or not node.src or any(s.op is not SCALAR for s in node.src):
        return None
    reads.update(node.src)
    with np.errstate(all="ignore"):
        value = np.asarray(opdefs.get(node.op).numpy(*(s.arg for s in node.src), *node.arg), dtype=node.dtype)
    return graph.buffer(value)


FOLD = [
    Rule("op(scalars...) -> its value", None, _fold),
]

EXACT = [
    Rule("x*1 -> x", x * 1, lambda x: x),
    Rule("x/1 -> x", x / 1, lambda x: x),
    Rule("x-0 -> x", x - 0, lambda x: x),
    Rule("x+(-0.0) -> x", x + (-0.0), lambda x: x),
    Rule("x**1 -> x", x ** 1, lambda x: x),
    Rule("x**2 -> x*x", x ** 2, lambda x: graph.apply("multiply", x, x)),
    Rule("-(-x) -> x", -(-x), lambda x: x),
]

RECOGNISE = [
    Rule("1/(1+exp(-x)) -> sigmoid(x)", 1 / (1 + Pat.apply("exp", -x)), unary("sigmoid")),
    Rule("reciprocal(1+exp(-x)) -> sigmoid(x)", Pat.apply("reciprocal", 1 + Pat.apply("exp", -x)), unary("sigmoid")),
]

DEFAULT = FOLD + EXACT + RECOGNISE
