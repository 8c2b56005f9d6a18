"""Content-addressed blobs in a local folder (`.flows/blobs/<2>/<digest>`): written once, read-only, verified.

A blob's bytes are a private copy that nobody else holds (a reflink where the filesystem offers one), or a
job's own file once nothing the job started can still run (a hard link: the job's folder is deleted next).
Its digest is taken from the stored bytes themselves, and checked again before each use (`exists`,
`get_file`, `get_dir`): the stat cache answers for a blob whose stat has not moved since it was recorded,
and any change to it (even by root, even with its mtime restored) moves its ctime, so it is read again and
a changed blob counts as missing (a re-run stores it again) instead of being reused.
"""
from __future__ import annotations

import errno
import fcntl
import itertools
import json
import os
import stat
import uuid
from pathlib import Path
from typing import Collection

from vocab.digest import StatCache, bytes_digest, file_digest_and_size, manifest_bytes, tree_files
from vocab.files import write_atomic
from providers.blobs.base import BlobChangedError, StoredBlob, ensure_inside, shard
from providers.blobs.local_presence import MANIFEST_HEAD, intact, manifest_digests, usable

__all__ = ["LocalBlobStore", "MANIFEST_HEAD"]

# A temporary file's name: this process's pid, a tag drawn once (a pid is reused; a leftover of a killed process
# with the same pid is never taken for ours) and a serial (itertools.count: one value per call, across threads).
_TMP_TAG = uuid.uuid4().hex[:12]
_TMP_SERIAL = itertools.count()
_PID = os.getpid()  # (asked once: each getpid is a system call, and a temporary name is made per stored blob)


def _new_tmp_tag() -> None:
    global _TMP_TAG, _PID
    _TMP_TAG = uuid.uuid4().hex[:12]
    _PID = os.getpid()


os.register_at_fork(after_in_child=_new_tmp_tag)  # (a forked child draws its own)
FICLONE = 0x40049409            # ioctl: share the source's extents (btrfs, XFS, ...): a private copy for free


