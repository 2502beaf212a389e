"""Regressions from the reliability issue: thread counts no runtime can start, NumPy inputs written into
before evaluation, logsumexp over an empty axis, and the namespace info naming dtypes asarray refuses."""

import os
import subprocess
import sys

import numpy as np
import pytest

import exprgen as ex
from exprgen import settings

CAP = settings.MAX_THREADS_PER_CPU * len(os.sched_getaffinity(0))


# -- thread counts ------------------------------------------------------------------------------------
@pytest.fixture
def restore_threads(monkeypatch):
    monkeypatch.setattr(settings, "_global_threads", settings._global_threads)


def test_a_thread_count_over_the_cap_is_cut_down_with_a_warning(restore_threads):
    # 60000 made libgomp fail to create threads (exit 1), 100000 crashed; checked without starting any.
    with pytest.warns(RuntimeWarning, match=f"asks for 60000 threads; using {CAP}"):
        ex.set_num_threads(60000)
    assert ex.get_num_threads() == CAP
    with pytest.warns(RuntimeWarning, match="asks for 100000 threads") as caught, ex.threads(100000):
        assert ex.get_num_threads() == CAP
    assert caught[0].filename == __file__   # the caller's line, not contextlib's
    ex.set_num_threads(CAP)   # the cap itself is allowed, silently (pytest turns warnings into errors)
    assert ex.get_num_threads() == CAP


def test_a_thread_count_over_the_cap_from_the_environment_is_cut_down_too():
    env = dict(os.environ, EXPRGEN_NUM_THREADS="60000")
    script = "import exprgen as ex; print(ex.get_num_threads())"
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) == CAP
    assert f"EXPRGEN_NUM_THREADS asks for 60000 threads; using {CAP}" in run.stderr


# -- NumPy inputs share their memory ------------------------------------------------------------------
def test_writing_into_a_numpy_input_before_evaluation_reaches_every_lazy_path():
    """One rule (README, "Shared memory"): an Array reads its input's memory when it is computed. Element
    expressions (x[3] > 50) used to be computed when built, and so read the values from before the write."""
    xs = np.arange(10.0)
    x = ex.asarray(xs)
    built = {"scaled": x * 2, "element": x[3], "compared": x[3] > 50, "element arithmetic": x[3] * 2 + 1,
             "elements combined": (x[3] > 50) & (x[0] > 50), "slice": x[:4], "sum": x.sum(),
             "numpy operand": ex.sin(xs) + 0 * x, "copy": ex.asarray(xs, copy=True) * 2}
    xs[0] = xs[3] = 100.0
    now = np.arange(10.0)
    now[0] = now[3] = 100.0
    values = {name: array.numpy() for name, array in built.items()}
    want = {"scaled": now * 2, "element": now[3], "compared": now[3] > 50, "element arithmetic": now[3] * 2 + 1,
            "elements combined": (now[3] > 50) & (now[0] > 50), "slice": now[:4], "sum": now.sum(),
            "numpy operand": np.sin(now), "copy": np.arange(10.0) * 2}   # copy=True: the value at the call
    for name in built:
        assert values[name].shape == np.shape(want[name]) and values[name].dtype == np.asarray(want[name]).dtype
        np.testing.assert_array_equal(values[name], want[name], err_msg=name)


# -- logsumexp over an empty axis ---------------------------------------------------------------------
def _logsumexp(x, axis=None, keepdims=False):
    """scipy.special.logsumexp's values over an empty axis: log(0) = -inf."""
    with np.errstate(divide="ignore"):
        return np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))


@pytest.mark.parametrize("shape, axis, keepdims", [((3, 0), 1, False), ((3, 0), 1, True), ((0,), None, False),
                                                   ((2, 0, 4), (0, 1), False), ((0, 5), 0, True)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp_over_an_empty_axis_is_minus_inf(shape, axis, keepdims, dtype):
    xs = np.empty(shape, dtype)
    got = ex.logsumexp(xs, axis=axis, keepdims=keepdims).numpy()
    want = _logsumexp(xs, axis=axis, keepdims=keepdims)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_the_gradient_of_logsumexp_over_an_empty_axis_is_empty():
    xs = np.empty((3, 0))
    g = ex.grad(lambda x: ex.logsumexp(x, axis=1).sum())(xs)
    assert g.shape == (3, 0) and g.dtype == np.float64
    assert ex.log_softmax(xs, axis=1).shape == (3, 0)
    # Where the axis is not empty the max is still taken out (no overflow) and the gradient is softmax.
    ys = np.array([[1000.0, 1000.0], [0.0, -np.inf]])
    np.testing.assert_array_equal(ex.logsumexp(ys, axis=1).numpy(), [1000.0 + np.log(2.0), 0.0])
    np.testing.assert_array_equal(ex.grad(lambda y: ex.logsumexp(y, axis=1).sum())(ys).numpy(),
                                  [[0.5, 0.5], [1.0, 0.0]])


# -- namespace info -----------------------------------------------------------------------------------
def test_namespace_info_names_only_dtypes_that_asarray_accepts():
    info = ex.__array_namespace_info__()
    named = [*info.default_dtypes().values(), *info.dtypes().values()]
    for dtype in named:
        assert ex.asarray(np.zeros(2, dtype)).dtype == dtype
    assert "complex floating" not in info.default_dtypes()
