"""Prebuilt tiers as deployments see them: prebuild, then fresh processes that must compile nothing.

Each case runs `exprgen prebuild` and exprgen itself in child processes (a cache is process state), with
every directory under tmp_path. Prebuilds are narrowed to a few ops and dtypes to stay fast.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exprgen.backends import cpu
from exprgen.cache.kernelset import standard_set
from test_cache import PRELUDE, REPO, attempt, child_env, finish, run

OPS, DTYPES = "exp,add,where,sum", "float32,int32"

# The standard expressions of a narrowed set, on data drawn from each op's domain, against the reference.
STANDARD_RUN = """
import math
from exprgen.cache.kernelset import standard_graphs
from exprgen.testing import assert_matches_reference
rng = np.random.default_rng(0)

def values(op, index, what, shape):
    domain = op.domains[index]
    low, high = max(domain.low, -50.0), min(domain.high, 50.0)
    if isinstance(what, type):  # a Python scalar: one per input, away from the values rules read (0, 1, 2)
        return {bool: bool(index % 2), int: min(max(3 + index, math.ceil(low)), math.floor(high)),
                float: rng.uniform(low, high)}[what]
    if what == np.bool_:
        return np.asarray(rng.random(shape) < 0.5)
    if what.kind == "i":
        return np.asarray(rng.integers(math.ceil(low), math.floor(high) + 1, size=shape), what)
    return np.asarray(rng.uniform(low, high, size=shape), what)

names = []
for name, node in standard_graphs(sys.argv[1].split(","), sys.argv[2].split(","), values):
    assert_matches_reference(node)
    names.append(name)
report(names=names)
"""


def cli(*args, env=None, cache_dir=None) -> subprocess.CompletedProcess:
    environ = child_env(cache_dir or Path(os.environ["EXPRGEN_CACHE_DIR"]) / "unused", **(env or {}))
    return subprocess.run([sys.executable, "-m", "exprgen.tools.cli", *map(str, args)], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=300)


def counts(stdout: str) -> dict[str, int]:
    match = re.search(r"(\d+) built, (\d+) skipped \(already present\), (\d+) failed", stdout)
    assert match, stdout
    return dict(zip(("built", "skipped", "failed"), map(int, match.groups())))


def entries(root: Path) -> list[Path]:
    return sorted(root.glob("cpu/*/*.json"))


def child(code: str, argv: list, cache_dir, **env) -> subprocess.Popen:
    """exprgen in a child process running ``code`` with ``sys.argv[1:] == argv``."""
    return subprocess.Popen([sys.executable, "-c", PRELUDE + code, *map(str, argv)], cwd=REPO,
                            env=child_env(cache_dir, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_standard(cache_dir, prebuilt, ops=OPS, dtypes=DTYPES, **env) -> dict:
    return finish(child(STANDARD_RUN, [ops, dtypes], cache_dir, EXPRGEN_PREBUILT_DIR=prebuilt, EXPRGEN_NO_COMPILE=1,
                        **env))


@pytest.fixture(scope="module")
def prebuilt(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prebuilt") / "tier"
    result = cli("prebuild", "--ops", OPS, "--dtypes", DTYPES, "--into", root, "-j", 2, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert counts(result.stdout)["failed"] == 0
    return root


def test_fresh_process_runs_every_standard_expression_from_the_prebuilt_tier(prebuilt, tmp_path):
    result = run_standard(tmp_path / "empty-cache", prebuilt)
    built = len(entries(prebuilt))
    assert result["stats"]["compiles"] == 0
    assert result["stats"]["cache_hits"]["prebuilt"] == built   # each kernel loaded once, then from memory
    assert len(result["names"]) > built                         # row broadcasts reuse the same-shape kernels
    assert {"exp_float32", "add_int32_y_pyint", "add_float32_x_0d", "where_float32_rest_pyfloat",
            "add_float32_row", "sum_int32_last", "sum_float32_all"} <= set(result["names"])
    assert result["warnings"] == []
    assert not (tmp_path / "empty-cache" / "cpu").exists()


def test_prebuilt_tier_is_readable_by_all_and_rerunning_builds_nothing(prebuilt):
    for meta in entries(prebuilt):
        binary = meta.with_suffix(".so")
        assert binary.stat().st_mode & 0o777 == 0o755 and meta.stat().st_mode & 0o777 == 0o644
    again = cli("prebuild", "--ops", OPS, "--dtypes", DTYPES, "--into", prebuilt, "--no-progress")
    assert counts(again.stdout) == {"built": 0, "skipped": len(entries(prebuilt)), "failed": 0}


def _metadata_of(tier: Path, name: str) -> Path:
    """The metadata of the standard kernel ``name`` (e.g. exp_float32) in ``tier``, found by its source."""
    (kernel,) = [k for k in standard_set(OPS.split(","), DTYPES.split(",")) if k.name == name]
    (meta,) = [m for m in entries(tier) if m.with_suffix(".cpp").read_text() == kernel.source]
    return meta


def _exp_filed_as_log(tier: Path, log_key: str, log_source: str) -> None:
    """The forger who can write the tier: exp's genuine binary (a link), its metadata with log's key, and
    log's source, so that key, source, compiler and checksum all agree."""
    exp = _metadata_of(tier, "exp_float32")
    shard = tier / "cpu" / log_key[:2]
    shard.mkdir(exist_ok=True)
    (shard / f"{log_key}.so").symlink_to(exp.with_suffix(".so"))
    (shard / f"{log_key}.json").write_text(json.dumps({**json.loads(exp.read_text()), "key": log_key}))
    (shard / f"{log_key}.cpp").write_text(log_source)


