"""The whole pipeline in a few lines, and the plan cache that lets a repeated structure skip it.

    key  = structure_key(roots)                       graph.py
    plan = plans[key]  or:
        roots' = Rewriter(rules).rewrite(roots)       pattern.py + rules.py
        kernels = schedule(roots')                    schedule.py
        source = render(kernel, layout)               codegen/kinds.py
        functions = kernel_cache().get_all(sources)   cache/store.py -> the backend's compile (side by side), load
    launch = plan bound to leaves                     remembered on a single root, per options
    run(launch, out)                                  allocate outputs, launch the kernels (its Runner),
                                                      make the library calls (Call: matmul's BLAS)

A plan is keyed by the graph's structure (ops, dtypes, leaf layouts) with Python scalar values left out:
they are kernel arguments, so changing one never recompiles nor even re-plans. The exception is a value
a rewrite rule read (``x*1 -> x`` reads the 1): the plan records which scalars those were and is reused
only when they hold the same values again. Evaluating the same root again (hash-consing makes a rebuilt
expression the same root) finds its launch on the node and skips the key, the lookup and the binding.

``ex.jit`` keeps a bound plan and runs it again over other leaf values: ``bind`` gives it, ``unbind`` empties
the slots the function's arguments fill, and ``run_bound`` fills them and runs the steps, building nothing.

Everything a backend does is asked of it through ``backends.base``: the compiled one for kernels,
pointers and launches (the host's C++ backend for CPU arrays, a CUDA one for arrays on "cuda:N": the
options name it, and a plan keeps its runner), the interpreter (``registry.reference``) for a graph NumPy
evaluates.
"""

from __future__ import annotations

import math
import struct
import warnings
from dataclasses import dataclass, field

import numpy as np

from .. import counters, settings
from ..ir import graph, opdefs, views
from ..backends import registry
from ..backends.memory import MIN_BYTES
from ..cache.store import kernel_cache
from ..errors import CompilerMissing
from ..ir.graph import BUFFER, CPU, INDEX, SCALAR, VIEW, DeviceMismatch, Node
from ..rewrite.pattern import Rewriter
from ..codegen.geometry import layout
from ..codegen.kinds import is_call, launch_geometry, render
from ..rewrite import rules
from ..schedule.fusion import Kernel, schedule

_SCALAR_FORMAT = {bool: "q", int: "q", float: "d"}
# The backend that compiles and runs the kernels of CPU arrays; a CUDA array's is the options' (for_device).
COMPILER = registry.get("cpu")
_runner = COMPILER.runner()


@dataclass
class Step:
    """One kernel launch: the compiled function and which registers it reads and writes."""

    function: object
    total: int
    ndim: int
    shape: object            # cffi int64_t[] (sizes are arguments, fixed per plan)
    strides: object          # cffi int64_t[]
    arrays: tuple[int, ...]  # registers: inputs then outputs
    inputs: int              # how many of them are inputs
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
class Call:
    """One library call (a "library" kernel: matmul is NumPy's, so BLAS): the op's function over its
    operands' values, written into the result's buffer. An operand that is a view of another step's output
    is that buffer seen through the view's steps (BLAS reads a transposed one by a flag, without a copy)."""

    function: object
    operands: tuple[tuple[int, tuple | None], ...]   # per operand: (register, view steps or None)
    arrays: tuple[int, ...]                          # registers: operands (views: their sources), then output
    inputs: int
    total: int
    reasons: list[str]
    summary: str
    key: str = "library call"
    tier: str = "no kernel"
    source_path: str = ""
    source: str = ""
    parallel: bool = False   # BLAS sizes its own threads (limited by ex.threads through threadpoolctl)

    def __call__(self, registers: list) -> None:
        values = [_for_library(registers[r] if steps is None else views.apply(registers[r], steps))
                  for r, steps in self.operands]
        self.function(*values, out=registers[self.arrays[-1]])


