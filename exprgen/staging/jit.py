"""``ex.jit``: trace a function once into one graph, then replay its bound plan (MXNet's hybridize).

The first call with a new *signature* (the pytree structure of the arguments, each array's dtype, shape and
strides, each Python scalar's type, the static arguments' values) runs ``fn`` over Arrays standing for the
arguments. exprgen is lazy, so that call builds the whole computation as one graph (autodiff inside it
included: the backward pass is more graph), which is planned once: rewritten, cut into kernels and library
calls, compiled. The plan is kept with which of its leaves each argument fills. A later call with the same
signature builds no graph and plans nothing: it binds the new arrays' memory and scalar values into the
plan's registers and runs its steps.

- Python scalars are runtime arguments: a new learning rate replays the same plan. A scalar whose value a
  rewrite rule read (``x * 1 -> x``) keys the plan by that value, as the plan cache does.
- Static arguments (``static_argnums``, ``static_argnames``) are passed to ``fn`` as they are and key the
  trace by value (they must be hashable): what ``fn`` branches on in Python.
- Inside the trace no value exists: ``float()``, ``bool()``, ``.numpy()``, ``np.asarray`` of anything
  computed from the arguments raise ``TraceError`` naming what to do, never a silently frozen value.
- Called inside a gradient (``ex.grad(ex.jit(f))``) or inside another trace, a jitted function is ``fn``
  itself, so the outer transformation sees its graph.
- Pytrees: tuples, lists and dicts of arrays and scalars, in and out (None passes through).
- ``ex.stats()["jit"]`` counts traces and replays; a function traced more than ``RETRACE_WARNING`` times
  warns once, naming the argument whose signature changed.

Only the roots' values are computed on a replay: an intermediate the function made is not kept (as in
JAX). Arrays captured by the function (a closure's data) are read in place on every call, so writing into
a captured NumPy array between calls is seen, as it is by any lazy expression over it.
"""

from __future__ import annotations

import functools
import inspect
import threading
import warnings

import numpy as np

from .. import counters
from ..api.array import Array, asarray, check_device, staging, tracing_depth
from ..errors import CompilerMissing
from ..ir import dtypes, graph, interpret, opdefs, views
from ..ir.graph import SCALAR, Node
from ..runtime import realize

# Past this many traces of one function a warning names the argument that keeps changing.
RETRACE_WARNING = 8
# Plans kept per signature for scalar values a rewrite read (x * c with c == 1 is x): newest first.
PLANS_PER_SIGNATURE = 8

_ARRAY, _SCALAR, _STATIC = "array", "scalar", "static"
_PYTHON_SCALARS = (bool, int, float)
# What a jitted function may return besides arrays and containers: constants, the same on every call.
_CONSTANTS = (type(None), bool, int, float, complex, str, bytes)


def _is_namedtuple(kind) -> bool:
    return issubclass(kind, tuple) and hasattr(kind, "_fields")


def _flatten(tree, leaves: list, where: str):
    """The structure of ``tree`` (the key part), its arrays and Python scalars appended to ``leaves`` as
    values. Arrays are NumPy arrays in native byte order (an exprgen Array computed first); ``where`` names
    the argument in an error."""
    kind = type(tree)
    if kind is np.ndarray:
        if not tree.dtype.isnative:   # as asarray does: kernels read native numbers
            tree = tree.astype(tree.dtype.newbyteorder("="))
        leaves.append(tree)
        return (_ARRAY, tree.dtype, tree.shape, tree.strides)
    if kind in _PYTHON_SCALARS:
        leaves.append(tree)
        return (_SCALAR, kind)
    if kind is Array:
        if tree.device != "cpu":   # its values would be copied out and the function computed on the CPU
            raise NotImplementedError(f"ex.jit takes arrays on the CPU only so far; {where} is on {tree.device} "
                                      f"(call the function without ex.jit)")
        return _flatten(tree.numpy(), leaves, where)
    if isinstance(tree, np.generic):
        return _flatten(np.asarray(tree), leaves, where)
    if kind in (tuple, list) or _is_namedtuple(kind):
        return (kind, tuple(_flatten(t, leaves, f"{where}[{i}]") for i, t in enumerate(tree)))
    if kind is dict:
        return (dict, tuple((k, _flatten(v, leaves, f"{where}[{k!r}]")) for k, v in tree.items()))
    if tree is None:
        return None
    raise TypeError(f"ex.jit: argument {where} is a {kind.__name__}; jitted functions take arrays, Python scalars "
                    f"and tuples, lists and dicts of them (mark anything else static: static_argnames)")