def _writable_shard(tier: Path, log_key: str) -> Path:
    return tier / "cpu" / log_key[:2]


def _writable_tier(tier: Path, log_key: str) -> Path:
    return tier


def _another_kernel_filed_as_log(tier: Path, log_key: str, log_source: str) -> None:
    """A mix-up in a sound tier: another kernel's files (two inputs: another argument layout) under log's
    key, metadata edited to match, but its own source, from which the key is recomputed."""
    add = _metadata_of(tier, "add_float32")
    shard = tier / "cpu" / log_key[:2]
    shard.mkdir(exist_ok=True)
    for suffix in (".so", ".cpp"):
        shutil.copy2(add.with_suffix(suffix), shard / f"{log_key}{suffix}")
    (shard / f"{log_key}.json").write_text(json.dumps({**json.loads(add.read_text()), "key": log_key}))


@pytest.mark.parametrize("forge, writable", [(_exp_filed_as_log, _writable_shard), (_exp_filed_as_log, _writable_tier),
                                             (_another_kernel_filed_as_log, None)],
                         ids=["exp-in-a-shard-others-write", "exp-in-a-tier-others-write", "add-in-a-sound-tier"])
def test_a_forged_prebuilt_entry_is_never_loaded(prebuilt, tmp_path, forge, writable):
    """ex.log(x) returned exp(x): the checksum tied exp's binary to forged metadata, not to the key."""
    scratch = tmp_path / "scratch"
    assert cli("prebuild", "--ops", "log", "--dtypes", "float32", "--into", scratch, "--no-progress").returncode == 0
    (log,) = entries(scratch)
    tier = tmp_path / "tier"
    shutil.copytree(prebuilt, tier, symlinks=True)
    forge(tier, log.stem, log.with_suffix(".cpp").read_text())
    if writable:
        writable(tier, log.stem).chmod(0o777)
    result = run("x = np.linspace(0.5, 2, 100, dtype=np.float32)\n"
                 "report(ok=bool(np.allclose(ex.log(ex.asarray(x)).numpy(), np.log(x))))", tmp_path / "cache",
                 EXPRGEN_PREBUILT_DIR=tier)
    assert result["ok"], "the forged kernel was launched"
    assert result["stats"]["cache_hits"]["prebuilt"] == 0 and result["stats"]["compiles"] == 1
    refused = [w for w in result["warnings"] if "refusing" in w]
    if writable:
        assert len(refused) == 1 and f"its directory {writable(tier, log.stem)} is writable by others" in refused[0]
    else:
        assert refused == []


