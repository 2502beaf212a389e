"""Kernel -> C++ source, from ``templates/`` and the ops' C expressions.

Each op used in a kernel becomes one small inline function (``T`` bound to the type its inputs are
converted to), and the loop body calls them in order. The template arranges code; every decision (which
function, which load expression for a layout) is made here in Python tables.

geometry.py decides the loop nest, and each array's innermost stride picks its load form here
(contiguous, broadcast or strided). An index leaf
(graph.INDEX) has the same three forms with its offset for a value instead of a load: its "pointer" is
an int64 base (the offset the kernel receives in its data slot, plus the row's offset), and element i is
``base + i * step``. That form is compiled in; sizes and strides are arguments, so one binary serves
every size with the same layouts.

A rows kernel may store a value its reduction pass computes per element (softmax's exp(x - max)) into an
output it owns and read it back in the last pass instead of computing it twice (``_reuse``).

One render function per kernel kind; kinds.py says which template each renders for each target:
``templates/cpu`` (C++ for the CPU) or ``templates/cuda`` (CUDA C++ for NVRTC). Everything else is
shared: the op functions, the statements, the load forms and the geometry. A CUDA kernel walks the same flat index over the same coalesced shape and strides as the CPU kernel.
"""

from __future__ import annotations

import functools

import jinja2
import numpy as np

from ..ir import opdefs
from ..ir.dtypes import C_TYPE
from ..ir.graph import INDEX, Node, expression_text, reductions, toposort
from ..resources import data_dir
from ..schedule.fusion import Kernel

ENTRY = "exprgen_kernel"
CUDA_THREADS = 256   # threads per block of every CUDA kernel (its __launch_bounds__)


_environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
                                 undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                 keep_trailing_newline=True)
# The render targets, each with the template variables it sets besides the kernel's own.
TARGET_VARIABLES = {"cpu": {}, "cuda": {"threads": CUDA_THREADS}}


@functools.cache
def template(name: str) -> jinja2.Template:
    """The compiled template ``name`` (a path under ``templates/``), compiled once per process."""
    return _environment.get_template(name)


def _load(name: str, inner_stride: int, index: str = "i", virtual: bool = False) -> str:
    """The element ``index`` of array ``name`` along the inner dim; a ``virtual`` (index) array's value
    is its offset, computed from its base where another array loads."""
    if virtual:
        return {1: f"({name} + {index})", 0: name}.get(inner_stride, f"({name} + {index} * {name}_step)")
    if inner_stride == 1:
        return f"{name}[{index}]"
    if inner_stride == 0:
        return f"{name}[0]"
    return f"{name}[{index} * {name}_step]"


def _function_name(op: opdefs.OpDef, compute: tuple, result: np.dtype) -> str:
    return f"{op.name}_{''.join(d.str[1:] for d in compute)}_{result.str[1:]}"


def _arrays(kernel: Kernel, inner_strides: list[int]) -> list[dict]:
    arrays = [{"name": f"in{i}", "ctype": C_TYPE[n.dtype], "qualifier": "const ", "index": n.op is INDEX}
              for i, n in enumerate(kernel.inputs)]
    arrays += [{"name": f"out{i}", "ctype": C_TYPE[n.dtype], "qualifier": "", "index": False}
               for i, n in enumerate(kernel.outputs)]
    for array, inner in zip(arrays, inner_strides):
        array["strided"] = inner not in (0, 1)
        array["contiguous"] = inner == 1 and not array["index"]   # memory to move 16 bytes at a time
    return arrays


def _scalars(kernel: Kernel, names: dict[int, str]) -> list[dict]:
    for i, node in enumerate(kernel.scalars):
        names[id(node)] = f"s{i}"
    return [{"name": f"s{i}", "ctype": C_TYPE[node.dtype]} for i, node in enumerate(kernel.scalars)]


