"""The kernel cache as processes see it: reuse across runs, damage, races, permissions, deployments.

Every case runs exprgen in a child process with EXPRGEN_CACHE_DIR under tmp_path: a cache is process
state (memory tier, plan cache, loaded libraries), and the user's own cache must stay untouched.
Expressions are exact in float64 (x*2+1 with x = k/8), so results are compared with NumPy for equality.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import exprgen as ex
from exprgen.backends import cpu
from exprgen.cache import store

REPO = Path(__file__).resolve().parents[1]

AFFINE = "ex.asarray(x) * 2.0 + 1.0"      # one kernel
SHIFTED = "(ex.asarray(x) + 1.0) * 2.0"   # another kernel, whose binary would give 2x+2 in AFFINE's place

# The child's warnings are recorded, not printed, so a test can count them.
PRELUDE = """
import json, sys, warnings
_caught = warnings.catch_warnings(record=True)
_warnings = _caught.__enter__()
warnings.simplefilter("always")
import numpy as np
import exprgen as ex

def check(expr, n=1000):
    x = np.arange(n) / 8.0
    expected = eval(expr.replace("ex.asarray(x)", "x"))   # the same arithmetic in NumPy
    return bool(np.array_equal(eval(expr).numpy(), expected))

def report(**values):
    messages = [str(w.message) for w in _warnings if issubclass(w.category, RuntimeWarning)]
    print("RESULT " + json.dumps({**values, "warnings": messages, "stats": ex.stats()}))
"""


def child_env(cache_dir, **env) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("EXPRGEN_", "OMP_", "GOMP_")) and k != "CXX"}
    environ.update(EXPRGEN_CACHE_DIR=str(cache_dir), PYTHONPATH=str(REPO), EXPRGEN_NUM_THREADS="1")
    environ.update({k: str(v) for k, v in env.items()})
    return environ


def start(code: str, cache_dir, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PRELUDE + code], cwd=REPO, env=child_env(cache_dir, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> dict:
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{stderr}"
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"child reported nothing:\n{stdout}\n{stderr}"
    return json.loads(lines[-1][len("RESULT "):])


def attempt(statement: str) -> str:
    """Child code running ``statement`` that reports what it raised ("Type: message"), or None."""
    return f"""
try:
    {statement}
    report(raised=None)
except Exception as exc:
    report(raised=type(exc).__name__ + ": " + str(exc))
"""


def run(code: str, cache_dir, **env) -> dict:
    return finish(start(code, cache_dir, **env))


def evaluate(expr: str, cache_dir, **env) -> dict:
    return run(f"report(ok=check({expr!r}))", cache_dir, **env)


def binaries(cache_dir) -> set[Path]:
    return set(Path(cache_dir).glob("cpu/*/*.so"))


def entry(binary: Path) -> dict[str, Path]:
    return {"binary": binary, "source": binary.with_suffix(".cpp"), "meta": binary.with_suffix(".json")}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_entry_sound(binary: Path) -> None:
    meta = json.loads(entry(binary)["meta"].read_text())
    assert meta["key"] == binary.stem
    assert meta["sha256"] == sha256(binary)
    assert binary.stat().st_mode & 0o022 == 0


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """A cache holding AFFINE and SHIFTED, made by two processes in a directory that did not exist."""
    root = tmp_path_factory.mktemp("warm") / "not" / "yet" / "cache"
    first = evaluate(AFFINE, root)
    affine = binaries(root)
    second = evaluate(SHIFTED, root)
    shifted = binaries(root) - affine
    assert first["ok"] and second["ok"]
    assert first["stats"]["compiles"] >= 1 and second["stats"]["compiles"] >= 1
    assert len(affine) == 1 and len(shifted) == 1, "each expression should be one fused kernel"
    return {"root": root, "affine": affine.pop(), "shifted": shifted.pop(), "first": first}


def copy_of(warm, tmp_path) -> tuple[Path, Path, Path]:
    """A private copy of the warm cache (modes kept) and its AFFINE and SHIFTED binaries."""
    root = tmp_path / "cache"
    shutil.copytree(warm["root"], root)
    return root, root / warm["affine"].relative_to(warm["root"]), root / warm["shifted"].relative_to(warm["root"])


# --- reuse ---------------------------------------------------------------------------------------------

def test_second_process_compiles_nothing(warm, tmp_path):
    root, _, _ = copy_of(warm, tmp_path)
    again = evaluate(AFFINE, root)
    assert warm["first"]["stats"]["compiles"] >= 1
    assert again["ok"]
    assert again["stats"]["compiles"] == 0
    assert again["stats"]["cache_hits"]["disk"] >= 1


def test_scalar_values_and_sizes_are_arguments_not_recompiles(tmp_path):
    result = run("""
