"""Kernel -> C++ source, from ``templates/`` and the ops' C expressions.

Each op used in a kernel becomes one small inline function (``T`` bound to the type its inputs are
converted to), and the loop body calls them in order. The template arranges code; every decision (which
function, which load expression for a layout) is made here in Python tables.

``loop_geometry`` decides the loop nest: dims are coalesced across all arrays where the layouts allow,
and each array's innermost stride picks its load form (contiguous, broadcast or strided). That form is
compiled in; sizes and strides are arguments, so one binary serves every size with the same layouts.
"""

from __future__ import annotations


import jinja2
import numpy as np

from . import opdefs
from .dtypes import C_TYPE
from .graph import Node
from .resources import data_dir
from .schedule import Kernel

ENTRY = "exprgen_kernel"


_environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
                                 undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                 keep_trailing_newline=True)
# Compiled at import, so that a fresh process's first result does not wait for Jinja.
_ELEMENTWISE = _environment.get_template("cpu/elementwise.cpp.j2")


def loop_geometry(shape: tuple[int, ...], layouts: list[tuple[tuple, tuple]]):
    """(loop shape, per-array strides) for arrays given as (shape, strides in elements).

    Arrays are broadcast to ``shape`` (stride 0 where they repeat), size-1 dims are dropped, and adjacent
    dims merge wherever every array steps through them as one.
    """
    ndim = len(shape)
    full = []
    for arr_shape, arr_strides in layouts:
        pad = ndim - len(arr_shape)
        full.append([0 if i < pad or arr_shape[i - pad] == 1 else arr_strides[i - pad] for i in range(ndim)])
    dims = [d for d in range(ndim) if shape[d] != 1]
    out_shape = [shape[d] for d in dims]
    out_strides = [[s[d] for d in dims] for s in full]
    d = len(out_shape) - 1
    while d > 0:
        if all(s[d - 1] == s[d] * out_shape[d] for s in out_strides):
            out_shape[d - 1] *= out_shape[d]
            del out_shape[d]
            for s in out_strides:
                s[d - 1] = s[d]
                del s[d]
        d -= 1
    if not out_shape:
        return (1,), [[0] for _ in layouts]
    return tuple(out_shape), out_strides


def _load(name: str, inner_stride: int) -> str:
    if inner_stride == 1:
        return f"{name}[i]"
    if inner_stride == 0:
        return f"{name}[0]"
    return f"{name}[i * {name}_step]"


def _function_name(op: opdefs.OpDef, compute: tuple, result: np.dtype) -> str:
    return f"{op.name}_{''.join(d.str[1:] for d in compute)}_{result.str[1:]}"


def render(kernel: Kernel, inner_strides: list[int]) -> tuple[str, str]:
    """(source, summary) for ``kernel`` with these innermost strides (inputs, then outputs)."""
    names: dict[int, str] = {}
    arrays = []
    for i, node in enumerate(kernel.inputs):
        names[id(node)] = f"x{i}"
        arrays.append({"name": f"in{i}", "ctype": C_TYPE[node.dtype], "qualifier": "const "})
    for i, node in enumerate(kernel.outputs):
        arrays.append({"name": f"out{i}", "ctype": C_TYPE[node.dtype], "qualifier": ""})
    for array, inner in zip(arrays, inner_strides):
        array["strided"] = inner not in (0, 1)
    scalars = []
    for i, node in enumerate(kernel.scalars):
        names[id(node)] = f"s{i}"
        scalars.append({"name": f"s{i}", "ctype": C_TYPE[node.dtype]})
    statements = [{"name": f"x{i}", "ctype": C_TYPE[node.dtype], "expr": _load(f"in{i}", inner_strides[i])}
                  for i, node in enumerate(kernel.inputs)]
    functions: dict[str, dict] = {}
    for j, node in enumerate(kernel.body):
        op = opdefs.get(node.op)
        signature = tuple(s.signature_item() for s in node.src)
        compute = op.compute_dtypes(signature, node.arg)
        fname = _function_name(op, compute, node.dtype)
        functions.setdefault(fname, {
            "name": fname, "ret": C_TYPE[node.dtype], "t": C_TYPE[op.compute_type(signature, node.arg)],
            "params": ", ".join(f"{C_TYPE[d]} {n}" for d, n in zip(compute, op.inputs)), "expr": op.c})
        names[id(node)] = f"v{j}"
        args = ", ".join(names[id(s)] for s in node.src)
        statements.append({"name": f"v{j}", "ctype": C_TYPE[node.dtype], "expr": f"eg::{fname}({args})"})
    first_out = len(kernel.inputs)
    stores = [{"target": _load(f"out{i}", inner_strides[first_out + i]), "value": names[id(node)]}
              for i, node in enumerate(kernel.outputs)]
    summary = "; ".join(f"out{i} = {describe(node, names, kernel.body)}" for i, node in enumerate(kernel.outputs))
    source = _ELEMENTWISE.render(
        summary=summary, functions=list(functions.values()), entry=ENTRY,
        arrays=arrays, scalars=scalars, statements=statements, stores=stores)
    return source, summary


def describe(node: Node, names: dict[int, str], body: list[Node], budget: int = 200) -> str:
    """The expression a kernel computes, over its argument names (never values: those are arguments).

    Shared subexpressions are written out where they occur, up to ``budget`` characters.
    """
    inline = {id(n) for n in body}
    out: list[str] = []

    def walk(n: Node) -> None:
        if sum(map(len, out)) > budget:
            out.append("...")
            return
        if id(n) not in inline:
            out.append(names[id(n)])
            return
        out.append(f"{n.op}(")
        for k, s in enumerate(n.src):
            out.append(", " if k else "")
            walk(s)
        out.append("".join(f", {p}" for p in n.arg) + ")")

    walk(node)
    text = "".join(out)
    return text if len(text) <= budget + 3 else text[:budget] + "..."