def test_missing_kernel_names_kernel_expression_and_how_to_record_and_prebuild(prebuilt, tmp_path):
    result = run(attempt("ex.tanh(ex.asarray(np.arange(8.0))).numpy()"), tmp_path / "cache",
                 EXPRGEN_PREBUILT_DIR=prebuilt, EXPRGEN_NO_COMPILE=1)
    message = result["raised"]
    assert message is not None and message.startswith("NoCompileError")
    assert re.search(r"kernel [0-9a-f]{16}", message)
    assert "expression: out0 = tanh(x0)" in message
    assert "EXPRGEN_RECORD=kernels.json" in message and "exprgen prebuild --manifest kernels.json" in message
    assert str(prebuilt) in message and "EXPRGEN_PREBUILT_DIR" in message
    assert result["stats"]["compiles"] == 0


def test_four_concurrent_prebuilds_compile_each_kernel_once_and_leave_no_partial_files(tmp_path):
    root = tmp_path / "shared"
    args = ["prebuild", "--ops", "exp,add", "--dtypes", "float32", "--into", root, "-j", "1", "--no-progress"]
    environ = child_env(tmp_path / "unused")
    procs = [subprocess.Popen([sys.executable, "-m", "exprgen.tools.cli", *map(str, args)], cwd=REPO, env=environ,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    results = [counts(out) for out, _ in outputs]
    n = len(entries(root))
    assert n == 8   # exp; add same shape, two 0-d sides, Python float and int on each side
    assert sum(r["built"] for r in results) == n
    assert all(r["built"] + r["skipped"] == n and r["failed"] == 0 for r in results)
    files = [p for p in root.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.startswith(".") or p.suffix == ".tmp"]
    for meta in entries(root):
        assert {p.suffix for p in files if p.stem == meta.stem} == {".so", ".cpp", ".json", ".lock"}
    assert cli("cache", "verify", env={"EXPRGEN_PREBUILT_DIR": root}).returncode == 0


BARRIER = """
import os, time, pathlib
pathlib.Path(sys.argv[1]).touch()
deadline = time.monotonic() + 60
while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
    time.sleep(0.002)
"""
WORKLOAD = """
x = np.linspace(-2, 2, 1000)
ok = True
for expr in sys.argv[-1].split(";"):
    ok &= bool(np.allclose(eval(expr).numpy(), eval(expr.replace("ex.asarray(x)", "x").replace("ex.", "np."))))
report(ok=ok)
"""
WORKLOADS = ["ex.exp(ex.asarray(x)) * 3.0;ex.tanh(ex.asarray(x) + 1.0);ex.sqrt(ex.abs(ex.asarray(x)))",
             "ex.tanh(ex.asarray(x) + 1.0);ex.sin(ex.asarray(x)) - ex.cos(ex.asarray(x));ex.asarray(x) ** 3"]


def test_manifest_recorded_by_two_concurrent_processes_replays_completely(tmp_path):
    manifest, go = tmp_path / "kernels.json", tmp_path / "go"
    procs = []
    for i, workload in enumerate(WORKLOADS):   # both start recording at one signal, so their writes overlap
        ready = tmp_path / f"ready{i}"
        procs.append((ready, child(BARRIER + WORKLOAD, [ready, go, workload], tmp_path / f"build-cache{i}",
                                   EXPRGEN_RECORD=manifest)))
    deadline = time.monotonic() + 60
    while not all(ready.exists() for ready, _ in procs) and time.monotonic() < deadline:
        time.sleep(0.002)
    go.touch()
    assert all(finish(proc)["ok"] for _, proc in procs)
    kernels = json.loads(manifest.read_text())["kernels"]
    assert len(kernels) == 5                                    # the shared tanh kernel once
    assert len({k["id"] for k in kernels}) == 5 and all("exprgen_kernel" in k["source"] for k in kernels)
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]

    prebuilt = tmp_path / "prebuilt"
    result = cli("prebuild", "--manifest", manifest, "--into", prebuilt, "-j", 2, "--no-progress")
    assert result.returncode == 0 and counts(result.stdout) == {"built": 5, "skipped": 0, "failed": 0}
    for workload in WORKLOADS:
        replay = finish(child(WORKLOAD, [workload], tmp_path / "deploy-cache", EXPRGEN_PREBUILT_DIR=prebuilt,
                              EXPRGEN_NO_COMPILE=1))
        assert replay["ok"] and replay["stats"]["compiles"] == 0


LOADED_ISA = """
from exprgen.cache.store import kernel_cache
x = np.linspace(-3, 3, 100, dtype=np.float32)
ok = bool(np.allclose(ex.exp(ex.asarray(x)).numpy(), np.exp(x)))
report(ok=ok, isas=sorted({e.isa for e in kernel_cache().memory.values()}))
"""


@pytest.mark.parametrize("compiler", ["with-compiler", "without-compiler"])
def test_the_best_isa_level_the_cpu_supports_wins(tmp_path, compiler):
    runnable = [isa for isa in cpu.supported_isas() if isa != cpu.NATIVE]
    if len(runnable) < 2:
        pytest.skip("needs an x86-64 CPU with at least two ISA levels")
    best, lesser = runnable[0], runnable[1]
    prebuilt = tmp_path / "prebuilt"
    result = cli("prebuild", "--ops", "exp", "--dtypes", "float32", "--target", f"cpu:{lesser},cpu:{best}",
                 "--into", prebuilt, "--no-progress")
    assert counts(result.stdout) == {"built": 2, "skipped": 0, "failed": 0}
    isas = {json.loads(m.read_text())["isa"] for m in entries(prebuilt)}
    assert isas == {best, lesser}
    env = {"CXX": "/nonexistent/g++", "PATH": str(tmp_path)} if compiler == "without-compiler" else {}
    loaded = finish(child(LOADED_ISA, [], tmp_path / "cache", EXPRGEN_PREBUILT_DIR=prebuilt, EXPRGEN_NO_COMPILE=1,
                          **env))
    assert loaded["ok"] and loaded["isas"] == [best]
    assert loaded["stats"]["compiles"] == 0 and loaded["stats"]["cache_hits"]["prebuilt"] == 1


def test_native_kernel_in_the_user_cache_beats_a_prebuilt_level(tmp_path):
    prebuilt = tmp_path / "prebuilt"
    assert cli("prebuild", "--ops", "exp", "--dtypes", "float32", "--target", "cpu:x86-64", "--into", prebuilt,
               "--no-progress").returncode == 0
    user = tmp_path / "cache"
    assert cli("prebuild", "--ops", "exp", "--dtypes", "float32", "--into", user, "--no-progress").returncode == 0
    loaded = finish(child(LOADED_ISA, [], user, EXPRGEN_PREBUILT_DIR=prebuilt))
    assert loaded["ok"] and loaded["isas"] == [cpu.NATIVE]
    assert loaded["stats"]["cache_hits"]["disk"] == 1 and loaded["stats"]["compiles"] == 0


def test_cuda_targets_are_compiled_by_nvrtc_without_a_gpu(tmp_path):
    """NVRTC makes cubins on a machine without a GPU; without cuda-python the target fails, saying why."""
    from exprgen.backends import cuda

    prebuilt = tmp_path / "prebuilt"
    result = cli("prebuild", "--ops", "exp", "--dtypes", "float32", "--target", "cpu,cuda:sm_80,cuda:sm_90",
                 "--into", prebuilt, "--no-progress", env={"CUDA_VISIBLE_DEVICES": ""})
    assert len(entries(prebuilt)) == 1
    cubins = sorted(prebuilt.glob("cuda/*/*.json"))
    why = cuda.problem("sm_90")
    if why is None:
        assert result.returncode == 0, result.stdout + result.stderr
        assert counts(result.stdout) == {"built": 3, "skipped": 0, "failed": 0}
        assert sorted(json.loads(m.read_text())["isa"] for m in cubins) == ["sm_80", "sm_90"]
        assert all(m.with_suffix(".cubin").stat().st_size > 0 and m.with_suffix(".cu").exists() for m in cubins)
    else:
        assert result.returncode == 1 and not cubins
        assert counts(result.stdout) == {"built": 1, "skipped": 0, "failed": 2}
        assert f"FAILED every kernel for cuda:sm_90: {why}" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--target", "cuda:90"], "bad CUDA target 'cuda:90'"),
    (["--target", "cpu:haswell"], "unknown CPU target 'cpu:haswell'"),
    (["--target", "tpu"], "unknown target 'tpu'"),
    (["--ops", "nosuchop"], "unknown op 'nosuchop'"),
    (["--dtypes", "float16"], "unsupported dtype float16"),
])
def test_bad_prebuild_arguments_are_refused_before_building(tmp_path, args, message):
    result = cli("prebuild", *args, "--into", tmp_path / "prebuilt", "--no-progress")
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "prebuilt").exists()


