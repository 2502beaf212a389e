"""One thread policy for exprgen's kernels and the BLAS behind matmul: the OpenMP team sleeps between
kernels (it does not spin on the cores BLAS needs next), and ex.threads / ex.set_num_threads limit both."""

import os
import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import threadpoolctl

import exprgen as ex

REPO = Path(__file__).resolve().parents[1]

# Kernels split across the team, with pauses between them: a team that spins after each kernel burns
# CPU in every pause, one that sleeps does not. The ticks (1/100 s) of every thread but the main one.
CHILD = """
import os, threading, time
import numpy as np
import exprgen as ex
x = np.ones(1 << 21, np.float32)
(ex.asarray(x) * 2.0).numpy()   # the first kernel: the team starts
def worker_ticks():
    total = 0
    for tid in os.listdir("/proc/self/task"):
        if int(tid) != threading.get_native_id():
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total
before = worker_ticks()
a = ex.asarray(x)
for _ in range(40):
    ex.eval(a * 2.0, out=np.empty_like(x))
    time.sleep(0.005)
print(worker_ticks() - before, os.environ.get("OMP_WAIT_POLICY"))
"""


def _worker_ticks(tmp_path, **env) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "EXPRGEN_"))}
    clean.update(EXPRGEN_CACHE_DIR=str(tmp_path), EXPRGEN_NUM_THREADS="2", PYTHONPATH=str(REPO), **env)
    out = subprocess.run([sys.executable, "-c", CHILD], env=clean, capture_output=True, text=True, check=True)
    ticks, policy = out.stdout.split()
    return int(ticks), policy


@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or (os.cpu_count() or 1) < 2, reason="needs Linux, 2 CPUs")
def test_the_team_sleeps_between_kernels_unless_the_user_chose_otherwise(tmp_path):
    passive, policy = _worker_ticks(tmp_path)
    assert policy == "None"   # the user's environment is as it was
    active, policy = _worker_ticks(tmp_path, OMP_WAIT_POLICY="active")   # the user's choice is kept
    assert policy == "active"
    assert active >= 10 and passive * 4 < active, (passive, active)


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]


@pytest.mark.skipif(not _blas_threads(), reason="NumPy's BLAS is not one threadpoolctl knows")
def test_threads_limit_the_blas_too():
    before = _blas_threads()
    with ex.threads(1):
        assert _blas_threads() == [1] * len(before)
        a = np.random.default_rng(0).standard_normal((64, 64))
        np.testing.assert_allclose((ex.asarray(a) @ a).numpy(), a @ a, rtol=1e-12)
    assert _blas_threads() == before
    previous = ex.get_num_threads()
    try:
        ex.set_num_threads(1)
        assert _blas_threads() == [1] * len(before)
    finally:
        ex.set_num_threads(previous)


# In a fresh process: OpenBLAS ignores a limit set from another Python thread once the main thread has set
# one (measured with OpenBLAS 0.3.31), so the test must not follow one that limited BLAS from the main thread.
SEVERAL_THREADS = """
import threading
import threadpoolctl
import exprgen as ex
def blas():
    return [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
before = blas()
first_open, second_open, first_may_close, second_may_close = (threading.Event() for _ in range(4))
seen = {}
def first():
    with ex.threads(1):
        first_open.set()
        first_may_close.wait()
def second():
    first_open.wait()
    with ex.threads(2):
        second_open.set()
        second_may_close.wait()
workers = [threading.Thread(target=first), threading.Thread(target=second)]
for w in workers:
    w.start()
second_open.wait()
seen["both"] = blas()
first_may_close.set()     # the first block to open closes first: the other's limit holds on
workers[0].join()
seen["second"] = blas()
second_may_close.set()
workers[1].join()
seen["after"] = blas()
with ex.threads(2):
    ex.set_num_threads(1)   # asked inside a block: holds for kernels and BLAS after it
seen["set inside"] = [ex.get_num_threads()] + blas()
print(repr((before, seen)))
"""


@pytest.mark.skipif(not _blas_threads(), reason="NumPy's BLAS is not one threadpoolctl knows")
def test_blocks_in_several_threads_limit_blas_to_the_smallest_and_give_it_back_in_any_order(tmp_path):
    env = dict(os.environ, EXPRGEN_CACHE_DIR=str(tmp_path), PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", SEVERAL_THREADS], env=env, capture_output=True, text=True, check=True)
    before, seen = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    assert seen == {"both": [1] * len(before), "second": [min(2, b) for b in before], "after": before,
                    "set inside": [1] * (1 + len(before))}