def _call(node: Node, names: dict[int, str], functions: dict[str, dict], target: str) -> str:
    """The C call computing elementwise ``node`` from its inputs' names; registers its op function."""
    op = opdefs.get(node.op)
    signature = tuple(s.signature_item() for s in node.src)
    compute = op.compute_dtypes(signature, node.arg)
    fname = _function_name(op, compute, node.dtype)
    functions.setdefault(fname, {
        "name": fname, "ret": C_TYPE[node.dtype], "t": C_TYPE[op.compute_type(signature, node.arg)],
        "params": ", ".join(f"{C_TYPE[d]} {n}" for d, n in zip(compute, op.inputs)), "expr": op.expression(target)})
    return f"eg::{fname}({', '.join(names[id(s)] for s in node.src)})"


def _vector(name: str, inner_stride: int) -> str | None:
    """A contiguous array's element in a CUDA kernel's 4-wide access (``k`` of ``<name>_v``), else None."""
    return f"{name}_v.v[k]" if inner_stride == 1 else None


def render_map(kernel: Kernel, inner_strides: list[int], target: str, scratch: frozenset[int],
               source_template: jinja2.Template) -> tuple[str, str]:
    """A map kernel: one loop loading its inputs, computing its body and storing its outputs per element
    (``scratch`` is of no use to it: it has no pass to store a value for)."""
    names: dict[int, str] = {}
    arrays = _arrays(kernel, inner_strides)
    scalars = _scalars(kernel, names)
    statements = []
    for i, node in enumerate(kernel.inputs):
        names[id(node)] = f"x{i}"
        virtual = node.op is INDEX
        statements.append({"name": f"x{i}", "ctype": C_TYPE[node.dtype],
                           "expr": _load(f"in{i}", inner_strides[i], virtual=virtual),
                           "vector": None if virtual else _vector(f"in{i}", inner_strides[i])})
    functions: dict[str, dict] = {}
    for j, node in enumerate(kernel.body):
        expr = _call(node, names, functions, target)
        names[id(node)] = f"v{j}"
        statements.append({"name": f"v{j}", "ctype": C_TYPE[node.dtype], "expr": expr, "vector": None})
    first_out = len(kernel.inputs)
    stores = [{"target": _load(f"out{i}", inner_strides[first_out + i]), "value": names[id(node)],
               "vector": _vector(f"out{i}", inner_strides[first_out + i]),
               "block_target": f"out{i}_block[i - start]" if arrays[first_out + i]["contiguous"] else None}
              for i, node in enumerate(kernel.outputs)]
    summary = "; ".join(f"out{i} = {describe(node, names, kernel.body)}" for i, node in enumerate(kernel.outputs))
    prefetch = [a["name"] for a in arrays[:first_out] if a["contiguous"]]
    streams = [a for a in arrays[first_out:] if a["contiguous"]]
    source = source_template.render(
        summary=summary, functions=list(functions.values()), entry=ENTRY, arrays=arrays, scalars=scalars,
        statements=statements, stores=stores, prefetch=prefetch, streams=streams, **TARGET_VARIABLES[target])
    return source, summary