def _rebuild(structure, values):
    """The pytree of ``structure`` with its leaves taken in order from the iterator ``values`` (a constant
    part of a result as it was)."""
    if structure is None:
        return None
    kind = structure[0]
    if kind in (_ARRAY, _SCALAR):
        return next(values)
    if kind == _STATIC:
        return structure[1]
    if kind is dict:
        return {k: _rebuild(s, values) for k, s in structure[1]}
    items = [_rebuild(s, values) for s in structure[1]]
    return kind(*items) if _is_namedtuple(kind) else kind(items)


def _output_leaves(tree, found: list, where: str = "the result"):
    """The structure of ``fn``'s result, its Arrays appended to ``found``; a constant (None, a number, a
    string) is returned as it is on every replay."""
    kind = type(tree)
    if kind is Array:
        found.append(tree)
        return (_ARRAY,)
    if isinstance(tree, np.ndarray):
        found.append(asarray(tree))
        return (_ARRAY,)
    if kind in (tuple, list) or _is_namedtuple(kind):
        return (kind, tuple(_output_leaves(t, found, f"{where}[{i}]") for i, t in enumerate(tree)))
    if kind is dict:
        return (dict, tuple((k, _output_leaves(v, found, f"{where}[{k!r}]")) for k, v in tree.items()))
    if kind in _CONSTANTS:
        return (_STATIC, tree)
    raise TypeError(f"ex.jit: {where} is a {kind.__name__}; a jitted function returns arrays, constants, and "
                    f"tuples (named too), lists and dicts of them")


class _Entry:
    """One traced signature: its bound plan, what fills each argument's leaf slots, the output structure."""

    __slots__ = ("launch", "arrays", "scalars", "derived", "sensitive", "bounds", "checked", "output")

    def __init__(self, launch, arrays, scalars, derived, sensitive, bounds, output):
        self.launch = launch          # realize's bound plan (its argument registers emptied)
        self.arrays = arrays          # (slot, index of the flat argument) for arrays read in place
        self.scalars = scalars        # (slot, index) for Python scalars
        self.derived = derived        # (slot, index, view steps): views of an argument (x.T, x[1:])
        self.sensitive = sensitive    # (index, value key): scalars whose values the plan depends on
        self.bounds = bounds          # (index, low, high): an int argument must fit the integers it meets
        self.checked = bool(sensitive or bounds)
        self.output = output

    def holds_for(self, flat: list) -> bool:
        return (all(realize.value_key(flat[i]) == v for i, v in self.sensitive)
                and all(low <= flat[i] <= high for i, low, high in self.bounds))


def _source(leaf: Node, arguments: dict[int, int]):
    """(argument index, view steps) for a leaf whose memory is an argument's or a view of it, else None
    (captured data): an argument's own leaf, or a buffer made from one (``view_of`` followed back: a
    view, ``x.T``, ``x[1:]``, or autodiff's variable standing for it)."""
    steps: tuple = ()
    node = leaf
    while True:
        index = arguments.get(id(node))
        if index is not None:
            return index, steps
        if node.view_of is None:
            return None
        node, before = node.view_of
        steps = before + steps


def _integer_bounds(roots, arguments: dict[int, int]) -> list[tuple[int, int, int]]:
    """(argument index, low, high) for each int argument: NumPy refuses a Python int outside the integer
    dtype it meets (a comparison takes it exactly, as another graph), so a value outside is traced again,
    where eager code raises or compares exactly. Int arithmetic on arguments (``n * 2``) meeting a narrower
    integer has its value checked now, as eager code would, and pins the arguments it is made of."""
    bounds: dict[int, tuple[int, int]] = {index: (-2**63, 2**63 - 1) for index in arguments.values()}

    def narrow(index: int, low: int, high: int) -> None:
        old_low, old_high = bounds[index]
        bounds[index] = (max(low, old_low), min(high, old_high))

    for node in graph.toposort(roots):
        if node.op in graph.LEAVES or node.op is graph.VIEW:
            continue
        op = opdefs.get(node.op)
        compute = op.compute_dtypes(tuple(s.signature_item() for s in node.src), node.arg)
        for source, dtype in zip(node.src, compute):
            if dtype not in dtypes.INTEGERS or not (source.op is SCALAR or source.weak_type is int):
                continue
            info = np.iinfo(dtype)
            if source.op is SCALAR:
                if id(source) in arguments:
                    narrow(arguments[id(source)], int(info.min), int(info.max))
                continue
            if dtype.itemsize == 8:
                continue   # computed in 64 bits, as its value is: nothing narrows it
            (value,) = interpret.evaluate([source])   # the arguments' values now, as eager code computes it
            value = int(value)
            if not info.min <= value <= info.max:
                raise OverflowError(f"Python integer {value} out of bounds for {dtype.name} in {op.name}")
            for leaf in graph.toposort([source]):
                if id(leaf) in arguments:
                    narrow(arguments[id(leaf)], leaf.arg, leaf.arg)
    return [(index, low, high) for index, (low, high) in bounds.items()]


