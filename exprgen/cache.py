"""Content-addressed kernel binaries: memory, the user's disk cache, then read-only prebuilt tiers.

Key = sha256(rendered source, compiler identity and version, flags, target ISA, cache format version):
nothing time-, path- or process-dependent, so two processes building the same kernel agree on its key.

On disk (``$EXPRGEN_CACHE_DIR`` or ``~/.cache/exprgen``, mode 0700) each entry is
``cpu/<k[:2]>/<k>.so`` with ``<k>.cpp`` (the source) and ``<k>.json`` (checksums and summary) beside it.
A binary is published with a temp file and ``os.replace``; the metadata is written last and is the
commit mark. A per-key ``flock`` means two processes never compile the same kernel twice. Loading
verifies the checksum (a truncated or corrupted file is rebuilt, never loaded) and refuses a binary not
owned by the user or writable by others, or reached through a link (loading a .so runs its code); lock
files are opened without following links or truncating. A cache directory that is not yours, that others
can write in, or that cannot be written falls back to a private temporary one (removed at exit), with one
warning saying which; a read-only one of yours (a cache shipped in an image) is still searched, as is one
where a shard cannot be written.

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
compiler's identity; ``build`` makes them with NVRTC (``BACKENDS``).
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
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass

from . import counters, settings
from .backends import cpu, cuda

FORMAT_VERSION = "1"
MANIFEST_FORMAT = 1
# Per backend, the suffixes of an entry's binary and source (its metadata is always .json).
BACKEND_FILES = {"cpu": (".so", ".cpp"), "cuda": (".cubin", ".cu")}
# Per backend, the module that names and makes its binaries: identity(state_dir, target) and
# compile_source(source path, binary path, target), where target is an ISA level or an sm_XX.
BACKENDS = {"cpu": cpu, "cuda": cuda}
PACKAGE_PREBUILT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_prebuilt")
# Problems that mean someone else could have chosen the binary's code: warned about, never loaded.
UNSAFE = ("not owned by you", "writable by others")


class NoCompileError(RuntimeError):
    pass


@dataclass
class Entry:
    """A loaded kernel and where it came from."""

    key: str
    function: object
    tier: str
    path: str
    isa: str = cpu.NATIVE


READ_ONLY = "is read-only"   # the one reason a cache directory is still searched (it is yours and safe)


def _unusable(path: str) -> str | None:
    """Why the cache directory ``path`` (created 0700 if missing) cannot be the user cache, or None. Only
    you may be able to write in it: anyone else who can could plant a binary (loading one runs its code)."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
    except OSError as exc:
        return f"cannot be created ({exc.strerror})"
    if st.st_uid != os.getuid():
        return "is owned by another user"
    if st.st_mode & 0o022:
        return f"is writable by others (mode {st.st_mode & 0o777:o}; chmod 700 it to use it)"
    if not os.access(path, os.W_OK | os.X_OK):
        return READ_ONLY
    return None


# What an unwritable part of the cache raises (a shard made by root, a read-only mount, a full disk): the
# process compiles elsewhere. Anything else (a shard pruned meanwhile) is not the cache's to give up on.
_CANNOT_WRITE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ELOOP}


def prebuilt_dirs() -> list[str]:
    """The read-only tiers: $EXPRGEN_PREBUILT_DIR's directories, then the package's own when installed."""
    return settings.prebuilt_dirs() + ([PACKAGE_PREBUILT] if os.path.isdir(PACKAGE_PREBUILT) else [])


def entry_paths(tier_root: str, key: str, backend: str = "cpu") -> dict[str, str]:
    base = os.path.join(tier_root, backend, key[:2], key)
    binary, source = BACKEND_FILES[backend]
    return {"binary": base + binary, "source": base + source, "meta": base + ".json", "lock": base + ".lock"}


def trusted_owners(tier: str) -> set[int]:
    """Who may own a binary we load: you, and for a prebuilt tier (installed system-wide) root too."""
    return {os.getuid()} if tier == "disk" else {os.getuid(), 0}


def examine(paths: dict[str, str], key: str, owners: set[int], links: bool = False) -> tuple[str | None, dict | None]:
    """(why the entry must not be loaded, or None when it is sound; its metadata when readable). ``links``:
    a binary may be a link (a prebuilt tree assembled from links, as Nix or Bazel make them); its target is
    what is checked. The user cache never links."""
    try:
        with open(paths["meta"]) as f:
            meta = json.load(f)
    except FileNotFoundError:
        return "missing", None
    except (OSError, ValueError):
        return "metadata unreadable", None
    if not isinstance(meta, dict) or meta.get("key") != key:
        return "metadata describes another kernel", None
    try:
        # Not through a link where none belongs (it could name any library of yours), and the file whose
        # bytes are checked, not whatever the path names afterwards.
        flags = os.O_RDONLY | os.O_CLOEXEC | (0 if links else os.O_NOFOLLOW)
        with os.fdopen(os.open(paths["binary"], flags), "rb") as f:
            st = os.fstat(f.fileno())
            blob = f.read()
    except OSError:
        return "binary missing or a link", meta
    if st.st_uid not in owners:
        return UNSAFE[0], meta
    if st.st_mode & 0o022:
        return UNSAFE[1], meta
    if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
        return "checksum mismatch", meta
    return None, meta


