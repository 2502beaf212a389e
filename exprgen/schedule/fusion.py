"""Cut the rewritten graph into kernels and decide what materialises.

Four kinds of kernel:
- a **map** kernel loops once over one shape and writes its outputs; every elementwise node it needs is
  computed inline, so a connected elementwise region reads its inputs once and writes only its outputs;
- a **rows** kernel reduces axes ``A`` of a shape ``F``: for each row (the kept index) it runs its
  reductions in phases, each a pass over the row (a reduction that needs another's result, like the sum
  in softmax needing the max, runs a phase later), then computes the per-row values built on them and
  writes the full-shape outputs that need them in a last pass. Elementwise producers fuse into every
  phase, and a row stays in cache between phases, so softmax or a normalisation reads memory once;
- a **columns** kernel is a rows kernel whose reduced axes all come before its kept ones (a bias
  gradient, ``g.sum(axis=0)``): neighbouring rows are neighbouring in memory, so it reduces many rows at
  once, a vector of them per load, where a rows kernel would walk each row one strided element at a time
  (layer norm's dg and dbeta over 4096x1024 float32: 33 ms as a rows kernel). One pass only, no full-shape
  outputs and no arg-reductions (``_as_columns``); any other rows kernel stays one;
- a **library** kernel is one call of a library op (matmul: NumPy's, so BLAS). Its operands are anchors,
  computed into memory by the kernels before it (their producers fused there), and its result is one
  that the kernels after it read (a bias and an activation: one epilogue pass over the product).

Anchors are the nodes a kernel is built around: requested outputs, reductions, and the sources of views
over reductions. Anchors are taken in dependency order and grouped greedily: reductions by (F, A), an
output by the single reduction group it builds on (if its shape is F or the kept shape) or else by its
shape. When an anchor needs a value from another open kernel, that kernel is closed (emitted) first, and
the cut is recorded with its reason for ``explain``. A reduction materialises only when a node outside
its own kernel reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import opdefs
from ..ir.graph import LEAVES, SCALAR, VIEW, Node, library_ops, reductions, toposort


MAX_OUTPUTS = 16   # per kernel: past this, compiling one wide kernel costs more than a second pass saves
# Past these sizes g++'s time grows faster than the kernel's. Measured here (g++ -O3, one core of a shared
# 2-core VM, one map kernel over float64): a chain of n adds compiled in 0.3 s at n = 10, 0.8 s at 1,000,
# 2.0 s at 2,000, 2.7 s at 3,000, 7.1 s at 4,000, 9.7 s at 10,000 (27 s on a busier machine); a sum of n
# inputs in 0.8 s at 25, 0.9 s at 64, 3.2 s at 100, 8.3 s at 200 (115 s at 500 and over 30 min at 2,000
# were reported). A larger graph is cut into runs of at most MAX_OPS ops reading at most MAX_INPUTS inputs
# (arrays and scalars), and no kernel spans two runs: the values crossing between runs are materialised.
# Pieces of one structure (the runs of a long chain) share a binary.
MAX_OPS = 1000
MAX_INPUTS = 64


@dataclass
class Kernel:
    key: tuple                                           # (kind, shape), or ("rows" / "columns", F, axes)
    outputs: list[Node] = field(default_factory=list)
    body: list[Node] = field(default_factory=list)       # nodes computed in the kernel, in dependency order
    inputs: list[Node] = field(default_factory=list)     # buffers read: leaves, views, other kernels' outputs
    scalars: list[Node] = field(default_factory=list)    # Python scalars passed as arguments
    reasons: list[str] = field(default_factory=list)     # why the schedule cut where it did
    members: list[Node] = field(default_factory=list)    # the anchors grouped here
    after: set[int] = field(default_factory=set)         # ids of kernels that must run first
    run: int = 0                                         # the run of the graph it lies in (see MAX_OPS)

    @property
    def kind(self) -> str:
        """"map", "rows", "columns" or "library": what codegen/kinds.py's table is keyed by."""
        return self.key[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """The loop's full shape (for a rows kernel, the shape being reduced)."""
        return self.key[1]

    @property
    def axes(self) -> tuple[int, ...]:
        """Reduced axes; empty for a map kernel."""
        return self.key[2] if len(self.key) > 2 else ()

    @property
    def kept_shape(self) -> tuple[int, ...]:
        return tuple(1 if d in self.axes else n for d, n in enumerate(self.shape))


def _is_anchor_source(node: Node) -> bool:
    return node.op is VIEW


def schedule(roots: tuple[Node, ...]) -> list[Kernel]:
    """The kernels that compute ``roots``, in launch order. Leaf roots need no kernel."""
    # A view requested as a result is a view of its source's buffer: the source is what gets computed.
    targets = [r.src[0] if r.op is VIEW else r for r in dict.fromkeys(roots) if r.op not in LEAVES]
    targets = list(dict.fromkeys(targets))
    order = toposort(targets)
    reduce_ops = reductions()
    anchors = {id(n) for n in targets} | {id(n) for n in order if n.op in reduce_ops}
    anchors |= {id(n.src[0]) for n in order if n.op is VIEW}
    # A library call reads its operands from memory and writes its result to memory (library_ops).
    calls = [n for n in order if n.op in library_ops()]
    anchors |= {id(n) for n in calls} | {id(s) for n in calls for s in n.src if s.op not in LEAVES and s.op is not VIEW}
    run = _runs(order)
    crossing = {id(s) for n in order if id(n) in run for s in n.src if run.get(id(s), run[id(n)]) != run[id(n)]}
    anchors |= crossing
    deps = {id(n): _anchor_deps(n, anchors) for n in order if id(n) in anchors}

    home: dict[int, Kernel] = {}
    open_kernels: dict[tuple, Kernel] = {}
    emitted: list[Kernel] = []

    def close(kernel: Kernel) -> None:
        """Emit ``kernel``, after the open kernels it needs (iterative: they may need others in turn)."""
        stack = [(kernel, False)]
        while stack:
            k, ready = stack.pop()
            if ready:
                emitted.append(k)
            elif open_kernels.get(k.key) is k:
                del open_kernels[k.key]
                stack.append((k, True))
                stack.extend((other, False) for other in reversed(open_kernels.values()) if id(other) in k.after)

    for node in order:
        if id(node) not in anchors:
            continue
        key = _group_key(node, deps[id(node)], reduce_ops)
        kernel = open_kernels.get(key)
        if kernel is not None and (len(kernel.members) >= MAX_OUTPUTS or kernel.run != run[id(node)]):
            close(kernel)   # gcc's compile time grows steeply with a very wide or long loop body
            kernel = None
        for dep, through_view in deps[id(node)]:
            producer = home[id(dep)]
            if producer is kernel and not through_view:
                continue
            close(producer)
            if kernel is not None and (producer is kernel or id(kernel) in producer.after):
                close(kernel)         # the producer must finish first (a view reads its buffer): start anew
                kernel = None
        if kernel is None:
            kernel = open_kernels[key] = Kernel(key=key, run=run[id(node)])
        kernel.members.append(node)
        home[id(node)] = kernel
        kernel.after.update(id(home[id(d)]) for d, _ in deps[id(node)] if home[id(d)] is not kernel)
    for kernel in list(open_kernels.values()):
        close(kernel)

    read_elsewhere = {id(d) for n in order if id(n) in anchors
                      for d, through_view in deps[id(n)] if through_view or home[id(d)] is not home[id(n)]}
    target_ids = {id(t) for t in targets}
    for kernel in emitted:
        kernel.outputs = [m for m in kernel.members if id(m) in target_ids or id(m) in read_elsewhere]
        _fill(kernel, anchors, home, _Earlier(run, kernel.run))
        if _as_columns(kernel):
            kernel.key = ("columns",) + kernel.key[1:]
            kernel.reasons[0] = (f"reduces axes {kernel.axes} of shape {'x'.join(map(str, kernel.shape))}, "
                                 f"{MIN_COLUMNS} or more neighbouring rows at once (the reduced axes lie outside "
                                 f"the kept ones): {len(kernel.body)} op(s) fused, {len(kernel.outputs)} output(s)")
        cut = sum(id(m) in crossing for m in kernel.outputs)
        if cut:
            kernel.reasons.append(f"writes {cut} value(s) for a later kernel, cut there: a kernel computes at most "
                                  f"{MAX_OPS} ops from {MAX_INPUTS} inputs, past which it compiles slower than "
                                  f"its pieces")
    _note_recomputation(emitted)
    return emitted


def _runs(order: list[Node]) -> dict[int, int]:
    """The run of each computed node (not a leaf or view): ``order`` cut into runs of at most MAX_OPS
    nodes that read at most MAX_INPUTS inputs (leaves, views and nodes of earlier runs) between them."""
    run: dict[int, int] = {}
    current, ops, inputs = 0, 0, set()
    for node in order:
        if node.op in LEAVES or node.op is VIEW:
            continue
        new = {id(s) for s in node.src if run.get(id(s)) != current} - inputs
        if ops >= MAX_OPS or len(inputs) + len(new) > MAX_INPUTS:
            current, ops, inputs = current + 1, 0, set()
            new = {id(s) for s in node.src}   # all from before the new run
        run[id(node)] = current
        ops += 1
        inputs |= new
    return run


class _Earlier:
    """The ids of the nodes of runs before ``current``: behind them lie only nodes of earlier runs and leaves,
    none of them in a kernel of this run, so a walk over a kernel's graph skips them."""

    def __init__(self, run: dict[int, int], current: int):
        self.run, self.current = run, current

    def __contains__(self, key: int) -> bool:
        return self.run.get(key, self.current) < self.current


def _note_recomputation(kernels: list[Kernel]) -> None:
    """Say where a kernel recomputes values another kernel also computes (a gradient recomputing its
    forward pass, say): the scheduler's choice of recomputing over storing, made explicit."""
    computed_by: dict[int, int] = {}
    for k, kernel in enumerate(kernels):
        shared = {}
        for node in kernel.body:
            if id(node) in computed_by:
                shared.setdefault(computed_by[id(node)], []).append(node)
            else:
                computed_by[id(node)] = k
        for other, nodes in shared.items():
            kernel.reasons.append(f"recomputes {len(nodes)} op(s) that kernel {other} also computes, instead of "
                                  f"storing them: an elementwise value costs less to recompute than to write and read")


def _anchor_deps(node: Node, anchors: set[int]) -> list[tuple[Node, bool]]:
    """(anchor, through a view?) for the anchors ``node`` reads through elementwise paths. A view is read
    from its source's buffer, so that source must come from an earlier kernel."""
    found, stack, seen = [], [(s, False) for s in node.src], set()
    while stack:
        n, through_view = stack.pop()
        if (id(n), through_view) in seen:
            continue
        seen.add((id(n), through_view))
        if id(n) in anchors:
            found.append((n, through_view))
        elif n.op is VIEW:
            stack.append((n.src[0], True))
        elif n.op not in LEAVES:
            stack.extend((s, through_view) for s in n.src)
    return found


def _group_key(node: Node, deps: list[Node], reduce_ops) -> tuple:
    if node.op in library_ops():   # a call of its own: two products are never one step
        return ("library", node.shape, (), id(node))
    if node.op in reduce_ops:
        return ("rows", node.src[0].shape, node.arg[0])
    groups = {("rows", d.src[0].shape, d.arg[0]) for d, _ in deps if d.op in reduce_ops}
    if len(groups) == 1:
        (group,) = groups
        full = group[1]
        kept = tuple(1 if d in group[2] else n for d, n in enumerate(full))
        if node.shape in (full, kept) and not any(d.op is VIEW for d in node.src):
            return group
    return ("map", node.shape)


def _fill(kernel: Kernel, anchors: set[int], home: dict, earlier: _Earlier) -> None:
    """Body, inputs and scalars: everything back to leaves, views and other kernels' anchors (``earlier``:
    nodes the walk in dependency order may skip)."""
    inside: dict[int, Node] = {}
    stack = list(kernel.members)
    while stack:
        node = stack.pop()
        if id(node) in inside:
            continue
        inside[id(node)] = node
        for src in node.src:
            external = src.op in LEAVES or src.op is VIEW or (id(src) in anchors and home[id(src)] is not kernel)
            if not external:
                stack.append(src)
    for node in toposort(kernel.members, earlier):
        if id(node) not in inside:
            continue
        for src in node.src:
            if id(src) in inside:
                continue
            bucket = kernel.scalars if src.op is SCALAR else kernel.inputs
            if src not in bucket:
                bucket.append(src)
                if src.op not in LEAVES:
                    what = "a view of" if src.op is VIEW else "the output of"
                    kernel.reasons.append(f"reads {what} {src.src[0] if src.op is VIEW else src!r}, "
                                          f"materialised by an earlier kernel")
        kernel.body.append(node)
    shape = "x".join(map(str, kernel.shape)) or "scalar"
    if kernel.kind == "library":
        kernel.reasons.insert(0, f"{kernel.body[0].op} of shape {shape}: a library call, its operands and result "
                                 f"in memory")
    elif kernel.axes:
        phases = 1 + max(_phases(kernel).values(), default=0)
        kernel.reasons.insert(0, f"reduces axes {kernel.axes} of shape {shape}: {phases} pass(es) over each row "
                                 f"(kept in cache between passes), {len(kernel.body)} op(s) fused, "
                                 f"{len(kernel.outputs)} output(s)")
    else:
        kernel.reasons.insert(0, f"{len(kernel.outputs)} output(s) of shape {shape}: one loop, "
                                 f"{len(kernel.body)} op(s) fused")


# A columns kernel loads neighbouring rows as one vector; with fewer kept elements along the last kept dim
# than this, most of each vector would be idle, and a rows kernel does as well.
MIN_COLUMNS = 8


def _as_columns(kernel: Kernel) -> bool:
    """Is this rows kernel a columns one (see the module docstring)? Its reduced dims (of size > 1) all
    come before its kept ones, the last kept dim has MIN_COLUMNS elements or more, it reduces in one pass,
    every output is per row, and no reduction is an arg-reduction (which counts positions along a row)."""
    if kernel.kind != "rows":
        return False
    shape, axes = kernel.shape, kernel.axes
    reduced = [d for d in axes if shape[d] > 1]
    kept = [d for d in range(len(shape)) if d not in axes and shape[d] > 1]
    if not reduced or not kept or max(reduced) > min(kept) or shape[kept[-1]] < MIN_COLUMNS:
        return False
    if max(_phases(kernel).values(), default=0) > 0:
        return False
    reduce_ops = reductions()
    if any(n.op in reduce_ops and opdefs.get(n.op).index for n in kernel.body):
        return False
    return all(o.op in reduce_ops or o.shape == kernel.kept_shape for o in kernel.outputs)


def _phases(kernel: Kernel) -> dict[int, int]:
    """Pass number of each reduction in a rows kernel: one after the latest reduction its input needs."""
    reduce_ops = reductions()
    phase: dict[int, int] = {}
    after: dict[int, int] = {}     # node id -> number of passes that must finish before it can be computed
    for node in kernel.body:
        ready = max((after.get(id(s), 0) for s in node.src), default=0)
        if node.op in reduce_ops:
            phase[id(node)] = ready
            after[id(node)] = ready + 1
        else:
            after[id(node)] = ready
    return phase
