"""Autodiff: every op's backward formula against finite differences, grad of grad, reductions and views,
fusion of the backward pass, and the API's errors."""

import gc
import math
import weakref

import numpy as np
import pytest
from peers import peer
from hypothesis import given, settings
from hypothesis import strategies as st

import exprgen as ex
from exprgen.ir import opdefs
from exprgen.testing import assert_close, ulp_bound

NON_DIFFERENTIABLE = {
    "equal", "not_equal", "less", "less_equal", "greater", "greater_equal", "logical_and", "logical_or",
    "logical_xor", "logical_not", "isnan", "isinf", "isfinite", "signbit", "floor", "ceil", "trunc", "round",
    "sign", "floor_divide", "stop_gradient", "any", "all", "argmax", "argmin",
    "bitwise_and", "bitwise_or", "bitwise_xor", "invert", "left_shift", "right_shift", "nextafter",
}
# Excluded from the finite-difference sweep: astype changes dtype (tested below); where's condition is bool.
SPECIAL = {"astype", "where"}
N = 6


def test_every_op_without_a_backward_formula_is_non_differentiable():
    missing = {op.name for op in opdefs.canonical_ops(builtin_only=True) if op.vjp is None}
    assert missing == NON_DIFFERENTIABLE


def _points(op, rng):
    """Inputs inside each domain, away from its edges (kinks and poles live there)."""
    values = []
    for domain in op.domains:
        low, high = domain.low, domain.high
        span = high - low
        values.append(rng.uniform(low + 0.1 * span, high - 0.1 * span, N))
    return values


def _numeric_gradient(op, inputs, which):
    """Central differences of sum(op(inputs)) in input ``which``, elementwise (ops act pointwise)."""
    h = 1e-6 * np.maximum(1.0, np.abs(inputs[which]))
    plus, minus = list(inputs), list(inputs)
    plus[which] = inputs[which] + h
    minus[which] = inputs[which] - h
    with np.errstate(all="ignore"):
        return (np.asarray(op.numpy(*plus), np.float64) - np.asarray(op.numpy(*minus), np.float64)) / (2 * h)


DIFFERENTIABLE = [op for op in opdefs.canonical_ops(builtin_only=True)
                  if op.vjp is not None and op.kind not in ("reduce", "library") and op.name not in SPECIAL]


def test_every_differentiable_op_matches_finite_differences():
    rng = np.random.default_rng(0)
    cases = []
    for op in DIFFERENTIABLE:
        inputs = _points(op, rng)
        grads = ex.grad(lambda *a: ex.apply(op.name, *a).sum(), argnums=tuple(range(op.arity)))(*inputs)
        cases += [(op, inputs, k, g) for k, g in enumerate(grads)]
    values = ex.eval(*[g for *_, g in cases])   # all gradients at once: few kernels to compile
    for (op, inputs, k, _), got in zip(cases, values):
        np.testing.assert_allclose(got, _numeric_gradient(op, inputs, k), rtol=2e-5, atol=1e-7,
                                   err_msg=f"d {op.name} / d {op.inputs[k]}")


def test_grad_of_grad_for_every_differentiable_unary_op():
    rng = np.random.default_rng(1)
    unary = [op for op in DIFFERENTIABLE if op.arity == 1]
    second, first_plus, first_minus, steps = [], [], [], []
    for op in unary:
        (x,) = _points(op, rng)
        h = 1e-5 * np.maximum(1.0, np.abs(x))
        steps.append(h)
        derivative = ex.grad(lambda a, op=op: ex.apply(op.name, a).sum())
        second.append(ex.grad(lambda a, d=derivative: d(a).sum())(x))
        first_plus.append(derivative(x + h))
        first_minus.append(derivative(x - h))
    values = ex.eval(*second, *first_plus, *first_minus)
    k = len(unary)
    for i, (op, points) in enumerate(zip(unary, steps)):
        numeric = (values[k + i] - values[2 * k + i]) / (2 * points)
        np.testing.assert_allclose(values[i], numeric, rtol=1e-4, atol=1e-6, err_msg=f"d2 {op.name}")


