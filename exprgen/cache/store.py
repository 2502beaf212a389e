"""Content-addressed kernel binaries: memory, the user's disk cache, then read-only prebuilt tiers.

Key = sha256(rendered source, compiler identity and version, flags, target ISA, cache format version):
nothing time-, path- or process-dependent, so two processes building the same kernel agree on its key.

On disk (``$EXPRGEN_CACHE_DIR`` or ``~/.cache/exprgen``, mode 0700) each entry is
``cpu/<k[:2]>/<k>.so`` with ``<k>.cpp`` (the source) and ``<k>.json`` (checksums and summary) beside it.
A binary is published with a temp file and ``os.replace``; the metadata is written last and is the
commit mark. A per-key ``flock`` means two processes never compile the same kernel twice; a process that
waits for it longer than ``LOCK_WAIT_SECONDS`` (the holder is stopped or hung: a dead one releases it)
compiles the kernel privately instead, without publishing it, and says so once. Lock files are opened
without following links or truncating, and a lock taken is checked to still be the file at its path (a
prune may remove an unheld one).

Trust (loading a .so runs its code) is ``trust.py``'s: which entries may be loaded, and which cache
directories may be written. A cache directory that is not yours, that others can write in, or that cannot
be written falls back to a private temporary one (removed at exit), with one warning saying which; a
read-only one of yours (a cache shipped in an image) is still searched, as is one where a shard cannot be
written. So does a full disk, whether Python or the compiler hits it.

Tiers, searched in order after memory: the user cache, the directories of ``$EXPRGEN_PREBUILT_DIR``, and
``exprgen/_prebuilt`` when the package was installed with ``EXPRGEN_PREBUILD=1``. Prebuilt tiers are
only read. On a memory miss the CPU targets this machine runs are tried best first (native, then the
x86-64 levels v4, v3, v2 and the baseline), each in every tier, so the best binary anywhere wins; a
memory hit computes one key only.

A machine without a compiler cannot ask the compiler's version, so it looks kernels up under the
compiler identities the tiers recorded: a deployment runs prebuilt kernels without installing g++. With
``EXPRGEN_NO_COMPILE=1`` those identities are tried too, since a shipped kernel beats an error.

``EXPRGEN_RECORD=path.json`` appends each kernel a process needs (its source, not its binary) to a
manifest that ``exprgen prebuild --manifest`` compiles elsewhere; see ``record``.

CUDA kernels are entries of the ``cuda`` backend (``cuda/<k[:2]>/<k>.cubin`` beside ``<k>.cu``), keyed by
NVRTC's version, its options, the architecture (``sm_90``) and the prelude headers instead of the C++
compiler's identity; ``build`` makes them with NVRTC. The cache names no backend itself: each is found
in ``backends.registry`` by the name its entries are filed under, and asked its identity, files, compiler
and loader (``backends.base.Compiler``).
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import glob
import hashlib
import json
import os
import shutil
import stat
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .. import counters, settings
from ..errors import CompileError, CompilerMissing, LockTimeout, NoCompileError
from ..backends import registry
from .trust import (BACKEND_FILES, READ_ONLY, Unsafe, compute_key, entry_paths, examine, load_checked,
                    trusted_owners, unsafe_directory, unusable)

MANIFEST_FORMAT = 1
PACKAGE_PREBUILT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_prebuilt")
# How long a process waits for another's per-key compile lock before compiling the kernel privately. A
# compile takes well under a second; minutes mean the holder is stopped (Ctrl-Z, SIGSTOP) or hung.
LOCK_WAIT_SECONDS = 120.0


@dataclass
class Entry:
    """A loaded kernel and where it came from."""

    key: str
    function: object
    tier: str
    path: str
    isa: str   # the backend's target it was built for


# What an unwritable part of the cache raises (a shard made by root, a read-only mount, a full disk): the
# process compiles elsewhere. Anything else (a shard pruned meanwhile) is not the cache's to give up on.
_CANNOT_WRITE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ELOOP}


def _make_shard(shard: str, mode: int) -> None:
    """``<root>/<backend>/<k[:2]>``, each level with ``mode`` (os.makedirs gives the levels above the last
    0777 less the umask: 0775 under the common umask 002, which ``unsafe_directory`` refuses). A level of
    yours that others may write in (made so by an older exprgen) loses those bits: each entry in it is still
    checked before it is loaded."""
    for path in (os.path.dirname(shard), shard):
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            st = os.stat(path, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and st.st_mode & 0o022:
                os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o022)


def prebuilt_dirs() -> list[str]:
    """The read-only tiers: $EXPRGEN_PREBUILT_DIR's directories, then the package's own when installed."""
    return settings.prebuilt_dirs() + ([PACKAGE_PREBUILT] if os.path.isdir(PACKAGE_PREBUILT) else [])


class KernelCache:
    def __init__(self):
        self.memory: dict[str, Entry] = {}
        self._root: str | None = None
        self._root_lock = threading.Lock()
        self._refused: set[str] = set()
        self._recorded: set[str] = set()
        self._read_only: str | None = None   # the user cache, when it is yours but cannot be written
        self._private: str | None = None     # where kernels whose lock another process holds are compiled

    @property
    def root(self) -> str:
        """The writable user cache directory (or the private fallback)."""
        with self._root_lock:  # two threads must not both fall back (two temp dirs, two warnings)
            if self._root is None:
                wanted = settings.cache_dir()
                problem = unusable(wanted)
                if problem is None:
                    self._root = wanted
                else:
                    if problem == READ_ONLY:   # still yours and safe: its kernels are read, not written
                        self._read_only = wanted
                    self._fall_back(wanted, problem)
        return self._root

    def _fall_back(self, wanted: str, problem: str) -> None:
        """Compile into a private temporary cache (removed at exit) from now on, saying why once."""
        self._root = _temporary_cache()
        warnings.warn(f"exprgen: kernel cache {wanted} {problem}; compiling into the private temporary cache "
                      f"{self._root} for this process (set EXPRGEN_CACHE_DIR to choose another)",
                      RuntimeWarning, stacklevel=5)

    def _private_root(self, timeout: LockTimeout) -> str:
        """The private temporary cache for kernels whose lock another process holds, saying so once: not
        the fallback root, since the user cache is still good for every other kernel."""
        with self._root_lock:
            if self._private is None:
                self._private = _temporary_cache()
                warnings.warn(f"exprgen: {timeout}; compiling it (and any other kernel locked so) privately "
                              f"in {self._private} for this process, without publishing it",
                              RuntimeWarning, stacklevel=5)
        return self._private

    def key(self, source: str, backend: str = "cpu", identity: str | None = None) -> str:
        if identity is None:
            compiler = registry.get(backend)
            identity = compiler.identity(self.root, compiler.native_target)
        return compute_key(backend, identity, source)

    def tiers(self) -> list[tuple[str, str]]:
        disk = [("disk", self.root)] + ([("disk", self._read_only)] if self._read_only else [])
        return disk + [("prebuilt", d) for d in prebuilt_dirs()]

    def get(self, source: str, summary: str, backend: str = "cpu") -> Entry:
        """The loaded kernel for ``source`` of ``backend``: from memory, disk or prebuilt, else compiled
        once."""
        compiler = registry.get(backend)
        try:
            key = self.key(source, backend)
        except CompilerMissing as exc:
            key, missing = None, exc
        else:
            entry = self.memory.get(key)
            if entry is not None:
                counters.count_shared("cache_hit_memory")
                return entry
        manifest = os.environ.get("EXPRGEN_RECORD")
        if manifest:
            self.record(manifest, backend, source, summary)
        entry = self._search(source, key, backend)
        if entry is not None:
            if key is not None:
                self.memory[key] = entry
            return entry
        if settings.no_compile():
            raise self._no_compile_error(key, source, summary, manifest, backend)
        if key is None:
            raise missing
        root = self.root
        try:
            compiled = self.build(root, key, source, summary, compiler.native_target, backend=backend)
        except LockTimeout as exc:
            root = self._private_root(exc)
            compiled = self.build(root, key, source, summary, compiler.native_target, backend=backend)
        except OSError as exc:
            if exc.errno not in _CANNOT_WRITE:
                raise
            with self._root_lock:
                if self._root == root:   # not already fallen back by another thread
                    self._read_only = self._read_only or root   # the kernels it has are still read
                    self._fall_back(root, f"could not take kernel {key[:16]} ({exc})")
                root = self._root
            compiled = self.build(root, key, source, summary, compiler.native_target, backend=backend)
        if not compiled:
            counters.count_shared("cache_hit_disk")  # another process finished it while we waited for the lock
        paths = entry_paths(root, key, backend)
        problem, _, function = load_checked(paths, key, trusted_owners("disk"), source=source, backend=backend)
        if problem:
            _remove(paths["meta"])   # uncommitted: the next run compiles it again, perhaps with a fixed compiler
            raise CompileError(f"the compiler {compiler.compiler()} made {paths['binary']} from {paths['source']}, "
                                   f"which does not load as it was checked ({problem}): if it is a working C++ "
                                   f"compiler, this is an exprgen bug; please report it") from None
        entry = Entry(key, function, "compiled" if compiled else "disk", paths["binary"], compiler.native_target)
        self.memory[key] = entry
        return entry

    def get_all(self, requests: list[tuple[str, str]], backend: str = "cpu") -> list[Entry]:
        """``get`` of each (source, summary), in order. Those not in memory are found or compiled side by
        side, a thread per core: the compiler runs in a process of its own, so a new plan's kernels take
        about the slowest one's time, not the sum (a training step's first call: 9 kernels, 2.0 s one
        after another on 2 cores, 1.1 s side by side)."""
        missing: dict[str, str] = {}
        for source, summary in requests:
            try:
                if self.key(source, backend) not in self.memory:
                    missing.setdefault(source, summary)
            except CompilerMissing:
                break   # get raises it, or the caller falls back
        found: dict[str, Entry] = {}
        if len(missing) > 1:
            with ThreadPoolExecutor(min(len(missing), os.cpu_count() or 1)) as pool:
                found = dict(zip(missing, pool.map(lambda item: self.get(*item, backend), missing.items())))
        return [found.get(source) or self.get(source, summary, backend) for source, summary in requests]

    def _candidates(self, source: str, key: str | None, backend: str):
        """(target, key) pairs to look for, best first: this compiler's targets, then recorded compilers'."""
        compiler = registry.get(backend)
        if key is not None:
            yield compiler.native_target, key
            for target in compiler.targets_here()[1:]:
                yield target, self.key(source, backend, compiler.identity(self.root, target))
        if key is None or settings.no_compile():
            for target, identity in compiler.recorded_identities([root for _, root in self.tiers()]):
                yield target, self.key(source, backend, identity)

    def _search(self, source: str, key: str | None, backend: str) -> Entry | None:
        tiers, seen = self.tiers(), set()
        for isa, candidate in self._candidates(source, key, backend):
            if candidate in seen:  # a recorded compiler may be this one
                continue
            seen.add(candidate)
            entry = self.memory.get(candidate)
            if entry is not None:
                counters.count_shared("cache_hit_memory")
                return entry
            for tier, root in tiers:
                entry = self._load(tier, root, candidate, source, isa, backend)
                if entry is not None:
                    counters.count_shared(f"cache_hit_{tier}")
                    self.memory[candidate] = entry
                    return entry
        return None

    def _no_compile_error(self, key: str | None, source: str, summary: str, manifest: str | None,
                          backend: str) -> NoCompileError:
        what = f"kernel {key[:16]}" if key else "the kernel"
        searched = ", ".join(f"{root} ({tier})" for tier, root in self.tiers())
        isas = ", ".join(registry.get(backend).targets_here())
        recorded = (f"it was recorded in {manifest}; on the build machine run:\n" if manifest else
                    "record the workload on a build machine (same exprgen, a C++ compiler) and prebuild it:\n"
                    "      EXPRGEN_RECORD=kernels.json python your_program.py\n")
        return NoCompileError(
            f"EXPRGEN_NO_COMPILE is set and {what} is in no cache tier.\n"
            f"  expression: {summary}\n  searched: {searched}, for {backend.upper()} targets {isas}\n"
            f"{self._built_otherwise(source, backend)}"
            f"  to prebuild it, {recorded}"
            f"      exprgen prebuild --manifest {manifest or 'kernels.json'} --target cpu:x86-64-v3 --into DIR\n"
            f"  then ship DIR and set EXPRGEN_PREBUILT_DIR=DIR here (or run once without EXPRGEN_NO_COMPILE "
            f"with EXPRGEN_CACHE_DIR=DIR on a machine with the same CPU model, and ship that)")

    def _built_otherwise(self, source: str, backend: str) -> str:
        """A line saying where a tier holds this very source built for another identity, and what differs
        (a stale prebuild: another exprgen's prelude, another compiler, another CPU); else nothing."""
        digest = hashlib.sha256(source.encode()).hexdigest()
        compiler = registry.get(backend)
        for _, root in self.tiers():
            for path in glob.glob(os.path.join(glob.escape(root), backend, "*", "*.json")):
                try:
                    with open(path) as f:
                        meta = json.load(f)
                    if meta.get("source_sha256") != digest:
                        continue
                    theirs = meta["compiler"].split("|")
                    ours = compiler.identity(self.root, meta.get("isa", compiler.native_target)).split("|")
                except (OSError, ValueError, KeyError, AttributeError, CompilerMissing):
                    continue
                differs = "; ".join(f"{t} (here {o})" for t, o in zip(theirs, ours) if t != o)
                return f"  {os.path.dirname(path)} holds it, built for another setup: {differs}\n"
        return ""

    def _load(self, tier: str, root: str, key: str, source: str, isa: str, backend: str) -> Entry | None:
        paths = entry_paths(root, key, backend)
        problem, _, function = load_checked(paths, key, trusted_owners(tier), links=tier == "prebuilt", source=source,
                                            backend=backend)
        next_step = "rebuilding it" if tier == "disk" else "skipping it"
        if isinstance(problem, Unsafe):   # said once per file or directory at fault
            what = (f"kernel {paths['binary']}" if problem.path == paths["binary"] else
                    f"the kernels under {problem.path}, such as {paths['binary']}")
            self._warn_once(problem.path, f"refusing {what}: {problem} (loading a library runs its code); {next_step}")
            return None
        if problem and problem.startswith("cannot be loaded"):   # its checksum matched: a compiler wrote garbage
            if tier == "disk":
                _remove(paths["meta"])   # uncommitted, so the caller's build compiles it again
            self._warn_once(paths["binary"], f"kernel {paths['binary']} {problem}; {next_step}")
            return None
        if problem:
            return None  # absent, truncated or corrupted: rebuilt by the caller, never loaded
        if tier == "disk":
            try:
                os.utime(paths["meta"])  # least-recently-used order for pruning
            except OSError:
                pass
        return Entry(key, function, tier, paths["binary"], isa)

    def _warn_once(self, path: str, message: str) -> None:
        if path not in self._refused:
            self._refused.add(path)
            warnings.warn(f"exprgen: {message}", RuntimeWarning, stacklevel=6)

    def build(self, root: str, key: str, source: str, summary: str, isa: str,
              shared: bool = False, backend: str = "cpu") -> bool:
        """Compile ``source`` into the tier at ``root`` unless a sound entry is there; True when this call
        compiled it. ``shared``: readable by everyone (a prebuilt tier to ship), else private to you.
        ``isa``: the target of ``backend`` (for CUDA, the sm_XX)."""
        paths = entry_paths(root, key, backend)
        shard = os.path.dirname(paths["binary"])
        _make_shard(shard, 0o755 if shared else 0o700)
        owners = trusted_owners("prebuilt" if shared else "disk")
        problem = unsafe_directory(shard, owners)
        if problem:   # what is written there would be refused (a shard linked elsewhere, say)
            raise PermissionError(errno.EACCES, f"kernels written there would be refused: {problem}", shard)
        lock = _lock(paths["lock"], key)
        try:
            if examine(paths, key, owners, source=source)[0] is None:  # another process may have finished it
                return False
            self._compile(root, key, source, summary, paths, isa, shared, backend)
            return True
        finally:
            os.close(lock)

    def _compile(self, root: str, key: str, source: str, summary: str, paths: dict[str, str], isa: str,
                 shared: bool, backend: str = "cpu") -> None:
        shard = os.path.dirname(paths["binary"])
        binary_suffix, source_suffix = BACKEND_FILES[backend]
        fd, tmp_source = tempfile.mkstemp(suffix=source_suffix, prefix=f".{key[:16]}.", dir=shard)
        tmp_binary = tmp_source[:-len(source_suffix)] + binary_suffix
        tmp_meta = tmp_source[:-len(source_suffix)] + ".json"
        try:  # whatever happens (a failed compile, Ctrl-C), no temp file stays behind
            with os.fdopen(fd, "w") as f:
                f.write(source)
            try:
                seconds = registry.get(backend).compile(tmp_source, tmp_binary, isa)
            except CompileError as exc:
                failed = os.path.join(root, "failed")
                os.makedirs(failed, mode=0o700, exist_ok=True)
                kept = os.path.join(failed, key + source_suffix)
                os.replace(tmp_source, kept)
                raise CompileError(str(exc).replace(tmp_source, kept)) from None
            os.chmod(tmp_binary, 0o755 if shared else 0o700)
            os.chmod(tmp_source, 0o644 if shared else 0o600)
            with open(tmp_binary, "rb") as f:
                checksum = hashlib.sha256(f.read()).hexdigest()
            meta = {"key": key, "sha256": checksum, "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
                    "backend": backend, "isa": isa, "summary": summary,
                    "compiler": registry.get(backend).identity(root, isa),
                    "compile_seconds": round(seconds, 4), "created": round(time.time(), 3)}
            mode = 0o644 if shared else 0o600
            with os.fdopen(os.open(tmp_meta, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "w") as f:
                json.dump(meta, f, indent=1)
            os.chmod(tmp_meta, mode)  # whatever the umask
            os.replace(tmp_source, paths["source"])
            os.replace(tmp_binary, paths["binary"])
            os.replace(tmp_meta, paths["meta"])  # last: the metadata is the commit mark
        finally:
            for path in (tmp_source, tmp_binary, tmp_meta):
                _remove(path)
        counters.count_shared("compiles")
        counters.count_shared("compile_ns", int(seconds * 1e9))

    def record(self, manifest: str, backend: str, source: str, summary: str) -> None:
        """Add this kernel to the manifest at ``manifest`` unless it is there already.

        Several processes may record into one manifest at once: each rewrites it whole under a lock on
        ``<manifest>.lock`` and publishes with ``os.replace``, so a reader never sees half a file and no
        process's entry is lost.
        """
        entry = manifest_entry(backend, source, summary)
        if entry["id"] in self._recorded:
            return
        with open(manifest + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            kernels = read_manifest(manifest) if os.path.exists(manifest) else []
            if all(k["id"] != entry["id"] for k in kernels):
                tmp = f"{manifest}.{os.getpid()}.{threading.get_ident()}.tmp"
                try:
                    with open(tmp, "w") as f:
                        json.dump({"format": MANIFEST_FORMAT, "kernels": kernels + [entry]}, f, indent=1)
                    os.replace(tmp, manifest)
                finally:
                    _remove(tmp)
        self._recorded.add(entry["id"])


def manifest_entry(backend: str, source: str, summary: str) -> dict:
    """What another machine needs to build a kernel: its source (rendering is deterministic, and the
    source is what the key hashes) and, to warn of a mismatch, the prelude it was rendered against."""
    digest = hashlib.sha256(f"{backend}\0{source}".encode()).hexdigest()
    return {"id": digest, "backend": backend, "summary": summary, "prelude": registry.get(backend).prelude_digest(),
            "source": source}


def read_manifest(path: str) -> list[dict]:
    """The kernels of a manifest; ValueError naming the file when it is not one."""
    try:
        with open(path) as f:
            data = json.load(f)
    except ValueError as exc:
        raise ValueError(f"{path} is not an exprgen kernel manifest (not JSON: {exc})") from None
    fields = {"id", "backend", "summary", "source"}
    if (not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or not isinstance(data.get("kernels"), list)
            or not all(isinstance(k, dict) and fields <= k.keys() for k in data["kernels"])):
        raise ValueError(f"{path} is not an exprgen kernel manifest (format {MANIFEST_FORMAT}: "
                         f'{{"format": {MANIFEST_FORMAT}, "kernels": [{{id, backend, summary, source}}, ...]}})')
    return data["kernels"]


def _lock(path: str, key: str) -> int:
    """The descriptor of ``path``, flocked; LockTimeout after ``LOCK_WAIT_SECONDS`` held by another."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    pause = 0.005
    while True:
        # Never truncating, never following a link: a planted <key>.lock -> somefile must not empty somefile.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(f"kernel {key[:16]} has been locked by another process for "
                                          f"{LOCK_WAIT_SECONDS:g} s ({path}; is one stopped or hung?)") from None
                    time.sleep(pause)
                    pause = min(2 * pause, 0.1)
            mine, there = os.fstat(fd), os.stat(path, follow_symlinks=False)
        except FileNotFoundError:   # pruned between our open and stat: not the lock others take
            there = None
        except BaseException:
            os.close(fd)
            raise
        if there is not None and (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
            return fd
        os.close(fd)   # a prune removed the file we locked; lock the one at the path now


def _temporary_cache() -> str:
    """A new private cache directory, removed at exit."""
    path = tempfile.mkdtemp(prefix="exprgen-cache-")
    atexit.register(shutil.rmtree, path, True)
    return path


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


_cache: KernelCache | None = None


def kernel_cache() -> KernelCache:
    """The process's kernel cache (created on first use, so EXPRGEN_CACHE_DIR may be set after import)."""
    global _cache
    if _cache is None:
        _cache = KernelCache()
    return _cache


def reset_kernel_cache() -> None:
    """Forget loaded kernels and the cache location (tests use this to act like a fresh process)."""
    global _cache
    _cache = None