class LocalBlobStore:
    def __init__(self, root: str | os.PathLike[str], digests: StatCache | None = None) -> None:
        self.root = Path(root).resolve()
        self.url = str(self.root)
        self.digests = digests if digests is not None else StatCache(None)
        self._root_made = False  # made on the first write, not asked again for every blob

    def _path(self, digest: str) -> str:
        # (strings on the per-blob paths: a Path made and printed a dozen times per job added up)
        return os.path.join(self.url, shard(digest))

    def owns(self, uri: str) -> bool:
        """Whether `uri` names a blob of this store."""
        folder, name = os.path.split(os.path.normpath(uri))  # (strings: asked for every input of every job)
        parent, shard_name = os.path.split(folder)
        return parent == self.url and shard_name == name[:2] != ""

    def _intact(self, path: str | Path, digest: str) -> bool:
        """The blob is there and its bytes still hash to its digest (stat-cached)."""
        return intact(self.digests, path, digest)

    def _place(self, tmp: str, digest: str, size: int) -> StoredBlob:
        """Make `tmp` (a private file of verified bytes, `size` of them) the blob `digest`, unless an intact one is
        there."""
        if self._install(tmp, digest):
            self.digests.remember(self._path(digest), digest)
        return StoredBlob(digest=digest, uri=self._path(digest), size=size)

    def _install(self, tmp: str, digest: str) -> bool:
        """`tmp` renamed to the blob `digest` (True), or dropped when an intact blob is there already (False)."""
        target = self._path(digest)
        if self._intact(target, digest):  # content-addressed: an intact blob is these very bytes
            os.unlink(tmp)
            return False
        os.chmod(tmp, 0o444)  # absent, or changed since it was stored: these bytes take its place
        try:
            os.replace(tmp, target)
        except FileNotFoundError:  # the shard's first blob (its folder is made then, not checked every time)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(tmp, target)
        return True

    def _tmp(self) -> str:
        # unique per call: two jobs of one apply may store the same bytes at the same moment
        if not self._root_made:
            self.root.mkdir(parents=True, exist_ok=True)
            self._root_made = True
        return os.path.join(self.url, f".{_PID}.{_TMP_TAG}.{next(_TMP_SERIAL)}.tmp")

    def put_file(self, path: str | Path, digest: str | None = None, *, consume: bool = False) -> StoredBlob:
        """`consume`: the caller deletes `path` next and nothing can write to it any more (the job that wrote
        it has ended with every process it started), so the file itself may become the blob."""
        if digest is not None and self._intact(self._path(digest), digest):
            return StoredBlob(digest=digest, uri=self._path(digest), size=os.path.getsize(path))
        tmp = self._tmp()
        try:
            (_link_or_copy if consume else clone_or_copy)(path, tmp)
            # the digest of the bytes stored, not of what was there a moment ago
            actual, size = file_digest_and_size(tmp)
            if digest is not None and actual != digest:
                raise BlobChangedError(f"{path} changed while it was being stored", file=str(path))
            placed = self._place(tmp, actual, size)
        except BaseException:
            _unlink_if_there(tmp)
            raise
        return placed

    def take_file(self, path: str, info: os.stat_result) -> tuple[StoredBlob, bool] | None:
        """A job's output that is a plain file of one name (`info`: its lstat), which nothing can write any more,
        becomes the blob (a hard link, hashed): `put_file(consume=True)` with a fraction of its system calls.
        Returns the blob and whether it is new (then `settle_taken` tells the stat cache, once the job's names
        are removed: each removal moves its ctime); None, with nothing done, when it cannot be linked here (another
        filesystem): the caller stores a copy."""
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            return None
        tmp = self._tmp()
        try:
            os.link(path, tmp)
        except OSError:
            return None
        try:
            digest, size = file_digest_and_size(tmp)
            new = self._install(tmp, digest)
        except BaseException:
            _unlink_if_there(tmp)
            raise
        return StoredBlob(digest=digest, uri=self._path(digest), size=size), new

    def settle_taken(self, names: Collection[str], fresh: Collection[tuple[str, str]]) -> None:
        """After `take_file`: the job's names of the taken files are removed (the blobs keep the files) and the
        new blobs (`fresh`: uri, digest) are remembered by the stat cache with their final stat."""
        for name in names:
            _unlink_if_there(name)
        for uri, digest in fresh:
            self.digests.remember(uri, digest)

    def put_bytes(self, data: bytes) -> StoredBlob:
        digest = bytes_digest(data)
        if self._intact(self._path(digest), digest):
            return StoredBlob(digest=digest, uri=self._path(digest), size=len(data))
        tmp = self._tmp()
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            return self._place(tmp, digest, len(data))
        finally:
            _unlink_if_there(tmp)

    def put_dir(self, path: Path, *, consume: bool = False, confine: bool = False) -> StoredBlob:
        files: dict[str, dict[str, object]] = {}
        total = 0
        for rel, p in tree_files(path, confine=confine):  # every name checked before anything is stored
            blob = self.put_file(p, consume=consume)
            files[rel] = {"digest": blob.digest, "size": blob.size}
            total += blob.size
        manifest = self.put_bytes(manifest_bytes(files))
        return StoredBlob(digest=manifest.digest, uri=manifest.uri, size=total)

    def refresh(self, files: Collection[str], dirs: Collection[str] = ()) -> None:
        """Blobs just stored from a job's own files (`consume`), whose other names have since been removed: their
        ctime moved, not their bytes. The stat cache gets their stat now, for a blob whose size, mtime, inode and
        device are still those it recorded when the bytes were hashed (`dirs`: the files a manifest names)."""
        paths: list[str | Path] = [u for u in files if self.owns(u)]
        for uri in dirs:
            if self.owns(uri):
                paths += [self._path(d) for d in self._manifest_digests(Path(uri)) or []]
        for path in paths:
            self.digests.refresh(path)

    def exists(self, uris: list[str], dirs: Collection[str] = ()) -> dict[str, bool]:
        """Which blobs are there unchanged (of a directory in `dirs`: its manifest and every file it names)."""
        return {u: self._usable(Path(u), u in dirs) for u in uris}

    def _usable(self, path: Path, is_dir: bool) -> bool:
        return usable(self.digests, self.root, path, is_dir)

    def _manifest_digests(self, path: Path) -> list[str] | None:
        return manifest_digests(path)

    def _verified(self, uri: str) -> str:
        if self.owns(uri):
            name = os.path.basename(uri)
            if not self._intact(uri, name):
                if not os.path.isfile(uri):
                    raise FileNotFoundError(2, "no such blob", uri)
                raise BlobChangedError(f"blob {name[:12]} has changed in the blob store since it was stored "
                                       "(its bytes no longer match its digest)", file=uri)
        return uri

    def get_file(self, uri: str, dest: Path) -> None:
        path = self._verified(uri)
        try:
            clone_or_copy(path, dest)
        except FileNotFoundError:
            if dest.parent.is_dir():
                raise
            dest.parent.mkdir(parents=True, exist_ok=True)
            clone_or_copy(path, dest)

    def get_dir(self, uri: str, dest: Path) -> None:
        manifest = json.loads(Path(self._verified(uri)).read_bytes())
        dest.mkdir(parents=True, exist_ok=True)
        for rel, meta in manifest["files"].items():
            target = ensure_inside(dest, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            self.get_file(self._path(str(meta["digest"])), target)

    def read_bytes(self, uri: str) -> bytes:
        return Path(self._verified(uri)).read_bytes()

    # -- users: the states that keep outputs here (for `flows cache gc`) ------------------------------
    def register_user(self, user_id: str, record: bytes) -> None:
        path = self.root / "users" / f"{user_id}.json"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, record)

    def users(self) -> dict[str, bytes]:
        folder = self.root / "users"
        return {p.stem: p.read_bytes() for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}

    def list_digests(self) -> set[str]:
        if not self.root.is_dir():
            return set()
        return {p.name for p in self.root.glob("??/*") if not p.name.startswith(".")}

    def delete(self, digests: set[str]) -> int:
        n = 0
        for d in digests:
            p = self._path(d)
            if os.path.exists(p):
                os.chmod(p, 0o644)
                os.unlink(p)
                n += 1
        return n