def test_a_manifest_kernel_that_fails_to_compile_is_reported_and_the_rest_are_built(tmp_path):
    from exprgen.cache.store import MANIFEST_FORMAT, manifest_entry
    from exprgen.cache.kernelset import standard_set

    (good,) = standard_set(["exp"], ["float64"])
    manifest = tmp_path / "kernels.json"
    manifest.write_text(json.dumps({"format": MANIFEST_FORMAT, "kernels": [
        manifest_entry("cpu", good.source, good.summary), manifest_entry("cpu", "not C++ at all;", "broken")]}))
    prebuilt = tmp_path / "prebuilt"
    result = cli("prebuild", "--manifest", manifest, "--into", prebuilt, "--no-progress")
    assert result.returncode == 1
    assert counts(result.stdout) == {"built": 1, "skipped": 0, "failed": 1}
    assert "FAILED kernels.json:" in result.stdout and "not C++ at all" in result.stdout
    assert len(entries(prebuilt)) == 1
    assert not [p for p in prebuilt.rglob(".*") if p.is_file()]


def test_a_file_that_is_not_a_manifest_is_named(tmp_path):
    bogus = tmp_path / "kernels.json"
    bogus.write_text('{"kernels": 3}')
    result = cli("prebuild", "--manifest", bogus, "--into", tmp_path / "prebuilt")
    assert result.returncode == 2 and f"{bogus} is not an exprgen kernel manifest" in result.stderr


