"""A finished local job's folder: its files give their space back at once, its inodes go at the end of the apply.

Why not remove the folder when the job ends: on ext4 a new inode is not given a number freed in the last minute or
so, and finding one walks past every such number (`recently_deleted` in the kernel). An apply that removed each
job's folder (three folders, the input copies) while creating the next job's spent about a third of its CPU in that
walk at 1,000 trivial jobs. So when a job ends its regular files are truncated (a name that shares its file with the
blob store, an output hard-linked there, is unlinked: that frees no inode), and the emptied folders are removed in
one sweep when the provider closes or the process exits.

A folder whose job provably ended with every process it started (its own PID namespace) is not even left for that
sweep: it is emptied for the next job (`RetiredFolders.add(..., reuse=True)`, `take`), which so makes no folder and,
for an input name the last job also had, no file: an apply of many small jobs creates a few inodes per job, not
eight. Only plain files are kept (truncated, one name each); a folder holding anything else (a link, a folder in
`outputs/`, a file with a second name) is not reused. A kept input file of up to `KEEP_BYTES` is not even emptied:
the next job's input is written over it in place (`blobs.local.clone_or_copy`), so its block is neither freed
nor allocated again (on a filesystem mounted with `discard`, freeing a block waits for the device).
"""
from __future__ import annotations

import os
import shutil
import stat
import threading
import weakref
from pathlib import Path
from typing import Collection

KEEP_BYTES = 1 << 16  # a reused folder's input file up to this size keeps its bytes until it is written over


def give_back_space(folder: Path) -> None:
    """Truncate every regular file under `folder` that has no other name; unlink the names that do. Symlinks are
    neither followed nor touched, and the walk holds folder descriptors, so a link swapped in cannot redirect it."""
    try:
        walk = os.fwalk(folder, follow_symlinks=False)
        for _dirpath, _dirs, files, dir_fd in walk:
            for name in files:
                _give_back(name, dir_fd)
    except OSError:
        pass  # the sweep at the end removes whatever is left


def _give_back(name: str, dir_fd: int) -> None:
    try:
        if not stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            return  # links, fifos, sockets, devices: no space to give back, and opening one could act
        fd = os.open(name, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return
        if info.st_nlink > 1:
            os.unlink(name, dir_fd=dir_fd)  # the blob store (or another name) keeps the file
        else:
            os.ftruncate(fd, 0)
    except OSError:
        pass
    finally:
        os.close(fd)


class RetiredFolders:
    """Folders of finished jobs, removed together by `remove_all` (called by the provider's close, or at exit);
    meanwhile those added with `reuse` are handed to later jobs by `take`."""

    def __init__(self) -> None:
        self._folders: dict[Path, None] = {}  # every folder ever added, in order (a reused one once)
        self._ready: dict[frozenset[str], list[Path]] = {}  # emptied folders by the input names they keep
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _remove, self._folders, self._lock)

    def add(self, folder: Path, reuse: bool = False) -> None:
        """`reuse`: nothing the folder's job started can still run, so the folder may serve a later job."""
        kept = empty_for_reuse(folder) if reuse else None
        if kept is None:
            give_back_space(folder)
        with self._lock:
            self._folders[folder] = None
            if kept is not None:
                self._ready.setdefault(kept, []).append(folder)

    def take(self, names: Collection[str]) -> tuple[Path, frozenset[str]] | None:
        """An emptied folder for a job whose inputs are `names`, with the input names it keeps (empty files that
        the job's inputs overwrite: best all of them, never one more than it has), or None."""
        wanted = frozenset(names)
        with self._lock:
            folders = self._ready.get(wanted)
            if not folders:
                kept = next((k for k, f in self._ready.items() if f and k < wanted), None)
                if kept is None:
                    return None
                folders, wanted = self._ready[kept], kept
            return folders.pop(), wanted

    def remove_all(self) -> None:
        with self._lock:
            self._ready.clear()
        _remove(self._folders, self._lock)


def empty_for_reuse(folder: Path) -> frozenset[str] | None:
    """Empty a finished job's folder for the next job: `outputs/` emptied (its names unlinked: a consumed output
    keeps its file in the blob store), each file of `inputs/` over `KEEP_BYTES` truncated. Returns the input names
    kept, or None when the folder holds anything but `inputs/` and `outputs/` with plain files of one name each
    (then the caller gives its space back and leaves it for the sweep). Looked at by path with links never
    followed (each entry's type from the listing itself): only ever called once nothing the job started can
    still run, so nothing can swap a link in after the look (three listings, not three through descriptors,
    each of which cost CPython a duplicate and four more system calls)."""
    top = os.fspath(folder)
    try:
        with os.scandir(top) as listing:
            if sorted((e.name, e.is_dir(follow_symlinks=False)) for e in listing) != [("inputs", True),
                                                                                      ("outputs", True)]:
                return None
        with os.scandir(top + "/outputs") as listing:
            written = list(listing)
        for entry in written:
            if entry.is_dir(follow_symlinks=False):
                return None
            os.unlink(entry.path)
        names = []
        with os.scandir(top + "/inputs") as listing:
            for entry in listing:
                if not entry.is_file(follow_symlinks=False):
                    return None  # a link, a folder, a fifo...
                info = entry.stat(follow_symlinks=False)
                if info.st_nlink != 1 or (info.st_size > KEEP_BYTES and not _truncated(entry.path)):
                    return None
                names.append(entry.name)
        return frozenset(names)
    except OSError:
        return None


def _truncated(path: str) -> bool:
    """Truncate a plain file of one name (never through a link); False for anything else."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            return False
        os.ftruncate(fd, 0)
        return True
    finally:
        os.close(fd)


def _remove(folders: dict[Path, None], lock: threading.Lock) -> None:
    with lock:
        taken = list(folders)
        folders.clear()
    parents = {folder.parent for folder in taken}
    for folder in taken:
        _remove_folder(folder)
    for parent in parents:
        try:
            parent.rmdir()  # a run's folder, once its jobs' are gone
        except OSError:
            pass  # another job of the run is still there


def _remove_folder(folder: Path) -> None:
    """A job folder is mostly `inputs/` and `outputs/` holding plain files: removed with one listing each, through
    folder descriptors opened without following links (a link swapped in is never entered); anything deeper or
    odd goes to shutil's careful walk."""
    try:
        top = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        return
    try:
        for name in os.listdir(top):
            try:
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
            except NotADirectoryError:
                os.unlink(name, dir_fd=top)
                continue
            try:
                for entry in os.listdir(sub):
                    os.unlink(entry, dir_fd=sub)  # a folder in here raises: the careful walk takes over
            finally:
                os.close(sub)
            os.rmdir(name, dir_fd=top)
    except OSError:
        pass
    finally:
        os.close(top)
    try:
        os.rmdir(folder)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
