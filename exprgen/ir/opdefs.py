"""The op registry: loads ``ops/*.toml`` into ``OpDef`` records, the only place that knows op facts.

An entry holds everything about one op: its inputs, C++ expression (over the input names and ``T``, the
type the inputs are converted to), NumPy reference, backward formulas, fuzzing domain, ULP tolerance and
algebraic properties. Every entry is validated here at import, so a typo in ``ops/`` fails loudly before
any kernel is rendered. CUDA kernels use the same ``c`` expression (cuda/prelude.cuh gives prelude.h's
functions on the device); an entry's optional ``cuda`` expression replaces it there, and is held to the
same rules.

The result dtype is not a separate table: it is whatever the NumPy reference returns for empty inputs of
the same dtypes (Python scalars passed as Python scalars, so they stay weakly typed). exprgen's typing is
therefore NumPy's by construction. An entry's ``cast`` says what each input becomes before the expression
sees it: the result dtype, the inputs' common dtype (comparisons; int64 and uint64 stay apart there, since
NumPy 2 compares them exactly), bool, or nothing ("own": astype converts in its expression).
"""

from __future__ import annotations

import ast
import functools
import math
import re
import tomllib
from dataclasses import dataclass, field

import numpy as np

from . import dtypes, formulas
from .numpy_helpers import HELPERS
from ..resources import data_dir

# A "library" op is computed by a call into a well-kept library (its ``call``: matmul is NumPy's, which
# runs the BLAS NumPy links) rather than by a generated loop; its ``shape`` rule says its result's shape.
ARITY = {"unary": 1, "binary": 2, "ternary": 3, "reduce": 1, "library": 2}
DEFAULT_INPUTS = {"unary": ("x",), "binary": ("x", "y"), "reduce": ("x",), "library": ("x", "y")}
# How a result's shape follows from its inputs': broadcasting, or (..., M, K) with (..., K, N) giving
# (..., M, N), the batch axes broadcast (graph.py applies them).
SHAPE_RULES = ("broadcast", "contract")
CASTS = ("result", "common", "bool", "own")

# The C++ functions an op expression may call: everything prelude.h defines in namespace eg.
_PRELUDE_FUNCTION = re.compile(r"EG_MATH[12]\((\w+)\)|static\s+inline\s+[\w:<>]+\s+(\w+)\s*\(")


@functools.cache
def prelude_functions() -> frozenset[str]:
    text = (data_dir("templates") / "prelude.h").read_text()
    return frozenset(a or b for a, b in _PRELUDE_FUNCTION.findall(text)) - {"name"}  # "name": the macros' own parameter


def _numpy_namespace() -> dict:
    return {"np": np, "math": math, **HELPERS}


_C_TOKEN = re.compile(r"\s*(?:(?P<num>\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+)|(?P<name>[A-Za-z_]\w*)"
                      r"|(?P<op><=|>=|==|!=|&&|\|\||[-+*/%<>!?:(),&|^~]))")


def check_c_expression(expr: str, names: set[str], where: str) -> None:
    """Refuse a C expression that could break out of its template or mean something unintended.

    Allowed: the given names, ``T``, calls of prelude functions, integer literals, float literals only as
    ``T(1.5)`` (a bare ``0.5`` would silently compute in double), and C operators. No ``;``, braces,
    ``#``, strings, comments or anything else.
    """
    if "//" in expr or "/*" in expr:
        raise ValueError(f"{where}: C expression {expr!r} contains a comment")
    pos, tokens = 0, []
    while pos < len(expr.rstrip()):
        match = _C_TOKEN.match(expr, pos)
        if not match:
            raise ValueError(f"{where}: C expression {expr!r} has a forbidden character at {expr[pos:pos + 8]!r}")
        tokens.append(match)
        pos = match.end()
    functions = prelude_functions()
    for i, tok in enumerate(tokens):
        follows = tokens[i + 1].group("op") if i + 1 < len(tokens) else None
        if tok.group("name"):
            name = tok.group("name")
            if follows == "(" and name != "T":
                if name not in functions:
                    raise ValueError(f"{where}: C expression calls unknown function {name!r}")
            elif name not in names and name != "T":
                raise ValueError(f"{where}: C expression uses unknown name {name!r} (inputs: {sorted(names)})")
        elif tok.group("num") and not tok.group("num").isdigit():
            wrapped = i >= 2 and tokens[i - 1].group("op") == "(" and tokens[i - 2].group("name") == "T"
            if not wrapped:
                raise ValueError(f"{where}: float literal {tok.group('num')} must be written T({tok.group('num')})")