def _for_library(value: np.ndarray) -> np.ndarray:
    """``value``, copied when it repeats elements along a dim (a broadcast cotangent, say): NumPy's matmul
    takes no BLAS path for a zero stride, and its own loop was 35x slower ((32, 100000) @ a broadcast
    (100000, 1): 10.6 ms against 0.3 ms)."""
    repeats = any(stride == 0 and size > 1 for stride, size in zip(value.strides, value.shape))
    return np.ascontiguousarray(value) if repeats else value


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
    varying: list = field(default_factory=list)        # per step: (slot, register) of pointers made per call
    kernels: int = 0                                   # steps that launch a kernel
    calls: int = 0                                     # steps that call a library (Call)
    runner: object = _runner                           # its backend's (base.Runner)
    calls_made: tuple = ()                             # the runner's calls every run makes, looked up once


_plans: dict[tuple, list[Plan]] = {}
_MAX_PLANS = 4096
_MAX_PLANS_PER_STRUCTURE = 16
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


def _out_entry(out) -> tuple:
    return tuple((o.dtype.str, o.shape, o.strides) for o in out) if out is not None else None


def rewrite(roots: tuple[Node, ...], fast_math: bool | None = None):
    """(rewritten roots, [(algebra, before, after)], scalars read) under the current options."""
    fast_math = settings.option("fast_math") if fast_math is None else fast_math
    return _rewriter(fast_math, settings.option("debug")).rewrite(roots)


def build_plan(roots: tuple[Node, ...], leaves: list[Node], out, fast_math: bool, backend=COMPILER) -> Plan:
    runner = backend.runner()
    rewritten, _, reads = rewrite(roots, fast_math)
    # An index leaf has no memory to hand back: one asked for as a result is computed into a buffer.
    rewritten = tuple(graph.apply("astype", r, params=(r.dtype.name,)) if r.op is INDEX else r for r in rewritten)
    kernels = schedule(rewritten)
    if out is not None:
        kernels = _sinks_last(kernels)
    registers: dict[int, int] = {id(leaf): i for i, leaf in enumerate(leaves)}
    constants: list = []
    layouts: dict[int, tuple[tuple, tuple]] = {}
    for leaf in leaves:
        if leaf.op is BUFFER:
            layouts[id(leaf)] = layout(leaf.shape, leaf.buffer.strides, leaf.dtype.itemsize)
        elif leaf.op is INDEX:
            layouts[id(leaf)] = (leaf.shape, leaf.arg[0])
    allocations = []
    owned: set[int] = set()   # outputs in buffers allocated here: the kernel may use them as scratch
    out_by_root = {}
    for i, root in enumerate(rewritten):
        out_by_root.setdefault(id(root), i)

    def register_of(node: Node) -> int:
        if id(node) not in registers:
            if node.op in graph.LEAVES:   # created by a rewrite (a folded constant)
                registers[id(node)] = len(leaves) + len(constants)
                constants.append(node.buffer if node.op is BUFFER else node.arg)
                if node.op is BUFFER:
                    layouts[id(node)] = layout(node.shape, node.buffer.strides, node.dtype.itemsize)
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
                layouts[id(node)] = layout(out[root_index].shape, out[root_index].strides, node.dtype.itemsize)
            else:
                layouts[id(node)] = (node.shape, views.contiguous_strides(node.shape))
                # Not an out= buffer, which may be an input itself (in place) or overlap itself.
                owned.add(id(node))
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
    rendered = {id(k): _render(k, layouts, owned, backend.language) for k in kernels if not is_call(k, backend.name)}
    # Every new kernel of the plan compiled at once, side by side (a training step's first call).
    entries = dict(zip(rendered, kernel_cache().get_all([(source, summary) for _, source, summary in rendered.values()],
                                                        backend.name)))
    steps = [_make_call(kernel, registers) if is_call(kernel, backend.name) else
             _make_step(kernel, registers, *rendered[id(kernel)], entries[id(kernel)], backend) for kernel in kernels]
    results = []
    for original, root in zip(roots, rewritten):
        if root.op is VIEW:   # a NumPy view of the buffer its source was computed into
            results.append((register_of(root.src[0]), root.arg))
        else:
            results.append((register_of(root), original.op not in graph.LEAVES and root.op in graph.LEAVES))
    slot_of = {id(leaf): i for i, leaf in enumerate(leaves)}
    sensitive = tuple(sorted(slot_of[id(n)] for n in reads if id(n) in slot_of))
    steps = [step for step in steps if step.total]  # an empty output needs no launch
    fixed = len(leaves) + len(constants)   # leaves and constants: the same pointers every call
    varying = [None if type(step) is Call else tuple((slot, r) for slot, r in enumerate(step.arrays) if r >= fixed)
               for step in steps]
    return Plan(n_leaves=len(leaves), constants=constants, allocations=allocations, steps=steps,
                results=results, sensitive=sensitive, values=tuple(value_key(leaves[s].arg) for s in sensitive),
                derived=derived, varying=varying, calls=sum(type(step) is Call for step in steps),
                kernels=sum(type(step) is not Call for step in steps), runner=runner,
                calls_made=(runner.own_pointer, runner.empty, runner.reusable, runner.pointers, runner.launch,
                            runner.pointer, runner.offset),
                constant_pointers=[runner.pointer(c, own=False) if isinstance(c, np.ndarray) else None for c in constants],
                parallel=any(step.parallel for step in steps), copies=any(copy is not False for _, copy in results))


