"""Content-addressed blobs in a local folder (`.flows/blobs/<2>/<digest>`): written once, read-only."""
from __future__ import annotations

import json
import os
import shutil
import stat
import uuid
from pathlib import Path

from reconcile.digest import bytes_digest, file_digest, manifest_bytes, tree_files
from providers.blobs.base import StoredBlob, ensure_inside, shard


class LocalBlobStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.url = str(self.root)

    def _path(self, digest: str) -> Path:
        return self.root / shard(digest)

    def _digest_of(self, uri: str) -> str:
        return Path(uri).name

    def _store(self, digest: str, write: "callable[[Path], None]", size: int) -> StoredBlob:
        target = self._path(digest)
        if not target.exists():  # content-addressed: an existing blob is the same bytes
            target.parent.mkdir(parents=True, exist_ok=True)
            # unique per call: two jobs of one apply may store the same bytes at the same moment
            tmp = target.with_name(f".{digest}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            write(tmp)
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
        return StoredBlob(digest=digest, uri=str(target), size=size)

    def put_file(self, path: Path, digest: str | None = None, *, consume: bool = False) -> StoredBlob:
        digest = digest or file_digest(path)
        write = _link_or_copy if consume else shutil.copyfile
        return self._store(digest, lambda tmp: write(path, tmp), os.path.getsize(path))

    def put_bytes(self, data: bytes) -> StoredBlob:
        return self._store(bytes_digest(data), lambda tmp: tmp.write_bytes(data), len(data))

    def put_dir(self, path: Path, *, consume: bool = False, confine: bool = False) -> StoredBlob:
        files: dict[str, dict[str, object]] = {}
        total = 0
        for rel, p in tree_files(path, confine=confine):  # every name checked before anything is stored
            blob = self.put_file(p, consume=consume)
            files[rel] = {"digest": blob.digest, "size": blob.size}
            total += blob.size
        manifest = self.put_bytes(manifest_bytes(files))
        return StoredBlob(digest=manifest.digest, uri=manifest.uri, size=total)

    def exists(self, uris: list[str]) -> dict[str, bool]:
        return {u: Path(u).is_file() for u in uris}

    def get_file(self, uri: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(uri, dest)

    def get_dir(self, uri: str, dest: Path) -> None:
        manifest = json.loads(Path(uri).read_bytes())
        dest.mkdir(parents=True, exist_ok=True)
        for rel, meta in manifest["files"].items():
            target = ensure_inside(dest, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self._path(str(meta["digest"])), target)

    def read_bytes(self, uri: str) -> bytes:
        return Path(uri).read_bytes()

    def list_digests(self) -> set[str]:
        if not self.root.is_dir():
            return set()
        return {p.name for p in self.root.glob("??/*") if not p.name.startswith(".")}

    def delete(self, digests: set[str]) -> int:
        n = 0
        for d in digests:
            p = self._path(d)
            if p.exists():
                os.chmod(p, 0o644)
                p.unlink()
                n += 1
        return n


def _link_or_copy(src: Path, dest: Path) -> None:
    """Take a job's output into the store without copying its bytes (a model of many GB costs one hard
    link; the job's folder, and with it the other name, is deleted next) when it is a plain file of its own.
    A symlink, a file that shares its inode with one elsewhere (whose mode the store's chmod would change),
    or another filesystem: copied. A link, not a rename, so other outputs that symlink to it still resolve."""
    st = os.lstat(src)
    if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
        try:
            os.link(src, dest)
            return
        except OSError:
            pass  # another filesystem, or one without hard links
    shutil.copyfile(src, dest)