def test_memory_hit_computes_one_key(tmp_path, monkeypatch):
    from exprgen.cache import store as cache
    from exprgen.cache.kernelset import standard_set

    monkeypatch.setenv("EXPRGEN_CACHE_DIR", str(tmp_path / "cache"))
    cache.reset_kernel_cache()
    try:
        (kernel,) = standard_set(["negative"], ["int32"])
        first = cache.kernel_cache().get(kernel.source, kernel.summary)
        keys = []
        original = cache.KernelCache.key
        monkeypatch.setattr(cache.KernelCache, "key", lambda self, *a, **k: keys.append(a) or original(self, *a, **k))
        again = cache.kernel_cache().get(kernel.source, kernel.summary)
        assert again is first and len(keys) == 1
    finally:
        cache.reset_kernel_cache()


def test_missing_kernel_error_says_when_a_tier_holds_it_for_another_setup(tmp_path):
    prebuilt = tmp_path / "prebuilt"
    assert cli("prebuild", "--ops", "exp", "--dtypes", "float64", "--into", prebuilt, "--no-progress").returncode == 0
    (meta,) = entries(prebuilt)
    # What a prebuild by another exprgen version leaves: the same source under another prelude, another key.
    data = json.loads(meta.read_text())
    parts = data["compiler"].split("|")
    data["compiler"] = "|".join(parts[:-1] + ["prelude:0123456789abcdef"])
    data["key"] = "f" * 64
    stale = meta.parent.parent / "ff"
    stale.mkdir()
    for path in meta.parent.glob(meta.stem + ".*"):
        path.rename(stale / (data["key"] + path.suffix))
    (stale / (data["key"] + ".json")).write_text(json.dumps(data))
    result = run(attempt("ex.exp(ex.asarray(np.arange(8.0))).numpy()"), tmp_path / "cache",
                 EXPRGEN_PREBUILT_DIR=prebuilt, EXPRGEN_NO_COMPILE=1)
    assert f"{stale} holds it, built for another setup: prelude:0123456789abcdef (here {parts[-1]})" in result["raised"]