def _sinks_last(kernels: list[Kernel]) -> list[Kernel]:
    """The kernels whose outputs no other kernel reads after the rest, the order otherwise kept (a sink
    feeds nobody, so nothing waits on it). An out= buffer is often an input as well, the optimiser's
    ``eval(w - lr * g, loss(w), out=[w, l])``: every kernel that reads ``w`` then runs before the one that
    overwrites it, and the update stays in place (``_in_place_unsafe`` checks each call)."""
    read = set()
    for kernel in kernels:
        for node in kernel.inputs:
            while node.op is VIEW:
                node = node.src[0]
            read.add(id(node))
    feeds = [any(id(o) in read for o in kernel.outputs) for kernel in kernels]
    return [k for k, f in zip(kernels, feeds) if f] + [k for k, f in zip(kernels, feeds) if not f]


def value_key(value) -> tuple:
    return (type(value), repr(value))


def _render(kernel: Kernel, layouts: dict, owned: set[int], language: str):
    """(launch geometry, source, summary) of ``kernel`` over arrays of these layouts, in ``language``."""
    launch = launch_geometry(kernel, [layouts[id(n)] for n in kernel.inputs + kernel.outputs], language)
    scratch = frozenset(i for i, node in enumerate(kernel.outputs) if id(node) in owned)
    return (launch, *render(kernel, launch.inner_strides, language, scratch=scratch))


def _make_step(kernel: Kernel, registers: dict, launch, source: str, summary: str, entry, backend) -> Step:
    arrays = kernel.inputs + kernel.outputs
    strides = launch.strides
    flat = [s for per_array in strides for s in per_array]
    return Step(function=entry.function, total=launch.total, ndim=len(strides[0]) if strides else 1,
                shape=backend.runner().sizes(launch.shape), strides=backend.runner().sizes(flat),
                arrays=tuple(registers[id(n)] for n in arrays), inputs=len(kernel.inputs),
                scalars=tuple(registers[id(n)] for n in kernel.scalars),
                scalar_format="<" + "".join(_SCALAR_FORMAT[type(n.arg)] for n in kernel.scalars),
                parallel=math.prod(kernel.shape) >= settings.PARALLEL_THRESHOLD, reasons=list(kernel.reasons),
                summary=summary, key=entry.key, tier=entry.tier,
                source_path=entry.path[:-len(backend.binary_suffix)] + backend.source_suffix, source=source)


def _make_call(kernel: Kernel, registers: dict) -> Call:
    (node,) = kernel.body
    operands = []
    for source in node.src:
        if source.op is VIEW:   # read through the view from the buffer of the node it views
            operands.append((registers[id(source.src[0])], source.arg))
        else:
            operands.append((registers[id(source)], None))
    op = opdefs.get(node.op)
    shown = ", ".join(f"{s.dtype.name}{list(s.shape)}" for s in node.src)
    return Call(function=op.call, operands=tuple(operands),
                arrays=tuple(r for r, _ in operands) + (registers[id(node)],), inputs=len(operands),
                total=node.size, reasons=list(kernel.reasons), summary=f"{node.op}({shown})",
                source=f"out = {op.numpy_src}  (called with out=, writing the result's buffer)")


