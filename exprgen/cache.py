"""Content-addressed kernel binaries: memory, the user's disk cache, then read-only prebuilt tiers.

Key = sha256(rendered source, compiler identity and version, flags, target ISA, cache format version):
nothing time-, path- or process-dependent, so two processes building the same kernel agree on its key.

On disk (``$EXPRGEN_CACHE_DIR`` or ``~/.cache/exprgen``, mode 0700) each entry is
``cpu/<k[:2]>/<k>.so`` with ``<k>.cpp`` (the source) and ``<k>.json`` (checksum and summary) beside it.
A binary is published with a temp file and ``os.replace``; the metadata is written last and is the
commit mark. A per-key ``flock`` means two processes never compile the same kernel twice. Loading
verifies the checksum (a truncated or corrupted file is rebuilt, never loaded) and refuses a binary not
owned by the user or writable by others (loading a .so runs its code). A cache directory that cannot be
written falls back to a private temporary one (removed at exit), with one warning.

A machine without a compiler cannot ask for the compiler's version, so it looks kernels up under the
compiler identities the tiers recorded: a deployment runs prebuilt kernels without installing g++.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import threading
import warnings
from dataclasses import dataclass

from . import counters, settings
from .backends import cpu

FORMAT_VERSION = "1"


class NoCompileError(RuntimeError):
    pass


@dataclass
class Entry:
    """A loaded kernel and where it came from."""

    key: str
    function: object
    tier: str
    path: str


def _secure_dir(path: str) -> bool:
    """Create ``path`` (0700) if needed; True when it is ours and writable."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
        return st.st_uid == os.getuid() and os.access(path, os.W_OK | os.X_OK)
    except OSError:
        return False


