"""Reverse-mode differentiation: ``grad``, ``value_and_grad``, ``vjp``, ``custom_vjp``.

The backward pass walks the graph from the output back to the inputs, applying each op's backward
formula from ``ops/``. Formulas are expressions in the op language over fixed names (``g`` the incoming
gradient, ``out`` the op's result, the input names, the op's params); they are parsed once with ``ast``
(a whitelist of node types and names, nothing is evaluated by Python) and interpreted over Arrays, so
the backward pass is ordinary lazy graph: it fuses with the forward values it needs (recomputed inline
in the gradient's kernel, see ``ex.explain``), caches like any graph, and can be differentiated again.

Conventions at kinks and ties follow JAX: ``abs`` has slope 1 at 0, ``relu`` slope 0 at 0, ties of
``maximum``/``minimum``/``clip`` and of the ``max``/``min`` reductions share the gradient equally, and
``where`` sends it to the branch taken. Broadcasting is undone by summing over the broadcast axes. A
buffer made by viewing another (slicing a NumPy array, transposing it) passes its gradient back through
the view's adjoint; slicing that drops elements scatters the gradient back into zeros of the base.

Variables follow JAX too: each argument differentiated is a fresh leaf of its own (``_variable``), so an
array passed twice, or passed and also captured by the function, gives each argument only its own uses'
gradient. While the function runs (``array.tracing``), a value it computes (a loss logged with float())
keeps its expression, for the gradient to walk back through.
"""

from __future__ import annotations

import ast
import functools
import operator

import numpy as np

from ..ir import dtypes, formulas, graph, opdefs, views
from ..api import functions, indexing
from ..api.functions import sum_to
from ..api.array import Array, apply, asarray, astype, converting, staging, tracing, tracing_depth
from ..api.elementwise import op_function
from ..ir.graph import BUFFER, SCALAR, VIEW, Node

# -- backward formulas ----------------------------------------------------------------------------


def _kept(reduction):
    """A reduction as backward formulas call it: ``sum(x, axis)`` keeps the reduced axes, to broadcast."""
    return lambda a, axis: reduction(a, axis=axis, keepdims=True)


def _matrix_transpose(a: Array) -> Array:
    """The last two axes swapped, read from ``a``'s buffer (graph.buffer_view): a library op's operand."""
    order = (*range(a.ndim - 2), a.ndim - 1, a.ndim - 2)
    return Array(graph.buffer_view(a._graph_node(), (("transpose", order),)))


_CALLS = {"broadcast_to": functions.broadcast_to, "sum": _kept(functions.sum), "prod": _kept(functions.prod),
          "sum_to": sum_to, "matrix_transpose": _matrix_transpose}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow, ast.BitAnd: operator.and_, ast.BitOr: operator.or_}
_COMPARE = {ast.Gt: "greater", ast.GtE: "greater_equal", ast.Lt: "less", ast.LtE: "less_equal",
            ast.Eq: "equal", ast.NotEq: "not_equal"}


@functools.cache
def _parse(formula: str) -> ast.expr | None:
    """The formula's syntax tree; None for ``zeros_like(...)`` (no gradient flows)."""
    tree = ast.parse(formula, mode="eval").body
    if isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == formulas.NO_GRADIENT:
        return None
    return tree