def evaluation_options(out=None, device: str = CPU) -> tuple:
    """What besides the graph decides how it is evaluated (read on every evaluation, so kept cheap): the
    first four key the plan cache (the fourth names the backend: the settings' for a CPU array, a CUDA
    one for another device's); the backend and a compiler found missing decide whether a plan runs."""
    fast_math, backend = settings.evaluation_options()
    if device is not CPU:
        backend = registry.for_device(device)
    return fast_math, rules.version, _out_entry(out) if out is not None else None, backend, bool(_fallback_warned)


def _find_plan(roots: tuple[Node, ...], out, options: tuple) -> _Launch:
    structure, leaves = graph.structure_key(roots)
    key = (structure, options[:4])
    for plan in _plans.get(key, ()):
        if all(value_key(leaves[s].arg) == v for s, v in zip(plan.sensitive, plan.values)):
            counters.count("plan_hit")
            break
    else:
        counters.count("plan_miss")
        plan = build_plan(roots, leaves, out, options[0], registry.get(options[3]))
        if len(_plans) >= _MAX_PLANS:
            _plans.pop(next(iter(_plans)))
        # Plans for some values only are tried newest first and before the one plan for any value (better
        # for their values); a structure keeps a bounded number of them.
        plans = [plan, *_plans.get(key, ())]
        _plans[key] = ([p for p in plans if p.sensitive][:_MAX_PLANS_PER_STRUCTURE - 1]
                       + [p for p in plans if not p.sensitive][:1])
    return _Launch(plan, leaves)


def _leaf_pointer(leaf: Node, runner):
    """The pointer ``runner``'s kernels read ``leaf`` by (its buffer's memory, or an index leaf's offset),
    made once: a leaf is one device's, and every backend of a device makes the same pointers."""
    pointer = leaf.pointer
    if pointer is None:
        if leaf.op is BUFFER:   # a contiguous array's buffer is cffi's to view (fast), any other's by address
            array = leaf.buffer
            pointer = runner.own_pointer(array) if array.flags.c_contiguous else runner.address(_address(array))
        else:
            pointer = runner.address(leaf.address)
        leaf.annotate("pointer", pointer)
    return pointer


# The CPU runner's calls ex.jit makes per argument, looked up once.
_pointer, _own_pointer = _runner.pointer, _runner.own_pointer


class _Launch:
    """A plan bound to one graph's leaves: what stays the same from one evaluation of that graph to the
    next (the leaves' registers and data pointers, each step's scalar arguments and pointer arrays), made
    once, so that a repeated evaluation only allocates its outputs and writes their pointers in."""

    __slots__ = ("plan", "leaves", "registers", "pointers", "steps", "results")

    def __init__(self, plan: Plan, leaves: list[Node]):
        self.plan, self.leaves = plan, leaves
        self.registers = [leaf.buffer if leaf.op is BUFFER else leaf.arg for leaf in leaves] + plan.constants
        self.pointers = [_leaf_pointer(leaf, plan.runner) if leaf.op is not SCALAR else None for leaf in leaves]
        self.pointers += plan.constant_pointers
        # Per step: the kernel's arguments but its data pointers, the registers they come from, the slots that
        # change between calls, and spare pointer arrays. An array is taken off the spare list for the length
        # of a call (pop and append are atomic): a kernel runs without the GIL, so an array two threads shared
        # could change under a running one.
        self.steps = [step if type(step) is Call else
                      (step.function, step.total, step.ndim, step.shape, step.strides,
                       _packed_scalars(step, self.registers, plan.runner), step.parallel, step.arrays, varying, [])
                      for step, varying in zip(plan.steps, plan.varying)]
        self.results = [register for register, _ in plan.results]


def _packed_scalars(step: Step, registers: list, runner=_runner):
    """The kernel's scalar arguments, as it reads them, from these registers."""
    if not step.scalars:
        return runner.scalars(None)
    return runner.scalars(struct.pack(step.scalar_format, *[registers[r] for r in step.scalars]))


def _run(launch: _Launch, out) -> list[np.ndarray]:
    return _execute(launch, out, launch.registers.copy(), launch.pointers.copy(), launch.steps)


