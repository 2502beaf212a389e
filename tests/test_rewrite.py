"""Rewrite rules: each fires where it should, and the graph's value is kept as its kind promises.

exact: bit-identical reference values (NaN where NaN, signed zeros); accurate: no further from the original
formula's exact value (mpmath) than the original, and finite wherever it is; fast: close, and only under
ex.config(fast_math=True).
"""

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import exprgen as ex
from exprgen.ir import graph, opdefs
from exprgen.testing import assert_matches_reference
from exprgen.api import user_rules as rules
from exprgen.rewrite.rules import BUILTIN
from exprgen.rewrite.pattern import Pat, Rewriter, Rule
from exprgen.runtime.realize import plan_for, rewrite
from exprgen.ir.interpret import evaluate

# One expression per built-in rule that must make it fire: x is a float array, i an int32 array,
# b a bool array.
EXAMPLES = {
    "x*1 -> x": lambda x, i, b: x * 1,
    "x/1 -> x": lambda x, i, b: x / 1,
    "x-0 -> x": lambda x, i, b: x - 0,
    "x+(-0.0) -> x": lambda x, i, b: x + (-0.0),
    "x+0 -> x (integers)": lambda x, i, b: i + 0,
    "x**1 -> x": lambda x, i, b: x ** 1,
    "x**2 -> x*x": lambda x, i, b: x ** 2,
    "-(-x) -> x": lambda x, i, b: -(-x),
    "x/2**k -> x*2**-k": lambda x, i, b: x / 8.0,
    "abs(-x) -> abs(x)": lambda x, i, b: abs(-x),
    "abs(abs(x)) -> abs(x)": lambda x, i, b: abs(abs(x)),
    "not(not(x)) -> x (bool)": lambda x, i, b: ~~b,
    "float32(float64(x)) -> x": lambda x, i, b: x.astype("float64").astype("float32"),
    "op(broadcast_to(x), y) -> op(x, y)": lambda x, i, b: ex.broadcast_to(ex.max(x, keepdims=True), x.shape) - x,
    "op(scalars...) -> its value": lambda x, i, b: x + ex.Array(graph.apply("add", graph.scalar(2.0), graph.scalar(3.0))),
    "log(1+x) -> log1p(x+0)": lambda x, i, b: ex.log(1 + abs(x)),
    "exp(x)-1 -> expm1(x+0)": lambda x, i, b: ex.exp(x) - 1,
    "log(1+exp(x)) -> softplus(x)": lambda x, i, b: ex.log(1 + ex.exp(x)),
    "log1p(exp(x)) -> softplus(x)": lambda x, i, b: ex.log1p(ex.exp(x)),
    "1/(1+exp(-x)) -> sigmoid(x)": lambda x, i, b: 1 / (1 + ex.exp(-x)),
    "reciprocal(1+exp(-x)) -> sigmoid(x)": lambda x, i, b: ex.reciprocal(1 + ex.exp(-x)),
    "maximum(x, 0) -> relu(x)": lambda x, i, b: ex.maximum(x, 0),
    "0.5*x*(1+erf(x/sqrt2)), 0.5*x*(1+tanh(...)) -> gelu(x)":
        lambda x, i, b: 0.5 * x * (1 + ex.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3))),
    "where(x>0, x, 0) -> relu(x)": lambda x, i, b: ex.where(x > 0, x, 0),
    "(x+a)+b -> x+(a+b), (x*a)*b -> x*(a*b)": lambda x, i, b: (x * 3.0) * 0.5 + (i + 2) + 5,
    "x*y+z -> fma(x, y, z)": lambda x, i, b: ex.sin(x) * x + 2.5,
}

EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, 3.5, -2.25, 1e-40, -1e-40, 1e30, -1e30, 80.0, -80.0,
         math.inf, -math.inf, math.nan]


def _rule(algebra):
    return next(r for r in BUILTIN if r.algebra == algebra)


