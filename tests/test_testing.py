"""exprgen.testing's own checks: enclosures, the comparisons built on them, the strategies, printed cases."""

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

import exprgen as ex
from exprgen.ir import opdefs
from exprgen.ir import interpret as reference
from exprgen.api import user_rules as rules
from exprgen.ir.dtypes import SUPPORTED
from exprgen.ir.graph import BUFFER, structure_key, toposort
from exprgen.testing import (PATTERN, array_dtypes, array_shapes, array_views, arrays, assert_matches_reference,
                             assert_rewrite_keeps_values, broadcastable_shapes, check_values, compare, domain_elements,
                             edge_values, enclose, expressions, tolerance, ulp_distance, vocabulary)

# Nothing here compiles unless it says so: many cases are cheap.
NO_COMPILE = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


FIND = settings(database=None, max_examples=500, phases=[Phase.generate])   # an example, not the simplest


def _nodes(case):
    return [a._graph_node() for a in case.build()]


def _same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


@NO_COMPILE
@given(expressions())
def test_enclosures_hold_the_reference_value(case):
    """The reference is one implementation that meets every bound: its values lie in the enclosures."""
    roots = _nodes(case)
    check_values(reference.evaluate(roots, exact_float32=True), *roots)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_op_over_exact_inputs_gets_exactly_its_ulp_bound(dtype):
    x = ex.asarray(np.array([0.5, 1.0, 3.0, -2.0, 1e-3], dtype))
    for name in ("exp", "add", "sqrt"):
        node = (ex.exp(x) if name == "exp" else x + 0.25 if name == "add" else ex.sqrt(x))._graph_node()
        b = enclose([node])[id(node)]
        (truth,) = reference.evaluate([node], exact_float32=True)
        finite = np.isfinite(truth)
        ulp = tolerance(name, dtype)
        assert np.all(ulp_distance(b.lo[finite], truth[finite]) == ulp), name
        assert np.all(ulp_distance(b.hi[finite], truth[finite]) == ulp), name
        assert np.all(b.decided) and np.all(b.free[finite] == (ulp > 0)), name


def test_a_later_op_scales_an_earlier_error_by_its_slope():
    """exp's 4 ULP, then a subtraction that cancels: the absolute width carries over, the relative
    width grows without bound, and the compiled value still lands inside."""
    x = np.array([1.0, 2.0, 3.0], np.float32)
    e = ex.exp(ex.asarray(x))
    near = np.exp(x.astype(np.float64)).astype(np.float32)
    node = (e - near)._graph_node()
    bounds = enclose([node])
    exp_b, b = bounds[id(node.src[0])], bounds[id(node)]
    exp_width = exp_b.hi.astype(np.float64) - exp_b.lo.astype(np.float64)
    width = b.hi.astype(np.float64) - b.lo.astype(np.float64)
    assert np.all(width >= exp_width) and np.all(width <= 2 * exp_width)
    assert np.all(ulp_distance(b.lo, b.hi) > 1000)   # ULPs of a result near 0: the cancellation shows
    assert_matches_reference(e - near)                 # compiles one kernel


def test_an_op_one_ulp_off_is_caught_and_ulps_can_allow_it():
    nudged = ex.elementwise("nudged_for_testing", "x + x * T(1e-7)", lambda x: x, dtypes=["float32"])
    x = np.linspace(1, 2, 33, dtype=np.float32)
    with pytest.raises(AssertionError, match="nudged_for_testing.*elements differ"):
        compare(nudged(ex.asarray(x)))
    compare(nudged(ex.asarray(x)), ulps={"nudged_for_testing": 2})


def test_a_wrong_value_through_a_reduction_is_reported():
    """The report shows the inputs beside each element only where they line up with the result's elements
    (it raised ValueError trying to broadcast a reduction's input to its result)."""
    wrong = ex.elementwise("plus_one_for_testing", "x + T(1)", lambda x: x)
    with pytest.raises(AssertionError, match=r"2 of 2 elements differ.*\n  at \(0,\): inputs \(\) got"):
        compare(ex.sum(wrong(ex.asarray(np.arange(6.0).reshape(2, 3))), axis=1))


def test_a_wrong_zero_sign_and_a_lost_nan_are_caught():
    plus_zero = ex.elementwise("plus_zero_for_testing", "x + T(0)", lambda x: x)
    with pytest.raises(AssertionError, match=r"got np.float64\(0.0\), expected np.float64\(-0.0\)"):
        compare(plus_zero(ex.asarray(np.array([-0.0, 1.0]))))
    nan_to_zero = ex.elementwise("nan_to_zero_for_testing", "x == x ? x : T(0)", lambda x: x)
    with pytest.raises(AssertionError, match="expected np.float64\\(nan\\)"):
        compare(nan_to_zero(ex.asarray(np.array([np.nan, 1.0]))))


def test_an_element_the_reference_cannot_decide_is_counted_not_compared():
    """sin of a value known to about 500 ULP of 1e30: hundreds of periods, so any sine is right."""
    x = ex.asarray(np.array([1e30, 2.0]))
    result = compare(ex.sin(ex.exp(ex.log(x))))   # compiles one kernel
    assert (result.elements, result.undecided) == (2, 1)