class jit:  # noqa: N801 - the name users know from JAX
    """``ex.jit(fn, static_argnums=(), static_argnames=())``: see the module docstring."""

    def __init__(self, fn, static_argnums=(), static_argnames=()):
        if not callable(fn):
            raise TypeError(f"ex.jit needs a function, got {type(fn).__name__}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        static_argnums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
        static_argnames = (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames)
        try:
            parameters = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            parameters = []
        positional = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        named = {p.name for p in parameters}
        for name in static_argnames:
            if parameters and name not in named:
                raise ValueError(f"ex.jit: static_argnames names {name!r}, which {fn.__name__} does not take")
        takes_any = any(p.kind is p.VAR_POSITIONAL for p in parameters) or not parameters
        for number in static_argnums:
            if not isinstance(number, int) or number < 0 or (number >= len(positional) and not takes_any):
                raise ValueError(f"ex.jit: static_argnums {number!r} is not a position {fn.__name__} takes "
                                 f"(0 to {len(positional) - 1})")
        self.static_positions = frozenset(static_argnums) | {positional.index(n) for n in static_argnames
                                                             if n in positional}
        self.static_names = frozenset(static_argnames) | {positional[i] for i in static_argnums if i < len(positional)}
        self.positional = positional
        self.entries: dict = {}
        self.traces = 0
        self.last_signature = None
        self.warned = False
        self.lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ex.jit({getattr(self.fn, '__qualname__', self.fn)!r})"

    def _signature(self, args, kwargs):
        """(key, flat values): what decides whether a trace can be replayed, and the arrays and scalars that
        fill it."""
        flat: list = []
        parts = []
        for i, arg in enumerate(args):
            if type(arg) is np.ndarray and arg.dtype.isnative and i not in self.static_positions:   # the common case
                flat.append(arg)
                parts.append((_ARRAY, arg.dtype, arg.shape, arg.strides))
                continue
            where = self.positional[i] if i < len(self.positional) else f"argument {i}"
            if i in self.static_positions:
                parts.append((_STATIC, _hashable(arg, where)))
            else:
                parts.append(_flatten(arg, flat, where))
        for name in sorted(kwargs):
            value = kwargs[name]
            if name in self.static_names:
                parts.append((name, _STATIC, _hashable(value, name)))
            else:
                parts.append((name, _flatten(value, flat, name)))
        return tuple(parts), flat

    def __call__(self, *args, **kwargs):
        if tracing_depth() or staging.depth:
            return self.fn(*args, **kwargs)   # inside grad or another trace: the outer one sees fn's graph
        if check_device(None) != "cpu":   # the stand-ins and constants would be made on the CPU
            raise NotImplementedError(f"ex.jit runs on the CPU only so far, not inside ex.device({check_device(None)!r}) "
                                      f"(call the function without ex.jit)")
        key, flat = self._signature(args, kwargs)
        options = realize.evaluation_options()
        for entry in self.entries.get((key, options), ()):
            if not entry.checked or entry.holds_for(flat):
                counters.count("jit_replays")
                return self._replay(entry, flat)
        return self._trace(key, options, flat, args, kwargs)

    def _replay(self, entry: _Entry, flat: list):
        bound = [(slot, flat[i]) for slot, i in entry.arrays]
        if entry.derived:
            bound += [(slot, views.apply(flat[i], steps)) for slot, i, steps in entry.derived]
        values = realize.run_bound(entry.launch, bound, [(slot, flat[i]) for slot, i in entry.scalars])
        return _rebuild(entry.output, iter([Array(None, v) for v in values]))

    def _trace(self, key, options, flat, args, kwargs):
        leaves: dict[int, int] = {}
        stand_ins = []
        for i, value in enumerate(flat):
            node = graph.argument_scalar(value) if type(value) in _PYTHON_SCALARS else graph.buffer(value)
            leaves[id(node)] = i
            stand_ins.append(Array(node))
        values = iter(stand_ins)
        call_args = [arg if i in self.static_positions else _rebuild(part, values)
                     for i, (arg, part) in enumerate(zip(args, key))]
        call_kwargs = {}
        for name, part in zip(sorted(kwargs), key[len(args):]):
            call_kwargs[name] = kwargs[name] if name in self.static_names else _rebuild(part[1], values)
        with staging.block(tuple(a._graph_node() for a in stand_ins)):
            out = self.fn(*call_args, **call_kwargs)
            found: list[Array] = []
            output = _output_leaves(out, found)
        # A scalar argument returned as it is: its value as a 0-d array, as asarray makes of a scalar.
        roots = tuple(asarray(a)._graph_node() for a in found)
        on = [r.device for r in roots if r.device != "cpu"]
        if on:
            raise NotImplementedError(f"ex.jit runs on the CPU only so far; the function computes on {on[0]} "
                                      f"(an array it captured): call it without ex.jit")
        try:
            launch = realize.bind(roots) if roots else None
        except CompilerMissing:
            launch = None
        if launch is None:   # nothing to plan, or NumPy evaluates it (no compiler): no replay kept
            values = realize.evaluate(roots) if roots else []
            return _rebuild(output, iter([Array(None, v) for v in values]))
        self._note_trace(key)
        counters.count("jit_traces")
        arrays, scalars, derived, sensitive = [], [], [], []
        for slot, leaf in enumerate(launch.leaves):
            source = _source(leaf, leaves)
            if source is None:
                continue                            # captured: read in place on every call
            index, steps = source
            if leaf.op is SCALAR:
                scalars.append((slot, index))
                if slot in launch.plan.sensitive:
                    sensitive.append((index, realize.value_key(flat[index])))
            elif steps:
                derived.append((slot, index, steps))
            else:
                arrays.append((slot, index))
        bounds = _integer_bounds(roots, {id(n): i for n, i in ((a._graph_node(), i) for i, a in enumerate(stand_ins))
                                         if n.op is SCALAR and type(n.arg) is int})
        results = realize.run_bound(launch, [], [])
        entry = _Entry(realize.unbind(launch, [s for s, _ in arrays] + [s for s, _, _ in derived],
                                      [s for s, _ in scalars]),
                       tuple(arrays), tuple(scalars), tuple(derived), tuple(sensitive), tuple(bounds), output)
        with self.lock:
            kept = self.entries.get((key, options), [])
            self.entries[(key, options)] = [entry, *kept][:PLANS_PER_SIGNATURE]
        return _rebuild(output, iter([Array(None, v) for v in results]))

    def _note_trace(self, key) -> None:
        self.traces += 1
        previous, self.last_signature = self.last_signature, key
        if self.traces > RETRACE_WARNING and not self.warned and previous is not None:
            self.warned = True
            changed = _changed(previous, key, self.positional)
            warnings.warn(f"ex.jit({getattr(self.fn, '__qualname__', self.fn)}) has been traced {self.traces} times; "
                          f"{changed}. Each new signature (shapes, dtypes, layouts, static values) traces and plans "
                          f"again: keep it fixed, or pass a changing Python number as a runtime scalar (not static)",
                          RuntimeWarning, stacklevel=4)


def _changed(before: tuple, after: tuple, positional: list) -> str:
    """Which argument's signature differs between two keys, in words."""
    if len(before) != len(after):
        return f"it was called with {len(after)} arguments, before with {len(before)}"
    for i, (a, b) in enumerate(zip(before, after)):
        if a != b:
            name = positional[i] if i < len(positional) else f"argument {i}"
            if isinstance(b, tuple) and b and isinstance(b[0], str) and b[0] not in (_ARRAY, _SCALAR, _STATIC):
                name = b[0]
            return f"argument {name!r} changed from {_shown(a)} to {_shown(b)}"
    return ("the signature is the same, but a scalar argument changed value where the plan depends on it (a "
            "rewrite rule read it, as x * c reads c == 1), or an int argument left the range of the integers it "
            "meets, or the settings (fast_math, rules, backend) changed")


def _shown(part) -> str:
    if isinstance(part, tuple) and part and part[0] == _ARRAY:
        return f"{part[1].name}{list(part[2])} (strides {part[3]})"
    return repr(part)[:80]


def _hashable(value, where: str):
    """``value`` as it keys a trace: with its type, as 2 and 2.0 are equal but trace differently."""
    try:
        hash(value)
    except TypeError:
        raise TypeError(f"ex.jit: static argument {where} must be hashable (it keys the trace), got "
                        f"{type(value).__name__}") from None
    return (type(value), value)

