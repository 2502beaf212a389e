"""Hypothesis strategies that draw values, dtypes, shapes, layouts and whole expression DAGs from the op
registry (``exprgen.testing`` is the public face; this docstring's long form is there)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import exprgen as ex

from ..ir import dtypes, opdefs
from ..rewrite import rules
from ..api.array import Array
from ..ir.graph import SCALAR

# ``expressions`` draws from these by default (it takes a parameter named dtypes): the core five, since a
# float drawn into a narrow or unsigned integer may be NaN or out of range, which the standard leaves
# unspecified (tests/test_ops.py tests every op at the other integers, with values they hold).
DEFAULT_DTYPES = dtypes.CORE


# -- values and hypothesis strategies --------------------------------------------------------------
GENERIC_DOMAIN = opdefs.Domain(-10.0, 10.0)   # for inputs no op's domain speaks for (views)


def special_values(dtype) -> np.ndarray:
    """The values every op must survive in this dtype: zeros, infinities, NaN, subnormals, extremes."""
    dtype = np.dtype(dtype)
    if dtype == dtypes.BOOL:
        return np.array([False, True])
    if dtype in dtypes.INTEGERS:
        info = np.iinfo(dtype)
        values = [0, 1, -1, 2, -2, 3, -7, 100, info.min, info.min + 1, info.max, info.max - 1]
        return np.array([v for v in dict.fromkeys(values) if info.min <= v <= info.max], dtype)
    info = np.finfo(dtype)
    tiny_sub = info.smallest_subnormal
    # Halves are round()'s ties; the largest subnormal and the smallest normal sit on either side of
    # the point where hardware may flush to zero.
    values = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, 2.5, -2.5, 3.0, -7.0, math.inf, -math.inf, math.nan,
              tiny_sub, -tiny_sub, info.tiny - tiny_sub, info.tiny, info.max, -info.max, 1e30, -1e30]
    return np.array(values, dtype)


def _domain(op: opdefs.OpDef | None, index: int) -> opdefs.Domain:
    return op.domains[index] if op is not None and op.domains else GENERIC_DOMAIN


def domain_edges(op: opdefs.OpDef | None, index: int, dtype) -> np.ndarray:
    """The op's own edge values for input ``index`` that ``dtype`` can hold exactly (ints: integral ones)."""
    dtype = np.dtype(dtype)
    edges = np.array(_domain(op, index).edges, np.float64)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        with np.errstate(invalid="ignore"):
            keep = np.isfinite(edges) & (edges == np.round(edges)) & (edges >= info.min) & (edges <= info.max)
        edges = edges[keep]
    elif dtype == dtypes.BOOL:
        edges = edges[(edges == 0) | (edges == 1)]
    with np.errstate(over="ignore"):
        return edges.astype(dtype)


def edge_values(op: opdefs.OpDef | None, index: int, dtype) -> np.ndarray:
    """Special values of the dtype plus the op's domain edges, without repeats."""
    values = np.concatenate([special_values(dtype), domain_edges(op, index, dtype)])
    _, first = np.unique(values.view(f"u{values.itemsize}"), return_index=True)  # by bits: keeps -0.0, NaN
    return values[np.sort(first)]


def domain_elements(op: opdefs.OpDef | str | None, index: int, dtype, edges: bool = True):
    """Hypothesis strategy for one input value of ``op`` (an op or its name; None: any op): the domain's
    range, and with ``edges`` one time in four an edge (special values of the dtype and the op's own)."""
    from hypothesis import strategies as st

    op = opdefs.get(op) if isinstance(op, str) else op
    dtype = dtypes.check_supported(np.dtype(dtype), "a strategy's dtype")
    domain = _domain(op, index)
    if dtype == dtypes.BOOL:
        return st.booleans()
    if dtype in dtypes.INTEGERS:
        info = np.iinfo(dtype)
        low, high = max(math.ceil(domain.low), info.min), min(math.floor(domain.high), info.max)
        if low > high:   # no integer inside the range: its edges are all there is
            return st.sampled_from(list(edge_values(op, index, dtype))).map(dtype.type)
        inside = st.integers(low, high)
    else:
        # hypothesis wants bounds the width can hold: round them inwards.
        low, high = dtype.type(domain.low), dtype.type(domain.high)
        low = np.nextafter(low, dtype.type(math.inf)) if low < domain.low else low
        high = np.nextafter(high, dtype.type(-math.inf)) if high > domain.high else high
        inside = st.floats(float(low), float(high), width=8 * dtype.itemsize)
    if edges:   # one_of picks evenly: three parts in four inside
        inside = st.one_of(inside, inside, inside, st.sampled_from(list(edge_values(op, index, dtype))))
    return inside.map(dtype.type)


