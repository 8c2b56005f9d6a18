"""Writing a file all at once: the one atomic writer (state, lock, stat cache, timelines, blob-store registry)."""
from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_atomic(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Replace `path` with `data` in one step: a reader sees the old bytes or the new, never a part of them.

    `durable`: also fsync the file and its folder, so the new bytes survive a crash of the machine (the state
    and the lock); without it a crash may leave the old bytes, never torn ones."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")  # unique: threads write too
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
