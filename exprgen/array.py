"""``Array``: the lazy, numpy-like handle users hold.

Operators and functions only build graph nodes; nothing runs until a value is asked for (``.numpy()``,
``np.asarray``, ``float()``, ``ex.eval``). An Array that has been computed keeps its buffer, so asking
twice computes once, and expressions built on it afterwards read that buffer instead of recomputing.

Every op function (``ex.exp``, ``ex.add``, ...) is made here from its registry entry; a few take
NumPy-style keyword arguments (``clip`` with ``None`` bounds, ``round(decimals=)``, ``gelu(approximate=)``).

Devices: an Array lives on "cpu" (NumPy memory), the only device arrays can be on today. Asking for
"cuda" or "cuda:N" (``asarray(..., device=)``, ``.to()``, ``with ex.device(...)``, a CUDA DLPack tensor)
first finds out whether there is a GPU and says why not when there is none (no cuda-python, no driver, no
device); on a machine with one it says that CUDA arrays are not wired into evaluation yet (CUDA kernels
are rendered and compiled: ``exprgen prebuild --target cuda:sm_90``). DLPack exchanges CPU arrays with
PyTorch, CuPy, JAX and NumPy without copying.
"""

from __future__ import annotations

import contextlib
import re
import threading

import numpy as np

from . import dtypes, graph, opdefs, rules
from .graph import BUFFER, Node


def _evaluate():
    """realize.evaluate, imported on first use: building expressions never loads the backend."""
    global _evaluate_function
    if _evaluate_function is None:
        from .realize import evaluate

        _evaluate_function = evaluate
    return _evaluate_function


_evaluate_function = None


class Array:
    __slots__ = ("_node", "_value", "__weakref__")
    __array_priority__ = 1000

    def __init__(self, node: Node, value: np.ndarray | None = None):
        self._node = node
        self._value = value

    # -- what it is -------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self._node.shape

    @property
    def dtype(self) -> np.dtype:
        return self._node.dtype

    @property
    def ndim(self) -> int:
        return len(self._node.shape)

    @property
    def size(self) -> int:
        return self._node.size

    @property
    def device(self) -> str:
        return CPU

    def to(self, device) -> Array:
        """This array on ``device`` ("cpu", "cuda", "cuda:N"): itself, as arrays live on the CPU only."""
        name = normalize_device(device)
        if name != CPU:
            _refuse_cuda(name)
        return self

    def __dlpack__(self, **kwargs):
        """DLPack export of the computed value, without a copy (keywords as in the array API:
        ``stream``, ``max_version``, ``dl_device``, ``copy``; NumPy's rules apply)."""
        return self.numpy().__dlpack__(**{k: v for k, v in kwargs.items() if v is not None})

    def __dlpack_device__(self) -> tuple[int, int]:
        return (DLPACK_CPU, 0)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    # -- values -------------------------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The value as a NumPy array (computed on first request, then kept)."""
        if self._value is None:
            self._value = _evaluate()((self._node,))[0]
        return self._value

    def _set_value(self, value: np.ndarray) -> None:
        self._value = value

    def _graph_node(self) -> Node:
        """The node later expressions build on: once computed, the value's buffer (never recompute)."""
        if self._value is not None and self._node.op is not BUFFER:
            self._node = graph.buffer(self._value)
        return self._node

    def __array__(self, dtype=None, copy=None):
        value = self.numpy()
        if dtype is not None and np.dtype(dtype) != value.dtype:
            return value.astype(dtype)
        return value.copy() if copy else value

    def _scalar(self, convert):
        if self.size != 1:
            raise TypeError(f"only arrays of one element can be converted to Python scalars, not shape {self.shape}")
        return convert(self.numpy().reshape(()).item())

    def __float__(self): return self._scalar(float)
    def __int__(self): return self._scalar(int)
    def __complex__(self): return self._scalar(complex)

    def __bool__(self):
        if self.size != 1:
            raise ValueError(f"the truth value of an array of shape {self.shape} is ambiguous; "
                             f"use ex.any or ex.all once reductions exist, or compare explicitly")
        return self._scalar(bool)

    def __index__(self):
        if self.dtype.kind not in "iu":
            raise TypeError(f"only integer arrays can be used as an index, not {self.dtype.name}")
        return self._scalar(int)

    def __repr__(self) -> str:
        if self._value is not None:
            body = np.array2string(self._value, separator=", ", threshold=20)
            return f"Array({body}, dtype={self.dtype.name})"
        expr = repr(self._node)
        expr = expr if len(expr) <= 200 else expr[:200] + "..."
        return f"Array<{self.dtype.name}{list(self.shape)}, pending: {expr}>"

    __hash__ = None  # == builds an expression, as in NumPy

    # -- conversions --------------------------------------------------------------------------------
    def astype(self, dtype) -> Array:
        return astype(self, dtype)

    # -- NumPy interoperation: np.exp(array) stays lazy -------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or kwargs or ufunc.__name__ not in opdefs.registry():
            return NotImplemented
        return apply(ufunc.__name__, *inputs)