def _numeric(f, x, h=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = h
        grad[i] = (f(x + step) - f(x - step)) / (2 * h)
    return grad


REDUCING = {
    "sum": (lambda a: (a.sum(axis=1) ** 2).sum(), lambda a: (a.sum(axis=1) ** 2).sum()),
    "mean": (lambda a: (a.mean(axis=0) ** 3).sum(), lambda a: (a.mean(axis=0) ** 3).sum()),
    "prod": (lambda a: a.prod(axis=1).sum(), lambda a: a.prod(axis=1).sum()),
    "max": (lambda a: (a.max(axis=1) * a.min()).sum(), lambda a: (a.max(axis=1) * a.min()).sum()),
    "var_std": (lambda a: a.var(axis=1, ddof=1).sum() + a.std(), lambda a: a.var(axis=1, ddof=1).sum() + a.std()),
    "logsumexp": (lambda a: ex.logsumexp(a, axis=1).sum(), lambda a: np.log(np.exp(a).sum(1)).sum()),
    "softmax": (lambda a: (ex.softmax(a, axis=1) * ex.asarray(np.arange(12.0).reshape(3, 4))).sum(),
                lambda a: (np.exp(a) / np.exp(a).sum(1, keepdims=True) * np.arange(12.0).reshape(3, 4)).sum()),
    "log_softmax": (lambda a: ex.log_softmax(a, axis=0).max(),
                    lambda a: (a - np.log(np.exp(a).sum(0, keepdims=True))).max()),
    "views": (lambda a: (a.T[::-1].reshape(2, 6) * ex.asarray(np.arange(12.0).reshape(2, 6))).sum()
              + (ex.broadcast_to(a[:, None, :], (3, 2, 4)) ** 2).sum() + ex.flip(a, axis=1)[..., ::-1].sum(),
              lambda a: (a.T[::-1].reshape(2, 6) * np.arange(12.0).reshape(2, 6)).sum()
              + (np.broadcast_to(a[:, None, :], (3, 2, 4)) ** 2).sum() + a.sum()),
}


@pytest.mark.parametrize("name", sorted(REDUCING))
def test_reductions_and_views_match_finite_differences(name):
    ours, reference = REDUCING[name]
    x = np.random.default_rng(2).uniform(0.5, 1.5, (3, 4))
    np.testing.assert_allclose(ex.grad(ours)(x).numpy(), _numeric(reference, x), rtol=1e-5, atol=1e-8)


SMOOTH = ["exp", "sin", "tanh", "sigmoid", "square", "softplus", "arctan", "cos"]


@settings(max_examples=12, deadline=None)
# At most three ops: exp(exp(exp(exp(1)))) overflows, and finite differences of inf say nothing.
@given(st.lists(st.sampled_from(SMOOTH), min_size=1, max_size=3), st.sampled_from([None, 0, 1]))
def test_random_compositions_match_finite_differences(chain, axis):
    x = np.random.default_rng(len(chain)).uniform(-1, 1, (3, 4))

    def build(a, apply):
        for name in chain:
            a = apply(name, a)
        return a

    ours = lambda a: (build(a, ex.apply).mean(axis=axis) ** 2).sum()  # noqa: E731
    reference = lambda a: (build(a, lambda n, v: opdefs.get(n).numpy(v)).mean(axis=axis) ** 2).sum()  # noqa: E731
    np.testing.assert_allclose(ex.grad(ours)(x).numpy(), _numeric(reference, x), rtol=1e-5, atol=1e-9)


def test_conventions_at_kinks_and_ties_follow_jax():
    assert ex.grad(lambda a: ex.abs(a).sum())(np.array([0.0, -2.0])).numpy().tolist() == [1.0, -1.0]
    assert ex.grad(lambda a: ex.relu(a).sum())(np.array([0.0, 2.0])).numpy().tolist() == [0.0, 1.0]
    assert ex.grad(lambda a: ex.maximum(a, 1.0).sum())(np.array([1.0, 2.0])).numpy().tolist() == [0.5, 1.0]
    assert ex.grad(lambda a: a.max())(np.array([1.0, 3.0, 3.0])).numpy().tolist() == [0.0, 0.5, 0.5]
    assert ex.grad(lambda a: ex.clip(a, 0.0, 1.0).sum())(np.array([0.0, 0.5, 2.0])).numpy().tolist() == [0.5, 1, 0]
    got = ex.grad(lambda a: ex.where(a > 0, a * 3, a * 5).sum())(np.array([-1.0, 1.0])).numpy()
    assert got.tolist() == [5.0, 3.0]


def test_against_jax_when_installed():
    jax = peer("jax")
    jnp = jax.numpy
    x = np.random.default_rng(3).standard_normal((4, 5))

    def build(m):
        return lambda a: (m.tanh(a * 1.5) * m.exp(-a * a)).sum() / (1 + (a ** 2).sum())

    ours = ex.grad(build(ex))(x).numpy()
    theirs = np.asarray(jax.grad(build(jnp))(jnp.asarray(x)))
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9)