class KernelCache:
    def __init__(self):
        self.memory: dict[str, Entry] = {}
        self._root: str | None = None
        self._root_lock = threading.Lock()
        self._refused: set[str] = set()

    @property
    def root(self) -> str:
        """The writable user cache directory (or the private fallback)."""
        with self._root_lock:  # two threads must not both fall back (two temp dirs, two warnings)
            if self._root is None:
                wanted = settings.cache_dir()
                if _secure_dir(wanted):
                    self._root = wanted
                else:
                    self._root = tempfile.mkdtemp(prefix="exprgen-cache-")
                    atexit.register(shutil.rmtree, self._root, True)
                    warnings.warn(f"exprgen: kernel cache {wanted} is not writable; using the private temporary "
                                  f"cache {self._root} for this process (set EXPRGEN_CACHE_DIR to choose another)",
                                  RuntimeWarning, stacklevel=4)
        return self._root

    def key(self, source: str, backend: str = "cpu", identity: str | None = None) -> str:
        digest = hashlib.sha256()
        for part in (FORMAT_VERSION, backend, identity or cpu.identity(self.root), source):
            digest.update(part.encode())
            digest.update(b"\0")
        return digest.hexdigest()

    def tiers(self) -> list[tuple[str, str]]:
        return [("disk", self.root)] + [("prebuilt", d) for d in settings.prebuilt_dirs()]

    @staticmethod
    def entry_paths(tier_root: str, key: str, backend: str = "cpu") -> dict[str, str]:
        base = os.path.join(tier_root, backend, key[:2], key)
        return {"binary": base + ".so", "source": base + ".cpp", "meta": base + ".json"}

    def get(self, source: str, summary: str) -> Entry:
        """The loaded kernel for ``source``: from memory, disk or prebuilt, else compiled once."""
        try:
            key = self.key(source)
        except cpu.CompilerMissing:
            entry = self._find_built_elsewhere(source)
            if entry is not None:
                return entry
            if settings.no_compile():
                raise self._no_compile_error("the kernel", summary) from None
            raise
        entry = self._find(key)
        if entry is not None:
            return entry
        if settings.no_compile():
            raise self._no_compile_error(f"kernel {key[:16]}", summary)
        entry = self._compile_locked(key, source, summary)
        self.memory[key] = entry
        return entry

    def _find(self, key: str) -> Entry | None:
        entry = self.memory.get(key)
        if entry is not None:
            counters.count("cache_hit_memory")
            return entry
        for tier, root in self.tiers():
            entry = self._load(tier, root, key)
            if entry is not None:
                counters.count(f"cache_hit_{tier}")
                self.memory[key] = entry
                return entry
        return None

    def _find_built_elsewhere(self, source: str) -> Entry | None:
        """Without a compiler to name the key, try the compilers that filled the tiers (a deployment)."""
        for identity in cpu.recorded_identities([root for _, root in self.tiers()]):
            entry = self._find(self.key(source, identity=identity))
            if entry is not None:
                return entry
        return None

    def _no_compile_error(self, what: str, summary: str) -> NoCompileError:
        searched = ", ".join(root for _, root in self.tiers())
        return NoCompileError(
            f"EXPRGEN_NO_COMPILE is set and {what} is in no cache tier.\n"
            f"  expression: {summary}\n  searched: {searched}\n"
            f"  to prebuild it, run this code once with EXPRGEN_CACHE_DIR=DIR on a machine with a C++ compiler "
            f"and the same CPU model, then ship DIR and set EXPRGEN_PREBUILT_DIR=DIR here")

    def _load(self, tier: str, root: str, key: str) -> Entry | None:
        paths = self.entry_paths(root, key)
        try:
            with open(paths["meta"]) as f:
                meta = json.load(f)
            with open(paths["binary"], "rb") as f:
                st = os.fstat(f.fileno())  # the file whose bytes are checked, not whatever the path names now
                blob = f.read()
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("key") != key:
            return None  # damaged metadata: rebuilt like a damaged binary
        trusted_owners = {os.getuid()} if tier == "disk" else {os.getuid(), 0}
        problem = ("not owned by you" if st.st_uid not in trusted_owners
                   else "writable by others" if st.st_mode & 0o022 else None)
        if problem:
            if paths["binary"] not in self._refused:
                self._refused.add(paths["binary"])
                warnings.warn(f"exprgen: refusing kernel {paths['binary']}: {problem} (loading a library runs its "
                              f"code); {'rebuilding it' if tier == 'disk' else 'skipping it'}",
                              RuntimeWarning, stacklevel=5)
            return None
        if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
            return None  # truncated or corrupted: rebuilt by the caller, never loaded
        if tier == "disk":
            try:
                os.utime(paths["meta"])  # least-recently-used order for pruning
            except OSError:
                pass
        return Entry(key, cpu.load(paths["binary"]), tier, paths["binary"])

    def _compile_locked(self, key: str, source: str, summary: str) -> Entry:
        paths = self.entry_paths(self.root, key)
        shard = os.path.dirname(paths["binary"])
        os.makedirs(shard, mode=0o700, exist_ok=True)
        with open(os.path.join(shard, key + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entry = self._load("disk", self.root, key)  # another process may have finished it meanwhile
            if entry is not None:
                counters.count("cache_hit_disk")
                return entry
            return self._compile(key, source, summary, paths)

    def _compile(self, key: str, source: str, summary: str, paths: dict[str, str]) -> Entry:
        shard = os.path.dirname(paths["binary"])
        fd, tmp_source = tempfile.mkstemp(suffix=".cpp", prefix=f".{key[:16]}.", dir=shard)
        tmp_binary = tmp_source[:-4] + ".so"
        tmp_meta = tmp_source[:-4] + ".json"
        try:  # whatever happens (a failed compile, Ctrl-C), no temp file stays behind
            with os.fdopen(fd, "w") as f:
                f.write(source)
            try:
                seconds = cpu.compile_source(tmp_source, tmp_binary)
            except cpu.CompileError as exc:
                failed = os.path.join(self.root, "failed")
                os.makedirs(failed, mode=0o700, exist_ok=True)
                kept = os.path.join(failed, key + ".cpp")
                os.replace(tmp_source, kept)
                raise cpu.CompileError(str(exc).replace(tmp_source, kept)) from None
            os.chmod(tmp_binary, 0o700)
            with open(tmp_binary, "rb") as f:
                checksum = hashlib.sha256(f.read()).hexdigest()
            meta = {"key": key, "sha256": checksum, "backend": "cpu", "summary": summary,
                    "compiler": cpu.identity(self.root), "compile_seconds": round(seconds, 4)}
            with os.fdopen(os.open(tmp_meta, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
                json.dump(meta, f, indent=1)
            os.replace(tmp_source, paths["source"])
            os.replace(tmp_binary, paths["binary"])
            os.replace(tmp_meta, paths["meta"])  # last: the metadata is the commit mark
        finally:
            for path in (tmp_source, tmp_binary, tmp_meta):
                _remove(path)
        counters.count("compiles")
        counters.count("compile_ns", int(seconds * 1e9))
        return Entry(key, cpu.load(paths["binary"]), "compiled", paths["binary"])


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

