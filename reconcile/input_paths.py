"""Refuse, by name, local input paths a digest cannot read: FIFOs, sockets, devices, dangling links, link loops.

Reading a FIFO blocks forever and a link loop or a dangling link fails deep inside the digest, so a file or
directory input is checked before it is hashed. Inside a directory the rule is `vocab.digest.tree_files`,
the one rule of directory digests and of a job's copy.
"""
from __future__ import annotations

import errno
import os
import stat

from vocab.digest import TreeError, tree_files


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _stat(path: str) -> tuple[os.stat_result | None, str | None]:
    """(stat following links, None) or (None, why it cannot be read)."""
    try:
        return os.stat(path), None
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None, f"symlink loop: {path}"
        if os.path.islink(path):
            return None, f"dangling symlink: {path} -> {os.readlink(path)}"
        if e.errno == errno.ENOENT:
            return None, f"no such file or directory: {path}"
        return None, f"cannot read {path}: {e.strerror or e}"
    except ValueError as e:  # an embedded NUL byte
        return None, f"not a usable path: {path!r} ({e})"


def unreadable_reason(location: str, want_dir: bool) -> str | None:
    """None when `location` is a regular file (want_dir False) or a folder holding only regular files and
    folders (want_dir True), links followed; else one line naming the offending path."""
    st, why = _stat(location)
    if st is None:
        return why
    if want_dir:
        if not stat.S_ISDIR(st.st_mode):
            return f"expected a directory: {location}"
        return _walk_reason(location)
    if stat.S_ISDIR(st.st_mode):
        return f"expected a file, got a directory: {location}"
    if not stat.S_ISREG(st.st_mode):
        return f"{_kind(st.st_mode)}, not a regular file: {location}"
    return None


def _walk_reason(folder: str) -> str | None:
    try:
        tree_files(folder)  # the one symlink rule of directory digests and of a job's copy
    except TreeError as e:
        return f"{os.path.join(folder, e.rel)} {e.reason}"
    except OSError as e:
        return f"cannot read {e.filename or folder}: {e.strerror or e}"
    return None
