"""Kernels built ahead of time, and the offline tools behind ``exprgen prebuild`` and ``exprgen cache``.

    EXPRGEN_RECORD=kernels.json python train.py          # cache.py records each kernel's source
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

import hashlib
import os
import re
import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from tqdm import tqdm

from . import cache, settings
from .backends import cpu, cuda
from .cache import KernelCache, entry_paths, examine, read_manifest, trusted_owners
from .kernelset import standard_set

# A temp file younger than this may belong to a compile in progress; an older one was left by a crash.
STALE_TEMP_SECONDS = 3600
NOT_AN_ENTRY = "no entry"   # a lock file alone, or an entry being published right now


@dataclass(frozen=True)
class Target:
    backend: str
    arch: str

    def __str__(self) -> str:
        return self.backend if self.arch == cpu.NATIVE else f"{self.backend}:{self.arch}"


def parse_targets(text: str) -> list[Target]:
    """``cpu,cpu:x86-64-v3,cuda:sm_90`` -> Targets; ValueError naming a bad one."""
    targets = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        backend, _, arch = item.partition(":")
        if backend == "cpu":
            arch = arch or cpu.NATIVE
            if arch != cpu.NATIVE and arch not in cpu.ISA_LEVELS:
                raise ValueError(f"unknown CPU target {item!r}: use cpu (this machine) or cpu:LEVEL with LEVEL "
                                 f"one of {', '.join(cpu.ISA_LEVELS)}")
        elif backend == "cuda":
            if not re.fullmatch(r"sm_\d{2,3}[a-z]?", arch):
                raise ValueError(f"bad CUDA target {item!r}: name an architecture, e.g. cuda:sm_80 or cuda:sm_90")
        else:
            raise ValueError(f"unknown target {item!r}: targets are cpu, cpu:x86-64[-v2|-v3|-v4] and cuda:sm_XX")
        if Target(backend, arch) not in targets:
            targets.append(Target(backend, arch))
    if not targets:
        raise ValueError("no target given")
    return targets


def unavailable(target: Target) -> tuple[str, bool] | None:
    """(why nothing can be built for ``target`` here, whether that is a failure), or None."""
    if target.backend == "cuda":
        problem = cuda.problem(target.arch)   # no cuda-python, no NVRTC library, an arch NVRTC lacks
        return (problem, True) if problem else None
    try:
        cpu.check_isa(target.arch)
        cpu.compiler()
    except (ValueError, cpu.CompilerMissing) as exc:
        return str(exc), True
    return None


@dataclass(frozen=True)
class Job:
    name: str
    backend: str
    source: str
    summary: str


def standard_jobs(ops=None, dtypes_=None, backends=("cpu",)) -> list[Job]:
    """The standard set, rendered once for each of ``backends``."""
    return [Job(k.name, backend, k.source, k.summary) for backend in sorted(backends)
            for k in standard_set(ops, dtypes_, target=backend)]


def manifest_jobs(path: str) -> tuple[list[Job], list[str]]:
    """(jobs, warnings) from a manifest that ``EXPRGEN_RECORD`` wrote."""
    kernels = read_manifest(path)
    stale = sum(1 for k in kernels if k.get("prelude", cpu.prelude_digest()) != cpu.prelude_digest())
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
    except cpu.CompileError as exc:
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
        identity = cache.BACKENDS[target.backend].identity(into, target.arch)
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
    """(entries, temp files) under ``root``: every ``<backend>/<k[:2]>/<k>.*`` group, sound or not."""
    entries, temps = [], []
    for backend in cache.BACKEND_FILES:
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
    problem, meta = examine(paths, key, trusted_owners(tier))
    try:
        used = os.stat(paths["meta"]).st_mtime
    except OSError:
        used = max((os.lstat(p).st_mtime for p in files), default=0.0)
    if problem == "missing":
        content = os.path.lexists(paths["binary"]) or os.path.lexists(paths["source"])
        problem = (NOT_AN_ENTRY if not content or time.time() - used < STALE_TEMP_SECONDS  # maybe publishing now
                   else "incomplete: no metadata (an interrupted compile)")
    elif problem is None:
        problem = _source_problem(paths["source"], meta)
    return Stored(tier, root, backend, key, files, sum(_file_size(p) for p in files), meta, problem, used)


def _source_problem(path: str, meta: dict) -> str | None:
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return "source missing"
    expected = meta.get("source_sha256")
    return "source does not match its checksum" if expected and expected != digest else None


def tree_size(root: str) -> int:
    total = 0
    for directory, _, names in os.walk(root):
        total += sum(_file_size(os.path.join(directory, n)) for n in names)
    return total


def remove_entry(entry: Stored) -> str | None:
    """Delete an entry, metadata first (uncommitting it); None, or why it could not be removed."""
    order = sorted(entry.files, key=lambda p: not p.endswith(".json"))
    for path in order:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            return exc.strerror or str(exc)
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
            isas = Counter((e.meta or {}).get("isa", cpu.NATIVE) for e in sound)
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
        isa = meta.get("isa", cpu.NATIVE)
        target = e.backend if isa == cpu.NATIVE else f"{e.backend}:{isa}"
        summary = meta.get("summary", "?") if e.problem is None else f"[{e.problem}] {meta.get('summary', '')}"
        lines.append(f"{stamp:16}  {e.tier:8}  {target:13}  {human_size(e.size):>9}  {e.key[:16]}  {summary}")
    if len(rows) > len(lines) - 1:
        lines.append(f"... {len(rows) - len(lines) + 1} more (--limit)")
    return lines


def verify(fix: bool) -> tuple[list[str], int]:
    """(report lines, number of problems left). Checks every tier's checksums, ownership and modes;
    ``fix`` removes bad entries and stale temp files wherever you may delete them."""
    lines, left = [], 0
    now = time.time()
    for tier, root in tier_dirs():
        entries, temps = scan(tier, root)
        checked = sum(1 for e in entries if e.problem != NOT_AN_ENTRY)
        bad = [(e.files[0], e.problem, e) for e in entries if e.problem not in (None, NOT_AN_ENTRY)]
        bad += [(t, "temporary file left by an interrupted compile", None) for t in temps
                if now - _modified(t) > STALE_TEMP_SECONDS]
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


def _modified(path: str) -> float:
    """When ``path`` was last written; now when it is gone (a compile published or removed it meanwhile)."""
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return time.time()


def _remove_file(path: str) -> str | None:
    try:
        os.remove(path)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def prune(max_bytes: int) -> list[str]:
    """Shrink the user cache to ``max_bytes``: first stale temp files and entries that could never be
    loaded (damaged, refused), then the least recently used. Prebuilt tiers are read-only and left alone."""
    root = settings.cache_dir()
    entries, temps = scan("disk", root)
    before = tree_size(root)
    now = time.time()
    for temp in temps:   # left by a killed compile (as verify reports them): never an entry, only bytes
        if now - _modified(temp) > STALE_TEMP_SECONDS:
            _remove_file(temp)
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
    return [f"{root}: {human_size(before)} -> {human_size(tree_size(root))} (limit {human_size(max_bytes)}), "
            f"{removed} entries removed"] + refused


def clear() -> list[str]:
    """Empty the user cache of everything exprgen put there (nothing else: the directory may be shared)."""
    root = settings.cache_dir()
    size = tree_size(root) if os.path.isdir(root) else 0
    for name in _listdir(root):
        path = os.path.join(root, name)
        if name in cache.BACKEND_FILES or name == "failed":
            shutil.rmtree(path, ignore_errors=True)
        elif re.fullmatch(r"compiler-[0-9a-f]+\.json", name):
            _remove_file(path)
    return [f"{root}: cleared {human_size(size - (tree_size(root) if os.path.isdir(root) else 0))}"]
