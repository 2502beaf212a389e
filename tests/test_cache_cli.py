"""`exprgen cache info | list | verify | prune | clear` on real caches with planted damage.

A cache of eight kernels is prebuilt once; each test works on a copy (modes kept) and runs the command in
a child process, as a user would.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from exprgen.cache import prebuild
from exprgen.tools.cli import main
from exprgen.cache.kernelset import standard_set
from test_cache import PRELUDE, REPO, child_env, finish, sha256
from test_prebuild import child, cli, entries

NOBODY = 65534


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("built") / "cache"
    result = cli("prebuild", "--ops", "exp,add", "--dtypes", "float32", "--into", root, "--no-progress")
    assert result.returncode == 0, result.stderr
    return root


def copy(built: Path, tmp_path: Path, name: str = "cache") -> Path:
    root = tmp_path / name
    shutil.copytree(built, root)
    return root


def by_name(root: Path) -> dict[str, Path]:
    """Metadata path by standard kernel name (exp_float32, add_float32_y_0d, ...), matched on the source."""
    names = {k.source: k.name for k in standard_set(["exp", "add"], ["float32"])}
    return {names[meta.with_suffix(".cpp").read_text()]: meta for meta in entries(root)}


def cache_cli(root: Path, *args, **env):
    return cli("cache", *args, env=env, cache_dir=root)


def test_info_shows_each_tier_with_entries_per_backend_and_target(built, tmp_path):
    user, shipped = copy(built, tmp_path, "user"), copy(built, tmp_path, "shipped")
    out = cache_cli(user, "info", EXPRGEN_PREBUILT_DIR=shipped).stdout
    assert f"user cache: {user}," in out and f"prebuilt (read-only tier): {shipped}," in out
    assert out.count("cpu: 8 kernels") == 2 and "(native 8)" in out
    missing = cache_cli(tmp_path / "nowhere", "info").stdout
    assert f"user cache: {tmp_path / 'nowhere'} (does not exist yet)" in missing


def test_list_is_newest_first_with_expressions(built, tmp_path):
    root = copy(built, tmp_path)
    newest = by_name(root)["exp_float32"]
    meta = json.loads(newest.read_text())
    newest.write_text(json.dumps({**meta, "created": time.time() + 1000}))   # metadata only: still sound
    lines = cache_cli(root, "list").stdout.splitlines()
    assert lines[0].split()[:3] == ["created", "tier", "target"]
    assert len(lines) == 1 + 8
    assert lines[1].endswith("out0 = exp(x0)") and meta["key"][:16] in lines[1]
    assert all(" disk " in line for line in lines[1:])
    assert len(cache_cli(root, "list", "--limit", "3").stdout.splitlines()) == 1 + 3 + 1


def plant_damage(root: Path) -> dict[str, Path]:
    """Damage four of the eight entries, each its own way, and leave a crashed compile's temp file."""
    metas = by_name(root)
    exp, add = metas["exp_float32"], metas["add_float32"]
    others = [m for m in entries(root) if m not in (exp, add)]
    corrupt, incomplete = others[0], others[1]
    data = corrupt.with_suffix(".so").read_bytes()
    corrupt.with_suffix(".so").write_bytes(data[: len(data) // 2])
    os.chown(exp.with_suffix(".so"), NOBODY, NOBODY)
    add.with_suffix(".so").chmod(0o757)
    incomplete.unlink()   # however recent: no compile holds its lock, so none will finish it
    temp = exp.parent / f".{exp.stem[:16]}.k2j3h4.cpp"
    temp.write_text("// half a kernel")
    return {"checksum mismatch": corrupt.with_suffix(".so"), "not owned by you": exp.with_suffix(".so"),
            "writable by others": add.with_suffix(".so"), "incomplete: no metadata": incomplete.with_suffix(".so"),
            "temporary file left by an interrupted compile": temp}


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="planting a foreign-owned file needs root (chown)")


@needs_root
def test_verify_reports_planted_damage_and_fix_removes_only_it(built, tmp_path):
    root = copy(built, tmp_path)
    planted = plant_damage(root)
    report = cache_cli(root, "verify")
    assert report.returncode == 1
    assert f"{root} (user cache): 8 entries checked, 5 problem(s)" in report.stdout
    for problem, path in planted.items():
        assert f"{path}: {problem}" in report.stdout
    fixed = cache_cli(root, "verify", "--fix")
    assert fixed.returncode == 0 and fixed.stdout.count("-> removed") == 5
    assert not any(p.exists() for p in planted.values())
    assert len(entries(root)) == 4
    again = cache_cli(root, "verify")
    assert again.returncode == 0 and "4 entries checked, 0 problem(s)" in again.stdout


@needs_root
def test_running_programs_refuse_the_planted_entries(built, tmp_path):
    root = copy(built, tmp_path)
    plant_damage(root)
    result = finish(child("""
x = np.linspace(-1, 1, 100, dtype=np.float32)
outcomes = {}
for name, expr in [("exp", lambda: ex.exp(ex.asarray(x))), ("add", lambda: ex.asarray(x) + ex.asarray(x * 2))]:
    try:
        expr().numpy()
        outcomes[name] = "ran"
    except Exception as exc:
        outcomes[name] = type(exc).__name__
report(outcomes=outcomes)
""", [], tmp_path / "user-cache", EXPRGEN_PREBUILT_DIR=root, EXPRGEN_NO_COMPILE=1))
    assert result["outcomes"] == {"exp": "NoCompileError", "add": "NoCompileError"}
    refusals = sorted(w.split(": ")[2].split(" (")[0] for w in result["warnings"] if "refusing" in w)
    assert refusals == ["not owned by you", "writable by others"]


def test_prune_removes_damaged_entries_then_the_least_recently_used(built, tmp_path):
    root = copy(built, tmp_path)
    exp = by_name(root)["exp_float32"]
    others = [m for m in entries(root) if m != exp]
    for age, meta in enumerate([exp] + others):    # exp was used most recently, others[-1] least
        stamp = time.time() - 1000 - 10 * age
        os.utime(meta, (stamp, stamp))
    corrupt = others[0].with_suffix(".so")         # recently used, but it can never load again
    corrupt.write_bytes(corrupt.read_bytes()[:100])
    os.utime(exp, (0, 0))                          # forgotten; a run that loads exp marks it as just used
    assert finish(child("ex.exp(ex.asarray(np.ones(10, np.float32))).numpy(); report()", [], root,
                        EXPRGEN_NO_COMPILE=1))["stats"]["cache_hits"]["disk"] == 1
    assert exp.stat().st_mtime > time.time() - 60
    stored = {e.key: e for e in prebuild.scan("disk", str(root))[0]}
    keep = [exp.stem, others[1].stem, others[2].stem]   # the three most recently used sound ones
    limit = prebuild.tree_size(str(root)) - sum(e.size for k, e in stored.items() if k not in keep)
    result = cache_cli(root, "prune", "--max-size", limit)
    assert result.returncode == 0 and "5 entries removed" in result.stdout
    assert sorted(m.stem for m in entries(root)) == sorted(keep)
    assert prebuild.tree_size(str(root)) <= limit


def test_prune_removes_the_temp_files_of_killed_compiles_first(built, tmp_path):
    """They are no entry, so prune removed sound kernels instead and still ended over its limit."""
    root = copy(built, tmp_path)
    shard = entries(root)[0].parent
    busy_key = shard.name + "f" * 62
    stale, busy = shard / ".0123456789abcdef.k1lled.so", shard / f".{busy_key[:16]}.busy00.so"
    for temp in (stale, busy):
        temp.write_bytes(b"\0" * (1 << 20))
    with holding(shard / f"{busy_key}.lock"):   # a compile still writing its temp file
        size = prebuild.tree_size(str(root))
        result = cache_cli(root, "prune", "--max-size", size - (1 << 20))
    assert result.returncode == 0 and "0 entries removed, 1 temporary files of interrupted compiles" in result.stdout
    assert not stale.exists() and busy.exists() and len(entries(root)) == 8


@contextlib.contextmanager
def holding(lock: Path):
    """Hold the compile lock ``lock`` in this process, as a running compile would."""
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def test_a_killed_compile_is_reported_by_verify_and_cleaned_by_prune_at_once(tmp_path):
    """kill -9 mid-compile left temp files that verify called fine for an hour, and a lock file forever."""
    compiling = tmp_path / "compiling"
    slow = tmp_path / "slow-cxx"
    slow.write_text(f'#!/bin/sh\nif [ "$1" = --version ]; then echo "slow-cxx 1.0"; exit 0; fi\n'
                    f'touch {compiling}\nsleep 60\n')
    slow.chmod(0o755)
    root = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", PRELUDE + "ex.exp(ex.asarray(np.ones(3))).numpy()"], cwd=REPO,
                            env=child_env(root, CXX=slow), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not compiling.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)   # the child and its compiler, in the session made for them
    proc.wait()
    (temp,) = root.glob("cpu/*/.*.cpp")
    (lock,) = root.glob("cpu/*/*.lock")
    report = cache_cli(root, "verify")
    assert report.returncode == 1 and f"{temp}: temporary file left by an interrupted compile" in report.stdout
    pruned = cache_cli(root, "prune", "--max-size", "1G")
    assert pruned.returncode == 0 and "1 temporary files of interrupted compiles removed" in pruned.stdout
    assert not temp.exists() and not lock.exists()
    assert cache_cli(root, "verify").returncode == 0


