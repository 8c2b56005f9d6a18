"""BLAKE3 content digests of files and directories, with a stat cache so unchanged files are not re-read."""
from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Callable

from blake3 import blake3

from vocab.canonical import canonical_json
from vocab.files import write_atomic

CHUNK = 1 << 20
MMAP_THRESHOLD = 1 << 22  # large files: let blake3 hash a memory map with all cores


def bytes_digest(data: bytes) -> str:
    return blake3(data).hexdigest()


def file_digest(path: str | os.PathLike[str]) -> str:
    return file_digest_and_size(path)[0]


def file_digest_and_size(path: str | os.PathLike[str]) -> tuple[str, int]:
    """The digest of a file's bytes and how many there were. One descriptor, read to its end (a small file, the
    usual output, costs an open, an fstat, one read and a close)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size >= MMAP_THRESHOLD:
            h = blake3(max_threads=blake3.AUTO)
            h.update_mmap(os.fspath(path))
            return h.hexdigest(), size
        h = blake3()
        read = 0
        while chunk := os.read(fd, CHUNK):
            h.update(chunk)
            read += len(chunk)
            if len(chunk) < CHUNK and read >= size:
                break  # a short read that reached the size fstat gave: the end (no empty read to learn it)
        return h.hexdigest(), read
    finally:
        os.close(fd)


class TreeError(ValueError):
    """A directory breaks the symlink rule (see `tree_files`): `rel` names the entry, `reason` says why."""

    def __init__(self, rel: str, reason: str) -> None:
        self.rel, self.reason = rel, reason
        super().__init__(f"{rel} {reason}")


def tree_files(path: str | os.PathLike[str], *, confine: bool = False) -> list[tuple[str, Path]]:
    """Every file under a directory as (relative POSIX path, path to open), sorted by relative path.

    The one rule for symbolic links in directories, obeyed by every digest and every copy of one (a
    directory input's digest, the job's copy of it, a stored directory output): a link is followed as if
    it were what it points to, a file or a folder walked in turn. A broken link, a link loop and anything
    that is neither a file nor a folder (a FIFO, a socket, a device) are errors. `confine`: every link must
    also lead inside `path` (a directory output: nothing from outside the job's outputs folder is stored).
    """
    top = Path(path)
    real_top = os.path.realpath(top)
    files: list[tuple[str, Path]] = []

    def walk(folder: Path, rel: str, ancestors: frozenset[str]) -> None:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            name, p = f"{rel}{entry.name}", Path(entry.path)
            real = None
            if entry.is_symlink():
                real = os.path.realpath(p)
                if not os.path.exists(real):
                    raise TreeError(name, f"is a broken symbolic link (to {os.readlink(p)})")
                if confine and os.path.commonpath([real_top, real]) != real_top:
                    raise TreeError(name, f"is a link to {real}, outside the outputs folder")
            mode = os.stat(p).st_mode
            if stat.S_ISREG(mode):
                files.append((name, p))
            elif stat.S_ISDIR(mode):
                real = real or os.path.realpath(p)
                if real in ancestors:
                    raise TreeError(name, f"is a symbolic link loop (back to {real})")
                walk(p, name + "/", ancestors | {real})
            else:
                raise TreeError(name, "is neither a file nor a folder")

    walk(top, "", frozenset({real_top}))
    return files


def tree_manifest(path: str | os.PathLike[str], digest_of: Callable[[Path], str] | None = None) -> dict[str, dict[str, object]]:
    """relative path -> {digest, size} for every file under a directory (`tree_files`: links followed)."""
    get = digest_of or file_digest
    return {rel: {"digest": get(p), "size": p.stat().st_size} for rel, p in tree_files(path)}


def manifest_bytes(files: dict[str, dict[str, object]]) -> bytes:
    return canonical_json({"files": files}, ascii=True).encode()


def dir_digest(path: str | os.PathLike[str], digest_of: Callable[[Path], str] | None = None) -> str:
    return bytes_digest(manifest_bytes(tree_manifest(path, digest_of)))


def path_kind(path: str) -> str | None:
    """What is at `path` now: "file", "dir" or None."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return "file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else None


# A digest is remembered only for a file whose last change (ctime) is at least this much older than the
# moment its stat was taken: a change within the same timestamp tick would leave its stat unchanged.
# Linux ticks are at most 10 ms; the margin also covers filesystems with one-second timestamps.
RACY_NS = 1_000_000_000


def stat_signature(st: os.stat_result) -> list[int]:
    """What any change to a file's bytes changes: size, mtime, ctime (nanoseconds), inode and device.

    ctime cannot be set by a user (`touch -r`, `cp -p`, `rsync -t` and `tar x` restore mtime, not ctime):
    writing the file, or restoring its mtime afterwards, moves it."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


class StatCache:
    """path -> (size, mtime_ns, ctime_ns, inode, device, digest), kept in a JSON file beside the state.

    A file whose signature (`stat_signature`) is unchanged is not read again; any change re-reads it. A file
    changed less than `RACY_NS` before it was read is not remembered (it is read again next time), so a
    change in the same timestamp tick as the reading cannot hide behind an equal signature.
    """

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path else None
        self.entries: dict[str, list[object]] = {}
        self.dirty = False
        self._lock = threading.Lock()
        self._kinds: dict[str, str | None] = {}
        if self.path and self.path.is_file():
            try:
                self.entries = json.loads(self.path.read_text())
            except ValueError:
                self.entries = {}  # a damaged cache only costs re-reading
        if not isinstance(self.entries, dict):
            self.entries = {}

    def path_kind(self, path: str) -> str | None:
        """"file", "dir" or None (missing), remembered for this command: thousands of commands name the same
        few words (`cat`, `python`, `/workflow/inputs/a`), and a node's code identity is fixed for a run."""
        with self._lock:
            if path in self._kinds:
                return self._kinds[path]
        kind = path_kind(path)
        with self._lock:
            self._kinds[path] = kind
        return kind

    def kinds_seen(self) -> dict[str, str | None]:
        """Every path `path_kind` was asked about in this command, and the answer."""
        with self._lock:
            return dict(self._kinds)

    def file(self, path: str | os.PathLike[str]) -> str:
        p = os.path.abspath(path)
        st = os.stat(p)
        sig = stat_signature(st)
        with self._lock:
            hit = self.entries.get(p)
        if hit is not None and len(hit) == len(sig) + 1 and hit[:-1] == sig:
            return str(hit[-1])
        taken = time.time_ns()  # (just after the stat: RACY_NS dwarfs the difference)
        digest = file_digest(p)
        with self._lock:
            if st.st_ctime_ns < taken - RACY_NS:
                self.entries[p] = [*sig, digest]
            else:
                self.entries.pop(p, None)
            self.dirty = True
        return digest

    def directory(self, path: str | os.PathLike[str]) -> str:
        return dir_digest(path, self.file)

    def remember(self, path: str | os.PathLike[str], digest: str) -> None:
        """Record a digest computed elsewhere, of bytes nobody else can be writing (e.g. a blob this process
        has just written and made read-only): its signature is taken now."""
        p = os.path.abspath(path)
        sig = stat_signature(os.stat(p))
        with self._lock:
            self.entries[p] = [*sig, digest]
            self.dirty = True

    def refresh(self, path: str | os.PathLike[str]) -> None:
        """A remembered file whose name count changed (so did its ctime) and nothing else: its size, mtime, inode
        and device are those remembered. Its signature is taken again, keeping its digest (the caller vouches
        that nobody could write the bytes meanwhile: a blob just stored, read-only)."""
        p = os.path.abspath(path)
        try:
            st = os.stat(p)
        except OSError:
            return
        sig = stat_signature(st)
        with self._lock:
            hit = self.entries.get(p)
            if hit is None or len(hit) != len(sig) + 1 or hit[:2] != sig[:2] or hit[3:-1] != sig[3:]:
                return
            if hit[2] != sig[2]:
                self.entries[p] = [*sig, hit[-1]]
                self.dirty = True

    def save(self) -> None:
        if not self.path or not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            data = json.dumps(self.entries, separators=(",", ":")).encode()
            self.dirty = False
        write_atomic(self.path, data)