def _evaluate(tree: ast.expr, env: dict):
    """Interpret a formula over Arrays: only names, numbers, arithmetic, comparisons and calls of ops."""
    if isinstance(tree, ast.Constant) and isinstance(tree.value, (int, float)):
        return tree.value
    if isinstance(tree, ast.Name):
        return env[tree.id]
    if isinstance(tree, ast.BinOp) and type(tree.op) in _BINARY:
        return _BINARY[type(tree.op)](_evaluate(tree.left, env), _evaluate(tree.right, env))
    if isinstance(tree, ast.UnaryOp) and isinstance(tree.op, (ast.USub, ast.UAdd)):
        value = _evaluate(tree.operand, env)
        return -value if isinstance(tree.op, ast.USub) else value
    if isinstance(tree, ast.Compare) and len(tree.ops) == 1 and type(tree.ops[0]) in _COMPARE:
        return apply(_COMPARE[type(tree.ops[0])], _evaluate(tree.left, env), _evaluate(tree.comparators[0], env))
    if isinstance(tree, ast.Attribute) and tree.attr in ("shape", "dtype"):
        return getattr(_evaluate(tree.value, env), tree.attr)
    if isinstance(tree, ast.Call) and not tree.keywords:
        args = [_evaluate(a, env) for a in tree.args]
        if isinstance(tree.func, ast.Attribute) and tree.func.attr == "astype":
            return astype(_evaluate(tree.func.value, env), args[0])
        if isinstance(tree.func, ast.Name):
            name = tree.func.id
            if name in _CALLS:
                return _CALLS[name](*args)
            return op_function(name)(*args)
    raise ValueError(f"backward formula construct not allowed: {ast.dump(tree)[:80]}")


def _differentiable(node: Node) -> bool:
    return node.dtype in dtypes.FLOATS


# -- the backward walk ----------------------------------------------------------------------------


def _parents(node: Node) -> tuple[Node, ...]:
    """The nodes ``node``'s value comes from: its sources, for a viewed buffer the buffer it views, for a
    node with its own backward rule (``custom_vjp``, ``computed``) the inputs that rule differentiates."""
    if node.custom_vjp is not None:
        return tuple(node.custom_vjp[0])
    if node.op is BUFFER and node.view_of is not None:
        return (node.view_of[0],)
    return node.src


def _order(root: Node, stop: set[int]) -> list[Node]:
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        if id(node) not in stop:
            stack.extend((p, False) for p in _parents(node))
    return order


def _view_adjoint(g: Array, base_shape: tuple, steps: tuple) -> Array:
    """The gradient of a view, taken back to the array it views (steps undone in reverse)."""
    shapes = [base_shape]
    for step in steps:
        shapes.append(views.shape_after(shapes[-1], np.dtype(np.float64), (step,)))
    for (kind, arg), shape in zip(reversed(steps), reversed(shapes[:-1])):
        if kind == "reshape":
            g = functions.reshape(g, shape)
        elif kind == "transpose":
            g = functions.transpose(g, tuple(int(a) for a in np.argsort(arg)))
        elif kind == "flip":
            g = functions.flip(g, axis=arg)
        elif kind == "broadcast_to":
            g = sum_to(g, shape)
        else:
            g = _index_adjoint(g, shape, arg)
    return g


def _dropping_adjoint(g: Array, shape: tuple, parts: tuple) -> Array:
    """Adjoint of basic indexing that drops elements (ints, partial or strided slices): ``g`` put back in
    zeros of the base's shape where the view took its elements (indexing.scatter_add, itself
    differentiable). A None in the key adds an axis of one the view's gradient has and the base lacks."""
    kept = ("tuple", tuple(p for p in parts if p is not None))   # a getitem step's argument, without None
    if len(kept[1]) != len(parts):
        g = functions.reshape(g, views.shape_after(shape, np.dtype(np.float64), (("getitem", kept),)))
    key = views.key_of(kept)
    return indexing.scatter_add(g, shape, key + (Ellipsis,) * (Ellipsis not in key))


def _index_adjoint(g: Array, shape: tuple, key) -> Array:
    """Adjoint of basic indexing that keeps every element (None, ..., full slices, [::-1])."""
    parts = key[1] if isinstance(key, tuple) and key and key[0] == "tuple" else (key,)
    flips, axis = [], 0
    for part in parts:
        if part is None:
            continue
        if part is Ellipsis:
            axis += len(shape) - sum(1 for p in parts if p is not None and p is not Ellipsis)
            continue
        # A slice keeps every element when its range is the whole axis, however written (x[0:n] as x[:]).
        walk = range(*slice(*part[1:]).indices(shape[axis])) if isinstance(part, tuple) and part[0] == "slice" \
            else None
        if walk not in (range(shape[axis]), range(shape[axis] - 1, -1, -1)):   # ranges compare their elements
            return _dropping_adjoint(g, shape, parts)
        if walk.step < 0 and len(walk) > 1:
            flips.append(axis)
        axis += 1
    g = functions.reshape(g, tuple(n for n in shape))
    return functions.flip(g, axis=tuple(flips)) if flips else g