INF, NAN = math.inf, math.nan
# Gradients at the edges of ops' domains, and what jax.grad (float64) gives there: (name, exprgen's
# function, jax's (given jax.numpy and jax.nn), inputs, one gradient per input). Written out, so the
# conventions are checked without jax; ``test_domain_edge_gradients_are_jax_s`` asks jax for them again.
DOMAIN_EDGES = [
    # x ** y at x = 0 (y > 0, 0, 1, 2, 3 and -1) and negative x with integer y: 0 ** y has slope 0 in y
    # (the log of x taken where x is not 0), a negative x a NaN slope in y (the log of a negative number).
    ("power", lambda x, y: x ** y, lambda m, nn: lambda x, y: x ** y,
     ([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -2.0, -2.0, -2.0, 2.0], [0.5, 0.0, 1.0, 2.0, 3.0, -1.0, 2.0, 3.0, 0.0, 0.0]),
     ([INF, NAN, 1.0, 0.0, 0.0, -INF, -4.0, 12.0, -0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, NAN, NAN, NAN, NAN, math.log(2)])),
    ("sqrt", lambda x: ex.sqrt(x), lambda m, nn: m.sqrt, ([0.0, -0.0, 4.0],), ([INF, -INF, 0.25],)),
    ("log", lambda x: ex.log(x), lambda m, nn: m.log, ([0.0, -0.0, 2.0],), ([INF, -INF, 0.5],)),
    ("abs", lambda x: ex.abs(x), lambda m, nn: m.abs, ([0.0, -0.0, -3.0],), ([1.0, 1.0, -1.0],)),
    ("relu", lambda x: ex.relu(x), lambda m, nn: nn.relu, ([0.0, -0.0, 3.0],), ([0.0, 0.0, 1.0],)),
    # ties split the gradient, -0.0 and 0.0 tie
    ("maximum", lambda x, y: ex.maximum(x, y), lambda m, nn: m.maximum,
     ([1.0, 2.0, 0.0, -0.0], [1.0, 1.0, -0.0, 0.0]), ([0.5, 1.0, 0.5, 0.5], [0.5, 0.0, 0.5, 0.5])),
    ("minimum", lambda x, y: ex.minimum(x, y), lambda m, nn: m.minimum,
     ([1.0, 2.0, 0.0, -0.0], [1.0, 1.0, -0.0, 0.0]), ([0.5, 0.0, 0.5, 0.5], [0.5, 1.0, 0.5, 0.5])),
    # the branch not taken gets a zero cotangent, and 0 times sqrt's slope at 0 or at -1 is NaN in jax too
    ("where", lambda x: ex.where(x > 0, ex.sqrt(x), x * 3), lambda m, nn: lambda x: m.where(x > 0, m.sqrt(x), x * 3),
     ([-1.0, 0.0, 4.0],), ([NAN, NAN, 0.25],)),
]


def _edge_gradients(f, inputs):
    """The gradient of sum(f(inputs)) with respect to every input, and the ULP the table allows it: the
    sum of the bounds of the ops in its graph (each is one op over exact inputs, or a product of those)."""
    grads = ex.grad(lambda *a: f(*a).sum(), argnums=tuple(range(len(inputs))))(*map(np.array, inputs))
    grads = grads if isinstance(grads, tuple) else (grads,)
    bounds = [ulp_bound(g._graph_node()) for g in grads]   # before evaluating: the graph, not its value
    return [(g.numpy(), ulp) for g, ulp in zip(grads, bounds)]


@pytest.mark.parametrize("name, f, jax_f, inputs, expected", DOMAIN_EDGES, ids=[e[0] for e in DOMAIN_EDGES])
def test_domain_edge_gradients_follow_jax_s_conventions(name, f, jax_f, inputs, expected):
    for i, ((got, ulp), want) in enumerate(zip(_edge_gradients(f, inputs), expected)):
        assert_close(got, np.array(want), ulp=ulp, what=f"d {name} / d input {i}", inputs=inputs)


