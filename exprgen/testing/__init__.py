"""Hypothesis strategies to fuzz exprgen with, and the checks to run on what they draw.

    assert_matches_reference(ex.exp(ex.asarray(x)) * 2.0)   # evaluates, then checks against the oracle

    @given(expressions(ops=["sigmoid", "my_custom_op", "add"], dtypes=["float32"], max_depth=6))
    def test_my_op(case):
        assert_matches_reference(case)          # a failing case prints as Python that rebuilds it

The strategies draw values (a dtype's special values, an op's domain and its edges), dtypes, shapes,
arrays in the layouts users slice, and whole expression DAGs: ``expressions`` draws a ``Case``. The
checks live in ``exprgen.testing.checking`` and are re-exported here, so that one import serves a test; the
docstring there says how a composition's tolerance follows from its ops' ULP bounds.
"""

from .checking import (SAMPLES, Bounds, Comparison, assert_close, assert_matches_reference,
                       assert_rewrite_keeps_values, check_values, compare, cuda_host_execution, defines_signed_zero, enclose, tolerance,
                       tolerance_table, ulp_bound, ulp_distance)
from .strategies import (DEFAULT_DTYPES, GENERIC_DOMAIN, special_values, domain_edges, edge_values,
                         domain_elements, array_dtypes, array_shapes, broadcastable_shapes, arrays, domain_arrays,
                         Leaf, spread, array_views, COMPOSITES, VIEWS, PATTERN, FULL_SHAPES, Ref, Call, Case, vocabulary,
                         expressions)

__all__ = ["Bounds", "COMPOSITES", "Call", "Case", "Comparison", "DEFAULT_DTYPES", "FULL_SHAPES", "GENERIC_DOMAIN",
    "Leaf", "PATTERN", "Ref", "SAMPLES", "VIEWS", "array_dtypes", "array_shapes", "array_views", "arrays",
    "assert_close", "assert_matches_reference", "assert_rewrite_keeps_values", "broadcastable_shapes",
    "check_values", "compare", "cuda_host_execution", "defines_signed_zero", "domain_arrays", "domain_edges", "domain_elements",
    "edge_values", "enclose", "expressions", "special_values", "spread", "tolerance", "tolerance_table", "ulp_bound",
    "ulp_distance", "vocabulary"]
