"""The whole pipeline in a few lines, and the plan cache that lets a repeated structure skip it.

    key  = structure_key(roots)                       graph.py
    plan = plans[key]  or:
        roots' = Rewriter(rules).rewrite(roots)       pattern.py + rules.py
        kernels = schedule(roots')                    schedule.py
        source = render(kernel, layout)               render.py
        function = kernel_cache().get(source)         cache.py -> backends/cpu.py
    plan.run(leaves, out)                             launch

A plan is keyed by the graph's structure (ops, dtypes, leaf layouts) with Python scalar values left out:
they are kernel arguments, so changing one never recompiles nor even re-plans. The exception is a value
a rewrite rule read (``x*1 -> x`` reads the 1): the plan records which scalars those were and is reused
only when they hold the same values again.
"""

from __future__ import annotations

import math
import struct
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import counters, graph, opdefs, reference, settings, views
from .backends import cpu
from .cache import kernel_cache
from .graph import BUFFER, INDEX, SCALAR, VIEW, Node
from .memory import MIN_BYTES, pool
from .pattern import Rewriter
from .render import loop_geometry, render, rows_geometry
from . import rules
from .schedule import Kernel, schedule

_SCALAR_FORMAT = {bool: "q", int: "q", float: "d"}


@dataclass
class Step:
    """One kernel launch: the compiled function and which registers it reads and writes."""

    function: object
    total: int
    ndim: int
    shape: object            # cffi int64_t[] (sizes are arguments, fixed per plan)
    strides: object          # cffi int64_t[]
    arrays: tuple[int, ...]  # registers: inputs then outputs
    scalars: tuple[int, ...]
    scalar_format: str
    parallel: bool
    reasons: list[str]       # why the schedule cut here (strings: a plan never holds graph nodes,
    summary: str             # which would keep the user's buffers alive as long as the plan is cached)
    key: str
    tier: str
    source_path: str
    source: str


@dataclass
class Plan:
    n_leaves: int
    constants: list                                   # registers fixed by rewrites (folded values)
    allocations: list[tuple]  # (register, shape, dtype, root index or None, from the pool?)
    steps: list[Step]
    results: list[tuple[int, object]]  # per root: (register, copy needed, or view steps to apply)
    sensitive: tuple[int, ...] = ()                   # leaf slots whose values the rewrite read
    values: tuple = ()
    constant_pointers: list = field(default_factory=list)
    parallel: bool = False                             # does any step split across threads
    copies: bool = False                               # does any result need copying out of an input
    derived: list = field(default_factory=list)        # (source register, byte offset) of views read


_plans: dict[tuple, list[Plan]] = {}
_MAX_PLANS = 4096
_rewriters: dict[tuple, Rewriter] = {}


def _rewriter(fast_math: bool, debug: bool) -> Rewriter:
    """The rewriter for these options over the current rule set (user rules included)."""
    key = (rules.version, fast_math, debug)
    if key not in _rewriters:
        if any(k[0] != rules.version for k in _rewriters):
            _rewriters.clear()
            _plans.clear()   # plans rewritten by an older rule set
        kinds = ("exact", "accurate", "fast") if fast_math else ("exact", "accurate")
        _rewriters[key] = Rewriter(rules.active(), kinds, rules.check_user_rule if debug else None)
    return _rewriters[key]


