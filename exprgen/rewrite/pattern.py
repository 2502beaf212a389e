"""The rewrite engine: patterns over nodes, a matcher indexed by op, and rewriting to a fixpoint.

A ``Pat`` is built with the same operators as an ``Array`` (``Pat.var("x") * 1``), so a rule reads like
the algebra it states. Rules are ``Rule(algebra, pattern, build)`` records in ``rules.py``; the engine
knows nothing about particular ops.

Matching a scalar's value makes the result depend on that value, so every such read is recorded: the plan
cache then keys the compiled plan on exactly those values and treats every other scalar as an argument.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Callable

from ..ir import graph, opdefs
from ..errors import RewriteError
from ..ir.graph import SCALAR, Node


class Pat:
    __slots__ = ("op", "src", "name", "value")

    def __init__(self, op: str | None = None, src: tuple = (), name: str | None = None, value=None):
        self.op, self.src, self.name, self.value = op, src, name, value

    @staticmethod
    def var(name: str) -> Pat:
        """Matches any node and binds it to ``name``."""
        return Pat(name=name)

    @staticmethod
    def const(value) -> Pat:
        """Matches a Python scalar equal to ``value`` (with the same sign of zero)."""
        return Pat(op=SCALAR, value=value)

    @staticmethod
    def apply(op: str, *src) -> Pat:
        opdefs.get(op)  # a misspelt op would give a pattern that never matches: refuse it here, by name
        return Pat(op=op, src=tuple(map(_lift, src)))

    def __add__(self, other): return Pat.apply("add", self, other)
    def __radd__(self, other): return Pat.apply("add", other, self)
    def __sub__(self, other): return Pat.apply("subtract", self, other)
    def __rsub__(self, other): return Pat.apply("subtract", other, self)
    def __mul__(self, other): return Pat.apply("multiply", self, other)
    def __rmul__(self, other): return Pat.apply("multiply", other, self)
    def __truediv__(self, other): return Pat.apply("divide", self, other)
    def __rtruediv__(self, other): return Pat.apply("divide", other, self)
    def __pow__(self, other): return Pat.apply("power", self, other)
    def __neg__(self): return Pat.apply("negative", self)

    def match(self, node: Node, bound: dict, reads: set) -> bool:
        if self.op is None:
            previous = bound.setdefault(self.name, node)
            return previous is node
        if self.op is SCALAR:
            if node.op is not SCALAR:
                return False
            reads.add(node)
            return _same_value(node.arg, self.value)
        if node.op != self.op:
            return False
        orders = [self.src]
        if "commutative" in opdefs.get(self.op).props:
            orders.append(self.src[::-1])
        for order in orders:
            trial = dict(bound)
            if all(p.match(s, trial, reads) for p, s in zip(order, node.src)):
                bound.clear()
                bound.update(trial)
                return True
        return False


def _lift(value) -> Pat:
    return value if isinstance(value, Pat) else Pat.const(value)


def _same_value(a, b) -> bool:
    return a == b and math.copysign(1, a) == math.copysign(1, b)


KINDS = ("exact", "accurate", "fast")


@dataclass(frozen=True)
class Rule:
    """A rewrite. ``exact``: bit-identical under IEEE arithmetic (NaN, inf, -0 included). ``accurate``:
    never less accurate than the original. ``fast``: may change rounding; off unless asked for."""

    algebra: str                       # the identity the rule applies, e.g. "x*1 -> x"
    pattern: Pat | None                # None: the rule inspects the nodes of ``ops`` itself
    # bindings -> replacement, or None for no rewrite after all; without a pattern: (node, reads) -> ...
    build: Callable[..., Node | None]
    kind: str = "exact"
    user: bool = False   # registered with ex.rules.register (checked in debug mode)
    # Without a pattern, the ops whose nodes ``build`` is shown; () for every node (constant folding).
    ops: tuple[str, ...] = ()

    def __post_init__(self):
        if self.pattern is not None and self.ops:
            raise ValueError(f"rule {self.algebra!r}: a pattern names its op; ops= is for pattern-less rules")
        for op in self.ops:
            opdefs.get(op)   # a misspelt op would make a rule that never fires: refuse it by name


class Rewriter:
    """Applies rules bottom-up until no rule fires, recording what fired and which values were read."""

    # Tries of the rule table per node of the graph before rewriting is taken to be a loop (a node takes a
    # few: one per rule that fires on it, and one that finds none). Counted over the whole graph, so a long
    # fixpoint of a large graph is not mistaken for two rules undoing each other; at least MIN_STEPS, as a
    # rule may build new nodes that rewrite again.
    STEPS_PER_NODE = 100
    MIN_STEPS = 100_000

    def __init__(self, rules: list[Rule], kinds: tuple[str, ...] = ("exact", "accurate"), on_fire=None):
        self.on_fire = on_fire  # called as on_fire(rule, before, after) for every rewrite
        self._lock = threading.RLock()   # re-entrant: a rule's build may evaluate, and so rewrite, again
        self._rules = [r for r in rules if r.kind in kinds]
        self._by_op: dict[str, list[Rule]] = {}

    def _rules_for(self, op: str) -> list[Rule]:
        """The rules that may fire on a node of ``op``, in the order they are tried: those whose pattern is
        over ``op``, then the pattern-less ones that look at ``op`` (or at every op), each group in table
        order."""
        found = self._by_op.get(op)
        if found is None:
            found = self._by_op[op] = (
                [r for r in self._rules if r.pattern is not None and r.pattern.op == op]
                + [r for r in self._rules if r.pattern is None and (not r.ops or op in r.ops)])
        return found

    def rewrite(self, roots: tuple[Node, ...]) -> tuple[tuple[Node, ...], list[tuple[str, Node, Node]], set]:
        """(new roots, [(algebra, before, after)], scalar nodes whose values the rules read)."""
        with self._lock:   # one rewriter serves every thread: its state is one rewrite's at a time
            self.memo: dict[int, Node] = {}
            self.log: list[tuple[str, Node, Node]] = []
            self.reads: set = set()
            self.steps_left = max(self.MIN_STEPS, self.STEPS_PER_NODE * len(graph.toposort(roots)))
            try:
                return tuple(self._visit(root) for root in roots), self.log, self.reads
            finally:   # the graph (its input buffers too) is the caller's to keep or let go: the log names nodes
                self.memo, self.log, self.reads = {}, [], set()

    def _visit(self, root: Node) -> Node:
        """``root`` rewritten to a fixpoint, its sources first. A replacement's new nodes are rewritten (their
        sources first) before its rewriting goes on. Iterative, with a stack of the nodes under way: a graph
        may be any depth."""
        stack, waiting = [root], {}   # waiting: id(node) -> the replacement whose new nodes are being rewritten
        while stack:
            node = stack[-1]
            if id(node) in waiting:
                current = self.memo[id(waiting.pop(id(node)))]
            elif id(node) in self.memo:
                stack.pop()
                continue
            else:
                pending = [s for s in reversed(node.src) if id(s) not in self.memo]
                if pending:
                    stack.extend(pending)
                    continue
                current = graph.rebuild(node, tuple(self.memo[id(s)] for s in node.src))
            while True:
                self.steps_left -= 1
                if self.steps_left < 0:
                    raise RewriteError(f"rewriting did not reach a fixpoint near {node!r}: two rules undo each other")
                replacement = self._first_rewrite(current)
                if replacement is None:
                    self.memo[id(node)] = current
                    stack.pop()
                    break
                self.memo[id(current)] = replacement
                if replacement.src and id(replacement) not in self.memo:
                    waiting[id(node)] = replacement
                    stack.append(replacement)
                    break
                current = self.memo[id(replacement)] if replacement.src else replacement
        return self.memo[id(root)]

    def _first_rewrite(self, node: Node) -> Node | None:
        for rule in self._rules_for(node.op):
            bound, read = {}, set()
            if rule.pattern is not None and not rule.pattern.match(node, bound, read):
                continue
            replacement = rule.build(node, read) if rule.pattern is None else rule.build(**bound)
            if replacement is None or replacement is node:
                continue
            if replacement.dtype != node.dtype or replacement.shape != node.shape:
                continue  # a rule may never change what the user asked for
            # Only a rule that fires makes the plan depend on the values it read: where it read a scalar
            # and left the node as written (x*c, c not 1), the plan computes it right for every value, so
            # a new learning rate re-plans nothing. A user's replacement function may look at the
            # scalars it was given, so they count as read too.
            self.reads |= read
            if rule.user:
                self.reads.update(n for n in bound.values() if n.op is SCALAR)
            if self.on_fire is not None:
                self.on_fire(rule, node, replacement)
            self.log.append((rule.algebra, node, replacement))
            return replacement
        return None