def array_dtypes(allowed=None):
    """Hypothesis strategy for a dtype exprgen supports (from ``allowed`` names or dtypes, if given)."""
    from hypothesis import strategies as st

    return st.sampled_from([dtypes.as_dtype(d) for d in (allowed or dtypes.SUPPORTED)])


def array_shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 0, max_side: int = 5):
    """Hypothesis strategy for an array shape (0-d and empty shapes included by default)."""
    from hypothesis.extra import numpy as hnp

    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_shapes(num_shapes: int = 2, min_dims: int = 0, max_dims: int = 3, min_side: int = 1,
                         max_side: int = 5):
    """Hypothesis strategy for a tuple of ``num_shapes`` shapes that broadcast together."""
    from hypothesis.extra import numpy as hnp

    return hnp.mutually_broadcastable_shapes(num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims,
                                             min_side=min_side, max_side=max_side).map(lambda s: s.input_shapes)


def arrays(dtype, shape, op: opdefs.OpDef | str | None = None, index: int = 0, edges: bool = True):
    """Hypothesis strategy for a contiguous array whose values come from input ``index`` of ``op``'s
    domain (``domain_elements``); ``dtype`` and ``shape`` may be strategies."""
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    op = opdefs.get(op) if isinstance(op, str) else op
    if isinstance(dtype, st.SearchStrategy):
        return dtype.flatmap(lambda d: arrays(d, shape, op, index, edges))
    # Every element drawn (no background fill): a kernel that reads the wrong element must show it.
    return hnp.arrays(np.dtype(dtype), shape, elements=domain_elements(op, index, dtype, edges), fill=st.nothing())


def domain_arrays(op: opdefs.OpDef, dtype, shape, index: int = 0):
    """``arrays`` for input ``index`` of ``op``."""
    return arrays(dtype, shape, op, index)


# Past this many elements an array's values are not each drawn (hypothesis takes a few thousand choices
# per example at most): a block of them is, spread over the array by a drawn seed (``spread``).
SPREAD_ABOVE = 1024
SPREAD_BLOCK = 64


def spread(block: np.ndarray, shape: tuple, seed: int) -> np.ndarray:
    """An array of ``shape`` whose every element is one of ``block``'s, chosen by ``seed``: a large fuzzed
    input, each drawn value (the edges too) in many places, neighbours unrelated, so that a kernel reading
    the wrong element is seen."""
    return np.random.default_rng(seed).choice(block, size=shape)


@dataclass(frozen=True, eq=False)
class Leaf:
    """An input: ``base`` (contiguous) seen through NumPy ``layout`` steps: ("getitem", index),
    ("transpose", axes) or ("broadcast_to", shape). A large base is ``spread(*recipe)``, and prints so."""

    base: np.ndarray
    layout: tuple = ()
    recipe: tuple | None = None   # (block, seed): base == spread(block, base.shape, seed)

    def array(self) -> np.ndarray:
        a = self.base
        for kind, arg in self.layout:
            a = a[arg] if kind == "getitem" else a.transpose(arg) if kind == "transpose" else np.broadcast_to(a, arg)
        return a

    def source(self) -> str:
        if self.recipe is not None:
            block, seed = self.recipe
            values = ", ".join(_literal(v) for v in block.tolist())
            text = (f"exprgen.testing.spread(np.array([{values}], dtype=np.{block.dtype.name}), "
                    f"{self.base.shape}, {seed})")
        else:
            values = ", ".join(_literal(v) for v in self.base.ravel().tolist())
            text = f"np.array([{values}], dtype=np.{self.base.dtype.name}).reshape({self.base.shape})"
        for kind, arg in self.layout:
            text = (f"{text}[{_index_source(arg)}]" if kind == "getitem" else f"{text}.transpose({arg})"
                    if kind == "transpose" else f"np.broadcast_to({text}, {arg})")
        return text


