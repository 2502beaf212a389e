"""The expression graph: immutable, hash-consed nodes.

A ``Node`` is ``(op, src, arg, dtype, shape)``. Building the same node twice returns the same object, so
common subexpressions merge as they are written and node identity is structural equality (but for
``distinct`` nodes, which carry a backward rule of their own). Leaves are
``BUFFER`` (a NumPy array read in place, never copied), ``SCALAR`` (a weakly typed Python scalar,
passed to kernels as an argument so that changing it never recompiles) and ``INDEX`` (an int64 array
without memory whose elements are their own offsets, from which ``creation`` builds arange, eye, ...).
Every other op is an entry of the registry in ``opdefs``; its dtype comes from NumPy's rules and its
shape from broadcasting.

``structure_key`` is what the plan cache keys on: the graph with scalar values abstracted away.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
import weakref
from collections.abc import Callable, Container

import numpy as np

from . import dtypes, opdefs, views

BUFFER = "buffer"
SCALAR = "scalar"
VIEW = "view"       # arg: a tuple of view steps (views.py) over a source that is not pushed through
# arg: (strides, offset). Element i of an index leaf is offset + sum(i_d * strides_d): the offset a
# strided int64 array would read, with nothing to read. Views move its layout as they move a buffer's; a
# kernel computes the value where it would load one (render._load), so an iota costs no memory.
INDEX = "index"
LEAVES = frozenset({BUFFER, SCALAR, INDEX})


@functools.cache
def reductions() -> frozenset[str]:
    """The reduction ops (kind "reduce"); user ops are never reductions, so the set never changes."""
    return frozenset(op.name for op in opdefs.canonical_ops(builtin_only=True) if op.is_reduction)


@functools.cache
def library_ops() -> frozenset[str]:
    """The ops a library call computes (kind "library"), each its own step with its result in a buffer."""
    return frozenset(op.name for op in opdefs.canonical_ops(builtin_only=True) if op.is_library)

_buffer_ids = itertools.count()
_table: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


CPU = "cpu"


class DeviceMismatch(ValueError):
    """An expression over arrays on different devices: exprgen never moves data between them silently."""


ANNOTATIONS = ("view_of", "custom_vjp", "reduces", "pointer", "ways")


class Node:
    """One op over its sources. What the node computes (op, src, arg, dtype, shape, and a leaf's buffer)
    is fixed when it is made; the annotations after it are facts learnt about it later, each set through
    ``annotate`` by the stage that learns it. An annotation not learnt reads as its class default, None:
    the few that are set go to the node's ``__dict__``, made on the first, so making a node (on every
    operator call) writes none of them."""
    __slots__ = ("op", "src", "arg", "dtype", "shape", "buffer", "address", "__dict__", "__weakref__")

    op: str
    src: tuple[Node, ...]
    arg: object
    dtype: np.dtype
    shape: tuple[int, ...]
    buffer: np.ndarray | None
    address: int
    # A buffer that views another node's value: (that node, the view steps), for gradients to flow back.
    view_of: tuple[Node, tuple] | None = None
    # A node with a backward rule of its own: (the inputs it differentiates, (g, wanted) -> their gradients,
    # ``wanted[i]`` saying whether input i's is asked for: a rule may skip the others, giving None).
    custom_vjp: tuple[list[Node], Callable] | None = None
    # Does its value depend on a reduction? None until asked.
    reduces: bool | None = None
    # A leaf's memory as the CPU backend passes it to kernels, made once.
    pointer: object = None
    # How the runtime evaluates this node as a root, by the options it was evaluated under.
    ways: dict | None = None
    # A computed node over weak scalars only (a jitted function's ``lr * 2``): weak like them, its Python
    # type (float, int, bool), as Python's own arithmetic on the scalars would be. Set when it is made.
    weak_type: type | None = None
    # A Python scalar standing for a jitted function's argument (``argument_scalar``): its value changes.
    argument: bool = False
    # Where its value lives: its buffer leaves' device ("cpu", "cuda:0"), set when it is made.
    device: str = CPU
    # Reads no memory (Python scalars, index leaves, nodes over them alone): it goes with any device.
    anywhere: bool = False

    def __setattr__(self, name, value):
        raise AttributeError("graph nodes are immutable; annotations are set with annotate()")

    def annotate(self, name: str, value) -> None:
        if name not in ANNOTATIONS:
            raise AttributeError(f"{name!r} is not a node annotation (one of {ANNOTATIONS})")
        _set(self, name, value)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def weak(self) -> bool:
        """A Python scalar, or computed from them alone: its dtype yields to the arrays it meets."""
        return self.op is SCALAR or self.weak_type is not None

    def signature_item(self):
        """What the dtype rules see: a dtype, or the Python type of a weak scalar."""
        return type(self.arg) if self.op is SCALAR else self.weak_type or self.dtype

    def __repr__(self) -> str:
        return expression_text(self, _repr_parts, REPR_CHARS)


# A graph may be deep, or share a subexpression so often that writing it out in full never ends (x = x * x
# sixty times): a node's repr stops here.
REPR_CHARS = 1000


def _repr_parts(node: Node) -> tuple[str, tuple[Node, ...], str]:
    if node.op is BUFFER:
        return f"buffer#{node.arg}<{node.dtype.name}{list(node.shape)}>", (), ""
    if node.op is SCALAR:
        return repr(node.arg), (), ""
    if node.op is INDEX:
        return f"index<{list(node.shape)}, strides {list(node.arg[0])}, offset {node.arg[1]}>", (), ""
    if node.op is VIEW:
        return "view(", node.src, f" -> {list(node.shape)})"
    return f"{node.op}(", node.src, "".join(f", {p}" for p in node.arg) + ")"


def expression_text(root: Node, parts, budget: int) -> str:
    """``root`` written out as nested calls, each shared subexpression where it occurs. ``parts(node)`` is
    (opening, sources, closing): a node is its opening, its sources' texts between commas, then its closing
    (a leaf: its text, (), ""). Once the text passes ``budget`` characters every node still to come is
    "...", and a text longer than ``budget`` + 3 is cut to ``budget`` characters and "...". Iterative: a
    graph may be any depth."""
    out, size, stack = [], 0, [root]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            piece = item
        elif size > budget:
            piece = "..."
        else:
            piece, src, closing = parts(item)
            stack.append(closing)
            for k in range(len(src) - 1, -1, -1):   # pushed last first: popped in order, between commas
                stack.append(src[k])
                if k:
                    stack.append(", ")
        out.append(piece)
        size += len(piece)
    text = "".join(out)
    return text if len(text) <= budget + 3 else text[:budget] + "..."


_set = object.__setattr__


def _make(op: str, src: tuple, arg, dtype: np.dtype, shape: tuple, hash_arg) -> Node:
    # The op, its sources and ``hash_arg`` determine the dtype and shape, so they are left out of the key:
    # ``apply`` finds a node it made before without typing it again. Nodes hash and compare by identity, and
    # the key keeps its sources alive no longer than the node itself does (its ``src``).
    key = (op, src, hash_arg)
    existing = _table.get(key)
    if existing is not None:
        return existing
    placed = None   # the device of the sources that read memory; None while only scalars and indices met
    for s in src:
        if not s.anywhere:
            if placed is None:
                placed = s.device
            elif s.device != placed:
                raise DeviceMismatch(f"{op} over arrays on {placed} and on {s.device}: exprgen does not move "
                                     f"data between devices by itself; move one first (x.to_device(...))")
    node = object.__new__(Node)
    _set(node, "op", op)
    _set(node, "src", src)
    _set(node, "arg", arg)
    _set(node, "dtype", dtype)
    _set(node, "shape", shape)
    _set(node, "buffer", None)
    _set(node, "address", 0)
    if placed is None:
        _set(node, "anywhere", True)
    elif placed is not CPU:
        _set(node, "device", placed)
    _table[key] = node
    return node


def buffer(array: np.ndarray, device: str = CPU) -> Node:
    """A leaf reading ``array`` in place, memory of ``device`` (host memory, for CUDA host execution; None:
    a constant that goes with any device, as a Python scalar does). Each call makes a distinct leaf: arrays
    are not hashable, so no other call can look it up, and it stays out of the hash-consing table (made on
    every asarray: a fresh input each call is the common case)."""
    # A NumPy scalar's __array_interface__ points into a temporary copy, freed before a kernel runs.
    array = np.asarray(array)
    if array.dtype not in dtypes.SUPPORTED:
        dtypes.check_supported(array.dtype)
    node = object.__new__(Node)
    _set(node, "op", BUFFER)
    _set(node, "src", ())
    _set(node, "arg", next(_buffer_ids))
    _set(node, "dtype", array.dtype)
    _set(node, "shape", array.shape)
    _set(node, "buffer", array)
    _set(node, "address", 0)   # a buffer's memory is its array's: the runtime asks the array (cheaper once)
    if device is None:
        _set(node, "anywhere", True)
    elif device != CPU:
        _set(node, "device", device)
    return node


def distinct(name: str, *src: Node) -> Node:
    """A node of op ``name`` over ``src`` that is never merged with an equal one (hash-consing would hand
    its identity, and whatever annotations it carries, to every equal expression): for a node that carries a
    backward rule of its own (custom_vjp). Its op, params and sources are ordinary, so plans and kernels
    are shared as usual, and rewriting rebuilds it as an ordinary node."""
    op, dtype, shape, _, _ = _type_and_shape(name, src, ())
    return _make(op.name, src, (), dtype, shape, ("distinct", next(_buffer_ids)))


def scalar(value) -> Node:
    """A weakly typed Python scalar (bool, int or float)."""
    kind = dtypes.python_scalar_kind(value)
    if kind is None:
        raise TypeError(f"expected a Python bool, int or float, got {type(value).__name__}")
    if kind is int and not -2**63 <= value < 2**63:
        raise OverflowError(f"Python integer {value} does not fit in int64; pass it as a float")
    # repr keeps 0.0 and -0.0 (equal under ==) apart; NaN compares unequal to itself but not by repr.
    return _make(SCALAR, (), value, dtypes.WEAK_DEFAULT[kind], (), (kind, repr(value)))


def constant(value) -> Node:
    """A Python scalar a rewrite rule made (``x/4 -> x*0.25``): never the same node as a user's equal scalar,
    which is a leaf, so a plan holds the rule's value fixed while the user's changes from call to call
    (``x / 4.0 + y * 0.25`` and then ``x / 4.0 + y * 0.5`` share a plan: its 0.25 must stay)."""
    node = scalar(value)
    return _make(SCALAR, (), value, node.dtype, (), ("constant",) + (type(value), repr(value)))


def argument_scalar(value) -> Node:
    """A weakly typed Python scalar standing for a jitted function's argument: a leaf of its own, never the
    node of an equal constant (replaying with another value must not change the constant)."""
    node = scalar(value)
    node = _make(SCALAR, (), value, node.dtype, (), ("argument", next(_buffer_ids)))
    _set(node, "argument", True)
    return node


def index(shape: tuple[int, ...], strides: tuple[int, ...] | None = None, offset: int = 0) -> Node:
    """An index leaf (see INDEX): C-contiguous by default, so its values are 0, 1, 2, ... in C order.
    Its ``address`` is its offset: kernels receive an index leaf's offset where a buffer's data pointer goes."""
    shape = tuple(shape)
    arg = (views.contiguous_strides(shape) if strides is None else tuple(strides), offset)
    node = _make(INDEX, (), arg, dtypes.INT64, shape, (arg, shape))
    object.__setattr__(node, "address", offset)
    return node


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    ndim = max((len(s) for s in shapes), default=0)
    result = []
    for axis in range(-ndim, 0):
        sizes = {s[axis] for s in shapes if len(s) >= -axis} - {1}
        if len(sizes) > 1:
            shown = " and ".join(str(tuple(s)) for s in shapes)
            raise ValueError(f"cannot broadcast shapes {shown}")
        result.append(sizes.pop() if sizes else 1)
    return tuple(result)


def contracted_shape(name: str, a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of (..., M, K) contracted with (..., K, N): the batch axes broadcast, then (M, N)."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"{name} takes stacks of matrices (two dimensions at least), got shapes {a} and {b}")
    if a[-1] != b[-2]:
        raise ValueError(f"{name}: shapes {a} and {b} do not match in the contracted axis ({a[-1]} != {b[-2]})")
    return broadcast_shapes(a[:-2], b[:-2]) + (a[-2], b[-1])


def _fit_scalars(op: opdefs.OpDef, src: tuple[Node, ...], compute: tuple[np.dtype, ...]) -> tuple[Node, ...]:
    """NumPy refuses a Python int that does not fit the integer dtype it meets, except in a comparison,
    which it answers exactly: there the int becomes a strong int64 (a float64 past int64's range)."""
    fitted = list(src)
    comparison = set(op.cast) == {"common"} and op.arity >= 2
    for i, (node, dtype) in enumerate(zip(src, compute)):
        if node.weak_type is int and dtype in dtypes.INTEGERS and comparison and dtype != dtypes.INT64:
            # A jitted function's int arithmetic, whose value is the next call's: compared exactly, at any value.
            fitted[i] = apply("astype", node, params=("int64",))
        elif node.op is SCALAR and type(node.arg) is int and dtype in dtypes.INTEGERS:
            info = np.iinfo(dtype)
            if info.min <= node.arg <= info.max:
                continue
            if not comparison:
                raise OverflowError(f"Python integer {node.arg} out of bounds for {dtype.name} in {op.name}")
            wide = np.int64 if -2**63 <= node.arg < 2**63 else np.float64
            # A jitted function's argument stays one (converted in the kernel): its value is the next call's.
            fitted[i] = (apply("astype", node, params=("int64",)) if node.argument
                         else buffer(np.asarray(node.arg, wide), device=None))
    return tuple(fitted)


_typed: dict[tuple, tuple] = {}


def _type_and_shape(name: str, src: tuple[Node, ...], params: tuple):
    """(op, dtype, shape, compute dtypes, any scalar input?) for ``name`` over inputs like ``src``; memoised,
    as it is on every op a user writes and depends only on the op, the input dtypes and shapes, and the params."""
    key = (name, params, *[(n.op is SCALAR, n.signature_item(), n.shape) for n in src])
    known = _typed.get(key)
    if known is None:
        op = opdefs.get(name)
        if op.is_reduction:
            raise TypeError(f"{op.name} is a reduction: use ex.{op.name}(x, axis=...)")
        if len(src) != op.arity:
            raise TypeError(f"{op.name} takes {op.arity} array arguments, got {len(src)}")
        signature = tuple(node.signature_item() for node in src)
        shapes = [node.shape for node in src]
        known = (op, op.result_dtype(signature, params),
                 contracted_shape(op.name, *shapes) if op.shape == "contract" else broadcast_shapes(*shapes),
                 op.compute_dtypes(signature, params), any(node.weak for node in src))
        if len(_typed) > 65536:
            _typed.clear()
        _typed[key] = known
    return known


def apply(name: str, *src: Node, params: tuple = ()) -> Node:
    """The node for op ``name`` over ``src``: dtype by NumPy's rules, shape by broadcasting."""
    existing = _table.get((name, src, params))
    if existing is not None:   # made before from these very nodes: typed, checked and fitted then
        return existing
    op, dtype, shape, compute, scalars = _type_and_shape(name, src, params)
    if op.is_library and any(s.op is INDEX for s in src):
        # A library reads memory: an index leaf (arange, eye) has none, so it is computed into a buffer.
        return apply(name, *(apply("astype", s, params=(s.dtype.name,)) if s.op is INDEX else s for s in src),
                     params=params)
    if scalars:
        fitted = _fit_scalars(op, src, compute)
        if fitted != src:
            return apply(name, *fitted, params=params)
    node = _make(op.name, src, params, dtype, shape, params)
    if src and all(s.weak for s in src) and op.name != "astype" and dtype in _WEAK_TYPES:
        _set(node, "weak_type", _WEAK_TYPES[dtype])
    return node


# The dtype of a computation over Python scalars alone, and the Python type it stands for.
_WEAK_TYPES = {dtypes.FLOAT64: float, dtypes.INT64: int, dtypes.BOOL: bool}


def normalize_axes(axis, ndim: int) -> tuple[int, ...]:
    """NumPy's axis argument (None, int, negative, tuple) as sorted non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    result = []
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
            raise TypeError(f"axis must be an integer or a tuple of integers, not {type(a).__name__}")
        if not -ndim <= a < ndim:
            raise np.exceptions.AxisError(int(a), ndim)
        result.append(int(a) % ndim)
    if len(set(result)) != len(result):
        raise ValueError(f"duplicate value in axis {axis}")
    return tuple(sorted(result))


def reduce(name: str, src: Node, axes: tuple[int, ...]) -> Node:
    """Reduction ``name`` of ``src`` over ``axes`` (normalised), with the reduced axes kept as size 1."""
    op = opdefs.get(name)
    dtype = op.result_dtype((src.signature_item(),), (axes,))
    shape = tuple(1 if d in axes else n for d, n in enumerate(src.shape))
    reduced = math.prod(src.shape[d] for d in axes)
    if reduced == 0 and op.empty == "error":   # NumPy raises even when the result would be empty
        raise ValueError(f"zero-size array to reduction operation {op.name} which has no identity")
    return _make(op.name, (src,), (axes,), dtype, shape, (axes,))


def view(src: Node, steps: tuple) -> Node:
    """``src`` seen through view ``steps``: a NumPy view of a buffer, pushed through elementwise ops to
    their inputs (a view of a view is one index map in the kernel that reads it), else a VIEW node."""
    shape = views.shape_after(src.shape, src.dtype, steps)
    if src.op is SCALAR:   # a jitted function's scalar argument seen as an array (broadcast_to): its 0-d value
        return buffer_view(apply("astype", src, params=(src.dtype.name,)), tuple(steps))
    return _view(src, tuple(steps), shape, {})


def _view(src: Node, steps: tuple, shape: tuple, memo: dict) -> Node:
    """``src`` seen through ``steps`` (of result ``shape``), ``memo`` holding the views made so far by
    (id(node), steps). Iterative, as an elementwise chain a view is pushed through may be any depth: a
    node's view is made once the views it is built from (``_view_parts``) are in ``memo``."""
    stack = [(src, steps)]
    while stack:
        node, at = stack[-1]
        if (id(node), at) in memo:
            stack.pop()
            continue
        parts = _view_parts(node, at)
        pending = [part for part in parts if (id(part[0]), part[1]) not in memo]
        if pending:
            stack.extend(reversed(pending))
            continue
        stack.pop()
        memo[(id(node), at)] = _view_node(node, at, shape, memo, [memo[(id(n), s)] for n, s in parts])
    return memo[(id(src), steps)]


def _pushed_through(node: Node) -> bool:
    """Is a view of ``node`` made by viewing its inputs? Not of a reduction's or a library call's result,
    which is read from its buffer through the view's strides, nor of a node with a backward rule of its own (custom_vjp), which
    its gradient must reach through the view (at the cost of a kernel boundary: the custom function's output
    is materialised, then viewed)."""
    return (node.op not in LEAVES and node.op is not VIEW and node.op not in reductions()
            and node.op not in library_ops() and not _reduces(node) and node.custom_vjp is None
            and any(s.op is not SCALAR for s in node.src))   # over scalars alone: no input carries the shape


def buffer_view(src: Node, steps: tuple) -> Node:
    """``src`` seen through ``steps`` as a view of its own buffer: an elementwise ``src`` is computed into
    memory and read through the view, where ``view`` would push the steps to its inputs. For an operand a
    library call reads from memory anyway: a gradient's ``matrix_transpose(x) @ g`` reads the buffer
    the forward ``x @ w`` read, transposed (BLAS takes the flag), instead of a second pass computing x
    again in transposed order. Any other ``src`` gets ``view``'s view."""
    if not _pushed_through(src):
        return view(src, steps)
    shape = views.shape_after(src.shape, src.dtype, steps)
    if views.layout_after(src.shape, steps) is None:
        return view(src, steps)   # no strides express it: view() copies
    return _make(VIEW, (src,), tuple(steps), src.dtype, shape, tuple(steps))


def _view_parts(node: Node, steps: tuple) -> list[tuple[Node, tuple]]:
    """(node, steps): the views that ``node`` seen through ``steps`` is built from."""
    if node.op is VIEW:
        return [(node.src[0], node.arg + steps)]
    if not _pushed_through(node):
        return []
    widen = (("broadcast_to", node.shape),)   # each input first broadcast to the op's shape
    return [(s, (widen if s.shape != node.shape else ()) + steps) for s in node.src if s.op is not SCALAR]


def _view_node(src: Node, steps: tuple, shape: tuple, memo: dict, parts: list[Node]) -> Node:
    """``src`` seen through ``steps``, given the views it is built from (``_view_parts``)."""
    if src.op is SCALAR:
        return src
    if src.op is INDEX:
        return _view_index(src, steps)
    if src.op is BUFFER:
        result = buffer(views.apply(src.buffer, steps), None if src.anywhere else src.device)
        result.annotate("view_of", (src, steps))   # where its values come from, for gradients
        return result
    if src.op is VIEW:
        return parts[0]
    if _pushed_through(src):   # elementwise: the op over its viewed inputs
        viewed = iter(parts)
        return apply(src.op, *(s if s.op is SCALAR else next(viewed) for s in src.src), params=src.arg)
    layout = views.layout_after(src.shape, steps)
    if layout is not None and views.is_identity(src.shape, layout):
        return src   # the steps only take apart and put back size-1 axes
    if layout is not None:
        return _make(VIEW, (src,), steps, src.dtype, shape, steps)
    # A reshape no strides can express (as in NumPy, it copies): the view so far is copied into a
    # contiguous buffer, and the remaining steps view that copy.
    cut = next(k for k in range(len(steps), 0, -1) if views.layout_after(src.shape, steps[:k - 1]))
    done = steps[:cut - 1]
    before = views.shape_after(src.shape, src.dtype, done)
    copy = apply("astype", _view(src, done, before, memo) if done else src, params=(src.dtype.name,))
    return _view(copy, steps[cut - 1:], shape, memo)


def _view_index(src: Node, steps: tuple) -> Node:
    """An index leaf seen through ``steps``: another index leaf, moved as NumPy moves a strided array.
    A reshape that no strides express (NumPy would copy) becomes arithmetic on the flat position in the
    new shape, unravelled over the old shape's dims: still lazy, still without memory."""
    strides, offset = src.arg
    layout = views.layout_after(src.shape, steps, strides)
    if layout is not None:
        shape, strides, moved = layout
        return index(shape, strides, offset + moved)
    cut = next(k for k in range(len(steps), 0, -1) if views.layout_after(src.shape, steps[:k - 1], strides))
    before = _view_index(src, steps[:cut - 1])
    position = index(views.shape_after(before.shape, before.dtype, steps[cut - 1:cut]))
    terms = [apply("multiply", apply("remainder", apply("floor_divide", position, scalar(step)), scalar(size)),
                   scalar(stride))
             for size, stride, step in zip(before.shape, before.arg[0], views.contiguous_strides(before.shape))
             if size > 1]   # two at least: a reshape of fewer non-trivial dims is always a view
    value = apply("add", functools.reduce(functools.partial(apply, "add"), terms), scalar(before.arg[1]))
    rest = steps[cut:]
    return view(value, rest) if rest else value


def _reduces(node: Node) -> bool:
    """Does ``node``'s value depend on a reduction? (Remembered on each node.)"""
    stack = [node]
    while stack:
        n = stack[-1]
        if n.reduces is not None:
            stack.pop()
            continue
        pending = [s for s in n.src if s.reduces is None]
        if pending:
            stack.extend(pending)
            continue
        n.annotate("reduces", n.op in reductions() or any(s.reduces for s in n.src))
        stack.pop()
    return node.reduces


def reachable(roots, parents: Callable[[Node], tuple] = operator.attrgetter("src")):
    """Every node reachable from ``roots`` through ``parents`` (default: the sources), each once, depth
    first, as a generator: for a walk that may stop at the first node it is looking for."""
    stack, seen = list(roots), set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        stack.extend(parents(node))


def toposort(roots, done: Container[int] = frozenset()) -> list[Node]:
    """Every node reachable from ``roots``, each after its sources, in a deterministic order; nodes
    whose ids are in ``done`` (and what lies behind them) are left out."""
    order, seen = [], set()
    for root in roots:
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in seen or id(node) in done:
                continue
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((s, False) for s in reversed(node.src) if id(s) not in seen and id(s) not in done)
    return order


def rebuild(node: Node, src: tuple[Node, ...]) -> Node:
    """``node``'s op over new sources (same kind of node: elementwise, reduction or view)."""
    if src == node.src:
        return node
    if node.op is VIEW:   # a VIEW over an elementwise node is a buffer_view: view() would push it through
        return (buffer_view if _pushed_through(node.src[0]) else view)(src[0], node.arg)
    if node.op in reductions():
        return reduce(node.op, src[0], node.arg[0])
    return apply(node.op, *src, params=node.arg)


def substitute(root: Node, replace: dict[int, Node]) -> Node:
    """``root`` rebuilt with the nodes whose ids are in ``replace`` swapped for their replacements."""
    new: dict[int, Node] = {}
    for node in toposort([root]):
        if id(node) in replace:
            new[id(node)] = replace[id(node)]
        elif node.op in LEAVES:
            new[id(node)] = node
        else:
            new[id(node)] = rebuild(node, tuple(new[id(s)] for s in node.src))
    return new[id(root)]


def leaf_entry(node: Node) -> tuple:
    """A leaf as the plan cache sees it: buffers by layout, scalars by type only (values are arguments)."""
    if node.op is BUFFER:
        array = node.buffer
        return (BUFFER, array.dtype.str, array.shape, array.strides)
    if node.op is INDEX:   # the offset is not structure: kernels receive it as an argument (its address)
        return (INDEX, node.shape, node.arg[0])
    return (SCALAR, type(node.arg).__name__)


def structure_key(roots: tuple[Node, ...]) -> tuple[tuple, list[Node]]:
    """(key, leaves): the graph's structure with leaves numbered in order of first appearance.

    Two graphs with equal keys differ only in which buffers and scalar values they hold, so they share
    one compiled plan; ``leaves`` says which concrete leaf fills each slot.
    """
    order = toposort(roots)
    index = {id(node): i for i, node in enumerate(order)}
    leaves, entries = [], []
    for node in order:
        if node.op in LEAVES:
            leaves.append(node)
            entries.append(leaf_entry(node))
        else:
            entries.append((node.op, node.arg, node.dtype.str, tuple(index[id(s)] for s in node.src)))
    return (tuple(entries), tuple(index[id(r)] for r in roots)), leaves
