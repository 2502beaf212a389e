"""Kernels built ahead of time, and the offline tools behind ``exprgen prebuild`` and ``exprgen cache``.

    EXPRGEN_RECORD=kernels.json python train.py          # cache/store.py records each kernel's source
    exprgen prebuild --manifest kernels.json --target cpu,cpu:x86-64-v3 -j 2 --into ./prebuilt
    EXPRGEN_PREBUILT_DIR=./prebuilt EXPRGEN_NO_COMPILE=1 python serve.py

A prebuild compiles jobs (the standard set of ``kernelset``, and manifests) for targets into a tier laid
out like the user cache, through the same ``KernelCache.build``: a per-key lock and a re-check under it
mean several prebuilds into one directory compile each kernel once, and entries are published with
``os.replace``, so no reader sees a partial file. Entries are readable by everyone (a tier to ship).

One kernel, one compiler run, one .so: jobs run in parallel (``-j``) instead of sharing a compiler
invocation. g++ runs cc1plus once per source whatever the command line, so several sources share an
invocation only when they are one translation unit, which needs a distinct entry symbol and helper
namespace per kernel in render.py, and cache entries that point into a shared library (pruning one
kernel could not delete it, a corrupt byte would take out many). Measured here, 20 kernels as one unit
took 1.3 s against 3.2 s as 20 runs; of one run's ~150 ms, ~75 ms is cc1plus and ~65 ms the link, ~45 ms
of which is g++ linking libstdc++, which kernels never use. Simple entries and the per-key lock are kept.

Targets: ``cpu`` (this machine, -march=native), ``cpu:x86-64``, ``cpu:x86-64-v2|v3|v4`` (portable ISA
levels; the cache loads the best one the running CPU supports), and ``cuda:sm_XX``: the same kernels
rendered for CUDA and compiled by NVRTC into cubins for that architecture, which needs cuda-python and
the NVRTC library but no GPU.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import os
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from tqdm import tqdm

from . import store as cache
from .. import settings
from ..backends import registry
from ..errors import CompileError, LockTimeout
from .store import KernelCache, read_manifest
from .trust import BACKEND_FILES, entry_paths, examine, load_checked, trusted_owners
from .kernelset import standard_set

NOT_AN_ENTRY = "no entry"   # a lock file alone, or an entry being published right now
NATIVE = "native"


@dataclass(frozen=True)
class Target:
    backend: str
    arch: str

    def __str__(self) -> str:
        return _labelled(self.backend, self.arch)


def _labelled(backend: str, target: str) -> str:
    """How a user names a backend's target: "cpu" for this CPU, else "cpu:x86-64-v3", "cuda:sm_90"."""
    return backend if target == (registry.get(backend).native_target or NATIVE) else f"{backend}:{target}"


def _target_of(backend: str, meta: dict | None) -> str:
    """The target an entry's metadata records; one that records none (older, hand-made or damaged
    metadata) was built for the backend's native target, "native" where it has none."""
    return (meta or {}).get("isa") or registry.get(backend).native_target or NATIVE


def parse_targets(text: str) -> list[Target]:
    """``cpu,cpu:x86-64-v3,cuda:sm_90`` -> Targets; ValueError naming a bad one."""
    targets = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        backend, _, arch = item.partition(":")
        if backend not in registry.COMPILED:
            raise ValueError(f"unknown target {item!r}: targets are cpu, cpu:x86-64[-v2|-v3|-v4] and cuda:sm_XX")
        arch = registry.get(backend).check_target(arch, item)
        if Target(backend, arch) not in targets:
            targets.append(Target(backend, arch))
    if not targets:
        raise ValueError("no target given")
    return targets


def unavailable(target: Target) -> tuple[str, bool] | None:
    """(why nothing can be built for ``target`` here, whether that is a failure), or None."""
    # No compiler, an ISA this compiler cannot target, no cuda-python or NVRTC, an arch NVRTC lacks.
    problem = registry.get(target.backend).problem(target.arch)
    return (problem, True) if problem else None


@dataclass(frozen=True)
class Job:
    name: str
    backend: str
    source: str
    summary: str