x = np.arange(1000) / 8.0
ok = np.array_equal((ex.asarray(x) * 2.0 + 1.0).numpy(), x * 2.0 + 1.0)
first = ex.stats()["compiles"]
ok &= np.array_equal((ex.asarray(x) * 3.0 + 0.5).numpy(), x * 3.0 + 0.5)
for n in (10, 1_000_000):  # 1_000_000 takes the multi-threaded branch of the same binary
    z = np.arange(n) / 8.0
    ok &= np.array_equal((ex.asarray(z) * 2.0 + 1.0).numpy(), z * 2.0 + 1.0)
report(ok=bool(ok), first=first)
""", tmp_path / "cache", EXPRGEN_NUM_THREADS=2)
    assert result["ok"]
    assert result["first"] >= 1
    assert result["stats"]["compiles"] == result["first"]


# --- damage --------------------------------------------------------------------------------------------

def _truncate_binary(paths, shifted):
    data = paths["binary"].read_bytes()
    paths["binary"].write_bytes(data[: len(data) // 2])


def _another_kernels_binary(paths, shifted):
    # A valid library that computes 2x+2: loading it would show as wrong values, not as a crash.
    shutil.copyfile(shifted, paths["binary"])


def _garbage_binary(paths, shifted):
    size = paths["binary"].stat().st_size
    paths["binary"].write_bytes(b"\x7fELF" + bytes(range(256)) * (size // 256))


def _garbage_binary_with_its_checksum(paths, shifted):
    # What a compiler that writes garbage leaves: loading it raised "file too short" on every run.
    paths["binary"].write_bytes(b"not a library\n")
    meta = json.loads(paths["meta"].read_text())
    paths["meta"].write_text(json.dumps({**meta, "sha256": sha256(paths["binary"])}))


def _truncate_meta(paths, shifted):
    text = paths["meta"].read_text()
    paths["meta"].write_text(text[: len(text) // 2])


def _meta_not_an_object(paths, shifted):
    paths["meta"].write_text("[]")


def _meta_missing(paths, shifted):
    paths["meta"].unlink()


@pytest.mark.parametrize("damage", [_truncate_binary, _another_kernels_binary, _garbage_binary,
                                    _garbage_binary_with_its_checksum, _truncate_meta, _meta_not_an_object,
                                    _meta_missing], ids=lambda f: f.__name__.strip("_"))
def test_damaged_entry_is_rebuilt_never_loaded(warm, tmp_path, damage):
    root, affine, shifted = copy_of(warm, tmp_path)
    damage(entry(affine), shifted)
    result = evaluate(AFFINE, root)
    assert result["ok"]
    assert result["stats"]["compiles"] == 1
    assert result["stats"]["cache_hits"]["disk"] == 0
    assert_entry_sound(affine)


# --- concurrency ---------------------------------------------------------------------------------------

def test_two_processes_racing_compile_once(tmp_path):
    root = tmp_path / "cache"
    go = tmp_path / "go"
    # Both children import exprgen first, then wait for one signal, so their compiles overlap.
    code = f"""
import os, time, pathlib
pathlib.Path(sys.argv[1]).touch()
deadline = time.monotonic() + 60
while not os.path.exists({str(go)!r}) and time.monotonic() < deadline:
    time.sleep(0.002)
