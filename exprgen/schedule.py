"""Cut the rewritten graph into kernels and decide what materialises.

Two kinds of kernel:
- a **map** kernel loops once over one shape and writes its outputs; every elementwise node it needs is
  computed inline, so a connected elementwise region reads its inputs once and writes only its outputs;
- a **rows** kernel reduces axes ``A`` of a shape ``F``: for each row (the kept index) it runs its
  reductions in phases, each a pass over the row (a reduction that needs another's result, like the sum
  in softmax needing the max, runs a phase later), then computes the per-row values built on them and
  writes the full-shape outputs that need them in a last pass. Elementwise producers fuse into every
  phase, and a row stays in cache between phases, so softmax or a normalisation reads memory once.

Anchors are the nodes a kernel is built around: requested outputs, reductions, and the sources of views
over reductions. Anchors are taken in dependency order and grouped greedily: reductions by (F, A), an
output by the single reduction group it builds on (if its shape is F or the kept shape) or else by its
shape. When an anchor needs a value from another open kernel, that kernel is closed (emitted) first, and
the cut is recorded with its reason for ``explain``. A reduction materialises only when a node outside
its own kernel reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .graph import LEAVES, SCALAR, VIEW, Node, reductions, toposort


MAX_OUTPUTS = 16   # per kernel: past this, compiling one wide kernel costs more than a second pass saves


@dataclass
class Kernel:
    key: tuple                                           # ("map", shape) or ("rows", F, axes)
    outputs: list[Node] = field(default_factory=list)
    body: list[Node] = field(default_factory=list)       # nodes computed in the kernel, in dependency order
    inputs: list[Node] = field(default_factory=list)     # buffers read: leaves, views, other kernels' outputs
    scalars: list[Node] = field(default_factory=list)    # Python scalars passed as arguments
    reasons: list[str] = field(default_factory=list)     # why the schedule cut where it did
    members: list[Node] = field(default_factory=list)    # the anchors grouped here
    after: set[int] = field(default_factory=set)         # ids of kernels that must run first

    @property
    def shape(self) -> tuple[int, ...]:
        """The loop's full shape (for a rows kernel, the shape being reduced)."""
        return self.key[1]

    @property
    def axes(self) -> tuple[int, ...]:
        """Reduced axes; empty for a map kernel."""
        return self.key[2] if self.key[0] == "rows" else ()

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
    deps = {id(n): _anchor_deps(n, anchors) for n in order if id(n) in anchors}

    home: dict[int, Kernel] = {}
    open_kernels: dict[tuple, Kernel] = {}
    emitted: list[Kernel] = []

    def close(kernel: Kernel) -> None:
        if open_kernels.get(kernel.key) is not kernel:
            return
        del open_kernels[kernel.key]
        for other in [k for k in open_kernels.values() if id(k) in kernel.after]:
            close(other)
        emitted.append(kernel)

    for node in order:
        if id(node) not in anchors:
            continue
        key = _group_key(node, deps[id(node)], reduce_ops)
        kernel = open_kernels.get(key)
        if kernel is not None and len(kernel.members) >= MAX_OUTPUTS:
            close(kernel)   # gcc's compile time grows steeply with a very wide loop body
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
            kernel = open_kernels[key] = Kernel(key=key)
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
        _fill(kernel, anchors, home)
    _note_recomputation(emitted)
    return emitted


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


def _fill(kernel: Kernel, anchors: set[int], home: dict) -> None:
    """Body, inputs and scalars: everything back to leaves, views and other kernels' anchors."""
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
    for node in toposort(kernel.members):
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
    if kernel.axes:
        phases = 1 + max(_phases(kernel).values(), default=0)
        kernel.reasons.insert(0, f"reduces axes {kernel.axes} of shape {shape}: {phases} pass(es) over each row "
                                 f"(kept in cache between passes), {len(kernel.body)} op(s) fused, "
                                 f"{len(kernel.outputs)} output(s)")
    else:
        kernel.reasons.insert(0, f"{len(kernel.outputs)} output(s) of shape {shape}: one loop, "
                                 f"{len(kernel.body)} op(s) fused")


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