def typed_float_literals(expr: str) -> str:
    """``expr`` with every float literal not yet written ``T(...)`` written so (``x * 2 + 1e-3`` ->
    ``x * 2 + T(1e-3)``): a user's op computes in its type ``T``, where a bare 1e-3 would be a double.
    Integer literals stay as they are (C converts them exactly); anything else is left to
    ``check_c_expression``."""
    out, pos, tokens = [], 0, []
    while pos < len(expr.rstrip()):
        match = _C_TOKEN.match(expr, pos)
        if not match:
            return expr   # check_c_expression names the forbidden character
        tokens.append(match)
        pos = match.end()
    last = 0
    for i, tok in enumerate(tokens):
        number = tok.group("num")
        wrapped = i >= 2 and tokens[i - 1].group("op") == "(" and tokens[i - 2].group("name") == "T"
        if number and not number.isdigit() and not wrapped:
            out += [expr[last:tok.start("num")], f"T({number})"]
            last = tok.end("num")
    return "".join(out) + expr[last:]


def formula_names(formula: str) -> set[str]:
    """Names a backward formula uses, parsed with ``ast`` (nothing is evaluated)."""
    tree = ast.parse(formula, mode="eval")
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


@dataclass(frozen=True)
class Domain:
    """Where fuzzing draws an input: a range plus edge values that must be tried."""

    low: float
    high: float
    edges: tuple[float, ...] = ()


@dataclass(frozen=True, eq=False)  # identity hash: OpDefs are singletons, and hashing them is on the hot path
class OpDef:
    name: str
    kind: str
    inputs: tuple[str, ...]
    c: str
    numpy_src: str
    numpy: object = field(compare=False, repr=False)
    cast: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    vjp: tuple[str, ...] | None = None
    domains: tuple[Domain, ...] = ()
    ulp: dict = field(default_factory=dict, compare=False)
    signed_zero: bool = True
    # Whether the float32 result is the float64 one rounded once (the truth float32 kernels are measured
    # against); not for ops on float32's own representation (nextafter), measured against NumPy's float32.
    widen: bool = True
    aliases: tuple[str, ...] = ()
    props: frozenset[str] = frozenset()
    accepts: frozenset | None = None   # input dtypes allowed (user ops may narrow NumPy's rules)
    user: bool = False                 # defined at run time with ex.elementwise, not in ops/
    cuda: str = ""                     # the expression in CUDA kernels, where it must differ from c
    # Reductions only (kind "reduce"): C expressions over acc and x, the accumulator dtype per result
    # dtype where it is wider, what an empty reduction gives, and whether the result is an index.
    init: str = ""
    combine: str = ""
    accumulator: dict = field(default_factory=dict, compare=False)
    empty: str = "identity"
    index: bool = False
    # Library ops only (kind "library"): the function computing it, called as call(*inputs, out=result).
    call: object = field(default=None, compare=False, repr=False)
    shape: str = "broadcast"

    def expression(self, target: str) -> str:
        """The C++ expression for kernels of ``target`` ("cpu" or "cuda")."""
        return self.cuda if target == "cuda" and self.cuda else self.c

    @property
    def is_reduction(self) -> bool:
        return self.kind == "reduce"

    def accumulator_dtype(self, result: np.dtype) -> np.dtype:
        return np.dtype(self.accumulator.get(np.dtype(result).name, result))

    @property
    def is_library(self) -> bool:
        return self.kind == "library"

    @property
    def arity(self) -> int:
        return len(self.inputs)

    def tolerance_ulp(self, dtype: np.dtype) -> int:
        return self.ulp.get(np.dtype(dtype).name, 0)

    def result_dtype(self, signature: tuple, params: tuple = ()) -> np.dtype:
        """NumPy's result dtype for inputs of these dtypes (Python types stand for weak scalars)."""
        return _probe(self, signature, params)[0]

    def compute_dtypes(self, signature: tuple, params: tuple = ()) -> tuple[np.dtype, ...]:
        """The dtype each input is converted to before the C expression sees it."""
        return _probe(self, signature, params)[1]

    def compute_type(self, signature: tuple, params: tuple = ()) -> np.dtype:
        """``T`` in the C expression."""
        return _probe(self, signature, params)[2]


