"""The BlobStore protocol: content-addressed, write-once storage of node outputs.

A blob's URI is derived from its digest (`<store>/<2 hex>/<digest>`); a directory is stored as its
files' blobs plus a manifest blob whose digest is the directory's digest.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Collection, Protocol

from pydantic import BaseModel

from vocab.errors import ProviderError


class BlobChangedError(ProviderError):
    """A stored blob's bytes no longer match its digest (or a file changed while it was being stored)."""


class StoredBlob(BaseModel):
    digest: str
    uri: str
    size: int


class BlobStore(Protocol):
    url: str

    def put_file(self, path: Path, digest: str | None = None, *, consume: bool = False) -> StoredBlob:
        """Store a file (skipped when a blob with its digest exists); `digest` if the caller already has it.
        `consume`: the caller deletes `path` next, so a store may take the file itself instead of a copy."""
        ...

    def put_bytes(self, data: bytes) -> StoredBlob: ...

    def put_dir(self, path: Path, *, consume: bool = False, confine: bool = False) -> StoredBlob:
        """Store every file of a directory and its manifest; the manifest's digest names the directory.
        Links are followed as `vocab.digest.tree_files` says (`confine`: only links that stay inside
        `path`, for a job's outputs); a directory that breaks the rule raises `TreeError`."""
        ...

    def exists(self, uris: list[str], dirs: Collection[str] = ()) -> dict[str, bool]:
        """Which of these blobs exist (batched/parallel for remote stores). `dirs`: those of `uris` that are
        stored directories (manifests); a store that checks blobs' bytes checks the files they name too."""
        ...

    def get_file(self, uri: str, dest: Path) -> None:
        """Write the blob to `dest` (a file)."""
        ...

    def get_dir(self, uri: str, dest: Path) -> None:
        """Materialise a stored directory (manifest URI) at `dest`."""
        ...

    def read_bytes(self, uri: str) -> bytes: ...

    def list_digests(self) -> set[str]:
        """Every blob digest in the store (for garbage collection)."""
        ...

    def delete(self, digests: set[str]) -> int:
        """Delete these blobs; return how many were deleted."""
        ...

    def register_user(self, user_id: str, record: bytes) -> None:
        """Record (once) that a state keeps outputs here: `record` says where that state lives."""
        ...

    def users(self) -> dict[str, bytes]:
        """user id -> record, for every state registered as keeping outputs here."""
        ...


def shard(digest: str) -> str:
    return f"{digest[:2]}/{digest}"


def is_s3(url: str) -> bool:
    return url.startswith("s3://")


def ensure_inside(base: Path, rel: str) -> Path:
    """`base/rel`, refusing names that would escape `base` (manifests come from storage we do not trust)."""
    target = (base / rel).resolve()
    if os.path.commonpath([str(base.resolve()), str(target)]) != str(base.resolve()):
        raise ValueError(f"path {rel!r} escapes {base}")
    return target
