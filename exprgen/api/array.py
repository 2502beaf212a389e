"""``Array``: the lazy, numpy-like handle users hold.

Operators and functions only build graph nodes; nothing runs until a value is asked for (``.numpy()``,
``np.asarray``, ``float()``, ``ex.eval``). An Array that has been computed keeps its buffer, so asking
twice computes once, and expressions built on it afterwards read that buffer instead of recomputing; it
lets its expression go (the inputs of a kept result are not kept alive), except while a gradient is
traced, where the gradient walks back through it.

Arrays are immutable. Every Python operator builds its op (the array API's and NumPy's meaning: ``&``,
``|``, ``^`` and ``~`` are logical on bool operands and bitwise on integers; ``@`` is ``ex.matmul``), and
the in-place forms rebind the name to a new Array (``x += 1``), keeping x's dtype and shape as NumPy
does. Indexing and ``x.at[...]`` updates are in ``indexing.py``. The operators, and the methods that are
other modules' functions (``x.sum``, ``x.reshape``, ``x[key]``), are installed on the class by ``surface.py``.

Every op function (``ex.exp``, ``ex.add``, ...) is made here from its registry entry; a few take
NumPy-style keyword arguments (``clip`` with ``None`` bounds, ``round(decimals=)``, ``gelu(approximate=)``).

Devices: an Array lives on "cpu" (NumPy memory) or, with CUDA host execution (``EXPRGEN_CUDA_HOST=1``,
backends/cuda_host.py), on "cuda:0", whose memory is host memory that only that backend's kernels
compute: ``asarray(..., device=)``, ``.to_device()`` and ``with ex.device(...)`` copy into it, ``.numpy()``
copies out, and an expression over arrays of two devices raises graph.DeviceMismatch (nothing moves
silently). Without host execution, asking for "cuda" first finds out whether there is a GPU and says why
not when there is none (no cuda-python, no driver, no device); on a machine with one it says that GPU
evaluation is not wired in yet (CUDA kernels are rendered and compiled: ``exprgen prebuild --target
cuda:sm_90``). DLPack exchanges CPU arrays with PyTorch, CuPy, JAX and NumPy without copying.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import sys
import threading
import weakref

import numpy as np

from ..errors import CudaUnavailable, TraceError
from ..ir import dtypes, graph, opdefs
from ..backends import cuda, cuda_host
from ..ir.graph import BUFFER, CPU, Node


def _realize():
    """The realize module, imported on first use: building expressions never loads the backend."""
    global _realize_module
    if _realize_module is None:
        from ..runtime import realize

        _realize_module = realize
    return _realize_module


_realize_module = None

# While a function is being differentiated (autodiff's ``tracing``), a value computed inside it (a loss
# logged with float() or .numpy()) keeps its expression for later uses instead of becoming a buffer leaf:
# the gradient walks back through that expression. Outside, the buffer is what later uses read (a realised
# array never recomputes, and holds no graph alive): leaving the outermost trace lets those expressions go.
class _Traces(threading.local):
    depth = 0   # a class default, as every thread starts untraced: a missing attribute costs an exception
    computed: list   # weak references to the Arrays computed during the outermost trace
    # ids of the nodes the traces under way differentiate with respect to: a value that reaches one may
    # not become a NumPy array (``Array.__array__``); empty inside a custom_vjp forward (``converting``).
    variables: frozenset = frozenset()


_traces = _Traces()


@contextlib.contextmanager
def converting():
    """A block whose values may become NumPy arrays though traced: a custom_vjp's forward, whose gradient
    is its backward's, not the graph's."""
    outer = _traces.variables
    _traces.variables = frozenset()
    try:
        yield
    finally:
        _traces.variables = outer


def tracing_depth() -> int:
    return _traces.depth


@contextlib.contextmanager
def tracing(variables: tuple[Node, ...] = ()):
    if not _traces.depth:
        _traces.computed = []
    _traces.depth += 1
    outer = _traces.variables
    _traces.variables = outer | {id(n) for n in variables}
    try:
        yield
    finally:
        _traces.variables = outer
        _traces.depth -= 1
        if not _traces.depth:
            for ref in _traces.computed:
                array = ref()
                if array is not None:
                    array._release_expression()
            _traces.computed = []


class _Staging(threading.local):
    """While ``ex.jit`` traces a function (``block``): the leaves standing for its arguments, which have no
    values. Reading a value computed from one raises TraceError (``readable``)."""
    depth = 0
    arguments: frozenset = frozenset()   # ids of the argument leaves

    @contextlib.contextmanager
    def block(self, leaves: tuple[Node, ...]):
        outer = self.arguments
        self.depth += 1
        self.arguments = outer | {id(n) for n in leaves}
        try:
            yield
        finally:
            self.depth -= 1
            self.arguments = outer


staging = _Staging()


def readable(nodes, what: str = "its value") -> None:
    """Raise TraceError if ``ex.jit`` is tracing and a node's value comes from a traced argument."""
    if not staging.depth:
        return
    for node in graph.reachable(nodes, _value_sources):
        if id(node) in staging.arguments:
            raise TraceError(f"inside ex.jit, {what} was asked of an array computed from the jitted function's "
                             f"arguments, which have no values while it is traced: Python control flow and "
                             f"logging on them would freeze one call's value into every later call. Keep it an "
                             f"exprgen expression (ex.where for a branch), mark the argument static "
                             f"(static_argnames=...) if the function branches on it, or read the value from "
                             f"the jitted function's result")


