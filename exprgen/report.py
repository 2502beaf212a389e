"""``ex.explain``: the graph before and after rewriting, where the schedule cut and why, each kernel's
source, cache key and tier. Everything shown comes from the plan the pipeline actually runs."""

from __future__ import annotations

from .array import asarray
from .graph import LEAVES, toposort
from .realize import plan_for


def _graph_text(roots) -> list[str]:
    lines, names = [], {}
    for node in toposort(roots):
        name = f"%{len(names)}"
        names[id(node)] = name
        if node.op in LEAVES:
            lines.append(f"  {name} = {node!r}")
        else:
            args = ", ".join(names[id(s)] for s in node.src) + "".join(f", {p}" for p in node.arg)
            lines.append(f"  {name} = {node.op}({args}) : {node.dtype.name}{list(node.shape)}")
    return lines


def explain(*arrays) -> str:
    roots = tuple(asarray(a)._graph_node() for a in arrays)
    plan = plan_for(roots)
    out = ["== graph", *_graph_text(roots)]
    if plan.rewrites:
        out.append("== rewrites")
        out += [f"  {algebra}:  {before!r}  ->  {after!r}" for algebra, before, after in plan.rewrites]
        out += ["== graph after rewriting", *_graph_text(plan.rewritten)]
    else:
        out.append("== rewrites: none fired")
    out.append(f"== {len(plan.steps)} kernel(s)")
    for i, step in enumerate(plan.steps):
        out.append(f"-- kernel {i}: key {step.key[:16]}, {step.tier}, source {step.source_path}")
        out += [f"   why: {reason}" for reason in step.kernel.reasons]
        out.append(step.source.split("namespace eg {", 2)[-1] if "namespace eg {" in step.source else step.source)
    return "\n".join(out)