def test_prebuild_without_a_compiler_fails_loudly(tmp_path):
    result = cli("prebuild", "--ops", "exp", "--dtypes", "float32", "--into", tmp_path / "prebuilt", "--no-progress",
                 env={"CXX": "/nonexistent/g++", "PATH": str(tmp_path)})
    assert result.returncode == 1
    assert "FAILED every kernel for cpu: CXX='/nonexistent/g++' is not an executable" in result.stdout
    assert not entries(tmp_path / "prebuilt")


def test_demo_shows_the_expression_its_kernel_source_the_compile_the_cache_hit_and_numpy(tmp_path):
    result = cli("demo", "-n", "100000", cache_dir=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "pending: divide(1, add(1, exp(" in out                       # the lazy expression
    assert "compiled in" in out and "1 kernel launched" in out            # the first evaluation compiles
    assert "1/(1+exp(-x)) -> sigmoid(x)" in out and "== 1 kernel(s)" in out
    assert "eg::sigmoid_f4_f4(" in out and "void run_range(" in out     # the generated source
    assert "second evaluation" in out and "(compiles: 0," in out          # served from the caches
    assert "a fresh process with the same cache" in out and "(compiles: 0, kernel read from the disk cache: 1" in out
    assert "NumPy, same expression" in out and "max |exprgen - NumPy|" in out


def test_a_prebuilt_link_whose_target_others_could_swap_is_refused(tmp_path):
    prebuilt, shared = tmp_path / "prebuilt", tmp_path / "shared"
    assert cli("prebuild", "--ops", "exp", "--dtypes", "float32", "--into", prebuilt, "--no-progress").returncode == 0
    (meta,) = entries(prebuilt)
    binary = meta.with_suffix(".so")
    shared.mkdir()
    (shared / "inner").mkdir()
    target = shared / "inner" / "exp.so"
    binary.rename(target)
    binary.symlink_to(target)
    shared.chmod(0o777)   # not sticky: anyone may rename inner/ and put their own library there
    loaded = finish(child(LOADED_ISA, [], tmp_path / "cache", EXPRGEN_PREBUILT_DIR=prebuilt))
    assert loaded["ok"] and loaded["stats"]["cache_hits"]["prebuilt"] == 0 and loaded["stats"]["compiles"] == 1
    assert any(str(shared) in w and "writable by others" in w for w in loaded["warnings"]), loaded["warnings"]
    shared.chmod(0o755)
    trusted = finish(child(LOADED_ISA, [], tmp_path / "cache2", EXPRGEN_PREBUILT_DIR=prebuilt, EXPRGEN_NO_COMPILE=1))
    assert trusted["ok"] and trusted["stats"]["cache_hits"]["prebuilt"] == 1
