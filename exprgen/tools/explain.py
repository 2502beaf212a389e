"""``ex.explain`` and ``ex.to_dot``: the graph before and after rewriting, where the schedule cut and why,
each kernel's source, cache key and tier. Everything shown comes from the plan the pipeline runs."""

from __future__ import annotations

import collections
import shutil
import subprocess

from ..api.array import Array, asarray
from ..ir.graph import LEAVES, toposort
from ..runtime.realize import plan_for, rewrite
from ..schedule.fusion import schedule


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


# A summary line is cut to this many characters, in its middle: a reason names the node it reads (a whole
# expression, perhaps) before saying what it is.
SUMMARY_CHARS = 200


def _short(text: str) -> str:
    if len(text) <= SUMMARY_CHARS:
        return text
    tail = SUMMARY_CHARS // 3
    return text[:SUMMARY_CHARS - tail - 5] + " ... " + text[-tail:]


def explain(*arrays, verbose: bool = False) -> str:
    """What evaluating ``arrays`` does: the rules that fired, whether the plan holds for any scalar value,
    and each kernel (or library call) with why the schedule cut there and its cache key and tier. With
    ``verbose``, also the graph before and after rewriting (each shared subexpression named once), each
    rewrite's nodes, and every kernel's source."""
    # A computed Array lets its expression go (its inputs may be large): its value's buffer is all there is.
    computed = [i for i, a in enumerate(arrays) if isinstance(a, Array) and a._node is None and a._make_node is None]
    roots = tuple(asarray(a)._graph_node() for a in arrays)
    plan = plan_for(roots)
    rewritten, log, reads = rewrite(roots)
    before, after = toposort(roots), toposort(rewritten)
    ops = sum(n.op not in LEAVES for n in before)
    out = [f"== graph: {ops} op(s) over {sum(n.op in LEAVES for n in before)} input(s) (arrays and scalars); "
           f"{sum(n.op not in LEAVES for n in after)} op(s) after rewriting"]
    if verbose:
        out += _graph_text(roots)
    if computed:
        out.append(f"   (array{'s' if len(computed) > 1 else ''} {', '.join(map(str, computed))} already computed: "
                   f"its value is a buffer now; explain an expression before asking for its value to see "
                   f"its rewrites and kernels)")
    if log and verbose:
        out.append("== rewrites")
        out += [f"  {algebra}:  {before_!r}  ->  {after_!r}" for algebra, before_, after_ in log]
        out += ["== graph after rewriting", *_graph_text(rewritten)]
    elif log:
        fired = collections.Counter(algebra for algebra, _, _ in log)
        out.append("== rewrites: " + "; ".join(f"{a}" + (f" (x{n})" if n > 1 else "") for a, n in fired.items()))
    else:
        out.append("== rewrites: none fired")
    if reads:
        values = ", ".join(sorted(repr(n.arg) for n in reads))
        out.append(f"== this plan holds for these scalar values only (rules that fired read them): {values}; "
                   f"another value plans again")
    else:
        out.append("== scalars are kernel arguments: a new value of any of them reuses this plan")
    out.append(f"== {len(plan.steps)} kernel(s)")
    for i, step in enumerate(plan.steps):
        out.append(f"-- kernel {i}: {_short(step.summary)}")
        out.append(f"   key {step.key[:16]}, {step.tier}" + (f", source {step.source_path}" if step.source_path else ""))
        out += [f"   why: {reason if verbose else _short(reason)}" for reason in step.reasons]
        if verbose:
            out.append(step.source.split("namespace eg {", 2)[-1] if "namespace eg {" in step.source else step.source)
    if not verbose:
        out.append("(ex.explain(..., verbose=True): the graphs before and after rewriting, and each kernel's source)")
    return "\n".join(out)


def _label(node) -> str:
    if node.op in LEAVES:
        return repr(node).replace('"', "'")
    params = "".join(f", {p}" for p in node.arg)
    return f"{node.op}{params}\\n{node.dtype.name}{list(node.shape)}"


def to_dot(*arrays, path: str | None = None) -> str:
    """Graphviz source of the rewritten graph, one cluster per kernel. With ``path`` and the ``dot``
    program installed, also writes a PNG there."""
    roots = tuple(asarray(a)._graph_node() for a in arrays)
    rewritten, _, _ = rewrite(roots)
    nodes = toposort(rewritten)
    names = {id(n): f"n{i}" for i, n in enumerate(nodes)}
    lines = ["digraph exprgen {", "  rankdir=BT;", '  node [shape=box, fontname="monospace"];']
    in_kernel = set()
    for k, kernel in enumerate(schedule(rewritten)):
        lines.append(f'  subgraph cluster_{k} {{ label="kernel {k}"; style=rounded;')
        for node in kernel.body:
            in_kernel.add(id(node))
            lines.append(f'    {names[id(node)]} [label="{_label(node)}"];')
        lines.append("  }")
    for node in nodes:
        if id(node) not in in_kernel:
            lines.append(f'  {names[id(node)]} [label="{_label(node)}", shape=ellipse];')
        lines += [f"  {names[id(s)]} -> {names[id(node)]};" for s in node.src]
    lines.append("}")
    source = "\n".join(lines) + "\n"
    if path is not None:
        dot = shutil.which("dot")
        if dot is None:
            raise FileNotFoundError("writing a picture needs Graphviz's `dot` (apt-get install graphviz); "
                                    "the DOT source is returned without path=")
        subprocess.run([dot, "-Tpng", "-o", path], input=source.encode(), check=True)
    return source