def _check_accepts(op: OpDef, signature: tuple, shown: str) -> None:
    if op.accepts is not None:
        refused = [item for item in signature if not isinstance(item, type) and item not in op.accepts]
        if refused:
            allowed = ", ".join(sorted(d.name for d in op.accepts))
            raise TypeError(f"{op.name}({shown}) is not supported: {op.name} accepts {allowed}")


def _probe_value(item, op: OpDef):
    if isinstance(item, type):
        return dtypes.WEAK_PROBE[item]
    return np.zeros(1, item) if op.is_reduction else np.empty(0, item)  # max of nothing raises


@functools.lru_cache(maxsize=4096)
def _probe(op: OpDef, signature: tuple, params: tuple):
    args = [_probe_value(item, op) for item in signature]
    if op.is_reduction:
        params = ((0,),)
    shown = ", ".join(item.__name__ if isinstance(item, type) else item.name for item in signature)
    _check_accepts(op, signature, shown)
    try:
        with np.errstate(all="ignore"):
            result = np.asarray(op.numpy(*args, *params)).dtype
    except TypeError as exc:
        raise TypeError(f"{op.name}({shown}) is not supported: {exc}") from None
    if result.kind == "f" and result.itemsize < 4:
        raise TypeError(f"{op.name}({shown}) gives {result.name} in NumPy, which exprgen does not support; "
                        f"convert the input with .astype('float32') first")
    dtypes.check_supported(result, f"{op.name}({shown})")
    common = np.result_type(*args) if signature else result
    resolve = {"result": result, "common": common, "bool": dtypes.BOOL, "own": result}
    compute = tuple(_common_input(item, common, signature) if c == "common" else _own(item) if c == "own"
                    else resolve[c] for c, item in zip(op.cast, signature))
    t_type = resolve[op.cast[0]] if len(set(op.cast)) == 1 else result
    return result, compute, t_type


def _own(item) -> np.dtype:
    """An input of an "own" cast is not converted: the expression converts it (to ``T``, the result)."""
    return dtypes.WEAK_DEFAULT[item] if isinstance(item, type) else item


def _common_input(item, common: np.dtype, signature: tuple) -> np.dtype:
    """The dtype an input of a "common" cast is converted to: the common dtype, except for integers whose
    common dtype is a float (uint64 with a signed integer), which become int64 and uint64: NumPy 2
    compares them exactly, and so do prelude.h's comparisons of that pair."""
    integers = all(not isinstance(i, type) and i.kind in "iu" for i in signature)
    if integers and common.kind == "f":
        return dtypes.INT64 if item.kind == "i" else dtypes.UINT64
    return common


def _domain(raw) -> Domain:
    low, high = raw.get("range", [-10.0, 10.0])
    edges = tuple(float(e) if isinstance(e, str) else e for e in raw.get("edges", ()))
    return Domain(float(low), float(high), edges)


