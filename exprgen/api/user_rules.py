"""``ex.rules``: the user's rewrite rules, written as any exprgen code is.

A pattern is built from ``var``, ``call`` and operators; a replacement is a function of Arrays. The
rewriter (``rewrite/rules.py``) works on graph nodes and sits below Array, so it cannot make Arrays:
``register`` gives the replacement an Array of each bound node and the rewriter the node of its result.
"""

from __future__ import annotations

from ..rewrite import rules
from ..rewrite.pattern import KINDS, Pat, Rule
from ..errors import RewriteCheckError
from ..rewrite.rules import call
from .array import Array

__all__ = ["RewriteCheckError", "call", "register", "unregister", "var"]

var = Pat.var


def register(pattern: Pat, replacement, kind: str = "exact", algebra: str | None = None) -> Rule:
    """Add a rewrite rule: ``pattern`` (built from ``ex.rules.var``/``call`` and operators) and a
    function of its variables giving the replacement Array or node.

        x = ex.rules.var("x")
        ex.rules.register(x * 2, lambda x: x + x, kind="exact", algebra="x*2 -> x+x")

    With ``ex.config(debug=True)`` the rule is checked against the NumPy reference on random inputs the
    first time it fires, and a rule that changes a value it claims to keep raises ``RewriteCheckError``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if not isinstance(pattern, Pat) or pattern.op is None:
        raise TypeError("the pattern must be an op pattern built from ex.rules.var(...), ex.rules.call(...) "
                        "and operators")

    def build(**bound):
        result = replacement(**{name: Array(node) for name, node in bound.items()})
        return getattr(result, "_graph_node", lambda: result)()  # an Array or a Node

    return rules.add_user_rule(pattern, build, kind, algebra)


def unregister(rule: Rule) -> None:
    """Remove a rule added with ``register``."""
    rules.remove_user_rule(rule)