def _value_sources(node: Node) -> tuple:
    """Where ``node``'s value comes from: its sources, the node a viewing buffer views, the inputs of a
    value NumPy computed (``computed``)."""
    found = node.src
    if node.view_of is not None:
        found = found + (node.view_of[0],)
    if node.custom_vjp is not None:
        found = found + tuple(node.custom_vjp[0])
    return found


class Array:
    __slots__ = ("_node", "_value", "_make_node", "__weakref__")
    __array_priority__ = 1000

    def __init__(self, node: Node, value: np.ndarray | None = None):
        self._node = node
        self._value = value
        self._make_node = None

    @classmethod
    def _of_value(cls, value: np.ndarray, make_node) -> Array:
        """An Array of a known ``value`` whose node, ``make_node()``, is made only when an expression needs
        it (and then kept, as the graph gradients follow): reading an element (``float(x[3])``, indexing.py)
        costs no graph work at all."""
        array = cls(None, value)
        array._make_node = make_node
        return array

    # -- what it is -------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return (self._node or self._value).shape

    @property
    def dtype(self) -> np.dtype:
        return (self._node or self._value).dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return (self._node or self._value).size

    @property
    def device(self) -> str:
        node = self._node
        return node.device if node is not None else CPU

    def to(self, device) -> Array:
        """This array on ``device`` ("cpu", "cuda", "cuda:N"): itself where it is, else a copy there."""
        name = normalize_device(device)
        if name == self.device:
            return self
        _open_device(name)
        return Array(graph.buffer(self.numpy())) if name == CPU else asarray(self.numpy(), device=name)

    def to_device(self, device, /, *, stream=None) -> Array:
        """The array API's ``to``: neither the CPU nor host execution has streams, so ``stream`` must be
        None."""
        if stream is not None:
            raise ValueError(f"stream must be None for arrays on the CPU or in CUDA host execution, not {stream!r}")
        return self.to(device)

    @property
    def mT(self) -> Array:  # noqa: N802 - the array API's name
        """The matrix transpose (the last two axes swapped) of a stack of matrices: a view."""
        if self.ndim < 2:
            raise ValueError(f"mT needs an array of at least two dimensions, got shape {self.shape}")
        return self._transposed((*range(self.ndim - 2), self.ndim - 1, self.ndim - 2))

    @property
    def T(self) -> Array:  # noqa: N802
        """The axes reversed, a view. The array API defines ``.T`` for 2-D arrays only (portable code uses
        ``.mT`` for stacks of matrices); other shapes get NumPy's meaning, which NumPy code relies on."""
        return self._transposed(tuple(reversed(range(self.ndim))))

    def _transposed(self, order: tuple[int, ...]) -> Array:
        return Array(graph.view(self._graph_node(), (("transpose", order),)))

    def __array_namespace__(self, /, *, api_version=None):
        """The exprgen module, an array API namespace (revisions 2023.12 and 2024.12; for exprgen they differ
        in nothing but what 2024.12 adds). 2022.12 is refused: it wants float32 sums in float64."""
        if api_version not in API_VERSIONS:
            raise ValueError(f"exprgen implements the array API revisions {', '.join(API_VERSIONS[1:])}, "
                             f"not {api_version!r}")
        return _namespace()

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """DLPack export of the computed value: NumPy's capsule over the very same memory (a copy only with
        ``copy=True``). The memory is the CPU's, so ``stream`` must be None; NumPy's rules apply."""
        if self.device != CPU:
            raise BufferError(f"an array on {self.device} under CUDA host execution is host memory posing as "
                              f"device memory: a DLPack consumer would read it as a GPU pointer. Export "
                              f"x.to_device('cpu') instead")
        asked = {"stream": stream, "max_version": max_version, "dl_device": dl_device, "copy": copy}
        return self.numpy().__dlpack__(**{k: v for k, v in asked.items() if v is not None})

    def __dlpack_device__(self) -> tuple[int, int]:
        device = self.device
        return (DLPACK_CPU, 0) if device == CPU else (DLPACK_CUDA, int(device.partition(":")[2]))

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __iter__(self):
        """The subarrays along the first axis (computed once, then each read from the value's buffer)."""
        n = len(self)
        self.numpy()
        return (self[i] for i in range(n))

    # -- values -------------------------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The value as a NumPy array (computed on first request, then kept; a buffer leaf is its value). An
        array on another device gives a copy in host memory."""
        node = self._node   # read once: another thread computing this Array may release it meanwhile
        value = self._value if self._value is not None else self._compute(node)
        return value if node is None or node.device is CPU else value.copy()

    def _compute(self, node: Node) -> np.ndarray:
        """The value in its device's memory, computed now."""
        if staging.depth:
            readable((node,))
        if node.op is BUFFER:
            self._value = np.asarray(node.buffer)
        else:
            self._set_value(_realize().evaluate((node,))[0])
        return self._value

    def _set_value(self, value: np.ndarray) -> None:
        """Keep the computed value, and let the expression go: a kept result (a loss appended to a list)
        must not hold its graph's inputs alive (each its batch). While a gradient is traced the expression
        stays, for the gradient to walk back through."""
        self._value = value
        if _traces.depth:
            _traces.computed.append(weakref.ref(self))
        else:
            self._release_expression()

    def _release_expression(self) -> None:
        node = self._node
        if node is not None and node.op is not BUFFER and self._make_node is None:
            # A CPU value's leaf is made when an expression needs it; a device's must say where it is.
            self._node = None if node.device is CPU else graph.buffer(self._value, node.device)

    def _graph_node(self) -> Node:
        """The node later expressions build on: once computed (its expression released), the value's buffer
        (never recompute); an Array made with its value (``_of_value``) keeps the node made for it, the graph
        gradients follow."""
        node = self._node
        if node is None:
            node = self._node = self._make_node() if self._make_node is not None else graph.buffer(self._value)
        return node

    def __array__(self, dtype=None, copy=None):
        if _traces.variables and self._depends_on_a_variable():
            raise _TracedToNumpy("a value being differentiated (inside ex.grad, value_and_grad or vjp) cannot "
                                 "become a NumPy array: NumPy would compute with its value, and the gradient "
                                 "through it would be lost without a word. Keep it an exprgen Array (exprgen's "
                                 "functions, NumPy's ufuncs and the functions listed in README's NumPy section "
                                 "stay lazy), or take .numpy() explicitly for a constant (logging)")
        value = self.numpy()
        if dtype is not None and np.dtype(dtype) != value.dtype:
            if copy is False:
                raise ValueError(f"converting {value.dtype.name} to {np.dtype(dtype).name} needs a copy (copy=False)")
            return value.astype(dtype)
        return value.copy() if copy else value

    def _scalar(self, convert):
        if self.size != 1:
            raise TypeError(f"only arrays of one element can be converted to Python scalars, not shape {self.shape}")
        return convert(self.numpy().reshape(()).item())

    def item(self, *index):
        """The element at ``index`` (none for a one-element array) as a Python scalar, as NumPy's
        ``item``: computes the value."""
        return self.numpy().item(*index)

    def tolist(self):
        """The value as nested lists of Python scalars, as NumPy's ``tolist``: computes it."""
        return self.numpy().tolist()

    def __float__(self): return self._scalar(float)
    def __int__(self): return self._scalar(int)
    def __complex__(self): return self._scalar(complex)

    def __bool__(self):
        if self.size != 1:
            raise ValueError(f"the truth value of an array of shape {self.shape} is ambiguous; "
                             f"use ex.any(x) or ex.all(x)")
        return self._scalar(bool)

    def __index__(self):
        if self.dtype.kind not in "iu":
            raise TypeError(f"only integer arrays can be used as an index, not {self.dtype.name}")
        return self._scalar(int)

    def __repr__(self) -> str:
        if self._value is not None:   # laid out as NumPy's repr: rows aligned under the first, empty shapes said
            body = np.array2string(self._value, separator=", ", threshold=20, prefix="Array(")
            shape = f", shape={self.shape}" if self.size == 0 and self.shape != (0,) else ""
            return f"Array({body}{shape}, dtype={self.dtype.name})"
        expr = repr(self._node)
        expr = expr if len(expr) <= 200 else expr[:200] + "..."
        return f"Array<{self.dtype.name}{list(self.shape)}, pending: {expr}>"

    def __format__(self, spec: str) -> str:
        """As NumPy's: with a format spec a 0-d array formats as its element (``f"{loss:.4f}"``), and any
        other array raises NumPy's TypeError; without one, the repr."""
        return format(self.numpy(), spec) if spec else str(self)

    __hash__ = None  # == builds an expression, as in NumPy

    # -- conversions --------------------------------------------------------------------------------
    def astype(self, dtype, /, *, copy: bool = True, device=None) -> Array:
        """NumPy's method, with the array API's ``copy`` and ``device`` (see ``exprgen.astype``)."""
        return standard_astype(self, dtype, copy=copy, device=device)

    def _depends_on_a_variable(self) -> bool:
        """Would a gradient of the traces under way flow through this value? Only float values carry one; it
        stops at a stop_gradient and goes on through the inputs a custom rule (custom_vjp, a value NumPy
        computed) or a stand-in leaf (a nested grad's argument) passes it to."""
        variables = _traces.variables
        stack, seen = [self._node] if self._node is not None else [], set()
        while stack:
            node = stack.pop()
            if id(node) in seen or node.dtype not in dtypes.FLOATS:
                continue
            seen.add(id(node))
            if id(node) in variables:
                return True
            if node.custom_vjp is not None:
                stack.extend(node.custom_vjp[0])
            elif node.op != "stop_gradient":
                stack.extend(node.src)
                if node.view_of is not None:
                    stack.append(node.view_of[0])
        return False

    # -- NumPy interoperation: np.exp(array) stays lazy -------------------------------------------
    def __array_function__(self, func, types, args, kwargs):
        """NumPy's functions on Arrays: exprgen's own of the same name where it has one and it takes the call
        (lazy, fused, differentiable), else NumPy's implementation, which calls the Array's methods (np.sum,
        np.mean: lazy) or converts it to NumPy (computed), else NumPy's function over the values. A value
        being differentiated refuses to be converted: the gradient through it would be lost silently."""
        if not all(issubclass(t, (Array, np.ndarray)) for t in types):
            return NotImplemented
        name = _LAZY_NUMPY_FUNCTIONS.get(func)
        own = getattr(self.__array_namespace__(), name) if name is not None else None
        if func is np.dot and _dot_is_matmul(args, kwargs):
            own = _matmul
        if own is not None:
            try:
                return own(*args, **kwargs)
            except (TypeError, ValueError):
                # A NumPy-only argument (np.sum(x, 0), np.std(x, ddof=1), np.sort(x, axis=None)): NumPy's
                # way below, which gives NumPy's answer, or NumPy's own error for a call that is wrong.
                pass
        try:
            try:
                return func._implementation(*args, **kwargs)
            except _TracedToNumpy:
                raise
            except (TypeError, ValueError):
                # NumPy's implementation called a method with what only NumPy's takes (np.max(x, initial=0),
                # np.sum(x, where=m)): NumPy's function over the values.
                return func(*_as_numpy(args), **_as_numpy(kwargs))
        except _TracedToNumpy:
            raise TypeError(f"np.{func.__name__} has no lazy exprgen counterpart, and one of its arguments is being "
                            f"differentiated: NumPy would compute it on the value and the gradient through it "
                            f"would be lost. Write it with exprgen's functions (or NumPy's ufuncs, which stay "
                            f"lazy), or wrap it in ex.custom_vjp with its own backward") from None

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        """``np.exp(x)`` stays lazy; with ``out=`` (one NumPy array) the value is computed into it and it is
        returned, as NumPy does. Other keywords (``where=``, ``dtype=``, ``casting=``) are refused by name."""
        if method != "__call__":
            return NotImplemented
        if kwargs:
            raise TypeError(f"np.{ufunc.__name__} on exprgen arrays takes out= but not {', '.join(sorted(kwargs))}: "
                            f"use ex.where(...) for a mask and .astype(...) for a dtype")
        if ufunc is np.matmul:   # ndarray @ Array comes here, and only here
            result = _matmul(*inputs)
        elif ufunc.__name__ in opdefs.registry():
            result = apply(ufunc.__name__, *inputs)
        else:
            return NotImplemented
        if out is None:
            return result
        if len(out) != 1 or isinstance(out[0], Array):   # NumPy hands out= over as a tuple
            raise TypeError(f"np.{ufunc.__name__}(..., out=) needs one NumPy array to write into; exprgen arrays are "
                            f"immutable (write y = np.{ufunc.__name__}(x) instead)")
        (target,) = out
        # As NumPy: the result cast to out's dtype under "same_kind" and broadcast to its shape (a += b,
        # acc2d += row), lazily, so one kernel writes out.
        if not np.can_cast(result.dtype, target.dtype, casting="same_kind"):
            raise TypeError(f"Cannot cast ufunc {ufunc.__name__!r} output from {result.dtype!r} to "
                            f"{target.dtype!r} with casting rule 'same_kind'")
        if np.broadcast_shapes(result.shape, target.shape) != target.shape:
            raise ValueError(f"non-broadcastable output operand with shape {target.shape} doesn't match the "
                             f"broadcast shape {np.broadcast_shapes(result.shape, target.shape)}")
        node = result._graph_node()
        if node.dtype != target.dtype:
            node = graph.apply("astype", node, params=(target.dtype.name,))
        if node.shape != target.shape:
            node = graph.view(node, (("broadcast_to", target.shape),))
        readable((node,))
        _realize().evaluate((node,), out=[target])
        return target


