"""Deep and wide graphs: every traversal is iterative, and large kernels are cut into pieces that compile
in time near-linear in their size (schedule.MAX_OPS, schedule.MAX_INPUTS)."""

import numpy as np
import pytest

import exprgen as ex
from exprgen.ir import graph
from exprgen.schedule import fusion as schedule
from exprgen.rewrite.pattern import RewriteError, Rewriter
from exprgen.runtime.realize import rewrite
from exprgen.api.user_rules import var
from exprgen.rewrite.rules import BUILTIN, Rule
from exprgen.testing import assert_matches_reference

DEEP = 100_000   # far past Python's recursion limit


def _chain(x, n: int, step):
    for _ in range(n):
        x = step(x)
    return x


def _kernels(*arrays) -> list[schedule.Kernel]:
    """The kernels the pipeline would compile, without compiling them."""
    rewritten, _, _ = rewrite(tuple(a._graph_node() for a in arrays))
    return schedule.schedule(rewritten)


def _within_limits(kernels) -> bool:
    return all(len(k.body) <= schedule.MAX_OPS and len(k.inputs) + len(k.scalars) <= schedule.MAX_INPUTS
               for k in kernels)


def test_a_100k_op_chain_evaluates_prints_explains_and_differentiates():
    base = np.linspace(0.5, 1.5, 8)
    x = ex.asarray(base)
    y = _chain(x, DEEP, lambda v: v * 1.0001)
    assert "pending: multiply(multiply(" in repr(y)
    text = ex.explain(y)
    assert f"== {DEEP // schedule.MAX_OPS} kernel(s)" in text and "materialised by an earlier kernel" in text
    assert f"one loop, {schedule.MAX_OPS} op(s) fused" in text
    # NumPy multiplies in the same order, rounding once each as the kernels do: the same bits. (Cheaper than
    # assert_matches_reference, which encloses each of the 100,000 nodes.)
    want = _chain(base, DEEP, lambda v: v * 1.0001)
    np.testing.assert_array_equal(y.numpy(), want)

    g = ex.grad(lambda a: ex.sum(_chain(a, DEEP, lambda v: v * 1.0001)))(x)
    np.testing.assert_array_equal(g.numpy(), _chain(np.ones(8), DEEP, lambda v: v * 1.0001))


def test_the_repr_of_a_subexpression_shared_exponentially_often_is_cut_short():
    x = ex.asarray(np.ones(2))
    y = _chain(x, 60, lambda v: v * v)   # 2**60 multiplies written out in full
    assert len(repr(y._graph_node())) == graph.REPR_CHARS + 3 and repr(y).endswith("...>")


def test_a_view_of_a_deep_chain_is_pushed_through_it():
    x = ex.asarray(np.arange(6.0))
    y = ex.reshape(_chain(x, 5_000, lambda v: v + 1.0), (2, 3)).T
    assert y.shape == (3, 2)
    assert_matches_reference(y)


def test_a_sum_of_500_inputs_compiles_as_pieces_of_one_structure():
    rng = np.random.default_rng(0)
    xs = [ex.asarray(rng.standard_normal(16)) for _ in range(500)]
    total = xs[0]
    for x in xs[1:]:
        total = total + x
    kernels = _kernels(total)
    assert len(kernels) > 500 // schedule.MAX_INPUTS and _within_limits(kernels)
    ex.reset_stats()
    assert_matches_reference(total)
    assert ex.stats()["compiles"] <= 3   # the first piece, the middle ones (one binary), the last


def test_a_10k_deep_chain_compiles_one_piece_for_all():
    x = ex.asarray(np.zeros(4))
    y = _chain(x, 10_000, lambda v: v + 1.0)
    kernels = _kernels(y)
    assert len(kernels) == 10 and _within_limits(kernels)
    ex.reset_stats()
    np.testing.assert_array_equal(y.numpy(), np.full(4, 10_000.0))
    assert ex.stats()["compiles"] <= 1 and ex.stats()["kernels_launched"] == 10


def test_a_cut_keeps_reductions_and_their_outputs_right(monkeypatch):
    # Small limits, so that runs end between a reduction and the values built on it, in a gradient too.
    monkeypatch.setattr(schedule, "MAX_OPS", 5)
    monkeypatch.setattr(schedule, "MAX_INPUTS", 4)
    a = ex.asarray(np.random.default_rng(1).standard_normal((3, 5)))

    def f(a):
        x = _chain(a, 6, lambda v: ex.sin(v) * 1.01 + 0.1)
        return ex.sum(ex.softmax(x, axis=1) * ex.mean(x, axis=0, keepdims=True))

    kernels = _kernels(f(a))
    assert len(kernels) > 5 and _within_limits(kernels)
    assert_matches_reference(f(a), ex.grad(f)(a))


def test_a_long_fixpoint_is_no_loop_but_two_rules_undoing_each_other_are():
    # x*1 -> x fires once per node, and one more try finds nothing: 120,000 steps, more than MIN_STEPS.
    x = ex.asarray(np.ones(3))
    y = _chain(x, 60_000, lambda v: v * 1)
    assert rewrite((y._graph_node(),))[0] == (x._graph_node(),)
    a = var("a")
    there = Rule("a+a -> a*2", a + a, lambda a: graph.apply("multiply", a, graph.scalar(2)))
    back = Rule("a*2 -> a+a", a * 2, lambda a: graph.apply("add", a, a))
    z = _chain(ex.asarray(np.ones(3)), 1_500, ex.sin)   # deep: the message names a node near the loop
    with pytest.raises(RewriteError, match="two rules undo each other"):
        Rewriter(BUILTIN + [there, back]).rewrite(((z + z)._graph_node(),))