def _inputs(values, dtype):
    xs = np.array(values, dtype=dtype)
    ints = np.array([int(v) if math.isfinite(v) and abs(v) < 1e6 else 7 for v in values], np.int32)
    return ex.asarray(xs), ex.asarray(ints), ex.asarray(xs > 0.25)


class Rewritten:
    def __init__(self, roots):
        self.rewritten, self.rewrites, _ = rewrite(roots)


def _before_and_after(expr, fast: bool = False):
    root = expr._graph_node()
    with ex.config(fast_math=fast):
        return root, Rewritten((root,))


def test_every_builtin_rule_has_an_example():
    assert set(EXAMPLES) == {r.algebra for r in BUILTIN}


@pytest.mark.parametrize("algebra", sorted(EXAMPLES))
def test_rule_fires_and_keeps_the_value(algebra):
    rule = _rule(algebra)
    for dtype in (np.float32,) if "float32(" in algebra else (np.float32, np.float64):
        x, i, b = _inputs(EDGES, dtype)
        root, plan = _before_and_after(EXAMPLES[algebra](x, i, b), fast=rule.kind == "fast")
        assert algebra in [a for a, _, _ in plan.rewrites], f"{algebra} did not fire on {root!r}"
        (want,), (got,) = evaluate([root]), evaluate(plan.rewritten)
        assert want.dtype == got.dtype and want.shape == got.shape
        if rule.kind == "exact":
            np.testing.assert_array_equal(np.signbit(want), np.signbit(got), err_msg=algebra)
            np.testing.assert_array_equal(want, got, err_msg=algebra)
        else:
            # Wherever the original is finite, so must the rewrite be (an accurate rule that overflows where
            # the formula did not is wrong); a fast rule may change special values (relu's NaN), no more.
            finite = np.isfinite(want) & (np.isfinite(got) if rule.kind == "fast" else True)
            np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5 if dtype == np.float32 else 1e-12,
                                       atol=1e-30, err_msg=algebra)


# The exact value of each accurate rule's example (the original formula, not the rule's), for mpmath at 50
# digits: the truth a rewrite is measured against. The rewritten formula in float64 would make a wrong rule
# its own truth, and the original in float64 can cancel as badly as in float32.
_GELU_C = mpmath.mpf(0.7978845608028654)
TRUTH = {
    "log(1+x) -> log1p(x+0)": lambda v: mpmath.log(1 + abs(v)),
    "exp(x)-1 -> expm1(x+0)": lambda v: mpmath.exp(v) - 1,
    "log(1+exp(x)) -> softplus(x)": lambda v: mpmath.log(1 + mpmath.exp(v)),
    "log1p(exp(x)) -> softplus(x)": lambda v: mpmath.log(1 + mpmath.exp(v)),
    "1/(1+exp(-x)) -> sigmoid(x)": lambda v: 1 / (1 + mpmath.exp(-v)),
    "reciprocal(1+exp(-x)) -> sigmoid(x)": lambda v: 1 / (1 + mpmath.exp(-v)),
    "0.5*x*(1+erf(x/sqrt2)), 0.5*x*(1+tanh(...)) -> gelu(x)":
        lambda v: v / 2 * (1 + mpmath.tanh(_GELU_C * (v + mpmath.mpf(0.044715) * v ** 3))),
}


def test_every_accurate_rule_has_a_truth():
    assert set(TRUTH) == {a for a in EXAMPLES if _rule(a).kind == "accurate"}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-60, 60, width=32), min_size=1, max_size=40),
       st.sampled_from(sorted(a for a in EXAMPLES if _rule(a).kind == "accurate")))
