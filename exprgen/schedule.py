"""Cut the rewritten graph into kernels and decide what materialises.

Every requested node materialises (it is an output); every other elementwise node is computed inline,
inside the loop of the kernel that needs it, so a connected elementwise region reads its inputs once and
writes only its outputs. Outputs of the same shape share one kernel (a multi-output kernel reads shared
inputs once). A kernel iterates over one shape, so an output of another shape gets its own kernel; when
it needs a value another kernel materialises, it reads that buffer and the cut is recorded with its
reason for ``explain``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .graph import LEAVES, SCALAR, Node, toposort


@dataclass
class Kernel:
    shape: tuple[int, ...]
    outputs: list[Node] = field(default_factory=list)
    body: list[Node] = field(default_factory=list)       # elementwise nodes computed inline, in order
    inputs: list[Node] = field(default_factory=list)     # buffers read: leaves or other kernels' outputs
    scalars: list[Node] = field(default_factory=list)    # Python scalars passed as arguments
    reasons: list[str] = field(default_factory=list)     # why the schedule cut where it did
    after: set[int] = field(default_factory=set)         # ids of kernels that must run first


def _region(root: Node, materialised: set[int], own: set[int]) -> list[Node]:
    """Nodes computed inline for ``root``: everything back to leaves and other kernels' outputs."""
    stop = lambda n: n.op in LEAVES or (id(n) in materialised and id(n) not in own)  # noqa: E731
    region, stack, seen = [], [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        region.append(node)
        stack.extend(s for s in node.src if not stop(s))
    return region


def schedule(roots: tuple[Node, ...]) -> list[Kernel]:
    """The kernels that compute ``roots``, in launch order. Leaf roots need no kernel."""
    targets = [r for r in dict.fromkeys(roots) if r.op not in LEAVES]
    materialised = {id(r) for r in targets}
    home: dict[int, Kernel] = {}     # materialised node id -> its kernel
    open_by_shape: dict[tuple, Kernel] = {}
    emitted: list[Kernel] = []

    def close(kernel: Kernel) -> None:
        if open_by_shape.get(kernel.shape) is not kernel:
            return
        del open_by_shape[kernel.shape]
        for dep in [k for k in open_by_shape.values() if id(k) in kernel.after]:
            close(dep)
        emitted.append(kernel)

    for node in toposort(targets):
        if id(node) not in materialised:
            continue
        kernel = open_by_shape.get(node.shape)
        for dep_node in _external_inputs(node, materialised, kernel, home):
            dep = home[id(dep_node)]
            close(dep)
            if kernel is not None and id(kernel) in dep.after:
                close(kernel)        # the producer needs this kernel's outputs first: start a new one
                kernel = None
        if kernel is None:
            kernel = open_by_shape[node.shape] = Kernel(shape=node.shape)
        kernel.outputs.append(node)
        home[id(node)] = kernel
        kernel.after.update(id(home[id(d)]) for d in _external_inputs(node, materialised, kernel, home))
    for kernel in list(open_by_shape.values()):
        close(kernel)
    for kernel in emitted:
        _fill(kernel, materialised)
    return emitted


def _external_inputs(node: Node, materialised: set[int], kernel: Kernel | None, home: dict) -> list[Node]:
    own = {id(o) for o in kernel.outputs} if kernel else set()
    own.add(id(node))
    return [n for n in _region_inputs(node, materialised, own) if id(n) in home and home[id(n)] is not kernel]


def _region_inputs(root: Node, materialised: set[int], own: set[int]) -> list[Node]:
    region = {id(n) for n in _region(root, materialised, own)}
    return [s for n in _region(root, materialised, own) for s in n.src if id(s) not in region]


def _fill(kernel: Kernel, materialised: set[int]) -> None:
    own = {id(o) for o in kernel.outputs}
    region: dict[int, Node] = {}
    for out in kernel.outputs:
        for node in _region(out, materialised, own):
            region.setdefault(id(node), node)
    for node in toposort(kernel.outputs):
        if id(node) not in region:
            continue
        for src in node.src:
            if id(src) in region:
                continue
            bucket = kernel.scalars if src.op is SCALAR else kernel.inputs
            if src not in bucket:
                bucket.append(src)
                if src.op not in LEAVES:
                    kernel.reasons.append(f"reads {src!r}: materialised by an earlier kernel of shape {src.shape}")
        kernel.body.append(node)
    shape = "x".join(map(str, kernel.shape)) or "scalar"
    kernel.reasons.insert(0, f"{len(kernel.outputs)} output(s) of shape {shape}: one loop, "
                             f"{len(kernel.body)} op(s) fused")
