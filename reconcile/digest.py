"""BLAKE3 content digests of files and directories, with a stat cache so unchanged files are not re-read."""
from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

from blake3 import blake3

CHUNK = 1 << 20
MMAP_THRESHOLD = 1 << 22  # large files: let blake3 hash a memory map with all cores


def bytes_digest(data: bytes) -> str:
    return blake3(data).hexdigest()


def file_digest(path: str | os.PathLike[str]) -> str:
    size = os.path.getsize(path)
    if size >= MMAP_THRESHOLD:
        h = blake3(max_threads=blake3.AUTO)
        h.update_mmap(os.fspath(path))
        return h.hexdigest()
    h = blake3()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def tree_manifest(path: str | os.PathLike[str], digest_of: "callable[[Path], str] | None" = None) -> dict[str, dict[str, object]]:
    """relative path -> {digest, size} for every file under a directory (sorted, symlinks followed)."""
    root = Path(path)
    get = digest_of or file_digest
    files: dict[str, dict[str, object]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            files[p.relative_to(root).as_posix()] = {"digest": get(p), "size": p.stat().st_size}
    return files


def manifest_bytes(files: dict[str, dict[str, object]]) -> bytes:
    return json.dumps({"files": files}, sort_keys=True, separators=(",", ":")).encode()


def dir_digest(path: str | os.PathLike[str], digest_of: "callable[[Path], str] | None" = None) -> str:
    return bytes_digest(manifest_bytes(tree_manifest(path, digest_of)))


def path_kind(path: str) -> str | None:
    """What is at `path` now: "file", "dir" or None."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return "file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else None


class StatCache:
    """(path, size, mtime_ns, inode) -> digest, kept in a JSON file beside the state.

    A file whose stat is unchanged is not read again; any change of size, mtime or inode re-reads it.
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

    def file(self, path: str | os.PathLike[str]) -> str:
        p = os.path.abspath(path)
        st = os.stat(p)
        sig = [st.st_size, st.st_mtime_ns, st.st_ino]
        with self._lock:
            hit = self.entries.get(p)
        if hit is not None and hit[:3] == sig:
            return str(hit[3])
        digest = file_digest(p)
        with self._lock:
            self.entries[p] = [*sig, digest]
            self.dirty = True
        return digest

    def directory(self, path: str | os.PathLike[str]) -> str:
        return dir_digest(path, self.file)

    def remember(self, path: str | os.PathLike[str], digest: str) -> None:
        """Record a digest computed elsewhere (e.g. while storing a blob)."""
        p = os.path.abspath(path)
        st = os.stat(p)
        with self._lock:
            self.entries[p] = [st.st_size, st.st_mtime_ns, st.st_ino, digest]
            self.dirty = True

    def save(self) -> None:
        if not self.path or not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with self._lock:
            tmp.write_text(json.dumps(self.entries, separators=(",", ":")))
            self.dirty = False
        os.replace(tmp, self.path)