def _binary(name: str, reflected: bool = False):
    if reflected:
        return lambda self, other: apply(name, other, self)
    return lambda self, other: apply(name, self, other)


def _logical_or_bitwise(name: str, reflected: bool = False):
    """``&``, ``|``, ``^`` on bool arrays are the logical ops; bitwise integer ops are not here yet."""
    def method(self, other):
        operands = (other, self) if reflected else (self, other)
        nodes = [as_node(o) for o in operands]
        if any(n.dtype != dtypes.BOOL for n in nodes):
            raise TypeError(f"the {name} operator is supported on bool arrays only (bitwise integer "
                            f"ops are not implemented yet); use ex.{name}")
        return apply(name, *operands)
    return method


for _dunder, _op in {"add": "add", "sub": "subtract", "mul": "multiply", "truediv": "divide",
                     "floordiv": "floor_divide", "mod": "remainder", "pow": "power"}.items():
    setattr(Array, f"__{_dunder}__", _binary(_op))
    setattr(Array, f"__r{_dunder}__", _binary(_op, reflected=True))
for _dunder, _op in {"lt": "less", "le": "less_equal", "gt": "greater", "ge": "greater_equal",
                     "eq": "equal", "ne": "not_equal"}.items():
    setattr(Array, f"__{_dunder}__", _binary(_op))
for _dunder, _op in {"and": "logical_and", "or": "logical_or", "xor": "logical_xor"}.items():
    setattr(Array, f"__{_dunder}__", _logical_or_bitwise(_op))
    setattr(Array, f"__r{_dunder}__", _logical_or_bitwise(_op, reflected=True))
Array.__neg__ = lambda self: apply("negative", self)
Array.__pos__ = lambda self: apply("positive", self)
Array.__abs__ = lambda self: apply("abs", self)
Array.__round__ = lambda self, ndigits=None: round(self, ndigits or 0)


rules.user_value = Array  # user rules build their replacements from Arrays


def __invert__(self):
    if self.dtype != dtypes.BOOL:
        raise TypeError("~ is supported on bool arrays only (bitwise integer ops are not implemented yet)")
    return apply("logical_not", self)


Array.__invert__ = __invert__


# -- devices --------------------------------------------------------------------------------------
CPU = "cpu"
DLPACK_CPU, DLPACK_CUDA = 1, 2   # DLPack's DLDeviceType codes for host memory and CUDA device memory
_default_device = threading.local()


def normalize_device(device) -> str:
    """"cpu" or "cuda:N" for what a user writes: "cpu", "cuda", "cuda:N"; ValueError otherwise."""
    text = str(device)
    if text == CPU:
        return CPU
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if not match:
        raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'")
    return f"cuda:{match.group(1) or 0}"


def _refuse_cuda(device: str):
    """Raise the reason arrays cannot be on CUDA ``device`` here: CudaUnavailable (a RuntimeError) when
    there is no GPU to be had, else NotImplementedError (CUDA evaluation is not wired in yet)."""
    from .backends import cuda

    gpu = cuda.device(cuda.parse_device(device))
    raise NotImplementedError(f"exprgen cannot keep arrays on {device} yet: its CUDA kernels are rendered and "
                              f"compiled (exprgen prebuild --target cuda:{gpu.arch}) but evaluation does not run "
                              f"them; use device='cpu'")


@contextlib.contextmanager
def device(name):
    """``with ex.device("cuda"):`` arrays made in the block (``asarray``, ``from_dlpack``) go to that
    device unless they name another (this Python thread only)."""
    name = normalize_device(name)
    if name != CPU:
        _refuse_cuda(name)
    previous = getattr(_default_device, "name", None)
    _default_device.name = name
    try:
        yield
    finally:
        _default_device.name = previous


def from_dlpack(x, *, device=None) -> Array:
    """An Array over the memory of a DLPack producer (a PyTorch, CuPy or JAX array, a NumPy array) without a
    copy. CPU tensors only, until CUDA arrays exist (see the module docstring)."""
    kind, ordinal = x.__dlpack_device__()
    if kind == DLPACK_CUDA:
        _refuse_cuda(f"cuda:{int(ordinal)}")
    if kind != DLPACK_CPU:
        raise ValueError(f"exprgen reads DLPack tensors in CPU memory (device type {DLPACK_CPU}), not device "
                         f"type {kind}")
    return asarray(np.from_dlpack(x), device=device)