def _address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def _layout(array_shape: tuple, strides_bytes: tuple, itemsize: int) -> tuple[tuple, tuple]:
    return array_shape, tuple(s // itemsize for s in strides_bytes)


def _out_entry(out) -> tuple:
    return tuple((o.dtype.str, o.shape, o.strides) for o in out) if out is not None else None


def rewrite(roots: tuple[Node, ...], fast_math: bool | None = None):
    """(rewritten roots, [(algebra, before, after)], scalars read) under the current options."""
    fast_math = settings.option("fast_math") if fast_math is None else fast_math
    return _rewriter(fast_math, settings.option("debug")).rewrite(roots)


def build_plan(roots: tuple[Node, ...], leaves: list[Node], out, fast_math: bool) -> Plan:
    rewritten, _, reads = rewrite(roots, fast_math)
    # An index leaf has no memory to hand back: one asked for as a result is computed into a buffer.
    rewritten = tuple(graph.apply("astype", r, params=(r.dtype.name,)) if r.op is INDEX else r for r in rewritten)
    kernels = schedule(rewritten)
    registers: dict[int, int] = {id(leaf): i for i, leaf in enumerate(leaves)}
    constants: list = []
    layouts: dict[int, tuple[tuple, tuple]] = {}
    for leaf in leaves:
        if leaf.op is BUFFER:
            layouts[id(leaf)] = _layout(leaf.shape, leaf.buffer.strides, leaf.dtype.itemsize)
        elif leaf.op is INDEX:
            layouts[id(leaf)] = (leaf.shape, leaf.arg[0])
    allocations = []
    out_by_root = {}
    for i, root in enumerate(rewritten):
        out_by_root.setdefault(id(root), i)

    def register_of(node: Node) -> int:
        if id(node) not in registers:
            if node.op in graph.LEAVES:   # created by a rewrite (a folded constant)
                registers[id(node)] = len(leaves) + len(constants)
                constants.append(node.buffer if node.op is BUFFER else node.arg)
                if node.op is BUFFER:
                    layouts[id(node)] = _layout(node.shape, node.buffer.strides, node.dtype.itemsize)
            else:
                raise AssertionError(f"{node!r} is read before any kernel writes it")
        return registers[id(node)]

    for kernel in kernels:
        for node in kernel.inputs + kernel.scalars:
            if node.op in graph.LEAVES:
                register_of(node)
    base = len(leaves) + len(constants)
    for kernel in kernels:
        for node in kernel.outputs:
            root_index = out_by_root.get(id(node))
            registers[id(node)] = base + len(allocations)
            allocations.append((registers[id(node)], node.shape, node.dtype,
                                root_index if out is not None else None,
                                node.size * node.dtype.itemsize >= MIN_BYTES))
            if out is not None and root_index is not None:
                layouts[id(node)] = _layout(out[root_index].shape, out[root_index].strides, node.dtype.itemsize)
            else:
                layouts[id(node)] = (node.shape, views.contiguous_strides(node.shape))
    # A view of another kernel's output reads that buffer through the view's strides, from an offset.
    derived = []
    for kernel in kernels:
        for node in kernel.inputs:
            if node.op is VIEW and id(node) not in registers:
                source = node.src[0]
                shape, strides, offset = views.layout_after(source.shape, node.arg, layouts[id(source)][1])
                layouts[id(node)] = (shape, strides)
                registers[id(node)] = base + len(allocations) + len(derived)
                derived.append((registers[id(source)], offset * node.dtype.itemsize))
    steps = [_make_step(kernel, registers, layouts) for kernel in kernels]
    results = []
    for original, root in zip(roots, rewritten):
        if root.op is VIEW:   # a NumPy view of the buffer its source was computed into
            results.append((register_of(root.src[0]), root.arg))
        else:
            results.append((register_of(root), original.op not in graph.LEAVES and root.op in graph.LEAVES))
    slot_of = {id(leaf): i for i, leaf in enumerate(leaves)}
    sensitive = tuple(sorted(slot_of[id(n)] for n in reads if id(n) in slot_of))
    steps = [step for step in steps if step.total]  # an empty output needs no launch
    return Plan(n_leaves=len(leaves), constants=constants, allocations=allocations, steps=steps,
                results=results, sensitive=sensitive, values=tuple(_value_key(leaves[s].arg) for s in sensitive),
                derived=derived, constant_pointers=[_pointer(c, own=False) if isinstance(c, np.ndarray) else None for c in constants],
                parallel=any(step.parallel for step in steps), copies=any(copy is not False for _, copy in results))


def _value_key(value) -> tuple:
    return (type(value), repr(value))


def _make_step(kernel: Kernel, registers: dict, layouts: dict) -> Step:
    arrays = kernel.inputs + kernel.outputs
    if kernel.axes:
        (outer, outer_strides), (inner, inner_strides) = rows_geometry(
            kernel.shape, kernel.axes, [layouts[id(n)] for n in arrays])
        shape = [len(outer), len(inner), *outer, *inner]
        strides = [o + i for o, i in zip(outer_strides, inner_strides)]
        total = math.prod(outer)
    else:
        loop_shape, strides = loop_geometry(kernel.shape, [layouts[id(n)] for n in arrays])
        shape = list(loop_shape)
        total = math.prod(kernel.shape)
    source, summary = render(kernel, [s[-1] for s in strides])
    entry = kernel_cache().get(source, summary)
    flat = [s for per_array in strides for s in per_array]
    return Step(function=entry.function, total=total, ndim=len(strides[0]) if strides else 1,
                shape=cpu.ffi.new("int64_t[]", shape), strides=cpu.ffi.new("int64_t[]", flat or [0]),
                arrays=tuple(registers[id(n)] for n in arrays), scalars=tuple(registers[id(n)] for n in kernel.scalars),
                scalar_format="<" + "".join(_SCALAR_FORMAT[type(n.arg)] for n in kernel.scalars),
                parallel=math.prod(kernel.shape) >= settings.PARALLEL_THRESHOLD, reasons=list(kernel.reasons),
                summary=summary, key=entry.key, tier=entry.tier, source_path=entry.path[:-3] + ".cpp", source=source)


def _find_plan(roots: tuple[Node, ...], out) -> tuple[Plan, list[Node]]:
    fast_math = settings.option("fast_math")
    out_entry = _out_entry(out) if out is not None else None
    options = (fast_math, rules.version, out_entry)
    # A hash-consed root fixes its whole graph, scalar values included, so the plan found for it once is
    # its plan for good: remembered on the node, a repeated evaluation skips even hashing the structure.
    memo = roots[0].memo if len(roots) == 1 else None
    if memo is not None:
        found = memo.get(options)
        if found is not None:
            counters.count("plan_hit")
            return found
    structure, leaves = graph.structure_key(roots)
    key = (structure, options)
    for plan in _plans.get(key, ()):
        if all(_value_key(leaves[s].arg) == v for s, v in zip(plan.sensitive, plan.values)):
            counters.count("plan_hit")
            break
    else:
        counters.count("plan_miss")
        plan = build_plan(roots, leaves, out, fast_math)
        if len(_plans) >= _MAX_PLANS:
            _plans.pop(next(iter(_plans)))
        _plans.setdefault(key, []).append(plan)
    if memo is not None:
        memo[options] = (plan, leaves)
    return plan, leaves


def _pointer(array: np.ndarray, own: bool):
    """A void* to ``array``'s first element: from_buffer for our own contiguous buffers (fast), the
    array interface for anything else (strided views, user out= buffers)."""
    if own:
        return _from_buffer(array)
    return _cast("void*", array.__array_interface__["data"][0])


def _leaf_pointer(leaf: Node):
    pointer = leaf.memo.get("pointer")
    if pointer is None:
        pointer = leaf.memo["pointer"] = _cast("void*", leaf.address)
    return pointer


_from_buffer = cpu.ffi.from_buffer
_cast = cpu.ffi.cast
_new = cpu.ffi.new
_POINTERS = cpu.ffi.typeof("void*[]")      # resolved once: a cdecl string is parsed on every call
_SCALARS = cpu.ffi.typeof("uint64_t[]")
_NO_SCALARS = cpu.ffi.new(_SCALARS, 1)


def _run(plan: Plan, leaves: list[Node], out) -> list[np.ndarray]:
    registers = [leaf.buffer if leaf.op is BUFFER else leaf.arg for leaf in leaves]
    pointers = [_leaf_pointer(leaf) if leaf.op is not SCALAR else None for leaf in leaves]
    if plan.constants:
        registers += plan.constants
        pointers += plan.constant_pointers
    for _, shape, dtype, root_index, pooled in plan.allocations:
        if root_index is not None and out is not None:
            buf = out[root_index]
            pointers.append(_pointer(buf, own=False))
        else:
            buf = pool.empty(shape, dtype) if pooled else np.empty(shape, dtype)
            pointers.append(_from_buffer(buf))
        registers.append(buf)
    for source, offset in plan.derived:
        pointers.append(_cast("char*", pointers[source]) + offset)
        registers.append(None)
    threads = settings.get_num_threads() if plan.parallel else 1
    for step in plan.steps:
        if step.scalars:
            values = _from_buffer(_SCALARS, struct.pack(step.scalar_format, *[registers[r] for r in step.scalars]))
        else:
            values = _NO_SCALARS
        step.function(step.total, step.ndim, step.shape, _new(_POINTERS, [pointers[r] for r in step.arrays]),
                      step.strides, values, threads if step.parallel else 1)
    counters.count("kernels_launched", len(plan.steps))
    if out is None and not plan.copies:
        return [registers[register] for register, _ in plan.results]
    results = []
    for i, (register, copy) in enumerate(plan.results):
        value = registers[register]
        if type(copy) is tuple:   # view steps
            value = views.apply(value, copy)
        if out is not None:
            if value is not out[i]:
                np.copyto(out[i], value)
            value = out[i]
        elif copy:
            value = np.array(value, copy=True)
        results.append(value if type(value) is np.ndarray else np.asarray(value))
    return results


_fallback_warned = []


def _use_reference() -> bool:
    return settings.backend_name() == "numpy" or bool(_fallback_warned)


def _check_out(roots: tuple[Node, ...], out):
    out = list(out) if isinstance(out, (list, tuple)) else [out]
    if len(out) != len(roots):
        raise ValueError(f"out= needs one buffer per array: {len(roots)} arrays, {len(out)} buffers")
    for buf, root in zip(out, roots):
        if not isinstance(buf, np.ndarray):
            raise TypeError(f"out= buffers must be NumPy arrays, got {type(buf).__name__}")
        if buf.shape != root.shape or buf.dtype != root.dtype:
            raise ValueError(f"out= buffer is {buf.dtype.name}{list(buf.shape)}, the result is "
                             f"{root.dtype.name}{list(root.shape)}")
        if not buf.flags.writeable:
            raise ValueError("out= buffer is read-only")
    return out


def _overlaps_inputs(out: list[np.ndarray], leaves: list[Node]) -> bool:
    """An out= buffer that shares memory with an input, other than element for element, is unsafe."""
    for buf in out:
        for leaf in leaves:
            if leaf.op is BUFFER and np.may_share_memory(buf, leaf.buffer):
                same = (_address(buf) == leaf.address and buf.strides == leaf.buffer.strides
                        and buf.shape == leaf.shape)
                if not same:
                    return True
    return False


def exact_in_numpy(op: opdefs.OpDef, dtype: np.dtype) -> bool:
    """Does NumPy (the op's reference) compute ``op`` giving ``dtype`` on one element bit for bit as its
    kernel does, with no rewrite to change it? Built-in ops held to 0 ULP (a reduction of one element gives
    it back), unless fast-math or user rules are on."""
    inexact = op.ulp and op.tolerance_ulp(dtype) and not op.is_reduction
    return not (op.user or inexact or rules.USER or settings.option("fast_math"))


def _numpy_exact(roots: tuple[Node, ...]) -> bool:
    """Is every node one element (or none), computed by NumPy exactly as a kernel computes it? Then NumPy
    answers in microseconds, where a launch costs more and a new structure compiles: code that reads
    elements in a loop (``if x[i] > 0:``) never compiles."""
    stack, seen = list(roots), set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.size > 1:   # a reduction of many elements has one, but NumPy sums in another order
            return False
        if node.op not in graph.LEAVES and node.op is not VIEW:
            op = opdefs.get(node.op)
            if not exact_in_numpy(op, node.dtype):
                return False
        stack.extend(node.src)
    return True


def evaluate(roots: tuple[Node, ...], out=None) -> list[np.ndarray]:
    """The values of ``roots`` (written into ``out`` buffers when given)."""
    if out is not None:
        out = _check_out(roots, out)
    if all(r.size == 0 for r in roots):  # nothing to compute: no plan, no launch
        return [o if o is not None else np.empty(r.shape, r.dtype) for r, o in zip(roots, out or [None] * len(roots))]
    if _use_reference() or _numpy_exact(roots):
        values = reference.evaluate(roots)
        if out is None:
            return values
        for buf, value in zip(out, values):
            np.copyto(buf, value)
        return out
    try:
        plan, leaves = _find_plan(roots, out)
    except cpu.CompilerMissing as exc:
        _fallback_warned.append(True)
        warnings.warn(f"exprgen: {exc}", RuntimeWarning, stacklevel=3)
        return evaluate(roots, out)
    if out is not None and _overlaps_inputs(out, leaves):
        values = _run(plan, leaves, None)
        for buf, value in zip(out, values):
            np.copyto(buf, value)
        return out
    return _run(plan, leaves, out)


def plan_for(roots: tuple[Node, ...]) -> Plan:
    """The compiled plan for ``roots`` (built if needed): what ``explain`` shows."""
    return _find_plan(roots, None)[0]


def clear_plans() -> None:
    _plans.clear()