def _layouts(draw, shape: tuple) -> tuple[tuple, tuple]:
    """(base shape, layout) of a NumPy view of ``shape``: contiguous, transposed, strided on one axis
    (with any offset, either direction) and the others possibly reversed, or broadcast (stride 0)."""
    from hypothesis import strategies as st

    kind = draw(st.sampled_from(["contiguous", "transposed", "strided", "broadcast"]), label="layout")
    if kind == "contiguous" or not shape:
        return shape, ()
    if kind == "transposed":
        perm = draw(st.permutations(range(len(shape))))
        return tuple(shape[p] for p in perm), (("transpose", tuple(int(i) for i in np.argsort(perm))),)
    if kind == "broadcast":
        return tuple(draw(st.sampled_from([1, n])) for n in shape), (("broadcast_to", shape),)
    axis = draw(st.integers(0, len(shape) - 1))
    base, key = [], []
    for d, n in enumerate(shape):
        step = draw(st.sampled_from([2, -2, 3]) if d == axis else st.sampled_from([1, -1]))
        offset = draw(st.integers(0, abs(step) - 1)) if d == axis else 0
        size = n * abs(step) + offset
        base.append(size)
        key.append(slice(offset, None, step) if step > 0 else slice(size - 1 - offset, None, step))
    return tuple(base), (("getitem", tuple(key)),)


def _leaf(draw, dtype, shape: tuple, op=None, index: int = 0, edges: bool = True) -> Leaf:
    from hypothesis import strategies as st

    base_shape, layout = _layouts(draw, shape)
    if math.prod(base_shape) <= SPREAD_ABOVE:
        return Leaf(draw(arrays(dtype, base_shape, op, index, edges)), layout)
    block, seed = draw(arrays(dtype, (SPREAD_BLOCK,), op, index, edges)), draw(st.integers(0, 2**32 - 1))
    return Leaf(spread(block, base_shape, seed), layout, (block, seed))


def array_views(dtype, shape, op: opdefs.OpDef | str | None = None, index: int = 0, edges: bool = True):
    """Hypothesis strategy for a NumPy view of ``shape`` (contiguous, transposed, strided or reversed,
    broadcast) holding values from ``op``'s domain: how kernels meet arrays users slice."""
    from hypothesis import strategies as st

    op = opdefs.get(op) if isinstance(op, str) else op
    return st.composite(lambda draw: _leaf(draw, dtype, shape, op, index, edges).array())()


# -- random expressions ------------------------------------------------------------------------------
# Composite functions and the registry reduction whose domain their input is drawn from.
COMPOSITES = {"mean": "sum", "var": "sum", "std": "sum", "logsumexp": "max", "softmax": "max", "log_softmax": "max"}
VIEWS = ("flip", "transpose", "reshape", "getitem", "broadcast_to", "expand_dims", "squeeze", "swapaxes")
PATTERN = "rule: "   # a vocabulary entry that draws a rewrite rule's pattern
# Shapes a case's results broadcast to: 0-d, size-1 axes, and rows long enough for a SIMD loop and its
# tail (16 floats a vector at most).
FULL_SHAPES = [(), (1,), (7,), (3, 4), (4, 1), (1, 5), (2, 3, 4), (3, 1, 2), (2, 17), (37,)]


def _literal(value) -> str:
    """Python source for a value a case holds (Python scalars stay Python scalars: weakly typed)."""
    if isinstance(value, Ref):
        return value.name
    if isinstance(value, float) and not math.isfinite(value):
        return "np.nan" if math.isnan(value) else ("np.inf" if value > 0 else "-np.inf")
    if isinstance(value, tuple):
        return "(" + ", ".join(map(_literal, value)) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def _index_source(key) -> str:
    def part(p):
        if isinstance(p, slice):
            text = ":".join("" if v is None else str(v) for v in (p.start, p.stop))
            return text + (f":{p.step}" if p.step is not None else "")
        return "..." if p is Ellipsis else repr(p)
    return ", ".join(map(part, key if isinstance(key, tuple) else (key,))) or "()"