def _unlink_if_there(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def clone_or_copy(src: str | Path, dest: str | Path) -> None:
    """A private copy of `src` at `dest`: a reflink (shared extents, copied on write) where the filesystem
    offers one, bytes otherwise. An existing `dest` is written over in place and then cut to size, not emptied
    first: a job folder's input file taking the next job's input of a few bytes keeps its block (emptying it
    frees the block, which on a filesystem mounted with `discard` waits for the device, and allocates another)."""
    source = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            info = os.fstat(source)
            size = info.st_size
            cloned = False
            if info.st_dev not in _NO_REFLINK:  # (asked once per filesystem: ext4 and tmpfs have none)
                try:
                    fcntl.ioctl(target, FICLONE, source)
                    cloned = True
                except OSError as e:
                    if e.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL):
                        _NO_REFLINK.add(info.st_dev)
            if not cloned:  # not a reflink filesystem, or another filesystem
                size = _copy_open(source, target, size)
            os.ftruncate(target, size)
        finally:
            os.close(target)
    finally:
        os.close(source)


_NO_REFLINK: set[int] = set()  # devices whose filesystem said it cannot share extents (FICLONE)


def _copy_open(source: int, target: int, size: int) -> int:
    """The bytes of one open file into another, in the kernel where it can (no second open of either); returns
    how many were written (`size`, the source's, unless it changed meanwhile)."""
    left, written = size, 0
    try:
        while left > 0:
            copied = os.copy_file_range(source, target, left)
            if copied == 0:
                break
            left -= copied
            written += copied
        else:
            return written
    except OSError:
        pass  # not between these two (another filesystem on an old kernel, a special file): plain reads
    while chunk := os.read(source, 1 << 20):
        view = memoryview(chunk)
        while view:
            done = os.write(target, view)
            view = view[done:]
            written += done
    return written


def _link_or_copy(src: str | Path, dest: str | Path) -> None:
    """Take a job's output into the store without copying its bytes (a model of many GB costs one hard
    link; the job's folder, and with it the other name, is deleted next) when it is a plain file of its own.
    A symlink, a file that shares its inode with one elsewhere (whose mode the store's chmod would change,
    and which another process could write through), or another filesystem: a private copy."""
    st = os.lstat(src)
    if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
        try:
            os.link(src, dest)
            return
        except OSError:
            pass  # another filesystem, or one without hard links
    clone_or_copy(src, dest)