def positional_signature(*names: str) -> inspect.Signature:
    """The array API's signature of an elementwise function or operator: ``(x1, x2, /)``, every operand
    positional-only. The functions take ``*operands`` (one body for every arity); this is what
    ``inspect.signature`` and array-agnostic tooling see."""
    return inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_ONLY) for n in names])


class _TracedToNumpy(TypeError):
    """A value being differentiated asked to become a NumPy array."""


# NumPy functions that exprgen has under the same name, with NumPy's meaning for the arguments both take.
_LAZY_NUMPY_FUNCTIONS = {getattr(np, name): name for name in (
    "all", "any", "argmax", "argmin", "argsort", "broadcast_arrays", "broadcast_to", "clip", "concatenate",
    "count_nonzero", "diff", "empty_like", "expand_dims", "flip", "full_like", "max", "mean", "meshgrid", "min",
    "moveaxis", "ones_like", "prod", "repeat", "reshape", "roll", "round", "sort", "squeeze", "stack", "std",
    "sum", "swapaxes", "take", "take_along_axis", "tensordot", "tile", "transpose", "tril", "triu", "var",
    "where", "zeros_like")}


def _as_numpy(tree):
    """Arguments with every Array, in lists, tuples and dicts too, as its NumPy value."""
    if isinstance(tree, Array):
        return np.asarray(tree)
    if isinstance(tree, (list, tuple)):
        return type(tree)(map(_as_numpy, tree))
    if isinstance(tree, dict):
        return {k: _as_numpy(v) for k, v in tree.items()}
    return tree


