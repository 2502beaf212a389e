"""A process that ran a multi-threaded kernel must exit cleanly.

cffi dlcloses every library it opened when the interpreter shuts down. Closing the last kernel used to
unmap libgomp while its worker threads still spun inside it after the last parallel region: a segfault
at exit in 15-60% of runs with 2 threads, and in every run with OMP_WAIT_POLICY=active (workers then spin
until the process ends). backends/cpu.py loads kernels RTLD_NODELETE so the runtime is never unmapped.
Half of the runs use the active policy so that a regression fails every time, not now and then.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = 30
AT_ONCE = 3

# The kernel must be the process's last act: the hazard lies between the parallel region and exit.
CHILD = """
import os
import numpy as np
import exprgen as ex
threads_before = len(os.listdir("/proc/self/task"))
x = np.arange(1_000_000) / 8.0  # above settings.PARALLEL_THRESHOLD
assert np.array_equal((ex.asarray(x) * 2.0 + 1.0).numpy(), x * 2.0 + 1.0)
assert len(os.listdir("/proc/self/task")) > threads_before, "no OpenMP team started: the test proves nothing"
"""


def _env(cache_dir: Path, wait_policy: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPRGEN_", "OMP_", "GOMP_")) and k != "CXX"}
    env.update(EXPRGEN_CACHE_DIR=str(cache_dir), EXPRGEN_NUM_THREADS="2", PYTHONPATH=str(REPO))
    if wait_policy:
        env["OMP_WAIT_POLICY"] = wait_policy
    return env


def _start(cache_dir: Path, wait_policy: str | None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD], cwd=REPO, env=_env(cache_dir, wait_policy),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_processes_running_parallel_kernels_exit_cleanly(tmp_path):
    cache_dir = tmp_path / "cache"
    warmup = _start(cache_dir, None)   # compiles once, so each run below is start, launch, exit
    _, stderr = warmup.communicate(timeout=120)
    assert warmup.returncode == 0, stderr
    policies = ["active" if i % 2 else None for i in range(RUNS)]
    failures = []
    for batch in range(0, RUNS, AT_ONCE):
        procs = [(p, _start(cache_dir, p)) for p in policies[batch:batch + AT_ONCE]]
        for policy, proc in procs:
            _, stderr = proc.communicate(timeout=120)
            if proc.returncode != 0:
                failures.append(f"OMP_WAIT_POLICY={policy}: exit status {proc.returncode}\n{stderr[-2000:]}")
    assert not failures, f"{len(failures)} of {RUNS} runs failed:\n" + "\n".join(failures)