class KernelCache:
    def __init__(self):
        self.memory: dict[str, Entry] = {}
        self._root: str | None = None
        self._root_lock = threading.Lock()
        self._refused: set[str] = set()
        self._recorded: set[str] = set()
        self._read_only: str | None = None   # the user cache, when it is yours but cannot be written

    @property
    def root(self) -> str:
        """The writable user cache directory (or the private fallback)."""
        with self._root_lock:  # two threads must not both fall back (two temp dirs, two warnings)
            if self._root is None:
                wanted = settings.cache_dir()
                problem = _unusable(wanted)
                if problem is None:
                    self._root = wanted
                else:
                    if problem == READ_ONLY:   # still yours and safe: its kernels are read, not written
                        self._read_only = wanted
                    self._fall_back(wanted, problem)
        return self._root

    def _fall_back(self, wanted: str, problem: str) -> None:
        """Compile into a private temporary cache (removed at exit) from now on, saying why once."""
        self._root = tempfile.mkdtemp(prefix="exprgen-cache-")
        atexit.register(shutil.rmtree, self._root, True)
        warnings.warn(f"exprgen: kernel cache {wanted} {problem}; compiling into the private temporary cache "
                      f"{self._root} for this process (set EXPRGEN_CACHE_DIR to choose another)",
                      RuntimeWarning, stacklevel=5)

    def key(self, source: str, backend: str = "cpu", identity: str | None = None) -> str:
        digest = hashlib.sha256()
        for part in (FORMAT_VERSION, backend, identity or cpu.identity(self.root), source):
            digest.update(part.encode())
            digest.update(b"\0")
        return digest.hexdigest()

    def tiers(self) -> list[tuple[str, str]]:
        disk = [("disk", self.root)] + ([("disk", self._read_only)] if self._read_only else [])
        return disk + [("prebuilt", d) for d in prebuilt_dirs()]

    def get(self, source: str, summary: str) -> Entry:
        """The loaded kernel for ``source``: from memory, disk or prebuilt, else compiled once."""
        try:
            key = self.key(source)
        except cpu.CompilerMissing as exc:
            key, missing = None, exc
        else:
            entry = self.memory.get(key)
            if entry is not None:
                counters.count("cache_hit_memory")
                return entry
        manifest = os.environ.get("EXPRGEN_RECORD")
        if manifest:
            self.record(manifest, "cpu", source, summary)
        entry = self._search(source, key)
        if entry is not None:
            if key is not None:
                self.memory[key] = entry
            return entry
        if settings.no_compile():
            raise self._no_compile_error(key, source, summary, manifest)
        if key is None:
            raise missing
        root = self.root
        try:
            compiled = self.build(root, key, source, summary)
        except OSError as exc:
            if exc.errno not in _CANNOT_WRITE:
                raise
            with self._root_lock:
                if self._root == root:   # not already fallen back by another thread
                    self._read_only = self._read_only or root   # the kernels it has are still read
                    self._fall_back(root, f"could not take kernel {key[:16]} ({exc})")
                root = self._root
            compiled = self.build(root, key, source, summary)
        if not compiled:
            counters.count("cache_hit_disk")  # another process finished it while we waited for the lock
        path = entry_paths(root, key)["binary"]
        entry = Entry(key, cpu.load(path), "compiled" if compiled else "disk", path)
        self.memory[key] = entry
        return entry

    def _candidates(self, source: str, key: str | None):
        """(isa, key) pairs to look for, best first: this compiler's targets, then recorded compilers'."""
        if key is not None:
            yield cpu.NATIVE, key
            for isa in cpu.supported_isas()[1:]:
                yield isa, self.key(source, identity=cpu.identity(self.root, isa))
        if key is None or settings.no_compile():
            for isa, identity in cpu.recorded_identities([root for _, root in self.tiers()]):
                yield isa, self.key(source, identity=identity)

    def _search(self, source: str, key: str | None) -> Entry | None:
        tiers, seen = self.tiers(), set()
        for isa, candidate in self._candidates(source, key):
            if candidate in seen:  # a recorded compiler may be this one
                continue
            seen.add(candidate)
            entry = self.memory.get(candidate)
            if entry is not None:
                counters.count("cache_hit_memory")
                return entry
            for tier, root in tiers:
                entry = self._load(tier, root, candidate, isa)
                if entry is not None:
                    counters.count(f"cache_hit_{tier}")
                    self.memory[candidate] = entry
                    return entry
        return None

    def _no_compile_error(self, key: str | None, source: str, summary: str, manifest: str | None) -> NoCompileError:
        what = f"kernel {key[:16]}" if key else "the kernel"
        searched = ", ".join(f"{root} ({tier})" for tier, root in self.tiers())
        isas = ", ".join(cpu.supported_isas())
        recorded = (f"it was recorded in {manifest}; on the build machine run:\n" if manifest else
                    "record the workload on a build machine (same exprgen, a C++ compiler) and prebuild it:\n"
                    "      EXPRGEN_RECORD=kernels.json python your_program.py\n")
        return NoCompileError(
            f"EXPRGEN_NO_COMPILE is set and {what} is in no cache tier.\n"
            f"  expression: {summary}\n  searched: {searched}, for CPU targets {isas}\n"
            f"{self._built_otherwise(source)}"
            f"  to prebuild it, {recorded}"
            f"      exprgen prebuild --manifest {manifest or 'kernels.json'} --target cpu:x86-64-v3 --into DIR\n"
            f"  then ship DIR and set EXPRGEN_PREBUILT_DIR=DIR here (or run once without EXPRGEN_NO_COMPILE "
            f"with EXPRGEN_CACHE_DIR=DIR on a machine with the same CPU model, and ship that)")

    def _built_otherwise(self, source: str) -> str:
        """A line saying where a tier holds this very source built for another identity, and what differs
        (a stale prebuild: another exprgen's prelude, another compiler, another CPU); else nothing."""
        digest = hashlib.sha256(source.encode()).hexdigest()
        for _, root in self.tiers():
            for path in glob.glob(os.path.join(glob.escape(root), "cpu", "*", "*.json")):
                try:
                    with open(path) as f:
                        meta = json.load(f)
                    if meta.get("source_sha256") != digest:
                        continue
                    theirs = meta["compiler"].split("|")
                    ours = cpu.identity(self.root, meta.get("isa", cpu.NATIVE)).split("|")
                except (OSError, ValueError, KeyError, AttributeError, cpu.CompilerMissing):
                    continue
                differs = "; ".join(f"{t} (here {o})" for t, o in zip(theirs, ours) if t != o)
                return f"  {os.path.dirname(path)} holds it, built for another setup: {differs}\n"
        return ""

    def _load(self, tier: str, root: str, key: str, isa: str = cpu.NATIVE) -> Entry | None:
        paths = entry_paths(root, key)
        problem, _ = examine(paths, key, trusted_owners(tier), links=tier == "prebuilt")
        if problem in UNSAFE:
            if paths["binary"] not in self._refused:
                self._refused.add(paths["binary"])
                warnings.warn(f"exprgen: refusing kernel {paths['binary']}: {problem} (loading a library runs its "
                              f"code); {'rebuilding it' if tier == 'disk' else 'skipping it'}",
                              RuntimeWarning, stacklevel=5)
            return None
        if problem:
            return None  # absent, truncated or corrupted: rebuilt by the caller, never loaded
        if tier == "disk":
            try:
                os.utime(paths["meta"])  # least-recently-used order for pruning
            except OSError:
                pass
        return Entry(key, cpu.load(paths["binary"]), tier, paths["binary"], isa)

    def build(self, root: str, key: str, source: str, summary: str, isa: str = cpu.NATIVE,
              shared: bool = False, backend: str = "cpu") -> bool:
        """Compile ``source`` into the tier at ``root`` unless a sound entry is there; True when this call
        compiled it. ``shared``: readable by everyone (a prebuilt tier to ship), else private to you.
        ``isa``: the target of ``backend`` (for CUDA, the sm_XX)."""
        paths = entry_paths(root, key, backend)
        shard = os.path.dirname(paths["binary"])
        os.makedirs(shard, mode=0o755 if shared else 0o700, exist_ok=True)
        owners = trusted_owners("prebuilt" if shared else "disk")
        # Never truncating, never following a link: a planted <key>.lock -> somefile must not empty somefile.
        lock = os.open(paths["lock"], os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if examine(paths, key, owners)[0] is None:  # another process may have finished it meanwhile
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
                seconds = BACKENDS[backend].compile_source(tmp_source, tmp_binary, isa)
            except cpu.CompileError as exc:
                failed = os.path.join(root, "failed")
                os.makedirs(failed, mode=0o700, exist_ok=True)
                kept = os.path.join(failed, key + source_suffix)
                os.replace(tmp_source, kept)
                raise cpu.CompileError(str(exc).replace(tmp_source, kept)) from None
            os.chmod(tmp_binary, 0o755 if shared else 0o700)
            os.chmod(tmp_source, 0o644 if shared else 0o600)
            with open(tmp_binary, "rb") as f:
                checksum = hashlib.sha256(f.read()).hexdigest()
            meta = {"key": key, "sha256": checksum, "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
                    "backend": backend, "isa": isa, "summary": summary,
                    "compiler": BACKENDS[backend].identity(root, isa),
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
        counters.count("compiles")
        counters.count("compile_ns", int(seconds * 1e9))

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
    return {"id": digest, "backend": backend, "summary": summary, "prelude": cpu.prelude_digest(), "source": source}


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