report(ok=check({AFFINE!r}))
"""
    children = []
    for i in range(2):
        ready = tmp_path / f"ready{i}"
        proc = subprocess.Popen([sys.executable, "-c", PRELUDE + code, str(ready)], cwd=REPO,
                                env=child_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        children.append((proc, ready))
    deadline = time.monotonic() + 60
    while not all(ready.exists() for _, ready in children) and time.monotonic() < deadline:
        time.sleep(0.002)
    go.touch()
    results = [finish(proc) for proc, _ in children]
    assert all(r["ok"] for r in results)
    assert sum(r["stats"]["compiles"] for r in results) == 1
    assert sum(r["stats"]["cache_hits"]["disk"] for r in results) == 1
    assert len(binaries(root)) == 1
    assert_entry_sound(binaries(root).pop())


def test_a_stopped_lock_holder_delays_a_compile_only_so_long(warm, tmp_path):
    """A process stopped while holding a kernel's lock blocked every other one forever: now each waits
    LOCK_WAIT_SECONDS, then compiles privately without publishing, saying so once."""
    root = tmp_path / "cache"
    locks = []
    for binary in (warm["affine"], warm["shifted"]):   # keys are content: the same in a new cache
        shard = root / "cpu" / binary.parent.name
        shard.mkdir(parents=True, mode=0o700, exist_ok=True)
        locks.append(open(shard / (binary.stem + ".lock"), "a"))
        fcntl.flock(locks[-1], fcntl.LOCK_EX)   # held by this test process, which never lets go in time
    root.chmod(0o700)
    try:
        result = run(f"import exprgen.cache.store\nexprgen.cache.store.LOCK_WAIT_SECONDS = 0.3\n"
                     f"report(ok=check({AFFINE!r}) and check({SHIFTED!r}))", root)
    finally:
        for lock in locks:
            lock.close()
    assert result["ok"] and result["stats"]["compiles"] == 2
    assert len(result["warnings"]) == 1 and "locked by another process for 0.3 s" in result["warnings"][0]
    private = re.search(r"privately in (\S+) ", result["warnings"][0]).group(1)
    assert not os.path.exists(private) and not binaries(root)


# --- permissions ---------------------------------------------------------------------------------------

NOBODY = 65534


def _under_a_file(tmp_path, request) -> tuple[Path, str]:
    (tmp_path / "a-file").write_text("")
    return tmp_path / "a-file" / "cache", ""   # makedirs fails here, even for root


def _read_only_dir(tmp_path, request) -> tuple[Path, str]:
    if os.geteuid() != 0:
        root = tmp_path / "cache"
        root.mkdir()
        root.chmod(0o500)
        request.addfinalizer(lambda: root.chmod(0o700))
        return root, ""
    # Root writes through any mode bits, so the child drops to nobody, who owns the 0500 directory; it
    # lies outside tmp_path, which only root may enter.
    base = Path(tempfile.mkdtemp(prefix="exprgen-test-"))
    request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    base.chmod(0o755)
    root = base / "cache"
    root.mkdir()
    os.chown(root, NOBODY, NOBODY)
    root.chmod(0o500)
    return root, f"import os; os.setgid({NOBODY}); os.setuid({NOBODY})\n"


@pytest.mark.parametrize("unwritable", [_under_a_file, _read_only_dir], ids=lambda f: f.__name__.strip("_"))
def test_unwritable_cache_falls_back_with_one_warning(tmp_path, request, unwritable):
    root, prefix = unwritable(tmp_path, request)
    result = run(prefix + f"report(ok=check({AFFINE!r}) and check({SHIFTED!r}))", root)
    assert result["ok"]
    assert result["stats"]["compiles"] == 2
    assert len(result["warnings"]) == 1
    warning = result["warnings"][0]
    assert ("is read-only" in warning or "cannot be created" in warning) and str(root) in warning
    temp = re.search(r"temporary cache (\S+)", warning).group(1)
    assert not os.path.exists(temp), "the private fallback cache should be removed at exit"
    assert not root.is_dir() or not any(root.iterdir())


def test_cache_layout_is_private_sharded_and_keyed_by_content(warm, tmp_path):
    root = warm["root"]
    assert root.stat().st_mode & 0o777 == 0o700
    for binary in (warm["affine"], warm["shifted"]):
        key = binary.stem
        assert re.fullmatch(r"[0-9a-f]{64}", key)
        assert binary.relative_to(root).parts == ("cpu", key[:2], key + ".so")
        assert all(p.is_file() for p in entry(binary).values())
        assert entry(binary)["source"].read_text().count("exprgen_kernel") >= 1
        assert_entry_sound(binary)
    # Another location, another time, a cold cache: the same kernel gets the same key.
    elsewhere = tmp_path / "elsewhere"
    assert evaluate(AFFINE, elsewhere)["ok"]
    assert {b.name for b in binaries(elsewhere)} == {warm["affine"].name}


def _writable_by_group(binary):
    binary.chmod(0o720)


def _writable_by_others(binary):
    binary.chmod(0o702)


def _owned_by_nobody(binary):
    os.chown(binary, 65534, 65534)


@pytest.mark.parametrize("make_unsafe", [
    _writable_by_group,
    _writable_by_others,
    pytest.param(_owned_by_nobody, marks=pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")),
], ids=lambda f: f.__name__.strip("_"))
def test_binary_others_could_have_written_is_refused(warm, tmp_path, make_unsafe):
    root, affine, shifted = copy_of(warm, tmp_path)
    # Another kernel's binary with a matching checksum: only the ownership and mode check stops it.
    shutil.copyfile(shifted, affine)
    meta = json.loads(entry(affine)["meta"].read_text())
    entry(affine)["meta"].write_text(json.dumps({**meta, "sha256": sha256(affine)}))
    make_unsafe(affine)
    result = evaluate(AFFINE, root)
    assert result["ok"], "the refused binary was loaded"
    assert result["stats"]["compiles"] == 1
    refusals = [w for w in result["warnings"] if "refusing" in w]
    assert len(refusals) == 1 and str(affine) in refusals[0]
    assert affine.stat().st_uid == os.getuid()
    assert sha256(affine) != sha256(shifted)
    assert_entry_sound(affine)


# --- compiler failures and deployments -----------------------------------------------------------------

def test_a_read_only_cache_holding_the_kernel_is_read_not_recompiled(warm, tmp_path, request):
    """A cache filled on this machine and shipped read-only (the NoCompileError's own advice) is searched."""
    root, prefix = _read_only_dir(tmp_path, request)
    root.chmod(0o700)
    shutil.copytree(warm["root"] / "cpu", root / "cpu")
    if prefix:   # the child runs as nobody, who must own what it loads
        for path in [root, *root.rglob("*")]:
            os.chown(path, NOBODY, NOBODY)
    root.chmod(0o500)
    result = run(prefix + f"report(ok=check({AFFINE!r}))", root, EXPRGEN_NO_COMPILE="1")
    assert result["ok"] and result["stats"]["compiles"] == 0 and result["stats"]["cache_hits"]["disk"] == 1
    assert len(result["warnings"]) == 1 and "is read-only" in result["warnings"][0]


def test_a_relative_cache_directory_is_where_exprgen_was_imported(tmp_path):
    """Not re-read against each later working directory (a second cache, made 0755 by makedirs)."""
    (tmp_path / "work").mkdir()
    (tmp_path / "elsewhere").mkdir()
    code = ("import os, numpy as np, exprgen as ex; x = ex.asarray(np.ones(3)); ex.sin(x).numpy(); "
            "os.chdir('../elsewhere'); ex.cos(x).numpy()")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "work", env=child_env("kcache"), check=True,
                   timeout=120)
    assert len(binaries(tmp_path / "work" / "kcache")) == 2 and not (tmp_path / "elsewhere" / "kcache").exists()