def _dot_is_matmul(args, kwargs) -> bool:
    """np.dot is matmul for operands of one or two dimensions (inner product, matrix-vector, matrix)."""
    return (len(args) == 2 and not kwargs
            and all(isinstance(a, (Array, np.ndarray)) and 1 <= a.ndim <= 2 for a in args))


def _namespace():
    """The public namespace, ``exprgen``: the module ``__array_namespace__`` returns, and where the functions
    built on Array (``matmul`` on reshapes and reductions) are found by name. Importing any of exprgen's
    modules imports the package first, so it is there whenever an Array is."""
    return sys.modules[__name__.partition(".")[0]]


def _matmul(a, b) -> Array:
    return _namespace().matmul(a, b)


# -- devices --------------------------------------------------------------------------------------
API_VERSIONS = (None, "2024.12", "2023.12")   # what __array_namespace__ accepts (None: the latest)
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


def _open_device(device: str) -> None:
    """Return if arrays can live on ``device`` (normalised) here, else raise why not: CudaUnavailable (a
    RuntimeError) when there is no GPU to be had, NotImplementedError on a GPU (its evaluation is not wired
    in yet). Under CUDA host execution the one device is cuda:0."""
    if device == CPU:
        return
    if cuda_host.enabled():
        if device != HOST_DEVICE:
            raise CudaUnavailable(f"CUDA host execution ({cuda_host.ENABLE}=1) has one device, {HOST_DEVICE}, "
                                  f"not {device}")
        return
    try:
        gpu = cuda.device(cuda.parse_device(device))
    except CudaUnavailable as exc:
        raise CudaUnavailable(f"{exc} (without a GPU, {cuda_host.ENABLE}=1 runs exprgen's CUDA kernels on the "
                              f"host, for tests)") from None
    raise NotImplementedError(f"exprgen cannot keep arrays on {device} yet: its CUDA kernels are rendered and "
                              f"compiled (exprgen prebuild --target cuda:{gpu.arch}) but evaluation does not run "
                              f"them on a GPU; use device='cpu', or {cuda_host.ENABLE}=1 to run them on the host")