@dataclass(frozen=True)
class Ref:
    """A case's reference to one of its inputs (x0, x1, ...) or earlier results (v0, v1, ...)."""

    name: str


@dataclass(frozen=True, eq=False)
class Call:
    """``ex.<function>(*args, **kwargs)``; "getitem" is ``args[0][args[1]]``, "apply" a user op."""

    function: str
    args: tuple
    kwargs: tuple = ()

    def run(self, env: dict):
        args = [env[a.name] if isinstance(a, Ref) else a for a in self.args]
        if self.function == "getitem":
            return args[0][args[1]]
        return getattr(ex, self.function)(*args, **dict(self.kwargs))

    def source(self) -> str:
        if self.function == "getitem":
            return f"{_literal(self.args[0])}[{_index_source(self.args[1])}]"
        args = [_literal(a) for a in self.args] + [f"{k}={_literal(v)}" for k, v in self.kwargs]
        return f"ex.{self.function}({', '.join(args)})"


@dataclass(frozen=True, eq=False)
class Case:
    """A random expression DAG over random inputs: what ``expressions`` draws. ``build`` gives fresh,
    unevaluated Arrays of its roots; ``repr`` is Python that rebuilds and checks it."""

    leaves: tuple   # (name, Leaf)
    calls: tuple    # (name, Call), each over leaves and earlier calls
    roots: tuple    # names

    def build(self, inputs=None) -> list[Array]:
        """The roots as Arrays; ``inputs`` replaces the leaves' arrays (same shapes and dtypes)."""
        env = self.values(inputs)
        return [env[name] for name in self.roots]

    def values(self, inputs=None) -> dict[str, Array]:
        """Every input and result by name, as Arrays."""
        env = {name: ex.asarray(leaf.array() if inputs is None else inputs[i])
               for i, (name, leaf) in enumerate(self.leaves)}
        for name, call in self.calls:
            env[name] = call.run(env)
        return env

    def source(self, check: bool = True) -> str:
        user = sorted({c.args[0] for _, c in self.calls if c.function == "apply"})
        lines = ["import numpy as np", "import exprgen as ex", "import exprgen.testing",
                 "from exprgen.testing import assert_matches_reference", ""]
        lines += [f"# {name}: a user op, defined with ex.elementwise before this runs" for name in user]
        lines += [f"{name} = ex.asarray({leaf.source()})" for name, leaf in self.leaves]
        lines += [f"{name} = {call.source()}" for name, call in self.calls]
        lines.append(f"roots = [{', '.join(self.roots)}]")
        if check:
            lines.append("assert_matches_reference(*roots)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.source()

    def _repr_pretty_(self, printer, cycle) -> None:   # hypothesis prints falsifying examples with this
        printer.text(self.source())


def vocabulary(ops=None, patterns: bool = True) -> list[str]:
    """What ``expressions`` draws from: registry ops (canonical names), composites, views, and with
    ``patterns`` the patterns of the rewrite rules that run by default (``"rule: x*1 -> x"``) whose ops
    are all drawn too, so that rules fire. ``ops=None``: every built-in op (user ops only when named)."""
    if ops is None:
        ops = [op.name for op in opdefs.canonical_ops(builtin_only=True)] + list(COMPOSITES) + list(VIEWS)
    names = []
    for name in ops:
        if name not in COMPOSITES and name not in VIEWS:
            op = opdefs.get(name)
            if set(op.params) - {"dtype", "axis"}:
                raise ValueError(f"expressions cannot draw {name}: it takes parameters {op.params}")
            name = op.name
        names.append(name)
    if patterns:
        names += [PATTERN + r.algebra for r in rules.active()
                  if r.pattern is not None and r.kind != "fast" and _pattern_ops(r.pattern) <= set(names)]
    return list(dict.fromkeys(names))


def _pattern_ops(pat) -> set[str]:
    return ({pat.op} if pat.op not in (None, SCALAR) else set()) | {o for p in pat.src for o in _pattern_ops(p)}


class _Skip(Exception):
    """A drawn step that cannot apply here (no operand of a fitting shape)."""


class _Builder:
    """Draws one case step by step, keeping Arrays of everything built so far to type the next step."""

    def __init__(self, draw, options: dict):
        from hypothesis import strategies as st

        self.st, self.draw, self.options = st, draw, options
        self.full = draw(options["shapes"], label="shape")
        self.leaves: list = []
        self.calls: list = []
        self.env: dict[str, Array] = {}
        self.depth: dict[str, int] = {}

    def step(self, name: str) -> None:
        """Draw and add one call of ``name``; one that NumPy's rules refuse (dtypes) leaves no trace."""
        mark = (len(self.leaves), len(self.calls))
        try:
            self._add(self._make(name))
        except (_Skip, TypeError, ValueError, OverflowError, IndexError):
            for name_, _ in self.leaves[mark[0]:] + self.calls[mark[1]:]:
                del self.env[name_]
            del self.leaves[mark[0]:], self.calls[mark[1]:]

    def _add(self, call: Call) -> Ref:
        value = call.run(self.env)
        ref = f"v{len(self.calls)}"
        self.calls.append((ref, call))
        self.env[ref] = value
        self.depth[ref] = 1 + max((self.depth.get(a.name, 0) for a in call.args if isinstance(a, Ref)), default=0)
        return Ref(ref)

    def _make(self, name: str) -> Call:
        if name.startswith(PATTERN):
            rule = next(r for r in rules.active() if r.algebra == name[len(PATTERN):])
            return self._pattern(rule.pattern, {})
        if name in VIEWS:
            return self._view(name)
        if name in COMPOSITES:
            return self._reduce(name, opdefs.get(COMPOSITES[name]))
        op = opdefs.get(name)
        if op.is_library:
            return self._contraction(op)
        return self._reduce(name, op) if op.is_reduction else self._elementwise(op)

    def _contraction(self, op: opdefs.OpDef) -> Call:
        """``op(x, y)`` (a matmul) of an earlier result or input and a new input, on either side of it, of the
        size it contracts with (a vector as often as a matrix: the matrix-vector forms)."""
        st, draw = self.st, self.draw
        x, shape = self._operand(op, 0, None, False)
        if not shape:
            raise _Skip   # matmul takes no 0-d operand
        left = len(shape) >= 2 and draw(st.booleans(), label="left")   # the new input times x
        k, m = shape[-2] if left else shape[-1], draw(st.sampled_from([1, 3]), label="free size")
        other = (k,) if draw(st.booleans(), label="vector") else (m, k) if left else (k, m)
        y = self._input(op, 1, other)
        return Call(op.name, (y, x) if left else (x, y))

    def _pattern(self, pat, bound: dict) -> Call:
        """The call a rule's op pattern matches, with a drawn operand for each variable (the same one
        wherever the variable recurs) and each inner op added first."""
        args = []
        for p in pat.src:
            if p.op is None:
                bound.setdefault(p.name, self._operand(None, 0, None, False)[0])
            args.append(bound[p.name] if p.op is None else p.value if p.op is SCALAR else self._add(self._pattern(p, bound)))
        if not any(isinstance(a, Ref) for a in args):
            raise _Skip   # over Python scalars alone the op is folded, not computed
        return Call("apply", (pat.op, *args)) if opdefs.get(pat.op).user else Call(pat.op, tuple(args))

    def _elementwise(self, op: opdefs.OpDef) -> Call:
        args, shape, arrays_seen = [], None, False
        for i in range(op.arity):
            scalar_ok = self.options["scalars"] and (arrays_seen or i < op.arity - 1)
            arg, arg_shape = self._operand(op, i, shape, scalar_ok)
            args.append(arg)
            if arg_shape is not None:
                arrays_seen = True
                shape = arg_shape if shape is None else np.broadcast_shapes(shape, arg_shape)
        params = tuple(self.draw(self.st.sampled_from([d.name for d in self.options["dtypes"]])) for _ in op.params)
        if op.user:
            return Call("apply", (op.name, *args))
        return Call(op.name, tuple(args) + params)

    def _operand(self, op, index: int, shape, scalar_ok: bool):
        """(argument, its shape): an earlier result or input that broadcasts with ``shape``, a new input,
        or a Python scalar (shape None)."""
        st, draw = self.st, self.draw
        fits = [n for n in self.env if self.depth.get(n, 0) < self.options["max_depth"]
                and (shape is None or _broadcasts(shape, self.env[n].shape))]
        kinds = (["earlier"] if fits else []) + ["input"] + (["scalar"] if scalar_ok else [])
        kind = draw(st.sampled_from(kinds), label="operand")
        if kind == "earlier":
            name = draw(st.sampled_from(fits))
            return Ref(name), self.env[name].shape
        if kind == "scalar":
            scalar = st.sampled_from([float, int, bool]).flatmap(
                lambda t: st.booleans() if t is bool else domain_elements(
                    op, index, np.float64 if t is float else np.int64, self.options["edges"]).map(t))
            return draw(scalar, label="scalar"), None
        target = self.full if shape is None else shape
        kept = tuple(draw(st.sampled_from([n, 1])) for n in target)
        leaf_shape = kept[draw(st.integers(0, len(kept))):]
        return self._input(op, index, leaf_shape), leaf_shape

    def _input(self, op, index: int, shape: tuple) -> Ref:
        """A new input of ``shape``, drawn from ``op``'s domain for its input ``index``."""
        dtype = self.draw(self.st.sampled_from(self.options["dtypes"]), label="dtype")
        leaf = _leaf(self.draw, dtype, shape, op, index, self.options["edges"])
        name = f"x{len(self.leaves)}"
        self.env[name] = ex.asarray(leaf.array())
        self.leaves.append((name, leaf))
        return Ref(name)

    def _axis(self, ndim: int, single: bool):
        st = self.st
        one = st.integers(-ndim, ndim - 1) if ndim else st.nothing()
        if single:
            return self.draw(st.one_of(st.none(), one), label="axis")
        some = st.sets(st.integers(0, ndim - 1), min_size=1).map(lambda s: tuple(sorted(s))) if ndim else st.nothing()
        return self.draw(st.one_of(st.none(), one, some), label="axis")

    def _reduce(self, name: str, op: opdefs.OpDef) -> Call:
        x, shape = self._operand(op, 0, None, False)
        if name in ("softmax", "log_softmax"):
            return Call(name, (x,), (("axis", self._axis(len(shape), True) or -1),))
        kwargs = [("axis", self._axis(len(shape), name in ("argmax", "argmin"))),
                  ("keepdims", self.draw(self.st.booleans()))]
        if name in ("var", "std"):
            kwargs.append(("ddof", self.draw(self.st.sampled_from([0, 1]))))
        return Call(name, (x,), tuple(kwargs))

    def _view(self, kind: str) -> Call:
        st, draw = self.st, self.draw
        x, shape = self._operand(None, 0, None, False)
        nd = len(shape)
        if kind == "flip":
            return Call(kind, (x,), (("axis", self._axis(nd, False)),))
        if kind == "transpose":
            return Call(kind, (x, tuple(draw(st.permutations(range(nd))))))
        if kind == "reshape":
            return Call(kind, (x, draw(_reshapes(shape))))
        if kind == "getitem":
            return Call(kind, (x, tuple(draw(_index_parts(n)) for n in shape) + draw(st.sampled_from([(), (None,)]))))
        if kind == "broadcast_to":
            wider = tuple(draw(st.sampled_from([n, 3])) if n == 1 else n for n in shape)
            return Call(kind, (x, draw(st.sampled_from([(), (2,)])) + wider))
        if kind == "expand_dims":
            return Call(kind, (x, draw(st.integers(-nd - 1, nd))))
        if kind == "squeeze" and 1 in shape:
            return Call(kind, (x,))
        if kind == "swapaxes" and nd >= 2:
            return Call(kind, (x, draw(st.integers(0, nd - 1)), draw(st.integers(-nd, nd - 1))))
        raise _Skip

    def case(self) -> Case:
        """The case whose roots are the results nothing else used (and maybe one that something did:
        a shared subexpression as an output too), with what they do not need left out."""
        used = {a.name for _, c in self.calls for a in c.args if isinstance(a, Ref)}
        roots = [name for name, _ in self.calls if name not in used][-self.options["max_roots"]:]
        shared = [name for name, _ in self.calls if name in used and name not in roots]
        if shared and self.draw(self.st.booleans(), label="shared root"):
            roots.insert(0, self.draw(self.st.sampled_from(shared)))
        needed = set(roots)
        for name, call in reversed(self.calls):
            if name in needed:
                needed |= {a.name for a in call.args if isinstance(a, Ref)}
        return Case(tuple((n, leaf) for n, leaf in self.leaves if n in needed),
                    tuple((n, c) for n, c in self.calls if n in needed), tuple(roots))


def _broadcasts(a: tuple, b: tuple) -> bool:
    return all(m == n or 1 in (m, n) for m, n in zip(reversed(a), reversed(b)))


def _reshapes(shape: tuple):
    """Shapes the same elements fit: flattened, a size-1 axis inserted, two neighbours merged, one split."""
    from hypothesis import strategies as st

    options = [(-1,), ((1,) + shape)]
    options += [shape[:d] + (shape[d] * shape[d + 1],) + shape[d + 2:] for d in range(len(shape) - 1)]
    options += [shape[:d] + (k, shape[d] // k) + shape[d + 1:] for d in range(len(shape))
                for k in range(2, shape[d]) if shape[d] % k == 0]
    return st.sampled_from(options)


def _index_parts(n: int):
    """One axis of a basic index: all of it, reversed, every other element, one element, a range."""
    from hypothesis import strategies as st

    parts = [st.just(slice(None)), st.just(slice(None, None, -1)), st.just(slice(None, None, 2)),
             st.integers(-n, n - 1) if n else st.nothing(),
             st.tuples(st.integers(0, max(n - 1, 0)), st.integers(1, max(n, 1))).map(
                 lambda t: slice(min(t), max(t[0] + 1, t[1])))]
    return st.one_of(*parts)


_SUPPORTED = dtypes.check_supported   # under a name of its own: expressions' argument is called dtypes


def expressions(ops=None, dtypes=None, max_depth: int = 4, max_steps: int = 8, max_roots: int = 4, shapes=None,
                scalars: bool = True, edges: bool = True, patterns: bool = True):
    """Hypothesis strategy for a ``Case``: a random expression DAG drawn from ``vocabulary(ops)``.

    Each step applies a drawn op (or composite, or view) to earlier results (shared subexpressions),
    new inputs (values from that op's domain, in a drawn layout, of a shape that broadcasts) or Python
    scalars; steps NumPy's typing refuses are dropped. ``dtypes``: the inputs' dtypes (results take
    whatever the ops give: a comparison of floats is bool). ``max_depth`` bounds the longest chain,
    ``max_steps`` the number of ops drawn, ``max_roots`` the outputs. ``shapes``: a strategy for the
    full shape (default: one of ``FULL_SHAPES``). ``edges``: also draw edge values
    (off for smooth functions, e.g. gradients).
    """
    from hypothesis import assume
    from hypothesis import strategies as st

    if shapes is None:
        shapes = st.sampled_from(FULL_SHAPES)
    options = {"vocabulary": vocabulary(ops, patterns),
               "dtypes": [_SUPPORTED(np.dtype(d), "expressions(dtypes=...)") for d in (dtypes or DEFAULT_DTYPES)],
               "max_depth": max_depth, "max_roots": max_roots, "shapes": shapes, "scalars": scalars, "edges": edges}

    @st.composite
    def draw_case(draw):
        builder = _Builder(draw, options)
        for _ in range(draw(st.integers(1, max_steps), label="steps")):
            builder.step(draw(st.sampled_from(options["vocabulary"]), label="op"))
        assume(builder.calls)
        return builder.case()
    return draw_case()