@pytest.mark.parametrize("name, f, jax_f, inputs, expected", DOMAIN_EDGES, ids=[e[0] for e in DOMAIN_EDGES])
def test_domain_edge_gradients_are_jax_s(name, f, jax_f, inputs, expected):
    """The literals above are what jax gives (and exprgen's gradients are jax's) where jax is installed."""
    jax = peer("jax")
    jax.config.update("jax_enable_x64", True)
    argnums = tuple(range(len(inputs)))
    fn = jax_f(jax.numpy, jax.nn)
    theirs = jax.grad(lambda *a: fn(*a).sum(), argnums=argnums)(*(jax.numpy.array(x, dtype="float64") for x in inputs))
    for i, ((got, ulp), want, literal) in enumerate(zip(_edge_gradients(f, inputs), theirs, expected)):
        assert_close(np.asarray(want), np.array(literal), what=f"jax's d {name} / d input {i} (the literal)")
        assert_close(got, np.asarray(want), ulp=ulp, what=f"d {name} / d input {i}", inputs=inputs)


def test_the_loss_gradient_fuses_into_two_kernels():
    rng = np.random.default_rng(4)
    n = 50_000
    x, t = rng.standard_normal(n).astype(np.float32), rng.random(n).astype(np.float32)
    w, b = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    xa, ta = ex.asarray(x), ex.asarray(t)

    def loss(w, b):
        return ((ex.sigmoid(xa * w + b) - ta) ** 2).mean()

    ex.reset_stats()
    dw, db = ex.grad(loss, argnums=(0, 1))(w, b)
    gw, gb = ex.eval(dw, db)
    assert ex.stats()["kernels_launched"] == 1
    ex.reset_stats()
    value, (dw, db) = ex.value_and_grad(loss, argnums=(0, 1))(w, b)
    assert "recomputes" in ex.explain(value, dw, db)
    v, gw2, gb2 = ex.eval(value, dw, db)
    assert ex.stats()["kernels_launched"] == 2
    s = 1 / (1 + np.exp(-(x.astype(np.float64) * w + b)))
    want_b = 2 * (s - t) * s * (1 - s) / n
    np.testing.assert_allclose(gb, want_b, rtol=1e-4, atol=1e-10)
    np.testing.assert_allclose(gw, want_b * x, rtol=1e-4, atol=1e-10)
    assert gw.dtype == np.float32 and np.array_equal(gw, gw2)
    np.testing.assert_allclose(v, ((s - t) ** 2).mean(), rtol=1e-5)


def test_vjp_hvp_stop_gradient_and_custom_vjp():
    out, pullback = ex.vjp(lambda a, b: ex.exp(a) * b, np.array([0.0, 1.0]), np.array([2.0, 3.0]))
    ga, gb = pullback(np.array([1.0, 10.0]))
    np.testing.assert_allclose(ga.numpy(), [2.0, 30 * np.e])
    np.testing.assert_allclose(gb.numpy(), [1.0, 10 * np.e])
    f = lambda a: (ex.sin(a) * a).sum()  # noqa: E731
    x, v = np.linspace(-1, 1, 5), np.linspace(2, 3, 5)
    hvp = ex.grad(lambda a: (ex.grad(f)(a) * ex.asarray(v)).sum())(x)
    np.testing.assert_allclose(hvp.numpy(), (2 * np.cos(x) - x * np.sin(x)) * v, rtol=1e-12)
    assert ex.grad(lambda a: (ex.stop_gradient(a) * a).sum())(np.array([3.0])).numpy().tolist() == [3.0]

    @ex.custom_vjp
    def clipped_identity(a):
        return a * 1.0

    clipped_identity.defvjp(lambda a: (a * 1.0, a), lambda a, g: (ex.clip(g, -1.0, 1.0),))
    got = ex.grad(lambda a: (clipped_identity(a) * 5.0).sum())(np.array([1.0, 2.0])).numpy()
    assert got.tolist() == [1.0, 1.0]