def test_accurate_rules_are_no_less_accurate(values, algebra):
    """Against the original formula's exact value, the rewritten float32 graph is at least as close as the
    original."""
    x, i, b = _inputs(values, np.float32)
    root, plan = _before_and_after(EXAMPLES[algebra](x, i, b))
    (original,), (rewritten,) = evaluate([root]), evaluate(plan.rewritten)
    with mpmath.workdps(50):
        truth = np.array([float(TRUTH[algebra](mpmath.mpf(float(v)))) for v in np.float32(values)])
    ulp = np.spacing(np.abs(truth).astype(np.float32)).astype(np.float64)
    err_original = np.abs(original - truth) / ulp
    err_rewritten = np.abs(rewritten - truth) / ulp
    ok = np.isfinite(truth)
    assert np.all(err_rewritten[ok] <= err_original[ok] + 2), algebra


@settings(max_examples=40, deadline=None)
# Not "negative" inside: -(-y) simplifies first, and 1/(1+exp(y)) is sigmoid(-y), not the pattern.
@given(st.lists(st.sampled_from(["exp", "sin", "abs", "square"]), max_size=3),
       st.lists(st.sampled_from(["tanh", "sqrt", "negative", "abs"]), max_size=3), st.booleans())
def test_sigmoid_is_recognised_inside_bigger_expressions(inner, outer, scaled):
    """The logistic pattern fires wherever it sits, and its kernel is sigmoid's."""
    x = ex.asarray(np.linspace(-2, 2, 9, dtype=np.float32))
    core = x
    for name in inner:
        core = ex.apply(name, core)
    if scaled:
        core = core * 3.0
    expr = 1 / (1 + ex.exp(-core))
    for name in outer:
        expr = ex.apply(name, expr)
    plan = Rewritten((expr._graph_node(),))
    assert "1/(1+exp(-x)) -> sigmoid(x)" in [a for a, _, _ in plan.rewrites]
    (want,), (got,) = evaluate([expr._graph_node()]), evaluate(plan.rewritten)
    np.testing.assert_allclose(got, want, rtol=1e-5, equal_nan=True)


def test_written_out_logistic_compiles_to_the_sigmoid_kernel():
    x = ex.asarray(np.linspace(-3, 3, 11, dtype=np.float32))
    composed = plan_for(((1 / (1 + ex.exp(-x)))._graph_node(),))
    direct = plan_for((ex.sigmoid(x)._graph_node(),))
    assert composed.steps[0].source == direct.steps[0].source
    assert composed.steps[0].key == direct.steps[0].key