HOST_DEVICE = "cuda:0"


def placed(array: Array, device: str) -> Array:
    """``array``, an expression over scalars and indices alone (a creation function's), on ``device``: as it
    is for the CPU, else computed and copied into the device's memory (reading no array, it is anywhere's)."""
    return array if device == CPU else asarray(array.numpy(), device=device)


def common_device(arrays, what: str) -> str:
    """The device of Arrays ``arrays`` that NumPy computes ``what`` of, where its result goes; DeviceMismatch
    for two (a node over scalars and indices alone goes with any)."""
    placed = None
    for array in arrays:
        node = array._node
        if node is not None and node.anywhere:
            continue
        device = array.device
        if placed is None:
            placed = device
        elif device != placed:
            raise graph.DeviceMismatch(f"{what} of arrays on {placed} and on {device}: move them to one device first")
    return placed or CPU


def check_device(device) -> str:
    """The device ``device=`` names as array constructors take it (None: the innermost ``with ex.device``,
    else "cpu"); one arrays cannot live on is refused, saying why."""
    if device is None:
        device = getattr(_default_device, "name", None)
    if device is None:
        return CPU
    name = normalize_device(device)
    _open_device(name)
    return name


@contextlib.contextmanager
def device(name):
    """``with ex.device("cuda"):`` arrays made in the block (``asarray``, ``from_dlpack``) go to that
    device unless they name another (this Python thread only)."""
    name = normalize_device(name)
    _open_device(name)
    previous = getattr(_default_device, "name", None)
    _default_device.name = name
    try:
        yield
    finally:
        _default_device.name = previous