def test_each_argument_is_a_variable_of_its_own():
    """An Array passed twice, or passed and also captured, gives each argument only its own uses' gradient
    (JAX's semantics); an outer grad still differentiates through an inner one's transformed argument."""
    x = ex.asarray(np.array([1.0, 2.0]))
    ga, gb = ex.grad(lambda a, b: (a * b).sum(), argnums=(0, 1))(x, x)
    assert ga.numpy().tolist() == gb.numpy().tolist() == [1.0, 2.0]
    assert ex.grad(lambda p: (p * x).sum())(x).numpy().tolist() == [1.0, 2.0]
    _, pullback = ex.vjp(lambda a, b: a * b, x, x)
    assert [g.numpy().tolist() for g in pullback(np.ones(2))] == [[1.0, 2.0], [1.0, 2.0]]
    xs = np.array([0.3, 1.1])
    nested = ex.grad(lambda a: ex.grad(lambda b: ex.sin(b).sum())(a * 2.0).sum())(xs)
    np.testing.assert_allclose(nested.numpy(), -2 * np.sin(2 * xs), rtol=1e-14)


def test_values_computed_inside_the_function_keep_their_gradient():
    """Logging a loss (float(), an f-string, .numpy(), ex.eval) inside f made it a buffer leaf: zero gradient."""
    xs = np.array([1.0, 2.0])

    def loss(a):
        h = ex.sin(a)
        h.numpy()
        s = (h * h).sum()
        assert f"{s:.3f}" == f"{float(s):.3f}" and float(s) > 0
        ex.eval(s)
        return s

    np.testing.assert_allclose(ex.grad(loss)(xs).numpy(), np.sin(2 * xs), rtol=1e-14)
    value, g = ex.value_and_grad(loss)(xs)
    np.testing.assert_allclose(g.numpy(), np.sin(2 * xs), rtol=1e-14)
    assert (value * 2).numpy() == 2 * float(value)   # outside the trace the value is a buffer again
    # ... and holds nothing of its graph: a batch the loss was computed from is freed with the user's reference
    batch = np.linspace(0, 1, 1 << 16)
    alive = weakref.ref(batch)
    value, g = ex.value_and_grad(loss)(batch)
    del batch, g
    gc.collect()
    assert alive() is None and float(value) > 0


def test_custom_vjp_rules_stay_with_their_own_calls():
    """custom_vjp marked a hash-consed stop_gradient(out): the user's own stop_gradient(sin(x)), or another
    custom function with the same forward, was the same node and took the rule. And a view of a custom
    function's output must reach its rule (views are pushed into the graph below it otherwise)."""
    @ex.custom_vjp
    def hundred(a):
        return ex.sin(a)

    @ex.custom_vjp
    def seven(a):
        return ex.sin(a)

    hundred.defvjp(lambda a: (ex.sin(a), None), lambda _, g: (g * 100.0,))
    seven.defvjp(lambda a: (ex.sin(a), None), lambda _, g: (g * 0.0 + 7.0,))
    x = ex.asarray(np.array([0.5, 1.0]))
    hundred(x)
    assert ex.grad(lambda a: (ex.stop_gradient(ex.sin(a)) * 2.0).sum())(x).numpy().tolist() == [0.0, 0.0]
    assert ex.grad(lambda a: (hundred(a) + seven(a)).sum())(x).numpy().tolist() == [107.0, 107.0]
    square = np.array([[0.5, 1.0], [1.5, 2.0]])
    assert ex.grad(lambda a: hundred(a).T[::-1].sum())(square).numpy().tolist() == [[100.0] * 2] * 2
    np.testing.assert_allclose(hundred(ex.asarray(square)).T[::-1].numpy(), np.sin(square).T[::-1], rtol=1e-15)


@pytest.mark.parametrize("row", [[2.0, 0.0, 3.0], [0.0, 5.0, 0.0], [2.0, 4.0, 0.5]])
def test_prod_gradient_where_inputs_are_zero(row):
    """The product of the others, as JAX and PyTorch give: out / x was 0 / 0 (NaN) at a zero."""
    xs = np.array([row, [1.0, 2.0, 3.0]])
    want = np.array([[np.prod(np.delete(r, i)) for i in range(3)] for r in xs])
    np.testing.assert_array_equal(ex.grad(lambda a: a.prod(axis=1).sum())(xs).numpy(), want)
    np.testing.assert_array_equal(ex.grad(lambda a: a.prod())(xs).numpy(),
                                  [[np.prod(np.delete(xs.ravel(), 3 * r + c)) for c in range(3)] for r in range(2)])
    if row[1] == 0 and row[0] != 0:   # one zero: second derivatives are finite too (the branch not taken)
        hessian_row = ex.grad(lambda a: ex.grad(lambda b: b.prod())(a).sum())(np.array(row)).numpy()
        np.testing.assert_allclose(hessian_row, [sum(np.prod(np.delete(row, [i, j])) for j in range(3) if j != i)
                                                 for i in range(3)], rtol=1e-15)