def test_verify_loads_each_binary_that_passed_its_checks(built, tmp_path):
    """A binary that matches its checksum but is no library (a CXX that wrote garbage) was called fine."""
    root = copy(built, tmp_path)
    meta = by_name(root)["exp_float32"]
    meta.with_suffix(".so").write_bytes(b"not a library\n")
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "sha256": sha256(meta.with_suffix(".so"))}))
    report = cache_cli(root, "verify")
    assert report.returncode == 1 and "8 entries checked, 1 problem(s)" in report.stdout
    assert f"{meta.with_suffix('.so')}: cannot be loaded (" in report.stdout


def test_prune_and_clear_leave_prebuilt_tiers_and_foreign_files_alone(built, tmp_path):
    root, shipped = copy(built, tmp_path), copy(built, tmp_path, "shipped")
    (root / "notes.txt").write_text("not exprgen's")
    assert cache_cli(root, "prune", "--max-size", "0", EXPRGEN_PREBUILT_DIR=shipped).returncode == 0
    assert not entries(root) and len(entries(shipped)) == 8
    result = cache_cli(root, "clear", EXPRGEN_PREBUILT_DIR=shipped)
    assert result.returncode == 0 and f"{root}: cleared" in result.stdout
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt"]
    assert len(entries(shipped)) == 8


