"""Writing a file all at once: the one atomic writer (state, lock, stat cache, timelines, blob-store registry)."""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterable


def write_atomic(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Replace `path` with `data` in one step: a reader sees the old bytes or the new, never a part of them.

    `durable`: also fsync the file and its folder, so the new bytes survive a crash of the machine (the state
    and the lock); without it a crash may leave the old bytes, never torn ones."""
    write_atomic_parts(path, (data,), durable=durable)


def write_atomic_parts(path: Path, parts: Iterable[bytes], *, durable: bool = False) -> None:
    """`write_atomic` of the concatenation of `parts`, written as they come: a large document made piece by piece
    is never held whole in memory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")  # unique: threads write too
    try:
        with open(tmp, "wb") as f:
            for part in parts:
                f.write(part)
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