def _execute(launch: _Launch, out, registers: list, pointers: list, launch_steps: list) -> list[np.ndarray]:
    """Run ``launch``'s steps over these leaf registers and pointers (copies: outputs are appended)."""
    plan = launch.plan
    own_pointer, empty, reusable, new_pointers, launch_kernel, pointer, offset = plan.calls_made
    for _, shape, dtype, root_index, pooled in plan.allocations:
        if root_index is not None and out is not None:
            buf = out[root_index]
            pointers.append(pointer(buf, own=False))
        else:
            buf = reusable(shape, dtype) if pooled else empty(shape, dtype)
            pointers.append(own_pointer(buf))
        registers.append(buf)
    for source, nbytes in plan.derived:
        pointers.append(offset(pointers[source], nbytes))
        registers.append(None)
    threads = settings.get_num_threads() if plan.parallel else 1
    for step in launch_steps:
        if type(step) is Call:
            step(registers)
            continue
        function, total, ndim, shape, strides, scalars, parallel, used, varying, spare = step
        try:
            arrays = spare.pop()
        except IndexError:
            arrays = new_pointers([pointers[r] for r in used])
        else:
            for slot, register in varying:
                arrays[slot] = pointers[register]
        launch_kernel(function, total, ndim, shape, arrays, strides, scalars, threads if parallel else 1)
        spare.append(arrays)
    counters.count("kernels_launched", plan.kernels)
    if plan.calls:
        counters.count("library_calls", plan.calls)
    if out is None and not plan.copies:
        return list(map(registers.__getitem__, launch.results))
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


def bind(roots: tuple[Node, ...]) -> _Launch | None:
    """The plan for ``roots`` bound to their leaves, built if needed, for a caller that runs it again with
    other leaf values (``ex.jit``); None where NumPy evaluates graphs (an interpreter backend, or no
    compiler found). Raises CompilerMissing where ``evaluate`` would fall back with a warning."""
    current = evaluation_options()
    if current[3] in _INTERPRETERS or current[4]:
        return None
    return _find_plan(roots, None, current)


class _Rebound(_Launch):
    """A bound plan whose argument slots are filled anew on every run (``ex.jit``): their registers are
    emptied (the trace's inputs are not kept alive), their pointers vary per call, and a step reading a
    scalar argument packs its scalars per call."""

    __slots__ = ("arguments", "scalar_steps")


def unbind(launch: _Launch, arrays: list[int], scalars: list[int]) -> _Rebound:
    """``launch`` with these leaf slots (arrays, then Python scalars) left to each run (``run_bound``)."""
    rebound = object.__new__(_Rebound)
    rebound.plan, rebound.leaves = launch.plan, ()
    arguments = set(arrays)
    rebound.registers = [None if slot in arguments or slot in scalars else r for slot, r in enumerate(launch.registers)]
    rebound.pointers = [None if slot in arguments else p for slot, p in enumerate(launch.pointers)]
    rebound.results = launch.results
    rebound.steps, rebound.scalar_steps = [], []
    for k, (step, entry) in enumerate(zip(launch.plan.steps, launch.steps)):
        if type(step) is Call:
            rebound.steps.append(step)
            continue
        extra = tuple((slot, r) for slot, r in enumerate(step.arrays) if r in arguments)
        rebound.steps.append(entry[:8] + (entry[8] + extra, []))
        if any(r in scalars for r in step.scalars):
            rebound.scalar_steps.append(k)
    # A contiguous argument's pointer is cffi's view of its buffer (fast); any other's, its address.
    rebound.arguments = {slot: _own_pointer if launch.registers[slot].flags.c_contiguous else _strided_pointer
                         for slot in arrays}
    return rebound


def _strided_pointer(array: np.ndarray):
    return _pointer(array, own=False)


