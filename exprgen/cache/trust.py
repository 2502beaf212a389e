"""Which cache entries may be loaded, and which cache directories may be written: loading a kernel
library runs its code.

An entry is loaded only when every directory from its tier root down
to its shard is owned by you (a prebuilt tier: you or root), writable by no one else and, below the root,
not a link; when its key is the hash of the source stored beside it, that source is the one asked for, and
the compiler identity its metadata records (so a binary filed under another kernel's key, whose argument
layout may differ, is never launched); and when its binary, owned by you (or root) and writable by no one
else, matches the checksum in the metadata. The checksum and key only catch damage and mix-ups: whoever
can write a tier's directories can forge all three, which is why such tiers are refused, with a warning.
A binary that passes and still cannot be loaded is corrupt too: the user cache's is uncommitted and
rebuilt once.

An entry's files are ``<tier>/<backend>/<k[:2]>/<k><binary suffix>`` beside its source, its metadata
(``.json``, written last: the commit mark) and its lock, ``k`` = ``compute_key``.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat

from ..backends import registry

FORMAT_VERSION = "1"


# Per compiling backend, the suffixes of an entry's binary and source (its metadata is always .json).
BACKEND_FILES = {name: (registry.get(name).binary_suffix, registry.get(name).source_suffix)
                 for name in registry.COMPILED}


class Unsafe(str):
    """A problem meaning someone else could have chosen the binary's code: warned about, never loaded.
    ``path``: the file or directory at fault (a directory's problem is every entry's under it)."""

    def __new__(cls, problem: str, path: str):
        self = super().__new__(cls, problem)
        self.path = path
        return self


READ_ONLY = "is read-only"   # the one reason a cache directory is still searched (it is yours and safe)


def unusable(path: str) -> str | None:
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
    above = _unsafe_above(path)
    if above:
        return f"is in a directory others could swap it in: {above}"
    if not os.access(path, os.W_OK | os.X_OK):
        return READ_ONLY
    return None


def compute_key(backend: str, identity: str, source: str) -> str:
    """What names a binary: the hash of the source and of everything else that decides the binary."""
    digest = hashlib.sha256()
    for part in (FORMAT_VERSION, backend, identity, source):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def entry_paths(tier_root: str, key: str, backend: str = "cpu") -> dict[str, str]:
    base = os.path.join(tier_root, backend, key[:2], key)
    binary, source = BACKEND_FILES[backend]
    return {"binary": base + binary, "source": base + source, "meta": base + ".json", "lock": base + ".lock"}


def trusted_owners(tier: str) -> set[int]:
    """Who may own a binary we load: you, and for a prebuilt tier (installed system-wide) root too."""
    return {os.getuid()} if tier == "disk" else {os.getuid(), 0}


def unsafe_directory(shard: str, owners: set[int]) -> str | None:
    """Why the entries of ``shard`` (``<root>/<backend>/<k[:2]>``) cannot be trusted ("missing" when it is
    absent), or None. The tier root (reached through a link or not: you named it) and each directory below
    it must be owned by ``owners`` and writable by no one else, who could plant a binary with metadata and
    source to match it; those below the root must not be links (to a directory that others may write)."""
    backend_dir = os.path.dirname(shard)
    above = _unsafe_above(os.path.dirname(backend_dir))
    if above:
        return above
    for path, follow in ((os.path.dirname(backend_dir), True), (backend_dir, False), (shard, False)):
        try:
            st = os.stat(path, follow_symlinks=follow)
        except OSError:
            return "missing"
        if stat.S_ISLNK(st.st_mode):
            return Unsafe(f"its directory {path} is a link", path)
        if not stat.S_ISDIR(st.st_mode):
            return "missing"
        if st.st_uid not in owners:
            return Unsafe(f"its directory {path} is not owned by you{' or root' if 0 in owners else ''}", path)
        if st.st_mode & 0o022:
            return Unsafe(f"its directory {path} is writable by others (mode {st.st_mode & 0o777:o})", path)
    return None


def _unsafe_above(path: str) -> str | None:
    """Why someone else could swap ``path`` (a tier directory, a link's target) for a directory of their
    own, or None: a directory above it (where the link leads) owned by someone but you or root, or that
    others may write in without the sticky bit (as /tmp has, which lets no one rename another's entries).
    The loader opens a kernel's path again after the checks, so the whole path must be trusted."""
    current = os.path.dirname(os.path.realpath(path))
    while True:
        try:
            st = os.stat(current)
        except OSError:
            return None   # the checks below the tier find what is missing
        if st.st_uid not in (os.getuid(), 0):
            return Unsafe(f"the directory {current} above it is owned by another user", current)
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            return Unsafe(f"the directory {current} above it is writable by others (mode "
                          f"{st.st_mode & 0o777:o}, not sticky)", current)
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def examine(paths: dict[str, str], key: str, owners: set[int], links: bool = False,
            source: str | None = None) -> tuple[str | None, dict | None]:
    """(why the entry must not be loaded, or None when it is sound; its metadata when readable). ``links``:
    a binary may be a link (a prebuilt tree assembled from links, as Nix or Bazel make them); its target is
    what is checked. The user cache never links. ``source``: the source the caller asked for, which the
    stored one must be (else only the stored one's hash is checked against the key)."""
    shard = os.path.dirname(paths["binary"])
    problem = unsafe_directory(shard, owners)
    if problem:
        return problem, None
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
        with open(paths["source"], encoding="utf-8") as f:
            stored = f.read()
    except (OSError, ValueError):
        return "source missing", meta
    if source is not None and stored != source:
        return "source is another kernel's", meta
    backend = os.path.basename(os.path.dirname(shard))
    if not isinstance(meta.get("compiler"), str) or compute_key(backend, meta["compiler"], stored) != key:
        return "key does not match its source and compiler", meta
    if links and os.path.islink(paths["binary"]):
        problem = _unsafe_above(os.path.join(os.path.realpath(paths["binary"]), "binary"))
        if problem:
            return problem, meta
    try:
        # Not through a link where none belongs (it could name any library of yours); owner, mode and bytes
        # read from one descriptor.
        fd = os.open(paths["binary"], os.O_RDONLY | os.O_CLOEXEC | (0 if links else os.O_NOFOLLOW))
    except OSError:
        return "binary missing or a link", meta
    try:
        st = os.fstat(fd)
        with open(fd, "rb", closefd=False) as f:
            blob = f.read()
    except OSError:
        problem = "binary unreadable"
    else:
        problem = None
        if st.st_uid not in owners:
            problem = Unsafe("not owned by you", paths["binary"])
        elif st.st_mode & 0o022:
            problem = Unsafe("writable by others", paths["binary"])
        elif hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
            problem = "checksum mismatch"
    finally:
        os.close(fd)
    return problem, meta


def load_checked(paths: dict[str, str], key: str, owners: set[int], links: bool = False,
                 source: str | None = None, backend: str = "cpu") -> tuple[str | None, dict | None, object]:
    """``examine``, then the kernel loaded: (problem, metadata, function or None). A sound entry that is no
    library is the problem "cannot be loaded (...)".

    The loader opens the path again after the checks, which is why ``_unsafe_above`` checks the whole path.
    Loading through the checked descriptor (/proc/self/fd/N) would close the gap outright, but glibc knows
    a loaded library by its name first: the next kernel loaded through a reused descriptor number got the
    first one's code."""
    problem, meta = examine(paths, key, owners, links, source)
    if problem:
        return problem, meta, None
    try:
        return None, meta, registry.get(backend).load(paths["binary"])
    except OSError as exc:
        return f"cannot be loaded ({exc})", meta, None