def test_a_cache_directory_others_can_write_is_not_used(tmp_path):
    """Anyone who can write in it could plant a binary with a matching checksum: fall back, say why."""
    root = tmp_path / "shared"
    root.mkdir()
    root.chmod(0o777)
    result = evaluate(AFFINE, root)
    assert result["ok"] and result["stats"]["compiles"] == 1
    assert len(result["warnings"]) == 1 and "writable by others (mode 777" in result["warnings"][0]
    assert not any(root.iterdir())


def test_planted_links_are_not_followed(warm, tmp_path):
    """A binary that is a link (to another kernel, with its checksum) is rebuilt, not loaded; a lock that is
    a link makes the cache fall back, and the file it names is neither emptied nor written."""
    root, affine, shifted = copy_of(warm, tmp_path)
    meta = json.loads(entry(affine)["meta"].read_text())
    entry(affine)["meta"].write_text(json.dumps({**meta, "sha256": sha256(shifted)}))
    affine.unlink()
    affine.symlink_to(shifted)
    result = evaluate(AFFINE, root)
    assert result["ok"] and result["stats"]["compiles"] == 1
    assert not affine.is_symlink()
    assert_entry_sound(affine)
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    for path in entry(shifted).values():
        path.unlink()
    lock = shifted.with_suffix(".lock")
    lock.unlink(missing_ok=True)
    lock.symlink_to(precious)
    result = evaluate(SHIFTED, root)
    assert result["ok"] and precious.read_text() == "keep me"
    assert len(result["warnings"]) == 1 and "could not take kernel" in result["warnings"][0]