def from_dlpack(x, /, *, device=None, copy=None) -> Array:
    """An Array over the memory of a DLPack producer (a PyTorch, CuPy or JAX array, a NumPy array): NumPy
    takes the capsule and exprgen reads that memory in place. ``copy``: True copies, False refuses to (as
    NumPy decides). CPU tensors only, until CUDA arrays exist (see the module docstring)."""
    kind, ordinal = x.__dlpack_device__()
    if kind == DLPACK_CUDA:
        _open_device(f"cuda:{int(ordinal)}")
        raise BufferError("CUDA host execution cannot read a GPU tensor's memory: copy it to the CPU first")
    if kind != DLPACK_CPU:
        raise ValueError(f"exprgen reads DLPack tensors in CPU memory (device type {DLPACK_CPU}), not device "
                         f"type {kind}")
    return asarray(np.from_dlpack(x) if copy is None else np.from_dlpack(x, copy=copy), device=device, copy=False)


# -- building nodes -------------------------------------------------------------------------------
def asarray(obj, /, *, dtype=None, device=None, copy=None) -> Array:
    """An exprgen Array of ``obj`` (an Array, a NumPy array, or what NumPy reads: Python scalars and nested
    sequences, buffers, DLPack producers) on ``device`` (default: "cpu", or the innermost ``with
    ex.device(...)``).

    ``copy``, as in the array API: None copies only where it must (a NumPy array is read in place, and a
    conversion to ``dtype`` is lazy, fused into whatever reads it); True gives memory of its own (an Array's
    copy is made when it is computed); False never copies and raises ValueError where it would have to.
    """
    if (type(obj) is np.ndarray and dtype is None and copy is None and device is None
            and obj.dtype in dtypes.SUPPORTED and getattr(_default_device, "name", None) is None):
        return Array(graph.buffer(obj), obj)   # the usual call, a NumPy array read in place: nothing to decide
    # An Array stays where it is unless ``device`` names another place.
    placed = obj.device if isinstance(obj, Array) and device is None else check_device(device)
    dtype = None if dtype is None else dtypes.as_dtype(dtype)
    if isinstance(obj, Array) and obj.device != placed:
        if copy is False:
            raise ValueError(f"asarray(copy=False) cannot move an array from {obj.device} to {placed} without a copy")
        obj = obj.to(placed)
    if isinstance(obj, Array):
        if obj._node is not None and obj._node.weak:
            # A jitted function's scalar argument (or a value of them): what asarray makes of a Python scalar.
            obj = Array(graph.apply("astype", obj._node, params=(obj._node.dtype.name,)))
        if copy:
            return Array(graph.apply("astype", obj._graph_node(), params=((dtype or obj.dtype).name,)))
        if dtype is None or dtype == obj.dtype:
            return obj
        if copy is False:
            raise ValueError(f"asarray(copy=False) cannot convert {obj.dtype.name} to {dtype.name} without a copy")
        return astype(obj, dtype)
    if np.ma.is_masked(obj):   # np.asarray would drop the mask, and the masked values would count
        raise TypeError("masked arrays are not supported (their mask would be ignored): pass x.filled(value), "
                        "or x.data to use the values under the mask too")
    # NumPy refuses copy=False where it cannot be met (ValueError), and converts lists straight to dtype; a
    # subclass (np.memmap, np.matrix) is read in place as a plain ndarray, as np.asarray does.
    array = obj if type(obj) is np.ndarray and copy is None else np.asarray(obj, dtype=dtype, copy=copy)
    if array.dtype.kind in "fiub" and not array.dtype.isnative:
        if copy is False:
            raise ValueError(f"asarray(copy=False) cannot read {array.dtype.str} (not this machine's byte order) "
                             f"without a copy")
        array = array.astype(array.dtype.newbyteorder("="))
    dtypes.check_supported(array.dtype)
    if placed != CPU:   # into the device's memory (which the Array holds, and copies out of in numpy())
        if copy is False:
            raise ValueError(f"asarray(copy=False) cannot put host memory on {placed} without a copy")
        array = cuda_host.to_device(array)
        return Array(graph.buffer(array, placed), array) if dtype is None or dtype == array.dtype else \
            astype(Array(graph.buffer(array, placed), array), dtype)
    result = Array(graph.buffer(array), array)
    return result if dtype is None or dtype == array.dtype else astype(result, dtype)