def test_slices_that_keep_every_element_are_differentiable_however_written():
    xs = np.arange(6.0).reshape(2, 3)
    weights = np.arange(3.0)
    got = ex.grad(lambda a: (a[0:2, 2::-1] * weights).sum() + a[-2:, 0:99].sum() + a[None][::5].sum())(xs)
    np.testing.assert_array_equal(got.numpy(), np.broadcast_to(weights[::-1] + 2, (2, 3)))


# Basic indexing that drops elements: its gradient is the incoming one put back where the view took its
# elements, zeros elsewhere (JAX's values, written out: the gradient of sum(3 * sin(view))).
DROPPING = {"x[1:]": lambda a: a[1:], "x[::2]": lambda a: a[::2], "x[0]": lambda a: a[0],
            "x[:, 1:4]": lambda a: a[:, 1:4], "x[::-2, 1]": lambda a: a[::-2, 1], "x[1, None, 2:]": lambda a: a[1, None, 2:],
            "x[..., 3]": lambda a: a[..., 3], "x[None, :2]": lambda a: a[None, :2], "x[-1, ::3]": lambda a: a[-1, ::3]}


@pytest.mark.parametrize("view", DROPPING)
def test_gradients_through_indexing_that_drops_elements(view):
    xs = np.random.default_rng(0).standard_normal((4, 6))
    taken = np.zeros_like(xs)
    DROPPING[view](taken)[...] = 1                      # where the view reads (each element once)
    expected = 3 * np.cos(xs) * taken
    got = ex.grad(lambda a: ex.sum(ex.sin(DROPPING[view](a)) * 3))(xs)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-15, atol=0)
    second = ex.grad(lambda a: ex.sum(ex.grad(lambda b: ex.sum(ex.sin(DROPPING[view](b)) ** 2))(a)))(xs)
    np.testing.assert_allclose(second.numpy(), 2 * np.cos(2 * xs) * taken, rtol=1e-12, atol=1e-15)


def test_errors():
    with pytest.raises(TypeError, match="int32"):
        ex.grad(lambda a: (a * 2.0).sum())(np.ones(3, np.int32))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        ex.grad(lambda a: a * 2.0)(np.ones(3))
    with pytest.raises(ValueError, match="argnums"):
        ex.grad(lambda a: a.sum(), argnums=2)(np.ones(3))


def test_grad_of_grad_through_a_rows_kernel():
    """Regression: two per-row values sharing inputs in one pass (the Hessian of logsumexp) compiled
    to a kernel declaring the shared values twice."""
    xs = np.random.default_rng(5).standard_normal((20, 6))
    x = ex.asarray(xs)

    def f(w):
        return ex.logsumexp(x * w, axis=1).mean()

    def numeric_f(w):
        z = xs * w
        top = z.max(1, keepdims=True)
        return (np.log(np.exp(z - top).sum(1)) + top[:, 0]).mean()

    w0 = np.linspace(-1, 1, 6)
    hvp = ex.grad(lambda w: (ex.grad(f)(w) * ex.asarray(w0)).sum())(w0)
    directional = lambda w: _numeric(numeric_f, w) @ w0  # noqa: E731
    np.testing.assert_allclose(hvp.numpy(), _numeric(directional, w0, h=1e-4), rtol=1e-4, atol=1e-6)


def test_backward_formulas_keep_python_scalars_weak():
    """Regression: power's gradient saw its Python exponent as an array, so y - 1 became a strong int64
    and a float32 gradient ran pow() in float64 for every element."""
    g = ex.grad(lambda a: (a ** 2).sum())(np.linspace(-1, 1, 5, dtype=np.float32))
    assert g.dtype == np.float32
    assert "float64" not in ex.explain(g, verbose=True)
    np.testing.assert_allclose(g.numpy(), 2 * np.linspace(-1, 1, 5, dtype=np.float32), rtol=1e-6)