def run_bound(launch: _Launch, arrays: list, scalars: list) -> list[np.ndarray]:
    """Run ``launch`` (an ``unbind`` one, or a fresh ``bind`` one with nothing to fill) with (slot, value)
    pairs filling its argument slots: NumPy arrays of the traced layouts, and Python scalars."""
    registers, pointers = launch.registers.copy(), launch.pointers.copy()
    for slot, value in arrays:
        registers[slot] = value
        pointers[slot] = launch.arguments[slot](value)
    steps = launch.steps
    if scalars:
        for slot, value in scalars:
            registers[slot] = value
        if launch.scalar_steps:
            steps = steps.copy()
            for k in launch.scalar_steps:
                steps[k] = steps[k][:5] + (_packed_scalars(launch.plan.steps[k], registers, launch.plan.runner),) + steps[k][6:]
    counters.count("plan_hit")
    return _execute(launch, None, registers, pointers, steps)


_fallback_warned = []


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


def _in_place_unsafe(out: list[np.ndarray], launch: _Launch) -> bool:
    """Would writing straight into ``out`` change an input before everything that reads it has read it?

    An out= buffer that shares memory with an input other than element for element always would. One
    that is the input, element for element, is safe in the kernel that writes it (each element is read
    before it is written), but not where a later kernel, or a later result copied out at the end, reads
    that input again. Nor are two out= buffers that share memory: kernels writing both would interleave
    their elements, where copying the results in, in order, lets the later one win (NumPy's order)."""
    if any(np.may_share_memory(a, b) for i, a in enumerate(out) for b in out[i + 1:]):
        return True
    plan = launch.plan
    for i, buf in enumerate(out):
        for slot, leaf in enumerate(launch.leaves):
            if leaf.op is BUFFER and np.may_share_memory(buf, leaf.buffer):
                same = (_address(buf) == _address(leaf.buffer) and buf.strides == leaf.buffer.strides
                        and buf.shape == leaf.shape)
                if not same or _read_after_written(plan, slot, i):
                    return True
    return False


def _read_after_written(plan: Plan, register: int, root_index: int) -> bool:
    """Is ``register`` read after result ``root_index`` is written into its out= buffer? A result is
    written by the step whose output it is, or else copied in after all steps, in the order of results."""
    result = plan.results[root_index][0]
    allocated = {r for r, _, _, index, _ in plan.allocations if index == root_index}
    written = len(plan.steps) + root_index
    for position, step in enumerate(plan.steps):
        if result in allocated and result in step.arrays[step.inputs:]:
            written = position
            break
    later_steps = plan.steps[written + 1:]
    later_copies = plan.results[max(written - len(plan.steps) + 1, 0):]
    return (any(register in step.arrays[:step.inputs] for step in later_steps)
            or any(r == register for r, _ in later_copies))


_exact_ops: dict[tuple[str, np.dtype], bool] = {}


def _exact_op(op: opdefs.OpDef, dtype: np.dtype) -> bool:
    """Does NumPy (the op's reference) compute ``op`` giving ``dtype`` on one element bit for bit as its kernel
    does? Built-in ops held to 0 ULP (a reduction of one element gives it back). Remembered, as an op's
    definition never changes; the options (fast-math, user rules) are the caller's to check."""
    known = _exact_ops.get((op.name, dtype))
    if known is None:
        inexact = op.ulp and op.tolerance_ulp(dtype) and not op.is_reduction
        known = _exact_ops[op.name, dtype] = not (op.user or inexact)
    return known


def _numpy_exact(roots: tuple[Node, ...], device: str) -> bool:
    """Is every node one element (or none), computed by NumPy exactly as a kernel computes it? Then NumPy
    answers in microseconds, where a launch costs more and a new structure compiles: code that reads
    elements in a loop (``if x[i] > 0:``) never compiles. (Not for another device's arrays, whose memory
    NumPy cannot read on a GPU, and whose kernels host execution is there to test.)"""
    if rules.USER or settings.option("fast_math") or device is not CPU:
        return False
    for node in graph.reachable(roots):
        if node.size > 1:   # a reduction of many elements has one, but NumPy sums in another order
            return False
        if node.op not in graph.LEAVES and node.op is not VIEW and not _exact_op(opdefs.get(node.op), node.dtype):
            return False
    return True


_REFERENCE = "reference"   # the way to evaluate a graph that NumPy evaluates (see ``evaluate``)
_INTERPRETERS = frozenset(name for name, backend in registry.BACKENDS.items() if not backend.compiles)