GELU_FORMS = {
    "erf, x*sqrt(0.5)": lambda x, c: c * x * (1 + ex.erf(x * math.sqrt(0.5))),
    "erf, x*(1/sqrt2)": lambda x, c: c * x * (1 + ex.erf(x * (1 / math.sqrt(2)))),
    "erf, x/sqrt2": lambda x, c: x * c * (1 + ex.erf(x / math.sqrt(2))),
    "tanh": lambda x, c: c * x * (1 + ex.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("form", GELU_FORMS)
def test_gelu_is_recognised_only_with_its_own_constants(form, dtype):
    """An accurate rule names its constants: 0.5000004*x*(1+erf(...)) in float64 is 8e-7 away from gelu."""
    x = ex.asarray(np.linspace(-3, 3, 7, dtype=dtype))
    exact = GELU_FORMS[form](x, 0.5)
    assert [n.op for n in Rewritten([exact._graph_node()]).rewritten] in (["gelu"], ["gelu_tanh"])
    near = GELU_FORMS[form](x, 0.5000004)
    assert "gelu" not in explain_ops(near)
    if dtype == "float32":   # 0.50000001 is 0.5 in float32: the rule may fire, the value is the same
        assert [n.op for n in Rewritten([GELU_FORMS[form](x, 0.50000001)._graph_node()]).rewritten][0].startswith("gelu")


def explain_ops(array) -> set[str]:
    return {n.op for n in graph.toposort(Rewritten([array._graph_node()]).rewritten)}


def test_fast_rules_run_only_when_asked():
    x = ex.asarray(np.array([-1.0, np.nan, 2.0]))
    np.testing.assert_array_equal(ex.where(x > 0, x, 0).numpy(), [0.0, 0.0, 2.0])
    with ex.config(fast_math=True):
        assert "where(x>0, x, 0) -> relu(x)" in ex.explain(ex.where(x > 0, x, 0))
    assert "relu" not in ex.explain(ex.where(x > 0, x, 0))
    with pytest.raises(TypeError, match="unknown option"):
        ex.config(fastmath=True)


def test_rules_never_change_dtype():
    i = ex.asarray(np.arange(5, dtype=np.int32))
    y = i * 1.0                      # float64: x*1 -> x would make it int32
    assert y.numpy().dtype == np.float64
    assert "x*1 -> x" not in ex.explain(y)


def test_a_deep_graph_reaches_a_fixpoint():
    x = ex.asarray(np.linspace(-1, 1, 5))
    y = x
    for k in range(300):
        y = -(-(y * 1)) + (k % 3)
    np.testing.assert_allclose(y.numpy(), np.linspace(-1, 1, 5) + sum(k % 3 for k in range(300)))


def test_user_rule_fires_and_debug_mode_checks_it():
    x = rules.var("x")
    double = rules.register(x * 2, lambda x: x + x, algebra="x*2 -> x+x")
    wrong = rules.register(rules.call("sin", x), lambda x: ex.cos(x), algebra="sin -> cos")
    try:
        a = ex.asarray(np.array([1.5, -0.0, np.inf]))
        assert "x*2 -> x+x" in ex.explain(a * 2)
        np.testing.assert_array_equal((a * 2).numpy(), [3.0, -0.0, np.inf])
        with ex.config(debug=True):
            with pytest.raises(rules.RewriteCheckError, match="sin -> cos"):
                (ex.sin(a) + 1).numpy()
    finally:
        rules.unregister(double)
        rules.unregister(wrong)
    assert "x*2 -> x+x" not in ex.explain(ex.asarray(np.ones(2)) * 2)


def test_debug_mode_checks_user_rules_on_integers_bools_and_accurate_rules():
    x = rules.var("x")
    good = [rules.register(x * 4, lambda x: ex.left_shift(x, 2), algebra="x*4 -> x<<2 (ints)"),
            rules.register(rules.call("logical_and", x, x), lambda x: x, algebra="x and x -> x"),
            rules.register(rules.call("exp", x) * rules.call("exp", x), lambda x: ex.exp(x + x), kind="accurate",
                           algebra="exp(x)*exp(x) -> exp(2x)")]
    bad = [rules.register(x * 3, lambda x: x + x, algebra="x*3 -> x+x (wrong)"),
           rules.register(rules.call("logical_or", x, x), lambda x: ~x, algebra="x or x -> not x (wrong)"),
           rules.register(rules.call("expm1", x), lambda x: x, kind="accurate", algebra="expm1(x) -> x (wrong)")]
    try:
        i = ex.asarray(np.array([3, -7, 0], np.int32))
        b = ex.asarray(np.array([True, False]))
        f = ex.asarray(np.array([0.5, -2.0]))
        with ex.config(debug=True):
            np.testing.assert_array_equal((i * 4).numpy(), [12, -28, 0])
            np.testing.assert_array_equal(ex.logical_and(b, b).numpy(), [True, False])
            np.testing.assert_allclose((ex.exp(f) * ex.exp(f)).numpy(), np.exp([1.0, -4.0]), rtol=1e-12)
            for wrong, name in [(lambda: i * 3, "x\\*3"), (lambda: ex.logical_or(b, b), "x or x"),
                                (lambda: ex.expm1(f), "expm1")]:
                with pytest.raises(rules.RewriteCheckError, match=name):
                    wrong().numpy()
    finally:
        for rule in good + bad:
            rules.unregister(rule)


def test_user_elementwise_op_fuses_and_matches_its_reference():
    softsign = ex.elementwise("softsign_test", "x / (1 + absolute(x))", lambda x: x / (1 + np.abs(x)),
                              vjp="g / ((1 + abs(x)) * (1 + abs(x)))", dtypes=["float32", "float64"])
    xs = np.linspace(-5, 5, 101, dtype=np.float32)
    ex.reset_stats()
    y = softsign(ex.asarray(xs) * 2) + 1
    np.testing.assert_allclose(y.numpy(), xs * 2 / (1 + np.abs(xs * 2)) + 1, rtol=1e-6)
    assert y.dtype == np.float32 and ex.stats()["kernels_launched"] == 1
    with pytest.raises(TypeError, match="accepts float32, float64"):
        softsign(ex.asarray(np.arange(3)))
    with pytest.raises(ValueError, match="another definition"):
        ex.elementwise("softsign_test", "x", lambda x: x)
    with pytest.raises(ValueError, match="already exists"):
        ex.elementwise("exp", "x", lambda x: x)


@pytest.mark.parametrize("hostile", ["x; system(1)", "x }", "#include <x>", 'x + "s"', "x // c", "x /* c */",
                                     "__builtin_trap()", "y + 1", "x[0]", "x = 1", "x\n#define a"])
def test_hostile_c_expressions_are_refused(hostile):
    with pytest.raises(ValueError, match="ex.elementwise"):
        ex.elementwise("hostile", hostile, lambda x: x)


def test_to_dot_draws_kernels_as_clusters():
    x = ex.asarray(np.ones(4))
    dot = ex.to_dot(ex.sigmoid(x) * 2, x + 1)
    assert dot.startswith("digraph exprgen {") and "cluster_0" in dot and "sigmoid" in dot


def test_a_pattern_over_an_unknown_op_is_refused_when_made():
    with pytest.raises(ValueError, match="'typo'"):
        Pat.apply("typo", Pat.var("x"))


def test_a_pattern_less_rule_names_the_ops_it_looks_at_and_is_shown_only_those():
    with pytest.raises(ValueError, match="'typo'"):
        Rule("typo(x) -> x", None, lambda node, reads: None, ops=("typo",))
    with pytest.raises(ValueError, match="pattern names its op"):
        Rule("x*1 -> x", Pat.var("x") * 1, lambda x: x, ops=("multiply",))
    shown = []
    looks = Rule("log(x) seen", None, lambda node, reads: shown.append(node.op), ops=("log",))
    x = ex.asarray(np.float32([1.0, 2.0]))
    Rewriter([looks]).rewrite((ex.exp(ex.log(x) + 1)._graph_node(),))
    assert shown == ["log"]   # not the buffer, the add or the exp


def test_a_user_op_s_float_literals_are_typed_as_its_compute_type():
    # A bare 1e-3 in C is a double: float32 inputs would be computed in double and rounded once, not as
    # the reference computes them. Written T(1e-3) it is the op's type (float32 here), as in ops/.
    bumped = ex.elementwise("bumped_by_literal", "x * 3 + 1e-3", lambda x: x * x.dtype.type(3) + x.dtype.type(1e-3),
                            dtypes=["float32", "float64"])
    assert bumped.__doc__ and opdefs.get("bumped_by_literal").c == "x * 3 + T(1e-3)"
    xs = np.random.default_rng(5).standard_normal(1000).astype(np.float32)
    got = bumped(ex.asarray(xs)).numpy()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, xs * np.float32(3) + np.float32(1e-3))   # float32 arithmetic, bit for bit


def test_a_constant_folded_by_a_rewrite_is_read_by_the_compiled_kernel():
    # float32(2.5) of a Python scalar is folded into a float32 buffer, which the kernel then reads: the
    # plan's constants (and a new scalar in the same place plans again, as the fold read it).
    x = ex.asarray(np.linspace(-1, 1, 40, dtype=np.float32))
    for value in (2.5, -0.75):
        constant = ex.Array(graph.apply("astype", graph.scalar(value), params=("float32",)))
        assert "op(scalars...) -> its value" in ex.explain(ex.sin(x) * constant)
        (got,) = assert_matches_reference(ex.sin(x) * constant)
        assert got.dtype == np.float32