def as_node(obj) -> Node:
    if isinstance(obj, Array):
        return obj._graph_node()
    if dtypes.python_scalar_kind(obj) is not None:
        return graph.scalar(obj)
    return _scalar_constant(obj) if isinstance(obj, np.generic) else asarray(obj)._node


def _scalar_constant(value) -> Node:
    """A NumPy scalar (or a Python one made strong) as a 0-d buffer that goes with any device, as a Python
    scalar does (``x_cuda + np.float32(2)``)."""
    return graph.buffer(asarray(value)._node.buffer, device=None)


def apply(name: str, *operands, params: tuple = ()) -> Array:
    """Array for op ``name`` over Arrays, NumPy arrays or Python scalars (weakly typed)."""
    nodes = []
    for operand in operands:
        if type(operand) is not Array or operand._node is None:
            break
        nodes.append(operand._graph_node())
    else:   # Arrays with nodes, the usual case: nothing to convert
        # (a keyword after *nodes would cost a dict per op, so none where the default does)
        return Array(graph.apply(name, *nodes, params=params) if params else graph.apply(name, *nodes))
    # Even over elements read (x[3] > 50) the op waits for evaluation: computing it now would read the
    # element's memory now, while every other expression reads it when computed (README, "Shared memory").
    nodes, strong = [], False
    for operand in operands:
        if type(operand) is Array:
            nodes.append(operand._graph_node())
            strong = True
        elif dtypes.python_scalar_kind(operand) is not None:
            nodes.append(graph.scalar(operand))
        else:
            nodes.append(_scalar_constant(operand) if isinstance(operand, np.generic) else asarray(operand)._node)
            strong = True
    if not strong:  # all Python scalars: NumPy makes them strong (np.exp(2.0) is a float64 array)
        nodes[0] = _scalar_constant(operands[0])
    return Array(graph.apply(name, *nodes, params=params))