def evaluate(roots: tuple[Node, ...], out=None) -> list[np.ndarray]:
    """The values of ``roots`` (written into ``out`` buffers when given)."""
    device = _device_of(roots)
    if out is not None:
        if not registry.get(evaluation_options(None, device)[3]).host_memory:
            raise ValueError(f"out= buffers are NumPy arrays, host memory; these arrays are on {device}")
        out = _check_out(roots, out)
    options = evaluation_options(out, device)
    # A hash-consed root fixes its whole graph, scalar values included, so the way found to evaluate it once
    # (NumPy, or a plan bound to its leaves) is its way for good under the same options: remembered on the
    # node, a repeated evaluation skips deciding, and even hashing the structure.
    ways = roots[0].ways if len(roots) == 1 else None
    way = ways.get(options) if ways else None
    if way is None:
        if all(r.size == 0 for r in roots):  # nothing to compute: no plan, no launch
            return [o if o is not None else np.empty(r.shape, r.dtype)
                    for r, o in zip(roots, out or [None] * len(roots))]
        try:
            reference_only = options[3] in _INTERPRETERS or options[4]
            way = _REFERENCE if reference_only or _numpy_exact(roots, device) else _find_plan(roots, out, options)
        except CompilerMissing as exc:
            _fallback_warned.append(True)
            warnings.warn(f"exprgen: {exc}", RuntimeWarning, stacklevel=3)
            return evaluate(roots, out)
        if len(roots) == 1:
            if ways is None:
                roots[0].annotate("ways", {options: way})
            else:
                ways[options] = way
            _keep_warm(roots[0], graph.toposort(roots) if way is _REFERENCE else way.leaves)
    elif way is not _REFERENCE:
        counters.count("plan_hit")
    if way is _REFERENCE:
        values = registry.reference.evaluate(roots)
        if out is None:
            return values
        for buf, value in zip(out, values):
            np.copyto(buf, value)
        return out
    if out is not None and _in_place_unsafe(out, way):
        # Computed apart, then copied in. Not by this plan: it writes through the out= buffers' strides.
        # A value may be an input itself (a root that is a leaf): copied first, or an earlier copy-in
        # would change it.
        values = [np.array(v) if any(np.may_share_memory(v, buf) for buf in out) else v for v in evaluate(roots)]
        for buf, value in zip(out, values):
            np.copyto(buf, value)
        return out
    return _run(way, out)


# The way to evaluate a root is remembered on the root, which lives only while something refers to it:
# building the same expression again finds the node (hash-consing) only if it is still alive. The last
# few small graphs evaluated are kept alive here, so a loop over small arrays stays on the few-microsecond
# path; a graph whose inputs hold more than _WARM_BYTES is never kept (exprgen keeps no large buffer alive
# past the caller's last reference to it).
_WARM_ROOTS = 64
_WARM_BYTES = 1 << 16
_warm: dict[int, Node] = {}


def _keep_warm(root: Node, leaves: list[Node]) -> None:
    if sum(n.buffer.nbytes for n in leaves if n.op is BUFFER) > _WARM_BYTES:
        return
    _warm.pop(id(root), None)
    if len(_warm) >= _WARM_ROOTS:
        _warm.pop(next(iter(_warm)))
    _warm[id(root)] = root


def _device_of(roots: tuple[Node, ...]) -> str:
    """The device whose memory ``roots`` are computed in: their arrays' (DeviceMismatch for two)."""
    if len(roots) == 1:
        return roots[0].device   # a node over scalars alone has the CPU's (the class default)
    placed = None
    for root in roots:
        if not root.anywhere:
            if placed is None:
                placed = root.device
            elif root.device != placed:
                raise DeviceMismatch(f"evaluating arrays on {placed} and on {root.device} together: move them to "
                                     f"one device first")
    return placed or CPU


def plan_for(roots: tuple[Node, ...]) -> Plan:
    """The compiled plan for ``roots`` (built if needed): what ``explain`` shows."""
    return _find_plan(roots, None, evaluation_options(device=_device_of(roots))).plan


def clear_plans() -> None:
    _plans.clear()
    _warm.clear()