def _contributions(node: Node, g: Array, live: set[int]):
    """(input, gradient) pairs for node with incoming gradient g, for the inputs in ``live`` (those a
    variable's value flows into) and only those."""
    if node.custom_vjp is not None:
        inputs, backward = node.custom_vjp
        wanted = [id(i) in live for i in inputs]
        return [(i, c) for i, c, w in zip(inputs, backward(g, wanted), wanted) if w]
    if node.op is BUFFER:
        if node.view_of is None:
            return []
        base, steps = node.view_of
        return [(base, _view_adjoint(g, base.shape, steps))]
    if node.op is VIEW:
        return [(node.src[0], _view_adjoint(g, node.src[0].shape, node.arg))]
    op = opdefs.get(node.op)
    if op.vjp is None:
        return []
    env = {"g": g, "out": Array(node)}
    # A Python scalar operand stays a Python scalar: weakly typed, so float32 gradients stay float32. A
    # jitted function's scalar argument stays its node (weak too): its value is the next call's.
    env.update(zip(op.inputs, (s.arg if s.op is SCALAR and not s.argument else Array(s) for s in node.src)))
    env.update(zip(op.params, node.arg))
    pairs = []
    for source, formula in zip(node.src, op.vjp):
        tree = _parse(formula)
        if tree is None or source.op is SCALAR or id(source) not in live or not _differentiable(source):
            continue
        pairs.append((source, sum_to(_evaluate(tree, env), source.shape)))
    return pairs


def _backward(root: Node, cotangent: Array, wrt: list[Node]) -> list[Array]:
    targets = {id(w) for w in wrt}
    order = _order(root, targets)
    live = set(targets)   # the nodes a target's value flows into: no gradient is formed for the others
    for node in order:
        stops = node.op == "stop_gradient" and node.custom_vjp is None   # its value flows, its gradient not
        if not stops and any(id(p) in live for p in _parents(node)):
            live.add(id(node))
    gradients: dict[int, Array] = {id(root): cotangent}
    for node in reversed(order):
        g = gradients.get(id(node))
        if g is None or id(node) in targets or id(node) not in live or not _differentiable(node):
            continue
        del gradients[id(node)]
        for source, contribution in _contributions(node, g, live):
            previous = gradients.get(id(source))
            gradients[id(source)] = contribution if previous is None else previous + contribution
    results = []
    for w in wrt:
        g = gradients.get(id(w))
        zero = functions.broadcast_to(asarray(np.zeros((), w.dtype), device=w.device), w.shape)
        results.append(zero if g is None else astype(g, w.dtype))
    return results


# -- the user's API -------------------------------------------------------------------------------


def _variable(array: Array) -> Array:
    """A leaf of its own standing for an argument being differentiated: a fresh buffer node over the same
    memory (an unevaluated argument is computed first), so that an Array passed twice, or passed and also
    captured by ``f``, gives each argument only the gradient of its own uses, as in JAX. Views of it read
    the memory in place as views of any buffer do. Inside an outer ``grad`` it passes its gradient on to
    the node it stands for (as a view with no steps would), so that the outer one differentiates through
    it; outside, it holds nothing of that node's graph."""
    node = array._graph_node()
    leaf = graph.buffer(node.buffer if node.op is BUFFER else array._compute(node), node.device)
    if tracing_depth() or staging.depth:   # ex.jit follows it back to the argument it stands for
        leaf.annotate("view_of", (node, ()))
    return Array(leaf)


def _inputs(args, argnums: tuple[int, ...]) -> list[Array]:
    """The arguments as Arrays, those differentiated as variables of their own (``_variable``)."""
    arrays = [a if isinstance(a, Array) else asarray(a) for a in args]
    for i in argnums:
        if not 0 <= i < len(arrays):
            raise ValueError(f"argnums {i} is out of range for {len(arrays)} argument(s)")
        if arrays[i].dtype not in dtypes.FLOATS:
            raise TypeError(f"grad requires float inputs; argument {i} has dtype {arrays[i].dtype.name} "
                            f"(convert it with .astype('float32') to differentiate)")
    for i in set(argnums):
        arrays[i] = _variable(arrays[i])
    return arrays