def standard_jobs(ops=None, dtypes_=None, backends=("cpu",)) -> list[Job]:
    """The standard set, rendered once for each of ``backends``."""
    return [Job(k.name, backend, k.source, k.summary) for backend in sorted(backends)
            for k in standard_set(ops, dtypes_, target=registry.get(backend).language)]


def manifest_jobs(path: str) -> tuple[list[Job], list[str]]:
    """(jobs, warnings) from a manifest that ``EXPRGEN_RECORD`` wrote."""
    kernels = read_manifest(path)
    stale = sum(1 for k in kernels if k["backend"] in registry.COMPILED
                and k.get("prelude", registry.get(k["backend"]).prelude_digest())
                != registry.get(k["backend"]).prelude_digest())
    notes = [f"{path}: {stale} of {len(kernels)} kernels were recorded by an exprgen with another prelude.h; "
             f"they will be built, but only that exprgen version asks for them"] if stale else []
    return [Job(f"{os.path.basename(path)}:{k['id'][:12]}", k["backend"], k["source"], k["summary"])
            for k in kernels], notes


@dataclass
class Outcome:
    built: int = 0
    skipped: int = 0
    failed: list[tuple[str, str, str]] = field(default_factory=list)   # (job, target, message)
    unavailable: dict[str, str] = field(default_factory=dict)           # target -> why
    seconds: float = 0.0

    def describe(self, into: str, workers: int) -> str:
        lines = [f"prebuild into {into}: {self.built} built, {self.skipped} skipped (already present), "
                 f"{len(self.failed)} failed, in {self.seconds:.1f} s with {workers} job(s)"]
        lines += [f"  {target}: {why}" for target, why in self.unavailable.items()]
        lines += [f"  FAILED {job} for {target}: {message}" for job, target, message in self.failed[:20]]
        if len(self.failed) > 20:
            lines.append(f"  ... and {len(self.failed) - 20} more failures")
        return "\n".join(lines)


def _build_one(kernels: KernelCache, into: str, job: Job, target: Target, key: str) -> tuple[str, str]:
    if examine(entry_paths(into, key, target.backend), key, trusted_owners("prebuilt"))[0] is None:
        return "skipped", ""  # checked without the lock first: re-running a prebuild writes nothing
    try:
        built = kernels.build(into, key, job.source, job.summary, target.arch, shared=True, backend=target.backend)
    except (CompileError, LockTimeout, OSError) as exc:   # OSError: a full disk, a refused directory
        return "failed", str(exc)
    return ("built" if built else "skipped"), ""


def prebuild(jobs: list[Job], targets: list[Target], into: str, workers: int, progress: bool | None = None) -> Outcome:
    """Compile every job for every target into the tier at ``into``. ``progress``: show a bar (None:
    when stderr is a terminal)."""
    start = time.perf_counter()
    outcome = Outcome()
    os.makedirs(into, mode=0o755, exist_ok=True)
    kernels = KernelCache()  # not the process's: a prebuild loads nothing
    unique = list({(job.backend, job.source): job for job in jobs}.values())
    tasks = []
    for target in targets:
        problem = unavailable(target)
        if problem:
            why, failure = problem
            if failure:
                outcome.failed.append(("every kernel", str(target), why))
            else:
                outcome.unavailable[str(target)] = why
            continue
        # For the CPU this also leaves the compiler's memo for compiler-less hosts.
        identity = registry.get(target.backend).identity(into, target.arch)
        tasks += [(job, target, kernels.key(job.source, target.backend, identity)) for job in unique
                  if job.backend == target.backend]
    pool = ThreadPoolExecutor(max(1, workers))
    bar = tqdm(total=len(tasks), unit="kernel", desc="prebuild", disable=None if progress is None else not progress,
               dynamic_ncols=True)
    try:
        futures = {pool.submit(_build_one, kernels, into, *task): task for task in tasks}
        for future in as_completed(futures):
            job, target, _ = futures[future]
            status, message = future.result()
            if status == "failed":
                outcome.failed.append((job.name, str(target), message))
            else:
                setattr(outcome, status, getattr(outcome, status) + 1)
            bar.update(1)
            bar.set_postfix(built=outcome.built, skipped=outcome.skipped, failed=len(outcome.failed), refresh=False)
    finally:  # on Ctrl-C, start nothing new; the compiles under way clean up their temp files
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    outcome.seconds = time.perf_counter() - start
    return outcome