def test_exact_rules_must_keep_every_bit():
    a = ex.asarray(np.array([1.5, -0.0, np.inf, np.nan]))
    assert assert_rewrite_keeps_values(a * 1) == ["x*1 -> x"]
    x = rules.var("x")
    wrong = rules.register(rules.call("sin", x), lambda x: ex.cos(x), algebra="sin -> cos (for testing)")
    try:
        with pytest.raises(AssertionError, match="exact rules change no bit"):
            assert_rewrite_keeps_values(ex.sin(a))
    finally:
        rules.unregister(wrong)


def test_accurate_rules_are_held_to_the_real_value_of_the_original():
    """log(1 + x) for tiny x: the rounded 1 + x costs log millions of ULPs, and log1p is right; a rule
    that is merely close is not accurate."""
    x = ex.asarray(np.array([-6.96e-8, 1e-12, 0.5]))
    assert assert_rewrite_keeps_values(ex.log(1 + x)) == ["log(1+x) -> log1p(x+0)"]
    v = rules.var("v")
    close = rules.register(rules.call("exp", v), lambda v: ex.exp(v) * 1.000001, kind="accurate",
                           algebra="exp(x) -> exp(x)*1.000001 (for testing)")
    try:
        with pytest.raises(AssertionError, match="no further from the real value"):
            assert_rewrite_keeps_values(ex.exp(x))
    finally:
        rules.unregister(close)


@NO_COMPILE
@given(expressions())
def test_a_printed_case_rebuilds_it(case):
    namespace = {}
    exec(case.source(check=False), namespace)
    rebuilt, original = [a._graph_node() for a in namespace["roots"]], _nodes(case)
    assert structure_key(rebuilt)[0] == structure_key(original)[0]   # ops, dtypes, layouts, scalar types
    for a, b in zip(toposort(rebuilt), toposort(original)):
        assert _same_bits(a.buffer, b.buffer) if a.op is BUFFER else repr(a.arg) == repr(b.arg)


def test_hypothesis_prints_a_falsifying_case_as_python():
    @settings(max_examples=20, deadline=None, database=None, derandomize=True)
    @given(expressions(ops=["exp", "add"], dtypes=["float32"]))
    def fails(case):
        assert len(case.calls) < 2

    with pytest.raises(AssertionError) as failure:
        fails()
    shown = "\n".join(getattr(failure.value, "__notes__", []))
    assert "x0 = ex.asarray(np.array([" in shown and "assert_matches_reference(*roots)" in shown


def test_vocabulary():
    assert vocabulary(["sigmoid", "add", "amax"], patterns=False) == ["sigmoid", "add", "max"]
    with_patterns = vocabulary(["log", "add", "exp"])
    assert PATTERN + "log(1+exp(x)) -> softplus(x)" in with_patterns and PATTERN + "x*1 -> x" not in with_patterns
    with pytest.raises(ValueError, match="unknown op"):
        vocabulary(["no_such_op"])
    assert {"softmax", "flip", "getitem"} <= set(vocabulary())


def test_fuzzing_a_user_op_as_the_readme_shows():
    """Compiles a few kernels."""
    ex.elementwise("softsign_for_testing", "x / (1 + absolute(x))", lambda x: x / (1 + np.abs(x)),
                   dtypes=["float32", "float64"])

    @settings(max_examples=5, deadline=None, database=None, derandomize=True)
    @given(expressions(ops=["sigmoid", "softsign_for_testing", "add"], dtypes=["float32"], max_depth=6))
    def check(case):
        assert {c.function for _, c in case.calls} <= {"sigmoid", "apply", "add"}
        assert_matches_reference(case, ulps={"softsign_for_testing": 2})   # two roundings: at most 1.5 ULP

    check()


@NO_COMPILE
@given(st.data())
def test_arrays_and_views_hold_domain_values(data):
    view = data.draw(array_views(np.float32, (3, 4), "log"))
    assert view.shape == (3, 4) and view.dtype == np.float32
    inside = (view >= np.float32(1e-3)) & (view <= np.float32(1e3))
    assert np.all(inside | np.isin(view, edge_values(opdefs.get("log"), 0, np.float32)) | np.isnan(view))
    shapes = data.draw(broadcastable_shapes(3))
    np.broadcast_shapes(*shapes)
    a = data.draw(arrays(array_dtypes(), array_shapes()))
    assert a.dtype in SUPPORTED


@pytest.mark.parametrize("layout", ["reversed", "transposed", "strided", "broadcast"])
def test_views_come_in_every_layout(layout):
    want = {"reversed": lambda a: min(a.strides) < 0, "transposed": lambda a: 0 < a.strides[0] < a.strides[1],
            "strided": lambda a: a.strides[1] > a.itemsize, "broadcast": lambda a: 0 in a.strides}[layout]
    find(array_views(np.float64, (3, 4)), want, settings=FIND)


def test_expressions_cover_shared_subexpressions_and_views():
    find(expressions(), lambda c: any(sum(a.name == name for _, call in c.calls for a in call.args
                                          if hasattr(a, "name")) > 1 for name, _ in c.calls),
         settings=FIND)
    find(expressions(), lambda c: any(call.function in ("getitem", "transpose") for _, call in c.calls),
         settings=FIND)


def test_strategies_take_op_names_and_name_an_unsupported_dtype():
    assert find(domain_elements("log", 0, "float32", edges=False), lambda v: True) > 0   # inside log's domain
    for make in (lambda: domain_elements("log", 0, "float16"), lambda: expressions(dtypes=["float16"])):
        with pytest.raises(TypeError, match="unsupported dtype float16"):
            make()