def render_rows(kernel: Kernel, inner_strides: list[int], target: str, scratch: frozenset[int],
                source_template: jinja2.Template) -> tuple[str, str]:
    """A rows kernel: reductions in passes over each row, per-row values after each pass, then a pass
    writing the full-shape outputs. Per-row values live in a Row struct (``r.w<j>``)."""
    reduce_ops = reductions()
    passes: dict[int, int] = {}     # node id -> passes over the row that must finish before it is known
    for node in kernel.body:
        ready = max((passes.get(id(s), 0) for s in node.src), default=0)
        passes[id(node)] = ready + 1 if node.op in reduce_ops else ready
    kept = kernel.kept_shape
    per_row = {id(n): f"w{j}" for j, n in enumerate(kernel.body)
               if n.op in reduce_ops or (passes[id(n)] > 0 and n.shape == kept)}
    scalar_names: dict[int, str] = {}
    scalars = _scalars(kernel, scalar_names)
    functions: dict[str, dict] = {}
    input_index = {id(n): i for i, n in enumerate(kernel.inputs)}
    body_index = {id(n): j for j, n in enumerate(kernel.body)}
    first_out = len(kernel.inputs)

    def emit(roots: list[Node], known: set[int], stored: dict | None = None) -> tuple[list[dict], dict[int, str]]:
        """Statements computing ``roots`` per element; per-row values in ``known`` are read from r, and
        values in ``stored`` from the output element an earlier pass stored them in."""
        stored = stored or {}
        names = dict(scalar_names)
        names.update({i: f"r.{per_row[i]}" for i in known})
        statements = []
        order = toposort(roots, done=known | set(scalar_names) | set(stored))
        reached = {id(n) for n in roots} | {id(s) for n in order for s in n.src}
        for node in kernel.body:
            if id(node) in stored and id(node) in reached:
                names[id(node)] = f"v{body_index[id(node)]}"
                statements.append({"name": names[id(node)], "ctype": C_TYPE[node.dtype], "expr": stored[id(node)]})
        for node in order:
            if id(node) in input_index:
                i = input_index[id(node)]
                names[id(node)] = f"x{i}"
                statements.append({"name": f"x{i}", "ctype": C_TYPE[node.dtype],
                                   "expr": _load(f"in{i}", inner_strides[i], "e", node.op is INDEX)})
            elif id(node) in body_index:
                names[id(node)] = f"v{body_index[id(node)]}"
                statements.append({"name": names[id(node)], "ctype": C_TYPE[node.dtype],
                                   "expr": _call(node, names, functions, target)})
        return statements, names

    reductions_by_pass: dict[int, list[Node]] = {}
    for node in kernel.body:
        if node.op in reduce_ops:
            reductions_by_pass.setdefault(passes[id(node)] - 1, []).append(node)
    arrays = _arrays(kernel, inner_strides)
    phases, reductions_info, known, pass_values = [], [], set(), []
    for p in range(len(reductions_by_pass)):
        members = reductions_by_pass[p]
        statements, names = emit([m.src[0] for m in members], known)
        pass_values.append([n for n in kernel.body if names.get(id(n)) == f"v{body_index[id(n)]}"])
        loaded = {s["name"] for s in statements}
        prefetch = [a["name"] for i, a in enumerate(arrays[:first_out]) if a["contiguous"] and f"x{i}" in loaded]
        entries = [_reduction(m, per_row[id(m)], names[id(m.src[0])]) for m in members]
        reductions_info += entries
        known |= {id(m) for m in members}
        row_nodes = [n for n in kernel.body if id(n) in per_row and n.op not in reduce_ops and passes[id(n)] == p + 1]
        # One closure for the whole pass, so values two per-row nodes share are declared once.
        local, local_names = emit([s for n in row_nodes for s in n.src], known)
        row_statements = [f"const {s['ctype']} {s['name']} = {s['expr']};" for s in local]
        for node in row_nodes:
            row_statements.append(f"r.{per_row[id(node)]} = {_call(node, local_names, functions, target)};")
        known |= {id(n) for n in row_nodes}
        phases.append({"reductions": entries, "statements": statements, "row_statements": row_statements,
                       "prefetch": prefetch, "stores": []})
    element_outputs = [(i, n) for i, n in enumerate(kernel.outputs) if id(n) not in per_row]
    stored: dict[int, str] = {}
    for node, p, i in _reuse(element_outputs, pass_values, known | set(scalar_names), scratch, body_index):
        element = _load(f"out{i}", inner_strides[first_out + i], "e")
        phases[p]["stores"].append({"target": element, "value": f"v{body_index[id(node)]}"})
        stored[id(node)] = element
    map_statements, map_names = emit([n for _, n in element_outputs], known)
    reuse_statements = emit([n for _, n in element_outputs], known, stored)[0] if stored else []
    element_stores = [{"target": _load(f"out{i}", inner_strides[first_out + i], "e"), "value": map_names[id(n)]}
                      for i, n in element_outputs]
    row_stores = [{"target": f"out{i}[0]", "value": per_row[id(n)]}
                  for i, n in enumerate(kernel.outputs) if id(n) in per_row]
    row_values = [{"ctype": C_TYPE[n.dtype], "name": per_row[id(n)]} for n in kernel.body if id(n) in per_row]
    summary_names = {**{id(n): f"x{i}" for i, n in enumerate(kernel.inputs)}, **scalar_names}
    summary = "; ".join(f"out{i} = {describe(n, summary_names, kernel.body)}" for i, n in enumerate(kernel.outputs))
    source = source_template.render(
        summary=summary, functions=list(functions.values()), reductions=reductions_info, entry=ENTRY,
        arrays=arrays, scalars=scalars, row_values=row_values, phases=phases,
        map_statements=map_statements, reuse_statements=reuse_statements, element_stores=element_stores,
        row_stores=row_stores, **TARGET_VARIABLES[target])
    return source, summary