# --- cache management ---------------------------------------------------------------------------------

@dataclass
class Stored:
    """One entry (or the remains of one) in a tier directory."""

    tier: str
    root: str
    backend: str
    key: str
    files: list[str]           # the paths that exist: binary, source, metadata, lock
    size: int
    meta: dict | None
    problem: str | None        # None: sound, loadable
    used: float                # metadata mtime: the cache touches it on each load from the user cache

    @property
    def created(self) -> float:
        return (self.meta or {}).get("created") or self.used


def tier_dirs() -> list[tuple[str, str]]:
    """(tier, directory) for the user cache (where configured, not a fallback) and each prebuilt tier."""
    return [("disk", settings.cache_dir())] + [("prebuilt", d) for d in cache.prebuilt_dirs()]


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _file_size(path: str) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def scan(tier: str, root: str) -> tuple[list[Stored], list[str]]:
    """(entries, temp files) under ``root``: every ``<backend>/<k[:2]>/<k>.*`` group, sound or not, and the
    ``.<k[:16]>.*`` files of compiles (running ones too: see ``compiling``)."""
    entries, temps = [], []
    for backend in BACKEND_FILES:
        for shard in _listdir(os.path.join(root, backend)):
            shard_dir = os.path.join(root, backend, shard)
            keys = set()
            for name in _listdir(shard_dir):
                if name.startswith("."):
                    temps.append(os.path.join(shard_dir, name))
                elif re.fullmatch(r"[0-9a-f]{64}\.\w+", name):
                    keys.add(name.split(".")[0])
            for key in sorted(keys):
                entries.append(_stored(tier, root, backend, key))
    return entries, temps


def _stored(tier: str, root: str, backend: str, key: str) -> Stored:
    paths = entry_paths(root, key, backend)
    files = [p for p in paths.values() if os.path.lexists(p)]
    problem, meta = examine(paths, key, trusted_owners(tier), links=tier == "prebuilt")
    try:
        used = os.stat(paths["meta"]).st_mtime
    except OSError:
        used = max((os.lstat(p).st_mtime for p in files), default=0.0)
    if problem == "missing":
        content = os.path.lexists(paths["binary"]) or os.path.lexists(paths["source"])
        problem = (NOT_AN_ENTRY if not content or held(paths["lock"])   # held: being published now
                   else "incomplete: no metadata (an interrupted compile)")
    return Stored(tier, root, backend, key, files, sum(_file_size(p) for p in files), meta, problem, used)


def held(lock: str) -> bool:
    """Whether a process holds the compile lock ``lock`` now (every compile does, from its first temp file
    to publishing; a killed one holds nothing). Asked by taking it without waiting, and letting it go."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def compiling(temp: str) -> bool:
    """Whether the temp file ``temp`` (``.<k[:16]>.<random>.<suffix>``) belongs to a compile running now:
    whether its key's lock is held. Any other is left by a killed compile, however young."""
    prefix = glob.escape(os.path.basename(temp).split(".")[1])
    return any(held(lock) for lock in glob.glob(os.path.join(glob.escape(os.path.dirname(temp)), prefix + "*.lock")))


def remove_lock(lock: str) -> str | None:
    """Delete a compile lock unless a compile holds it (then it stays, which is no failure); None, or why it
    could not be removed. Taken first without waiting, so a holder's lock is never pulled from under it; a
    process that opened it meanwhile sees it gone once it has it, and takes the one at the path."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            return exc.strerror or str(exc)
        return _remove_file(lock)   # a planted link: no lock anyone takes (they never follow one)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return _remove_file(lock)
    except BlockingIOError:
        return None
    finally:
        os.close(fd)


def tree_size(root: str) -> int:
    total = 0
    for directory, _, names in os.walk(root):
        total += sum(_file_size(os.path.join(directory, n)) for n in names)
    return total


def remove_entry(entry: Stored) -> str | None:
    """Delete an entry, metadata first (uncommitting it), its lock last (kept while a compile holds it);
    None, or why it could not be removed."""
    for path in sorted(entry.files, key=lambda p: (p.endswith(".lock"), not p.endswith(".json"))):
        why = remove_lock(path) if path.endswith(".lock") else _remove_file(path)
        if why:
            return why
    return None


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def parse_size(text: str) -> int:
    """``500M``, ``1.5G``, ``64K``, ``1000`` (bytes; K, M, G are powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"bad size {text!r}: write e.g. 500M, 2G, 64K or a number of bytes")
    return int(float(match.group(1)) * 1024 ** ("", "k", "m", "g", "t").index(match.group(2).lower()))