NUMPY_FUNCTIONS_ON_VARIABLES = {
    "dot": (lambda X, w: (np.dot(X, w) ** 2).sum(), lambda X, w: 2 * X.T @ (X @ w)),
    "concatenate": (lambda X, w: (np.concatenate([w, w * 2]) ** 2).sum(), lambda X, w: 10 * w),
    "where": (lambda X, w: np.where(w > 0.5, w * w, 3 * w).sum(), lambda X, w: np.where(w > 0.5, 2 * w, 3.0)),
    "stack": (lambda X, w: np.stack([w, w]).sum(axis=0).sum(), lambda X, w: np.full_like(w, 2.0)),
    "tensordot": (lambda X, w: np.tensordot(X, w, axes=1).sum(), lambda X, w: X.sum(axis=0)),
    "sum": (lambda X, w: np.sum(w * w, 0), lambda X, w: 2 * w),
}


@pytest.mark.parametrize("name", NUMPY_FUNCTIONS_ON_VARIABLES)
def test_numpy_functions_on_a_differentiated_value_stay_differentiable(name):
    """np.dot, np.concatenate, np.where, ... on an Array being differentiated gave a gradient of zeros."""
    f, expected = NUMPY_FUNCTIONS_ON_VARIABLES[name]
    rng = np.random.default_rng(3)
    X, w = rng.random((5, 3)), rng.random(3)
    g = ex.grad(lambda w: f(ex.asarray(X), w))(ex.asarray(w))
    np.testing.assert_allclose(g.numpy(), expected(X, w), rtol=1e-12)


@pytest.mark.parametrize("call", ["np.median(w)", "np.asarray(w).sum()", "np.percentile(w * 2, 50)",
                                  "np.dot(w, np.ones((3, 3, 2)))"])
def test_a_differentiated_value_refuses_to_become_numpy_with_the_function_named(call):
    with pytest.raises(TypeError, match="differentiated") as info:
        ex.grad(lambda w: ex.asarray(eval(call, {"np": np, "w": w})).sum())(ex.asarray(np.ones(3)))
    if call != "np.asarray(w).sum()":
        assert f"np.{call[3:call.index('(')]}" in str(info.value)


def test_numpy_functions_outside_a_gradient_compute_as_before():
    x = ex.asarray(np.arange(5.0))
    assert np.median(x) == 2.0 and np.percentile(x, 50) == 2.0
    captured = ex.asarray(np.arange(3.0))   # not differentiated: NumPy may compute on it inside grad too
    g = ex.grad(lambda w: (w * float(np.median(captured))).sum())(ex.asarray(np.ones(3)))
    np.testing.assert_array_equal(g.numpy(), [1.0, 1.0, 1.0])
    lazy = np.concatenate([x, np.ones(2)])
    assert isinstance(lazy, ex.Array) and lazy.numpy().tolist() == [0, 1, 2, 3, 4, 1, 1]
    assert float(np.std(x, ddof=1)) == pytest.approx(np.std(np.arange(5.0), ddof=1))


NUMPY_CALLS_EXPRGEN_REFUSES = ["np.sort(X, axis=None)", "np.argsort(X, axis=None)", "np.concatenate([X, X], axis=None)",
                               "np.tile(X, 2)", "np.roll(X, np.array(2))", "np.expand_dims(X, [0])", "np.tril(X[0])",
                               "np.full_like(X, [1, 2, 3, 4])", "np.round(X > 5)", "np.max(X, initial=20)",
                               "np.sum(X, where=X > 3)"]


@pytest.mark.parametrize("call", NUMPY_CALLS_EXPRGEN_REFUSES)
def test_numpy_calls_exprgen_s_functions_refuse_get_numpy_s_answer(call):
    values = np.arange(12.0).reshape(3, 4)
    got, expected = np.asarray(eval(call, {"np": np, "X": ex.asarray(values)})), eval(call, {"np": np, "X": values})
    assert got.dtype == expected.dtype and np.array_equal(got, expected)