def test_clear_reports_what_it_could_not_remove_and_fails(built, tmp_path, request):
    """Read-only shards: it printed "cleared 20.7 KiB" and exited 0 having removed no kernel."""
    if os.geteuid() == 0:   # root removes files whatever the modes: clear as nobody, in a cache nobody owns
        base = Path(tempfile.mkdtemp(prefix="exprgen-test-"))
        request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
        base.chmod(0o755)
        root = copy(built, base)
        for path in [root, *root.rglob("*")]:
            os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
        become = f"os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})"
    else:
        root, become = copy(built, tmp_path), ""
        request.addfinalizer(lambda: [shard.chmod(0o700) for shard in root.glob("cpu/*")])
    for shard in root.glob("cpu/*"):
        shard.chmod(0o555)
    kernels = sorted(root.glob("cpu/*/*.so"))
    code = f"import os, sys\nfrom exprgen.tools import cli\nfrom exprgen.cache import prebuild\n{become}\nsys.exit(cli.main(['cache', 'clear']))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=child_env(root), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert all(f"could not remove {kernel}: Permission denied" in result.stdout for kernel in kernels)
    assert "could not be removed" in result.stdout.splitlines()[0]
    assert all(kernel.exists() for kernel in kernels)


def test_prune_refuses_a_malformed_size(built, tmp_path):
    result = cache_cli(copy(built, tmp_path), "prune", "--max-size", "lots")
    assert result.returncode == 2 and "bad size 'lots'" in result.stderr


@pytest.mark.parametrize("text, size", [("500M", 500 << 20), ("1.5G", 3 << 29), ("64k", 64 << 10), ("1000", 1000),
                                        ("2MiB", 2 << 20)])
def test_sizes_parse_in_powers_of_1024(text, size):
    assert prebuild.parse_size(text) == size


def test_human_sizes():
    assert [prebuild.human_size(n) for n in (512, 2048, 5 << 20, 3 << 30)] == ["512 B", "2.0 KiB", "5.0 MiB", "3.0 GiB"]



@pytest.mark.parametrize("args", [("demo", "-n", "0"), ("demo", "-n", "-1"), ("demo", "-n", "2.5"),
                                  ("prebuild", "-j", "0"), ("cache", "list", "--limit", "-1")])
def test_counts_must_be_positive_integers(args, capsys):
    """A usage error (exit 2) that says why, not a traceback, nor -1 taken as a Python slice."""
    with pytest.raises(SystemExit) as stop:
        main(list(args))
    error = capsys.readouterr().err
    assert stop.value.code == 2 and ("must be at least 1" in error or "expected an integer, got '2.5'" in error)


def test_an_entry_whose_metadata_names_no_target_is_listed_under_the_native_one():
    # Metadata written by hand or by an older exprgen may lack "isa"; CUDA has no native target to fall
    # back on, and listing such entries beside others must not compare None with "sm_90".
    assert prebuild._target_of("cuda", {}) == "native" and prebuild._target_of("cuda", {"isa": "sm_90"}) == "sm_90"
    assert prebuild._target_of("cpu", None) == "native"
    assert prebuild._labelled("cuda", prebuild._target_of("cuda", {})) == "cuda"
    assert prebuild._labelled("cpu", "x86-64-v3") == "cpu:x86-64-v3"