def _traced(f, arrays: list[Array], variables: list[Node]) -> tuple[Array, Node]:
    """f's output as an Array, and the node the gradient starts from, taken while values f computed along
    the way still stand for their expressions (see ``tracing``): a loss f logged with float() is a buffer
    to every later use, but not to its gradient."""
    with tracing(variables):
        out = f(*arrays)
        out = out if isinstance(out, Array) else asarray(out)
        return out, out._graph_node()


def _argnums(argnums) -> tuple[tuple[int, ...], bool]:
    if isinstance(argnums, int):
        return (argnums,), True
    return tuple(argnums), False


def vjp(f, *primals):
    """(f(*primals), pullback): ``pullback(cotangent)`` gives the gradient for every primal."""
    arrays = _inputs(primals, tuple(range(len(primals))))
    nodes = [a._graph_node() for a in arrays]
    out, root = _traced(f, arrays, nodes)

    def pullback(cotangent):
        cotangent = cotangent if isinstance(cotangent, Array) else asarray(cotangent)
        if cotangent.shape != out.shape:
            raise ValueError(f"the cotangent has shape {cotangent.shape}, the output {out.shape}")
        return tuple(_backward(root, astype(cotangent, out.dtype), nodes))

    return out, pullback


def value_and_grad(f, argnums=0):
    """A function returning (f(*args), gradient of f's scalar output with respect to args[argnums])."""
    argnums, single = _argnums(argnums)

    def wrapped(*args):
        arrays = _inputs(args, argnums)
        variables = [arrays[i]._graph_node() for i in argnums]
        out, root = _traced(f, arrays, variables)
        if out.size != 1:
            raise ValueError(f"grad needs a function with a scalar output; it returned shape {out.shape}")
        if out.dtype not in dtypes.FLOATS:
            raise TypeError(f"grad needs a float output; it returned {out.dtype.name}")
        ones = functions.broadcast_to(asarray(np.ones((), out.dtype), device=out.device), out.shape)
        grads = _backward(root, ones, variables)
        return out, grads[0] if single else tuple(grads)

    return wrapped


def grad(f, argnums=0):
    """The gradient of scalar-valued ``f`` with respect to argument(s) ``argnums``, as lazy Arrays."""
    both = value_and_grad(f, argnums)
    return lambda *args: both(*args)[1]


def stop_gradient(x) -> Array:
    """``x``'s value, through which no gradient flows."""
    return apply("stop_gradient", x)


class custom_vjp:  # noqa: N801 - JAX's name
    """A function with a hand-written backward pass, as in JAX::

        @ex.custom_vjp
        def f(x): ...
        def f_fwd(x): return f(x), residuals
        def f_bwd(residuals, g): return (gradient for x,)
        f.defvjp(f_fwd, f_bwd)
    """

    def __init__(self, function):
        self.function = function
        self.forward = self.backward = None
        functools.update_wrapper(self, function)

    def defvjp(self, forward, backward) -> None:
        self.forward, self.backward = forward, backward

    def __call__(self, *args):
        if self.forward is None:
            raise TypeError(f"{self.function.__name__}: call defvjp(fwd, bwd) before using it")
        arrays = [a if isinstance(a, Array) else asarray(a) for a in args]
        with converting():   # the backward, not the graph, differentiates the forward: NumPy may compute it
            out, residuals = self.forward(*arrays)
        out = out if isinstance(out, Array) else asarray(out)
        # A node of its own (the custom rule replaces the graph's): a hash-consed stop_gradient(out) would be
        # the node of the user's own stop_gradient(out), or of another custom function with the same forward.
        marked = Array(graph.distinct("stop_gradient", out._graph_node()))
        marked._graph_node().annotate("custom_vjp", (
            [a._graph_node() for a in arrays],
            lambda g, wanted: [x if isinstance(x, Array) else asarray(x) for x in self.backward(residuals, g)]))
        return marked