@pytest.mark.parametrize("use", ["stop_gradient", "bool mask", "nonzero", "an earlier gradient", "custom_vjp forward"])
def test_values_no_gradient_flows_through_may_become_numpy_inside_grad(use):
    w0 = np.array([0.3, -1.2, 2.5, 0.7])
    earlier = ex.grad(lambda w: ex.sum(w * w))(ex.asarray(w0))

    @ex.custom_vjp
    def median(x):
        return ex.asarray(np.median(np.asarray(x)))
    median.defvjp(lambda x: (ex.asarray(np.median(np.asarray(x))), x), lambda x, g: (g * ex.ones_like(x) / x.size,))
    f = {"stop_gradient": lambda w: ex.sum(w * np.asarray(ex.stop_gradient(w))),
         "bool mask": lambda w: ex.sum(w * np.asarray(w > 0)),
         "nonzero": lambda w: ex.sum(w[np.nonzero(w > 0)]),
         "an earlier gradient": lambda w: ex.sum(w * np.asarray(earlier)),
         "custom_vjp forward": lambda w: median(w * 2)}[use]
    expected = {"stop_gradient": w0, "bool mask": (w0 > 0) * 1.0, "nonzero": (w0 > 0) * 1.0,
                "an earlier gradient": 2 * w0, "custom_vjp forward": np.full(4, 0.5)}[use]
    np.testing.assert_allclose(ex.grad(f)(ex.asarray(w0)).numpy(), expected, rtol=1e-15)


def test_a_value_numpy_computed_from_a_variable_refuses_to_become_numpy():
    with pytest.raises(TypeError, match="differentiated"):
        ex.grad(lambda w: ex.asarray(np.asarray(ex.sort(w))).sum())(ex.asarray(np.ones(3)))


def test_backward_formulas_have_one_vocabulary():
    """A formula outside the vocabulary is refused when the op is defined, not when grad first meets it;
    and every function the validator lets a formula call is one the interpreter builds."""
    from exprgen.autodiff import reverse
    from exprgen.ir import formulas

    with pytest.raises(ValueError, match="ones_like"):
        opdefs.define_elementwise("vocabulary_probe", "x", lambda x: x, vjp="ones_like(x)")
    assert "vocabulary_probe" not in opdefs.registry()
    assert formulas.CALLS - {formulas.NO_GRADIENT} <= set(reverse._CALLS)


def test_no_gradient_is_computed_for_captured_data():
    # Logistic regression: the data X is captured, not differentiated, so of the two products a matmul's
    # backward can form only X.T @ g is computed (the forward's X @ w, which the gradient reads, is the other).
    rng = np.random.default_rng(7)
    X, y = rng.standard_normal((200, 8)), (rng.random(200) < 0.5).astype(np.float64)

    def loss(w):
        z = ex.asarray(X) @ w
        return ex.mean(ex.softplus(z) - ex.asarray(y) * z)

    w = rng.standard_normal(8)
    g = ex.grad(loss)(w)
    sigmoid = 1 / (1 + np.exp(-(X @ w)))
    ex.reset_stats()
    np.testing.assert_allclose(g.numpy(), X.T @ (sigmoid - y) / len(y), rtol=1e-10)
    assert ex.stats()["library_calls"] == 2
    # Data made from w but behind stop_gradient is captured data too: its product with g is never formed,
    # and the forward product is not read by this gradient at all.
    g = ex.grad(lambda w: ex.sum(ex.stop_gradient(ex.asarray(X) * ex.sum(w)) @ w))(w)
    ex.reset_stats()
    np.testing.assert_allclose(g.numpy(), (X * w.sum()).sum(axis=0), rtol=1e-10)
    assert ex.stats()["library_calls"] == 1


def test_gradients_through_every_indexing_form():
    w = np.array([3.0, 1.0, 2.0])
    np.testing.assert_array_equal(ex.grad(lambda w: ex.sort(w)[0] * 2)(w).numpy(), [0, 2, 0])   # the smallest
    np.testing.assert_array_equal(ex.grad(lambda w: ex.sum(ex.unstack(ex.reshape(w, (3, 1)))[1] * 5))(w).numpy(),
                                  [0, 5, 0])
    np.testing.assert_array_equal(ex.grad(lambda w: w[w > 1.5].sum())(w).numpy(), [1, 0, 1])       # a mask
    np.testing.assert_array_equal(ex.grad(lambda w: w[np.array([0, 0, 2])].sum())(w).numpy(), [2, 0, 1])   # repeats add
