"""Every backend is found in the registry and implements the interface realize and the cache call."""

import inspect

import numpy as np
import pytest

import exprgen as ex
from exprgen.backends import base, registry
from exprgen.errors import CudaUnavailable


def _interface(protocol) -> set[str]:
    """The names a Protocol asks for: its annotated attributes and its methods, its bases' included."""
    names = set()
    for cls in protocol.__mro__:
        if cls in (object, base.Protocol) or not getattr(cls, "_is_protocol", False):
            continue
        names |= set(getattr(cls, "__annotations__", {}))
        names |= {n for n, v in vars(cls).items() if inspect.isfunction(v) and not n.startswith("_")}
    return names


@pytest.mark.parametrize("name", sorted(registry.BACKENDS))
def test_each_backend_implements_its_interface(name):
    backend = registry.get(name)
    protocol = base.Compiler if backend.compiles else base.Interpreter
    missing = {n for n in _interface(protocol) if not hasattr(backend, n)}
    assert not missing, f"backend {name} lacks {sorted(missing)}"
    assert backend.name == name


def test_the_cpu_runner_implements_the_runner_interface():
    runner = registry.get("cpu").runner()
    assert not {n for n in _interface(base.Runner) if not hasattr(runner, n)}


def test_cuda_compiles_and_refuses_to_run_naming_what_is_missing():
    cuda = registry.get("cuda")
    assert cuda.compiles and cuda.device_type == "cuda" and cuda.targets_here() == ()
    with pytest.raises(CudaUnavailable, match="#19"):
        cuda.runner()
    assert cuda.check_target("sm_90", "cuda:sm_90") == "sm_90"
    with pytest.raises(ValueError, match="bad CUDA target 'cuda:90'"):
        cuda.check_target("90", "cuda:90")


def test_an_unknown_backend_is_refused_naming_the_ones_there_are():
    with pytest.raises(ValueError, match="unknown backend 'tpu': one of cpu, cuda, cuda-host, numpy"):
        registry.get("tpu")
    with pytest.raises(ValueError, match=r"backend must be one of \('cpu', 'numpy'\)"):
        ex.config(backend="cuda")   # a device, not a way to evaluate CPU arrays


def test_the_numpy_backend_is_the_reference_interpreter():
    x = np.linspace(-3, 3, 1001)
    ex.reset_stats()
    with ex.config(backend="numpy"):
        got = ex.sigmoid(ex.asarray(x) * 2).numpy()
    assert ex.stats()["kernels_launched"] == 0
    np.testing.assert_array_equal(got, registry.reference.evaluate((ex.sigmoid(ex.asarray(x) * 2)._graph_node(),))[0])