def standard_astype(x, dtype, /, *, copy: bool = True, device=None) -> Array:
    """``x`` converted to ``dtype``. ``copy=False`` returns ``x`` itself when it has that dtype already;
    ``device`` must be the CPU, where arrays live today."""
    x = x if isinstance(x, Array) else asarray(x)
    if device is not None:
        x = x.to(check_device(device))
    if copy and x.dtype == dtypes.as_dtype(dtype):   # a kernel writes the copy
        return Array(graph.apply("astype", x._graph_node(), params=(x.dtype.name,)))
    return astype(x, dtype)


def computed(value: np.ndarray, inputs, backward, name: str) -> Array:
    """``value``, computed by NumPy from ``inputs`` (Arrays), as a leaf whose gradient is ``backward(g,
    wanted)`` (one Array per input, or None where ``wanted[i]`` is False: no gradient flows to that input,
    as to data a loss captures, so an expensive one is skipped); ``backward=None``: ``name`` is not
    differentiable, and a gradient reaching it raises NotImplementedError instead of silently stopping
    there."""
    def refuse(g, wanted):
        raise NotImplementedError(f"{name} is not differentiable in exprgen (its value is computed by NumPy); "
                                  f"wrap its result in ex.stop_gradient if no gradient should flow through it")

    result = asarray(value, device=common_device(inputs, name))
    result._graph_node().annotate("custom_vjp", ([a._graph_node() for a in inputs], backward or refuse))
    return result


def astype(x, dtype) -> Array:
    """``x`` as ``dtype``: ``x`` itself when it has it (the functions' internal conversion)."""
    dtype = dtypes.as_dtype(dtype)
    x = x if isinstance(x, Array) else asarray(x)
    if x.dtype == dtype:
        return x
    return apply("astype", x, params=(dtype.name,))
