"""Whether blobs of a local store are there unchanged: the check `LocalBlobStore.exists` makes, without the
store's models, so the no-op plan shortcut (reconcile/noop_plan.py) can make it without importing pydantic."""
from __future__ import annotations

import json
from pathlib import Path

from vocab.digest import StatCache

MANIFEST_HEAD = b'{"files":{'   # how a directory's manifest blob starts (`manifest_bytes`)


def intact(digests: StatCache, path: str | Path, digest: str) -> bool:
    """The blob is there and its bytes still hash to its digest (stat-cached)."""
    try:
        return digests.file(path) == digest
    except OSError:
        return False


def manifest_digests(path: Path) -> list[str] | None:
    """The file digests a directory's manifest names; None for a blob that is not a manifest."""
    try:
        with open(path, "rb") as f:
            if f.read(len(MANIFEST_HEAD)) != MANIFEST_HEAD:
                return None
            files = json.loads(MANIFEST_HEAD + f.read())["files"]
        return [str(meta["digest"]) for meta in files.values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def usable(digests: StatCache, root: Path, path: Path, is_dir: bool) -> bool:
    """A blob of the store at `root` is intact (a directory's manifest: it and every file it names)."""
    if not intact(digests, path, path.name):
        return False
    files = manifest_digests(path) if is_dir else None
    return files is None or all(intact(digests, root / f"{d[:2]}/{d}", d) for d in files)