# Ops a stored value must save the final pass: storing and loading an element costs about one op (row
# normalisation's x - mean, stored, ran 2-3% slower; softmax's x - max and exp of it, 13% faster).
MIN_OPS_SAVED = 2


def _reuse(element_outputs: list[tuple[int, Node]], pass_values: list[list[Node]], done: set[int],
           scratch: frozenset[int], body_index: dict[int, int]) -> list[tuple[Node, int, int]]:
    """(value, pass, output index): values a reduction pass computes per element that the final pass
    would compute again (softmax's exp(x - max): the sum's pass needs it, and so does the division),
    each stored by that pass into an element output of its dtype and read back by the final pass.

    Until the final pass writes it, a scratch output's row is free memory of the row's size, in cache as
    the row is; reading an element back costs less than recomputing it. The value is the same bits
    (same dtype, stored and loaded, never converted), so results do not change. Each output holds the
    value that leaves the final pass the fewest ops to compute, if that saves MIN_OPS_SAVED or more.
    The CPU template reads back only what a pass's vector loop computed and computes each run's few tail
    elements again, as the pass's one-by-one loop may call a scalar math function where the final pass's
    vector loop calls a vector one (libm's expf and libmvec's differ in the last bit). An out= buffer is
    never scratch (realize.py): it may be an input itself."""
    roots = [n for _, n in element_outputs]

    def cost(stopped: set[int]) -> int:
        return sum(id(n) in body_index for n in toposort(roots, done=done | stopped))

    chosen: dict[int, tuple[Node, int, int]] = {}
    for i, output in element_outputs:
        if i not in scratch:
            continue
        now, best = cost(set(chosen)), None
        for p, values in enumerate(pass_values):
            for node in values:
                if node.dtype == output.dtype and id(node) not in chosen:
                    saved = now - cost(set(chosen) | {id(node)})
                    if saved >= MIN_OPS_SAVED and (best is None or saved > best[0]):
                        best = (saved, node, p)
        if best is not None:
            chosen[id(best[1])] = (best[1], best[2], i)
    # A value another chosen one covers is never read back: not worth storing.
    order = toposort(roots, done=done | set(chosen))
    reached = {id(n) for n in roots} | {id(s) for n in order for s in n.src}
    return [entry for key, entry in chosen.items() if key in reached]


def _reduction(node: Node, name: str, value: str) -> dict:
    """How reduction ``node`` accumulates: its accumulator type, start, combine, and result."""
    op = opdefs.get(node.op)
    source = node.src[0].dtype
    if op.index:
        acc = f"eg::Arg<{C_TYPE[source]}>"
        return {"name": name, "acc": acc, "init": op.init, "combine": op.combine,
                "value": f"{acc}{{({C_TYPE[source]}){value}, pos + e}}", "final": f"acc.{name}.index"}
    acc = C_TYPE[op.accumulator_dtype(node.dtype)]
    return {"name": name, "acc": acc, "init": op.init, "combine": op.combine, "value": f"({acc}){value}",
            "final": f"({C_TYPE[node.dtype]})acc.{name}"}


def describe(node: Node, names: dict[int, str], body: list[Node], budget: int = 200) -> str:
    """The expression a kernel computes, over its argument names (never values: those are arguments).

    Shared subexpressions are written out where they occur, up to ``budget`` characters.
    """
    inline = {id(n) for n in body}
    reduce_ops = reductions()

    def parts(n: Node) -> tuple[str, tuple[Node, ...], str]:
        if id(n) not in inline:
            return names[id(n)], (), ""
        # A reduction's axes are loop geometry (arguments), not code: naming them would split the cache.
        params = () if n.op in reduce_ops else n.arg
        return f"{n.op}(", n.src, "".join(f", {p}" for p in params) + ")"

    return expression_text(node, parts, budget)