# -- building nodes -------------------------------------------------------------------------------
def asarray(obj, dtype=None, device=None) -> Array:
    """An exprgen Array viewing ``obj`` (a NumPy array is read in place, never copied), on ``device``
    (default: "cpu", or the innermost ``with ex.device(...)``)."""
    if device is None:
        device = getattr(_default_device, "name", None)
    if device is not None and normalize_device(device) != CPU:
        _refuse_cuda(normalize_device(device))
    if isinstance(obj, Array):
        return obj if dtype is None else astype(obj, dtype)
    array = obj if isinstance(obj, np.ndarray) else np.asarray(obj)
    if array.dtype.kind in "fiub" and not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    dtypes.check_supported(array.dtype)
    result = Array(graph.buffer(array), array)
    return result if dtype is None else astype(result, dtype)


def as_node(obj) -> Node:
    if isinstance(obj, Array):
        return obj._graph_node()
    if dtypes.python_scalar_kind(obj) is not None:
        return graph.scalar(obj)
    return asarray(obj)._node


def apply(name: str, *operands, params: tuple = ()) -> Array:
    """Array for op ``name`` over Arrays, NumPy arrays or Python scalars (weakly typed)."""
    nodes, strong = [], False
    for operand in operands:
        if type(operand) is Array:
            nodes.append(operand._graph_node())
            strong = True
        elif dtypes.python_scalar_kind(operand) is not None:
            nodes.append(graph.scalar(operand))
        else:
            nodes.append(asarray(operand)._node)
            strong = True
    if not strong:  # all Python scalars: NumPy makes them strong (np.exp(2.0) is a float64 array)
        nodes[0] = asarray(operands[0])._node
    return Array(graph.apply(name, *nodes, params=params))


def op_function(name: str):
    op = opdefs.get(name)

    def function(*operands):
        return apply(op.name, *operands)

    function.__name__ = name
    function.__qualname__ = name
    function.__doc__ = f"Elementwise {op.name}, lazily. Reference: {op.numpy_src}"
    return function


def elementwise(name: str, c_expr: str, numpy_ref, vjp=None, dtypes=None):
    """A user-defined elementwise op, lazy, fusable and cached like the built-in ones.

        softsign = ex.elementwise("softsign", "x / (1 + absolute(x))", lambda x: x / (1 + np.abs(x)),
                                  vjp="g / ((1 + abs(x)) * (1 + abs(x)))", dtypes=["float32", "float64"])

    ``c_expr`` is C++ over the parameter names of ``numpy_ref`` (which is also the reference that gives
    the result dtype and checks the kernels); ``T`` is the type inputs are converted to, and float
    literals are written ``T(0.5)``. ``vjp``: the backward formula per input, in the op language.
    """
    opdefs.define_elementwise(name, c_expr, numpy_ref, vjp, dtypes)
    return op_function(name)


def astype(x, dtype) -> Array:
    dtype = dtypes.as_dtype(dtype)
    x = x if isinstance(x, Array) else asarray(x)
    if x.dtype == dtype:
        return x
    return apply("astype", x, params=(dtype.name,))


def clip(x, lo=None, hi=None) -> Array:
    """np.clip: either bound may be None."""
    if lo is None and hi is None:
        raise ValueError("clip needs at least one of lo and hi")
    if lo is None:
        return apply("minimum", x, hi)
    if hi is None:
        return apply("maximum", x, lo)
    return apply("clip", x, lo, hi)


def round(x, decimals: int = 0) -> Array:  # noqa: A001 - the NumPy name
    """np.round: half to even; with ``decimals``, scaled as NumPy does (x*10**d, rounded, /10**d)."""
    if decimals == 0:
        return apply("round", x)
    factor = 10.0 ** abs(decimals)
    if decimals > 0:
        return apply("round", x * factor if isinstance(x, Array) else asarray(x) * factor) / factor
    return apply("round", (x if isinstance(x, Array) else asarray(x)) / factor) * factor


def gelu(x, approximate: str = "none") -> Array:
    """GELU; ``approximate="tanh"`` uses the tanh approximation (as in PyTorch)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', not {approximate!r}")
    return apply("gelu_tanh" if approximate == "tanh" else "gelu", x)


def where(condition, x, y) -> Array:
    return apply("where", condition, x, y)