def _load_entry(name: str, raw: dict, source: str) -> OpDef:
    where = f"{source} [{name}]"
    kind = raw.get("kind")
    if kind not in ARITY:
        raise ValueError(f"{where}: kind must be one of {sorted(ARITY)}, not {kind!r}")
    inputs = tuple(raw.get("inputs", DEFAULT_INPUTS.get(kind, ())))
    if len(inputs) != ARITY[kind] or len(set(inputs)) != len(inputs):
        raise ValueError(f"{where}: a {kind} op needs {ARITY[kind]} distinct input names, got {inputs}")
    params = tuple(raw.get("params", ()))
    cast = raw.get("cast", "result")
    cast = tuple(cast) if isinstance(cast, list) else (cast,) * len(inputs)
    if len(cast) != len(inputs) or any(c not in CASTS for c in cast):
        raise ValueError(f"{where}: cast must be one of {CASTS} or a list of them, one per input")
    reduction = kind == "reduce"
    if reduction:
        for name_ in ("init", "combine"):
            check_c_expression(raw[name_], {"acc", "x", "false", "true"}, f"{where} {name_}")
        params = ("axis",)
        if raw.get("empty", "identity") not in ("identity", "error"):
            raise ValueError(f"{where}: empty must be 'identity' or 'error'")
    elif kind == "library":
        if "call" not in raw or "c" in raw:
            raise ValueError(f"{where}: a library op names its library function (call), and has no C expression")
    else:
        check_c_expression(raw["c"], set(inputs), where)
    shape = raw.get("shape", "contract" if kind == "library" else "broadcast")
    if shape not in SHAPE_RULES or (shape == "contract") != (kind == "library"):
        raise ValueError(f"{where}: shape must be one of {SHAPE_RULES}, 'contract' for library ops only")
    if "cuda" in raw:
        if reduction or not isinstance(raw["cuda"], str):
            raise ValueError(f"{where}: cuda must be a C expression string, and only elementwise ops have one")
        check_c_expression(raw["cuda"], set(inputs), f"{where} cuda")
    namespace = _numpy_namespace()
    numpy_src = raw["numpy"]
    unknown = formula_names(numpy_src) - set(inputs) - set(params) - set(namespace)
    if unknown:
        raise ValueError(f"{where}: numpy reference uses unknown names {sorted(unknown)}")
    # ops/ is package data, written by us: compiling its reference expressions is as safe as importing.
    reference = eval(compile(f"lambda {', '.join(inputs + params)}: {numpy_src}", where, "eval"), namespace)
    call = None
    if "call" in raw:
        if kind != "library":
            raise ValueError(f"{where}: only library ops have a call")
        if set(formula_names(raw["call"])) - set(namespace):
            raise ValueError(f"{where}: call names an unknown function {raw['call']!r}")
        call = eval(compile(raw["call"], where, "eval"), namespace)
    vjp = raw.get("vjp")
    if vjp is not None:
        vjp = (vjp,) if isinstance(vjp, str) else tuple(vjp)
        if len(vjp) != len(inputs):
            raise ValueError(f"{where}: vjp needs one formula per input ({len(inputs)}), got {len(vjp)}")
    raw_domain = raw.get("domain", {})
    domains = tuple(_domain(d) for d in raw_domain) if isinstance(raw_domain, list) \
        else (_domain(raw_domain),) * len(inputs)
    if len(domains) != len(inputs):
        raise ValueError(f"{where}: domain needs one entry per input ({len(inputs)}), got {len(domains)}")
    return OpDef(name=name, kind=kind, inputs=inputs, c=raw.get("c", ""), numpy_src=numpy_src, numpy=reference,
                 cast=cast, params=params, vjp=vjp, domains=domains, ulp=dict(raw.get("ulp", {})),
                 signed_zero=raw.get("signed_zero", True), widen=raw.get("widen", True),
                 aliases=tuple(raw.get("aliases", ())), props=frozenset(raw.get("props", ())), init=raw.get("init", ""),
                 combine=raw.get("combine", ""), accumulator=dict(raw.get("accumulator", {})),
                 empty=raw.get("empty", "identity"), index=bool(raw.get("index", False)), cuda=raw.get("cuda", ""),
                 call=call, shape=shape)