def test_a_linked_shard_in_the_user_cache_is_refused(warm, tmp_path):
    """Only the binary's own name was checked for a link: a shard linked to another directory was trusted,
    and compiled into."""
    root, affine, _ = copy_of(warm, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    affine.parent.rename(elsewhere)
    affine.parent.symlink_to(elsewhere)
    before = sorted(p.name for p in elsewhere.iterdir())
    result = evaluate(AFFINE, root)
    assert result["ok"] and result["stats"]["compiles"] == 1 and result["stats"]["cache_hits"]["disk"] == 0
    refusal, fallback = result["warnings"]
    assert f"refusing the kernels under {affine.parent}, such as {affine}: its directory {affine.parent} is a link" \
        in refusal
    assert "could not take kernel" in fallback and "would be refused" in fallback
    assert sorted(p.name for p in elsewhere.iterdir()) == before


def test_a_full_disk_at_link_time_falls_back_to_a_private_cache(tmp_path):
    """`ld: final link failed: No space left on device` was a CompileError calling itself an exprgen bug."""
    root = tmp_path / "cache"
    full = tmp_path / "full-disk-cxx"   # g++, but out of space wherever it writes into the cache
    full.write_text(f'#!/bin/sh\ncase "$*" in *"{root}"*)\n  echo "/usr/bin/ld: final link failed: No space left '
                    f'on device" >&2\n  echo "collect2: error: ld returned 1 exit status" >&2\n  exit 1;;\nesac\n'
                    f'exec g++ "$@"\n')
    full.chmod(0o755)
    result = evaluate(AFFINE, root, CXX=full)
    assert result["ok"] and result["stats"]["compiles"] == 1
    assert len(result["warnings"]) == 1
    assert "could not take kernel" in result["warnings"][0] and "No space left on device" in result["warnings"][0]
    assert not binaries(root) and not (root / "failed").exists()


def test_compile_error_names_source_quotes_compiler_and_leaves_no_entry(tmp_path):
    root = tmp_path / "cache"
    result = run("""
from exprgen.backends import cpu
from exprgen.cache.store import kernel_cache
try:
    kernel_cache().get("this is not C++;", "broken")
    report(raised=None)
except cpu.CompileError as exc:
    report(raised=str(exc), compiler=cpu.compiler())
""", root)
    message = result["raised"]
    assert message is not None
    kept = re.search(r"compiling (\S+\.cpp) failed", message).group(1)
    assert Path(kept).read_text() == "this is not C++;"
    assert "error" in message and "this is not C++" in message   # g++'s own words, with the line
    assert f"$ {result['compiler']} " in message                  # the command that was run
    assert not [p for p in (root / "cpu").rglob("*") if p.is_file() and p.suffix != ".lock"]
    assert result["stats"]["compiles"] == 0


def test_failing_compiler_error_reaches_the_user(tmp_path):
    fake = tmp_path / "fake-cxx"
    fake.write_text('#!/bin/sh\nif [ "$1" = --version ]; then echo "fake-cxx 1.0"; exit 0; fi\n'
                    'echo "fake-cxx: internal compiler error: out of cheese" >&2\nexit 1\n')
    fake.chmod(0o755)
    root = tmp_path / "cache"
    result = run(attempt(f"check({AFFINE!r})"), root, CXX=fake)
    message = result["raised"]
    assert message is not None and message.startswith("CompileError")
    assert "out of cheese" in message and str(fake) in message
    kept = re.search(r"compiling (\S+\.cpp) failed", message).group(1)
    assert "exprgen_kernel" in Path(kept).read_text()
    assert not [p for p in (root / "cpu").rglob("*") if p.is_file() and p.suffix != ".lock"]


def test_a_compiler_that_writes_nothing_is_named(tmp_path):
    """A wrapper that exits 0 without an output (a broken ccache) gave a FileNotFoundError on a temp file."""
    fake = tmp_path / "silent-cxx"
    fake.write_text('#!/bin/sh\nif [ "$1" = --version ]; then echo "silent-cxx 1.0"; fi\nexit 0\n')
    fake.chmod(0o755)
    result = run(attempt(f"check({AFFINE!r})"), tmp_path / "cache", CXX=fake)
    assert result["raised"].startswith("CompileError") and "the compiler wrote no" in result["raised"]
    assert str(fake) in result["raised"] and "(it printed nothing)" in result["raised"]


def test_a_compiler_that_writes_garbage_is_named(tmp_path):
    """Its output passed the checksum the cache made of it, then raised "OSError: file too short" on this
    and every later run."""
    fake = tmp_path / "garbage-cxx"
    fake.write_text('#!/bin/sh\nif [ "$1" = --version ]; then echo "garbage-cxx 1.0"; exit 0; fi\n'
                    'while [ $# -gt 1 ]; do [ "$1" = -o ] && echo "not a library" > "$2"; shift; done\nexit 0\n')
    fake.chmod(0o755)
    for _ in range(2):   # the next run compiles again (it may have a fixed compiler), and says the same
        result = run(attempt(f"check({AFFINE!r})"), tmp_path / "cache", CXX=fake)
        message = result["raised"]
        assert message.startswith(f"CompileError: the compiler {fake} made ") and "cannot be loaded" in message
        assert result["stats"]["compiles"] == 1
    assert not list((tmp_path / "cache").glob("cpu/*/*.json"))


def _no_compiler(tmp_path) -> dict:
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    return {"CXX": "/nonexistent/g++", "PATH": str(empty)}


# Without a compiler too: a deployment that lacks a kernel must fail loudly, not slow down to NumPy.
@pytest.mark.parametrize("compiler", ["with-compiler", "without-compiler"])
def test_no_compile_with_a_cold_cache_says_which_kernel_and_how_to_prebuild(tmp_path, compiler):
    root = tmp_path / "cache"
    env = _no_compiler(tmp_path) if compiler == "without-compiler" else {}
    result = run(attempt(f"check({AFFINE!r})"), root, EXPRGEN_NO_COMPILE=1, **env)
    message = result["raised"]
    assert message is not None and message.startswith("NoCompileError")
    if compiler == "with-compiler":
        assert re.search(r"kernel [0-9a-f]{16}", message)
    assert "multiply" in message and "add" in message       # the expression, in op names
    assert "EXPRGEN_PREBUILT_DIR" in message and "EXPRGEN_CACHE_DIR" in message
    assert result["stats"]["compiles"] == 0 and not binaries(root)


@pytest.mark.parametrize("tier", ["disk", "prebuilt", "prebuilt-without-compiler", "prebuilt-of-links"])
def test_no_compile_with_a_warm_tier_runs(warm, tmp_path, tier):
    root, _, _ = copy_of(warm, tmp_path)
    if tier == "prebuilt-of-links":   # a tree assembled from links (Nix, Bazel runfiles): the targets are checked
        for binary in binaries(root):
            target = tmp_path / "store" / binary.name
            target.parent.mkdir(exist_ok=True)
            binary.rename(target)
            binary.symlink_to(target)
    if tier == "disk":
        result = evaluate(AFFINE, root, EXPRGEN_NO_COMPILE=1)
    else:
        env = _no_compiler(tmp_path) if tier == "prebuilt-without-compiler" else {}
        result = evaluate(AFFINE, tmp_path / "user-cache", EXPRGEN_NO_COMPILE=1, EXPRGEN_PREBUILT_DIR=root, **env)
    assert result["ok"]
    assert result["stats"]["compiles"] == 0
    assert result["stats"]["cache_hits"][tier.split("-")[0]] >= 1
    assert result["warnings"] == []


def test_missing_compiler_falls_back_to_numpy_with_one_warning(tmp_path):
    result = run(f"report(ok=check({AFFINE!r}) and check({SHIFTED!r}))", tmp_path / "cache", **_no_compiler(tmp_path))
    assert result["ok"]
    assert result["stats"]["compiles"] == 0 and result["stats"]["kernels_launched"] == 0
    assert len(result["warnings"]) == 1
    warning = result["warnings"][0]
    assert "install g++" in warning and "/nonexistent/g++" in warning and "NumPy" in warning


def test_a_cache_made_under_umask_002_compiles_and_is_used_again(tmp_path):
    """os.makedirs made the levels above a shard 0777 less the umask (0775 under umask 002, Debian's and
    Fedora's default for users), which the directory checks then refused: no kernel could be compiled."""
    code = "import os; os.umask(0o002)\n" + f"report(ok=check({AFFINE!r}))"
    first, again = run(code, tmp_path / "cache"), run(code, tmp_path / "cache")
    assert first["ok"] and first["stats"]["compiles"] == 1 and not first["warnings"]
    assert again["ok"] and again["stats"]["compiles"] == 0 and not again["warnings"]
    assert all(p.stat().st_mode & 0o022 == 0 for p in (tmp_path / "cache").rglob("*") if p.is_dir())


def test_only_binaries_built_for_this_cpu_count_as_runnable_here(tmp_path):
    """cache verify loads (runs the initialisers of) a binary only if it was built for this CPU: natively on
    one with these features, or for a level this CPU runs. The entry's isa field alone could lie."""
    identity = cpu.identity(str(tmp_path))
    assert cpu.runs_here(identity)
    version, flags, target, prelude = identity.rsplit("|", 3)
    assert not cpu.runs_here("|".join((version, flags, "native:00000000deadbeef", prelude)))
    assert cpu.runs_here("|".join((version, flags, "isa:x86-64", prelude))) == ("x86-64" in cpu.supported_isas())
    assert not cpu.runs_here("|".join((version, flags, "isa:x86-64-v9", prelude))) and not cpu.runs_here(None)


def test_a_cache_inside_a_directory_others_may_rename_in_is_refused(tmp_path):
    """The loader opens a kernel's path again after the checks: whoever can rename a directory above the
    cache (writable by others, no sticky bit) could swap in one of their own in between."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    result = run(f"report(ok=check({AFFINE!r}))", shared / "cache")
    assert result["ok"] and len(result["warnings"]) == 1, result
    assert "writable by others" in result["warnings"][0] and str(shared) in result["warnings"][0]
    shared.chmod(0o1777)   # sticky, as /tmp: no one renames another's entries
    sticky = run(f"report(ok=check({AFFINE!r}))", shared / "cache")
    assert sticky["ok"] and not sticky["warnings"], sticky


def test_a_new_plans_kernels_compile_side_by_side(tmp_path, monkeypatch):
    # A training step's first call: its kernels compile at once, a thread (and compiler process) per core.
    monkeypatch.setenv("EXPRGEN_CACHE_DIR", str(tmp_path))
    store.reset_kernel_cache()
    threads, real = set(), cpu.compile

    def compile(*args, **kwargs):
        threads.add(threading.get_ident())
        return real(*args, **kwargs)
    monkeypatch.setattr(cpu, "compile", compile)
    try:
        x = np.linspace(-1, 1, 96).reshape(12, 8)
        a = ex.asarray(x)
        h = ex.tanh(a * 1.5 + 0.25) @ ex.asarray(x.T)   # a producer, the call, an epilogue with a reduction
        y = ex.sum(ex.exp(h) - h, axis=1)
        ex.reset_stats()
        np.testing.assert_allclose(y.numpy(), np.sum(np.exp(h_ := np.tanh(x * 1.5 + 0.25) @ x.T) - h_, axis=1),
                                   rtol=1e-12)
        assert ex.stats()["compiles"] == 2 and ex.stats()["library_calls"] == 1
        assert len(threads) == min(2, os.cpu_count() or 1)
    finally:
        monkeypatch.undo()
        store.reset_kernel_cache()
