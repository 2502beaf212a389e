"""exprgen: numpy-style code compiled into fused, cached kernels.

    import exprgen as ex
    y = ex.sigmoid(ex.asarray(x) * w + b)   # builds a graph; nothing runs yet
    y.numpy()                               # one fused kernel, compiled once and cached on disk

The pipeline, one folder a stage: ir -> rewrite -> schedule -> codegen -> backends -> cache -> runtime,
with api (Array and the functions) and autodiff on top; README.md's Layout section shows the tree.
"""


from .ir import opdefs as _opdefs
from .api import user_rules as rules  # ex.rules.var, call, register, unregister
from .api.array import Array, apply, asarray, device, from_dlpack, readable as _readable
from .api.elementwise import clip, elementwise, gelu, op_function, round, where
from .api import surface as _surface  # installs Array's operators and methods
from .settings import configure as config, get_num_threads, set_num_threads, threads
from .autodiff.reverse import custom_vjp, grad, stop_gradient, value_and_grad, vjp
from .counters import reset_stats, stats
from .api.functions import (all, any, argmax, argmin, broadcast_to, concat, concatenate, count_nonzero, expand_dims, flip,
                        log_softmax, logsumexp, max, mean, min, permute_dims, prod, reshape, softmax, squeeze, stack,
                        std, sum, swapaxes, transpose, var)
from .api.creation import (arange, copy, empty, empty_like, eye, full, full_like, linspace, meshgrid, ones, ones_like,
                       tril, triu, zeros, zeros_like)
from .api.manipulation import broadcast_arrays, diff, moveaxis, repeat, roll, tile, unstack
from .api.materialising import (argsort, cumulative_prod, cumulative_sum, nonzero, searchsorted, sort, unique_all,
                            unique_counts, unique_inverse, unique_values)
from .api.linear_algebra import matmul, matrix_transpose, tensordot, vecdot
from .api.indexing import take, take_along_axis
from .api.array_api import (__array_api_version__, __array_namespace_info__, astype, can_cast, e, finfo, iinfo, inf,
                        isdtype, nan, newaxis, pi, result_type)
from .ir.dtypes import (BOOL as bool, FLOAT32 as float32, FLOAT64 as float64, INT8 as int8, INT16 as int16,  # noqa: A001
                     INT32 as int32, INT64 as int64, UINT8 as uint8, UINT16 as uint16, UINT32 as uint32,
                     UINT64 as uint64)
from .runtime.realize import evaluate as _evaluate  # load the backend now: the first result should not wait for it
from .staging.jit import jit
from .tools.explain import explain, to_dot
from .errors import (CompileError, CompilerMissing, CudaUnavailable, LockTimeout, NoCompileError, RewriteCheckError,
                     RewriteError, TraceError)

__version__ = "0.1.0"

# One function per op entry (and array-API alias) of ops/; the wrappers above take NumPy keywords.
_WRAPPED = {"astype", "clip", "gelu", "round", "where", "stop_gradient"}
for _name, _op in _opdefs.registry().items():
    if _name not in _WRAPPED and _op.kind not in ("reduce", "library"):   # their functions: functions.py, linear_algebra.py
        globals()[_name] = op_function(_name)


def eval(*arrays, out=None):  # noqa: A001 - the library's verb
    """Compute several arrays in one pass (kernels shared; multi-output kernels read shared inputs once).

    ``out``: NumPy buffers to write into, one per array (exact shape and dtype). Returns the NumPy value
    of a single array, or a tuple of them.
    """
    pending = [asarray(a) for a in arrays]
    if not pending:
        return ()
    _readable([a._graph_node() for a in pending], "ex.eval")
    values = _evaluate(tuple(a._graph_node() for a in pending), out=out)
    for array, value in zip(pending, values):
        # An out= buffer is the user's NumPy memory: an array of another device does not keep it as its value.
        if out is None or array.device == "cpu":
            array._set_value(value)
    # Another device's values are its memory: the caller gets copies, as from Array.numpy().
    if out is None:
        values = [value if array.device == "cpu" else value.copy() for array, value in zip(pending, values)]
    return values[0] if len(values) == 1 else tuple(values)


# The public namespace, and nothing else: the stage packages (ex.ir, ex.api, ...) are attributes of any
# package whose submodules are imported, and are internals all the same.
__all__ = sorted([
    # arrays and evaluation
    "Array", "asarray", "from_dlpack", "eval", "explain", "to_dot", "device",
    # settings and counters
    "config", "threads", "get_num_threads", "set_num_threads", "stats", "reset_stats",
    # autodiff
    "grad", "value_and_grad", "vjp", "custom_vjp", "stop_gradient",
    # tracing a function once, replaying it
    "jit",
    # user ops and rules
    "elementwise", "apply", "op_function", "rules",
    # functions with NumPy keywords (the op functions of ops/ are added below)
    "clip", "gelu", "round", "where", "astype",
    "all", "any", "argmax", "argmin", "broadcast_to", "concat", "concatenate", "count_nonzero", "expand_dims", "flip",
    "log_softmax", "logsumexp", "max", "mean", "min", "permute_dims", "prod", "reshape", "softmax", "squeeze",
    "stack", "std", "sum", "swapaxes", "transpose", "var",
    "arange", "copy", "empty", "empty_like", "eye", "full", "full_like", "linspace", "meshgrid", "ones", "ones_like", "tril",
    "triu", "zeros", "zeros_like",
    "broadcast_arrays", "diff", "moveaxis", "repeat", "roll", "tile", "unstack",
    "argsort", "cumulative_prod", "cumulative_sum", "nonzero", "searchsorted", "sort", "unique_all",
    "unique_counts", "unique_inverse", "unique_values",
    "matmul", "matrix_transpose", "tensordot", "vecdot", "take", "take_along_axis",
    # the array API's namespace facts
    "__array_api_version__", "__array_namespace_info__", "can_cast", "e", "finfo", "iinfo", "inf", "isdtype", "nan",
    "newaxis", "pi", "result_type", "__version__",
    "bool", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    # what exprgen raises
    "CompileError", "CompilerMissing", "CudaUnavailable", "LockTimeout", "NoCompileError", "RewriteCheckError",
    "RewriteError", "TraceError",
] + [name for name, op in _opdefs.registry().items() if name not in _WRAPPED and op.kind not in ("reduce", "library")])


def __dir__():
    return __all__