def _check_vjp_names(registry: dict[str, OpDef]) -> None:
    callable_names = set(registry) | formulas.CALLS
    for op in registry.values():
        for formula in op.vjp or ():
            unknown = formula_names(formula) - formulas.BOUND - set(op.inputs) - set(op.params) - callable_names
            if unknown:
                raise ValueError(f"ops/ [{op.name}]: backward formula {formula!r} uses unknown names {sorted(unknown)}")


@functools.cache
def registry() -> dict[str, OpDef]:
    """Every op by name (aliases included), loaded once and validated."""
    ops: dict[str, OpDef] = {}
    for path in sorted(data_dir("ops").glob("*.toml")):
        for name, raw in tomllib.loads(path.read_text()).items():
            if name in ops:
                raise ValueError(f"{path.name}: op {name!r} is defined twice")
            ops[name] = _load_entry(name, raw, path.name)
    _check_vjp_names(ops)
    by_name = dict(ops)
    for op in ops.values():
        for alias in op.aliases:
            if alias in by_name:
                raise ValueError(f"ops/ [{op.name}]: alias {alias!r} collides with another op")
            by_name[alias] = op
    return by_name


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def define_elementwise(name: str, c: str, numpy_ref, vjp=None, dtypes_accepted=None) -> OpDef:
    """Register a user op: ``c`` over the parameter names of ``numpy_ref`` (its reference).

    The C expression is checked like every entry of ``ops/``: only its inputs, ``T`` and prelude
    functions, no statement or preprocessor syntax. Registering the same definition again is allowed;
    another definition under an existing name is refused (compiled plans refer to ops by name).
    """
    import inspect

    where = f"ex.elementwise({name!r})"
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(f"{where}: the name must be an identifier (letters, digits, _)")
    if not callable(numpy_ref):
        raise TypeError(f"{where}: numpy_ref must be a function of the inputs, got {type(numpy_ref).__name__}")
    inputs = tuple(inspect.signature(numpy_ref).parameters)
    kind = {1: "unary", 2: "binary", 3: "ternary"}.get(len(inputs))
    if kind is None:
        raise ValueError(f"{where}: user ops take 1 to 3 inputs, numpy_ref has {len(inputs)}")
    if not isinstance(c, str):
        raise TypeError(f"{where}: the C expression must be a string")
    c = typed_float_literals(c)
    check_c_expression(c, set(inputs), where)
    if vjp is not None:
        vjp = (vjp,) if isinstance(vjp, str) else tuple(vjp)
        if len(vjp) != len(inputs):
            raise ValueError(f"{where}: vjp needs one formula per input ({len(inputs)}), got {len(vjp)}")
    accepts = None if dtypes_accepted is None else frozenset(dtypes.as_dtype(d) for d in dtypes_accepted)
    op = OpDef(name=name, kind=kind, inputs=inputs, c=c, numpy_src=getattr(numpy_ref, "__name__", "user"),
               numpy=numpy_ref, cast=("result",) * len(inputs), vjp=vjp,
               domains=(Domain(-10.0, 10.0),) * len(inputs), accepts=accepts, user=True)
    ops = registry()
    existing = ops.get(name)
    if existing is not None:
        same = (existing.c, existing.inputs, existing.vjp, existing.accepts, existing.numpy) == \
            (op.c, op.inputs, op.vjp, op.accepts, op.numpy)
        if not same:
            raise ValueError(f"{where}: an op named {name!r} already exists with another definition")
        return existing
    _check_vjp_names({**ops, name: op})
    ops[name] = op
    return op


def get(name: str) -> OpDef:
    try:
        return registry()[name]
    except KeyError:
        raise ValueError(f"unknown op {name!r}") from None


def canonical_ops(builtin_only: bool = False) -> list[OpDef]:
    """Each op once (no aliases), in a stable order; ``builtin_only``: only the entries of ops/."""
    ops = {id(op): op for op in registry().values() if not (builtin_only and op.user)}
    return sorted(ops.values(), key=lambda op: op.name)
