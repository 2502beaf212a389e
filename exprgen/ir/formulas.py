"""The vocabulary of backward formulas (an op's ``vjp`` in ``ops/``, or a user op's).

A formula is an expression over ``g`` (the incoming gradient), ``out`` (the op's result), the op's inputs
and parameters, calls of ops, and calls of ``CALLS``. The registry validates formulas against this
vocabulary and autodiff.reverse builds graph nodes from the same one, so a formula that passes
validation is one that ``grad`` can build.
"""

from __future__ import annotations

# The formula that says no gradient flows to that input (only as the whole formula).
NO_GRADIENT = "zeros_like"

# Functions a formula may call besides the ops, each built by autodiff.reverse.
CALLS = frozenset({"sum_to", "broadcast_to", "matrix_transpose", NO_GRADIENT})

# Names bound in every formula, besides the op's inputs and parameters.
BOUND = frozenset({"g", "out"})