def info_lines() -> list[str]:
    lines = []
    for tier, root in tier_dirs():
        label = "user cache" if tier == "disk" else "prebuilt (read-only tier)"
        if not os.path.isdir(root):
            lines.append(f"{label}: {root} (does not exist yet)")
            continue
        entries, temps = scan(tier, root)
        lines.append(f"{label}: {root}, {human_size(tree_size(root))} in all")
        for backend in sorted({e.backend for e in entries}):
            mine = [e for e in entries if e.backend == backend and e.problem != NOT_AN_ENTRY]
            sound = [e for e in mine if e.problem is None]
            isas = Counter(_target_of(backend, e.meta) for e in sound)
            shown = ", ".join(f"{isa} {n}" for isa, n in sorted(isas.items()))
            damaged = len(mine) - len(sound)
            bad = f", {damaged} damaged or refused (see `exprgen cache verify`)" if damaged else ""
            lines.append(f"  {backend}: {len(sound)} kernels, {human_size(sum(e.size for e in mine))}"
                         f"{f' ({shown})' if shown else ''}{bad}")
        failed = _listdir(os.path.join(root, "failed"))
        if failed:
            lines.append(f"  failed compiles kept for inspection: {len(failed)} in {os.path.join(root, 'failed')}")
        if temps:
            lines.append(f"  temporary files (a compile in progress or interrupted): {len(temps)}")
    return lines


def list_lines(limit: int | None = None) -> list[str]:
    rows = []
    for tier, root in tier_dirs():
        entries, _ = scan(tier, root)
        rows += [e for e in entries if e.problem != NOT_AN_ENTRY]
    rows.sort(key=lambda e: e.created, reverse=True)
    lines = [f"{'created':16}  {'tier':8}  {'target':13}  {'size':>9}  {'key':16}  expression"]
    for e in rows[:limit]:
        meta = e.meta or {}
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.created))
        target = _labelled(e.backend, _target_of(e.backend, meta))
        summary = meta.get("summary", "?") if e.problem is None else f"[{e.problem}] {meta.get('summary', '')}"
        lines.append(f"{stamp:16}  {e.tier:8}  {target:13}  {human_size(e.size):>9}  {e.key[:16]}  {summary}")
    if len(rows) > len(lines) - 1:
        lines.append(f"... {len(rows) - len(lines) + 1} more (--limit)")
    return lines


def verify(fix: bool) -> tuple[list[str], int]:
    """(report lines, number of problems left). Checks every tier's checksums, keys, ownership and modes,
    and loads each CPU binary that passed them; ``fix`` removes bad entries and the temp files of killed
    compiles wherever you may delete them."""
    lines, left = [], 0
    for tier, root in tier_dirs():
        entries, temps = scan(tier, root)
        for entry in entries:
            entry.problem = _load_problem(entry)
        checked = sum(1 for e in entries if e.problem != NOT_AN_ENTRY)
        bad = [(e.files[0], e.problem, e) for e in entries if e.problem not in (None, NOT_AN_ENTRY)]
        bad += [(t, "temporary file left by an interrupted compile", None) for t in temps if not compiling(t)]
        lines.append(f"{root} ({'user cache' if tier == 'disk' else 'prebuilt'}): {checked} entries checked, "
                     f"{len(bad)} problem(s)")
        for path, problem, entry in bad:
            action = ""
            if fix:
                why = remove_entry(entry) if entry is not None else _remove_file(path)
                action = f" -> could not remove: {why}" if why else " -> removed"
                left += bool(why)
            else:
                left += 1
            lines.append(f"  {path}: {problem}{action}")
    return lines, left


