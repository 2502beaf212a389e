"""The rule tables the rewriter runs.

Each rule states its algebra and its kind: ``exact`` rules give bit-identical results under IEEE
arithmetic (NaN, inf and signed zeros included), ``accurate`` rules are never less accurate than the
graph they replace, ``fast`` rules may change rounding and run only when asked for
(``ex.eval(..., fast_math=True)``). The engine (``pattern.py``) refuses any replacement that changes a
node's dtype or shape, so ``int32 * 1.0`` (a float64) is never "simplified" to the int32 operand.
Common subexpressions merge as the graph is built (nodes are hash-consed) and unreachable nodes are never
visited, so CSE and dead-code removal need no rules.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import RewriteCheckError
from ..ir import dtypes, graph, opdefs, interpret, views
from ..ir.graph import BUFFER, LEAVES, SCALAR, VIEW, Node
from .pattern import Pat, Rule

x, y = Pat.var("x"), Pat.var("y")


def unary(name: str):
    return lambda x: graph.apply(name, x)


def unary_of_signless_zero(name: str):
    """``name(x + 0.0)``: x with -0.0 made +0.0 (IEEE: -0 + +0 = +0), for an op that keeps a zero's sign
    where the formula it replaces does not (log(1 + -0.0) is +0.0, log1p(-0.0) is -0.0)."""
    return lambda x: graph.apply(name, graph.apply("add", x, graph.constant(0.0)))


def call(name: str, *src) -> Pat:
    """The pattern of op ``name`` applied to ``src`` (patterns or constants)."""
    return Pat.apply(name, *src)


def _fold(node: Node, reads: set) -> Node | None:
    """An op whose inputs are all Python scalars is computed once, here, by its NumPy reference. Not one
    over a jitted function's argument (``lr * 2``): folded, the plan would hold for one learning rate only,
    where computed in the kernel it holds for any."""
    if node.op in LEAVES or not node.src or any(s.op is not SCALAR or s.argument for s in node.src):
        return None
    reads.update(node.src)
    with np.errstate(all="ignore"):
        value = np.asarray(opdefs.get(node.op).numpy(*(s.arg for s in node.src), *node.arg), dtype=node.dtype)
    # A weak node's value stays a Python scalar: as a float64 buffer it would promote what it meets.
    return graph.constant(node.weak_type(value.item())) if node.weak_type else graph.buffer(value, device=None)


def _divide_by_power_of_two(node: Node, reads: set) -> Node | None:
    """x/c -> x*(1/c) when c is a power of two whose reciprocal is a normal number: both round once."""
    if node.src[1].op is not SCALAR or node.dtype not in dtypes.FLOATS:
        return None
    c = node.src[1]
    reads.add(c)
    if not isinstance(c.arg, float) or c.arg == 0 or not math.isfinite(c.arg):
        return None
    mantissa, exponent = math.frexp(abs(c.arg))
    info = np.finfo(node.dtype)   # as Python floats: a float32 bound compared with 1e300 warns of overflow
    tiny, largest = float(info.tiny), float(info.max)
    if mantissa != 0.5 or not tiny <= 1 / abs(c.arg) <= largest or not tiny <= abs(c.arg) <= largest:
        return None
    return graph.apply("multiply", node.src[0], graph.constant(1 / c.arg))


def _integers(build):
    """Only where x is an integer array (no -0.0, NaN or inf to preserve)."""
    return lambda x: build(x) if x.dtype in dtypes.INTEGERS else None


def _bool_only(build):
    return lambda x: build(x) if x.dtype == dtypes.BOOL else None


def _floats(build):
    """Only where x is a float array: on integers 1 + x and -x wrap at the ends of the range (log1p and
    sigmoid would not), and log1p(bool) does not exist."""
    return lambda x: build(x) if x.dtype in dtypes.FLOATS else None


def _signed(build):
    """Not where x is unsigned: there -x wraps to another magnitude (-1 is 255 in uint8)."""
    return lambda x: build(x) if x.dtype.kind != "u" else None


def _relu(node: Node, reads: set) -> Node | None:
    """maximum(x, 0) -> relu(x), and maximum(0, x) only for integers: at a tie NumPy's maximum gives its
    second operand, so maximum(0, -0.0) is -0.0 where relu gives 0.0. (A pattern would match both orders,
    maximum being commutative.)"""
    for x, zero in (node.src, node.src[::-1]):
        if zero.op is SCALAR:
            reads.add(zero)
            positive_zero = zero.arg == 0 and math.copysign(1, zero.arg) > 0
            if positive_zero and (zero is node.src[1] or x.dtype not in dtypes.FLOATS):
                return graph.apply("relu", x)
    return None


def _float_roundtrip(node: Node, reads: set) -> Node | None:
    """float32 -> float64 -> float32 gives back every float32 exactly (NaN payloads aside)."""
    if node.src[0].op != "astype":
        return None
    inner = node.src[0]
    if node.dtype == dtypes.FLOAT32 and inner.dtype == dtypes.FLOAT64 and inner.src[0].dtype == dtypes.FLOAT32:
        return inner.src[0]
    return None


# No rule here takes apart a product of more than 4 operands (GELU's); taking a long chain apart whole at
# each of its multiplies would cost its length squared.
MOST_FACTORS = 8


def _factors(node: Node) -> list[Node]:
    """The operands of a chain of multiplies, however it is associated, left to right. A chain of more than
    MOST_FACTORS operands comes back as MOST_FACTORS + 1 factors, some of them products still (no rule can
    match it). Iterative: a chain may be any depth."""
    factors, stack = [], [node]
    while stack:
        n = stack.pop()
        if n.op == "multiply" and len(factors) + len(stack) < MOST_FACTORS:
            stack += reversed(n.src)   # popped left operand first
        else:
            factors.append(n)
    return factors


def _take_constant(factors: list[Node], values: tuple[float, ...], dtype: np.dtype, reads: set) -> bool:
    """Remove one Python scalar from ``factors`` that is exactly one of ``values`` in ``dtype`` (the one
    the expression computes in): an accurate rule names its constants, and 0.5000004 is not 0.5."""
    wanted = {dtype.type(v) for v in values}
    for i, f in enumerate(factors):
        if f.op is SCALAR:
            reads.add(f)
            if dtype.type(f.arg) in wanted:
                del factors[i]
                return True
    return False


def _is_cube_of(factors: list[Node], x: Node, reads: set) -> bool:
    """Do these factors multiply to x**3 (x*x*x, x*square(x), power(x, 3))?"""
    powers = 0
    for f in factors:
        if f is x:
            powers += 1
        elif f.op == "square" and f.src[0] is x:
            powers += 2
        elif f.op == "power" and f.src[0] is x and f.src[1].op is SCALAR:
            reads.add(f.src[1])
            if f.src[1].arg not in (2, 3):
                return False
            powers += int(f.src[1].arg)
        else:
            return False
    return powers == 3


def _one_plus(node: Node, reads: set) -> Node | None:
    """t for 1 + t (either order)."""
    if node.op != "add":
        return None
    for one, t in (node.src, node.src[::-1]):
        if one.op is SCALAR:
            reads.add(one)
            if one.arg == 1:
                return t
    return None


# GELU's constants as people compute them: 1/sqrt(2) and sqrt(2)/sqrt(pi) round a double off the
# nearest one.
_SQRT_HALF = (math.sqrt(0.5), 1 / math.sqrt(2))
_SQRT_2_OVER_PI = (math.sqrt(2 / math.pi), math.sqrt(2) / math.sqrt(math.pi))


def _gelu_inner(node: Node, x: Node, reads: set) -> str | None:
    """Which GELU ``node`` is the erf/tanh term of, given x: "gelu", "gelu_tanh" or None."""
    dtype = node.dtype
    if node.op == "erf":
        arg = node.src[0]
        if arg.op == "divide" and arg.src[0] is x and arg.src[1].op is SCALAR:
            return "gelu" if _take_constant([arg.src[1]], (math.sqrt(2),), dtype, reads) else None
        factors = _factors(arg)
        return "gelu" if _take_constant(factors, _SQRT_HALF, dtype, reads) and factors == [x] else None
    if node.op == "tanh":
        factors = _factors(node.src[0])
        if (not _take_constant(factors, _SQRT_2_OVER_PI, dtype, reads) or len(factors) != 1
                or factors[0].op != "add"):
            return None
        for linear, cubic in (factors[0].src, factors[0].src[::-1]):
            rest = _factors(cubic)
            if linear is x and _take_constant(rest, (0.044715,), dtype, reads) and _is_cube_of(rest, x, reads):
                return "gelu_tanh"
    return None


def _gelu(node: Node, reads: set) -> Node | None:
    """0.5 * x * (1 + erf(x/sqrt(2))) and 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))), in any
    association or order of the products, become the gelu kernels (the same formula at full precision)."""
    factors = _factors(node)
    if len(factors) != 3 or not _take_constant(factors, (0.5,), node.dtype, reads):
        return None
    for x, term in (factors, factors[::-1]):
        inner = _one_plus(term, reads)
        name = _gelu_inner(inner, x, reads) if inner is not None else None
        if name:
            return graph.apply(name, x)
    return None


def _reassociate(node: Node, reads: set) -> Node | None:
    """(x + a) + b -> x + (a + b) and (x * a) * b -> x * (a * b), a and b Python scalars: one rounding
    instead of two, so the result may differ in the last bit (a fast-math rule)."""
    if node.src[1].op is not SCALAR or node.src[0].op != node.op:
        return None
    inner = node.src[0]
    if inner.src[1].op is not SCALAR or type(inner.src[1].arg) is not type(node.src[1].arg):
        return None
    reads.update((inner.src[1], node.src[1]))
    a, b = inner.src[1].arg, node.src[1].arg
    combined = a + b if node.op == "add" else a * b
    if isinstance(combined, float) and not math.isfinite(combined):
        return None
    return graph.apply(node.op, inner.src[0], graph.constant(combined))


def _broadcast_only(view: Node) -> bool:
    """Is ``view`` its source broadcast as an elementwise op broadcasts an operand (a size-1 axis repeated,
    axes added in front), whatever steps wrote it (a reduction's keepdims reshaped away and back)?"""
    source = view.src[0]
    shape = view.shape
    if len(shape) < len(source.shape) or any(n not in (1, m) for n, m in zip(source.shape[::-1], shape[::-1])):
        return False
    layout = views.layout_after(source.shape, view.arg)
    if layout is None or layout[2] != 0:
        return False
    own = views.contiguous_strides(source.shape)
    implicit = (0,) * (len(shape) - len(own)) + tuple(0 if n == 1 else s for n, s in zip(source.shape, own))
    return all(size == 1 or a == b for size, a, b in zip(shape, layout[1], implicit))


def _implicit_broadcast(node: Node, reads: set) -> Node | None:
    """An elementwise op reading a broadcast view of x reads x itself: it broadcasts its operands anyway,
    and a value read in place of a view's buffer need not be written first. A rows kernel then computes a
    reduction and what reads it broadcast in one kernel, a phase apart (softmax's backward, 4 kernels over
    the logits of an MLP step where 2 do)."""
    if node.op in LEAVES or node.op is VIEW or node.op in graph.reductions() or node.op in graph.library_ops():
        return None
    # Not a view of a weak value (a jitted function's lr * 2): the view is a float64 array, its source not.
    src = tuple(s.src[0] if s.op is VIEW and not s.src[0].weak and _broadcast_only(s) else s for s in node.src)
    return None if src == node.src else graph.apply(node.op, *src, params=node.arg)


FOLD = [
    Rule("op(scalars...) -> its value", None, _fold),
]

EXACT = [
    Rule("x*1 -> x", x * 1, lambda x: x),
    Rule("x/1 -> x", x / 1, lambda x: x),
    Rule("x-0 -> x", x - 0, lambda x: x),
    Rule("x+(-0.0) -> x", x + (-0.0), lambda x: x),
    Rule("x+0 -> x (integers)", x + 0, _integers(lambda x: x)),
    Rule("x**1 -> x", x ** 1, lambda x: x),
    Rule("x**2 -> x*x", x ** 2, lambda x: graph.apply("multiply", x, x)),
    Rule("-(-x) -> x", -(-x), lambda x: x),
    Rule("x/2**k -> x*2**-k", None, _divide_by_power_of_two, ops=("divide",)),
    Rule("abs(-x) -> abs(x)", call("abs", -x), _signed(unary("abs"))),
    Rule("abs(abs(x)) -> abs(x)", call("abs", call("abs", x)), unary("abs")),
    Rule("not(not(x)) -> x (bool)", call("logical_not", call("logical_not", x)), _bool_only(lambda x: x)),
    Rule("float32(float64(x)) -> x", None, _float_roundtrip, ops=("astype",)),
    Rule("op(broadcast_to(x), y) -> op(x, y)", None, _implicit_broadcast),
]

# The most specific first: log(1+exp(x)) must become softplus before log(1+x) takes it apart.
ACCURATE = [
    Rule("log(1+exp(x)) -> softplus(x)", call("log", 1 + call("exp", x)), unary("softplus"), "accurate"),
    Rule("log(1+x) -> log1p(x+0)", call("log", 1 + x), _floats(unary_of_signless_zero("log1p")), "accurate"),
    Rule("exp(x)-1 -> expm1(x+0)", call("exp", x) - 1, unary_of_signless_zero("expm1"), "accurate"),
    Rule("log1p(exp(x)) -> softplus(x)", call("log1p", call("exp", x)), unary("softplus"), "accurate"),
]

RECOGNISE = [
    # sigmoid's kernel keeps subnormal results that 1/(1+exp(-x)) flushes to 0: more accurate, not equal.
    Rule("1/(1+exp(-x)) -> sigmoid(x)", 1 / (1 + call("exp", -x)), _floats(unary("sigmoid")), "accurate"),
    Rule("reciprocal(1+exp(-x)) -> sigmoid(x)", call("reciprocal", 1 + call("exp", -x)), _floats(unary("sigmoid")),
         "accurate"),
    Rule("maximum(x, 0) -> relu(x)", None, _relu, ops=("maximum",)),
    Rule("0.5*x*(1+erf(x/sqrt2)), 0.5*x*(1+tanh(...)) -> gelu(x)", None, _gelu, "accurate", ops=("multiply",)),
    # NaN: where(x > 0, x, 0) gives 0 and relu gives NaN, so this one may change a result.
    Rule("where(x>0, x, 0) -> relu(x)", call("where", Pat.apply("greater", x, 0), x, 0), unary("relu"), "fast"),
]

def _contract(x: Node, y: Node, z: Node) -> Node | None:
    """x*y+z -> fma(x, y, z): one rounding instead of two (floats only; integers are exact already)."""
    if any(n.dtype not in dtypes.FLOATS and n.op is not SCALAR for n in (x, y, z)):
        return None
    return graph.apply("fma", x, y, z)


FAST = [
    Rule("(x+a)+b -> x+(a+b), (x*a)*b -> x*(a*b)", None, _reassociate, "fast", ops=("add", "multiply")),
    Rule("x*y+z -> fma(x, y, z)", Pat.var("x") * Pat.var("y") + Pat.var("z"), _contract, "fast"),
]

BUILTIN = FOLD + EXACT + ACCURATE + RECOGNISE + FAST
USER: list[Rule] = []
version = 0  # bumped as user rules come and go: compiled plans and rewriters made before are stale


def active() -> list[Rule]:
    return BUILTIN + USER


def add_user_rule(pattern: Pat, build, kind: str, algebra: str | None) -> Rule:
    """Add a user rule whose ``build`` maps the nodes bound to the pattern's variables to the replacement
    node (``ex.rules.register``, in api/user_rules.py, is how users add one)."""
    global version
    rule = Rule(algebra or f"user rule #{len(USER)}", pattern, build, kind, user=True)
    USER.append(rule)
    version += 1
    return rule


def remove_user_rule(rule: Rule) -> None:
    global version
    USER.remove(rule)
    version += 1


_checked: set[int] = set()


def _random_like(node: Node, rng: np.random.Generator) -> Node:
    shape = node.shape
    if node.dtype == dtypes.BOOL:
        return graph.buffer(rng.random(shape) < 0.5)
    if node.dtype in dtypes.INTEGERS:
        return graph.buffer(rng.integers(-10, 10, shape).astype(node.dtype))
    return graph.buffer((rng.standard_normal(shape) * 3).astype(node.dtype))


def check_user_rule(rule: Rule, before: Node, after: Node) -> None:
    """Debug mode: the first time a user rule fires, compare both sides on random inputs."""
    if not rule.user or id(rule) in _checked:
        return
    _checked.add(id(rule))
    rng = np.random.default_rng(0)
    leaves = [n for n in graph.toposort([before, after]) if n.op is BUFFER]
    swap = {id(n): _random_like(n, rng) for n in leaves}
    want, got = interpret.evaluate([graph.substitute(before, swap), graph.substitute(after, swap)])
    if rule.kind == "exact":
        same = np.array_equal(want, got, equal_nan=want.dtype.kind == "f")
    else:
        same = np.allclose(want, got, rtol=1e-5 if want.dtype == dtypes.FLOAT32 else 1e-12, equal_nan=True)
    if not same:
        raise RewriteCheckError(f"user rule {rule.algebra!r} ({rule.kind}) changed a value: "
                                f"{before!r} -> {after!r}")