def _load_problem(entry: Stored) -> str | None:
    """Why a CPU entry that passed every check still cannot be loaded (a compiler that wrote garbage), or
    its problem. Loading runs the library's code: only entries whose owners and modes are sound get here,
    and only those built for an ISA this CPU runs (a library's initialisers may use its instructions)."""
    if entry.problem is not None or not registry.get(entry.backend).runs_here(entry.meta.get("compiler")):
        return entry.problem
    return load_checked(entry_paths(entry.root, entry.key, entry.backend), entry.key, trusted_owners(entry.tier),
                        links=entry.tier == "prebuilt", backend=entry.backend)[0]


def _remove_file(path: str) -> str | None:
    """Delete ``path`` (a link itself, not what it names); None when it is gone, else why not."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def prune(max_bytes: int) -> tuple[list[str], int]:
    """Shrink the user cache to ``max_bytes``: first the temp files of killed compiles, the locks no entry
    needs and entries that could never be loaded (damaged, refused), then the least recently used. Prebuilt
    tiers are read-only and left alone. (report lines, number of entries that could not be removed)"""
    root = settings.cache_dir()
    entries, temps = scan("disk", root)
    before = tree_size(root)
    killed = [t for t in temps if not compiling(t)]   # never an entry, only bytes (verify reports them)
    killed = [t for t in killed if _remove_file(t) is None]
    for entry in entries:   # a lock alone: a failed or killed compile's
        if entry.problem == NOT_AN_ENTRY and entry.files and all(p.endswith(".lock") for p in entry.files):
            remove_lock(entry.files[0])
    total = tree_size(root)
    doomed = sorted((e for e in entries if e.problem not in (None, NOT_AN_ENTRY)), key=lambda e: e.used)
    doomed += sorted((e for e in entries if e.problem is None), key=lambda e: e.used)
    removed, refused = 0, []
    for entry in doomed:
        if total <= max_bytes and entry.problem is None:
            break
        why = remove_entry(entry)
        if why:
            refused.append(f"  {entry.key}: could not remove: {why}")
            continue
        total -= entry.size
        removed += 1
    cleaned = f", {len(killed)} temporary files of interrupted compiles removed" if killed else ""
    return [f"{root}: {human_size(before)} -> {human_size(tree_size(root))} (limit {human_size(max_bytes)}), "
            f"{removed} entries removed{cleaned}"] + refused, len(refused)


def clear() -> tuple[list[str], int]:
    """Empty the user cache of everything exprgen put there (nothing else: the directory may be shared)
    but the files of compiles running now. (report lines, number of paths that could not be removed)"""
    root = settings.cache_dir()
    size = tree_size(root) if os.path.isdir(root) else 0
    failures = []
    for name in _listdir(root):
        path = os.path.join(root, name)
        if name in BACKEND_FILES or name == "failed":
            failures += _empty(path)
        elif re.fullmatch(r"compiler-[0-9a-f]+\.json", name):
            why = _remove_file(path)
            failures += [f"  could not remove {path}: {why}"] if why else []
    cleared = human_size(size - (tree_size(root) if os.path.isdir(root) else 0))
    if failures:
        return [f"{root}: cleared {cleared}, but {len(failures)} could not be removed:"] + failures, len(failures)
    return [f"{root}: cleared {cleared}"], 0


def _empty(top: str) -> list[str]:
    """Remove the tree ``top``, bottom up, but the locks and temp files of compiles running now; a line for
    each path that could not be removed."""
    failures = []
    for directory, dirs, names in os.walk(top, topdown=False,
                                          onerror=lambda exc: failures.append(f"  could not read {exc.filename}: "
                                                                              f"{exc.strerror}")):
        for name in names + [d for d in dirs if os.path.islink(os.path.join(directory, d))]:
            path = os.path.join(directory, name)
            if name.endswith(".lock"):
                why = remove_lock(path)
            elif name.startswith(".") and compiling(path):
                continue
            else:
                why = _remove_file(path)
            if why:
                failures.append(f"  could not remove {path}: {why}")
        try:
            os.rmdir(directory)
        except OSError as exc:   # not empty: what is kept or could not be removed, reported above
            if exc.errno not in (errno.ENOTEMPTY, errno.ENOENT):
                failures.append(f"  could not remove {directory}: {exc.strerror}")
    return failures
