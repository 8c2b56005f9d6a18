"""The local file backend (the default): `.flows/state/<flow>.json` with backups, a lock file, a journal."""
from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import json
import os
import re
import threading
import time
import weakref
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

from blake3 import blake3

import contextlib

from vocab.errors import LockHeldError, StateError
from vocab.files import write_atomic, write_atomic_parts
from state.backend import HistoryEntry, LockInfo, LockLostError
from state.local_layout import ETAG_CHARS, FLOW_NAME, JOURNAL_SUFFIX, check_flow_name, etag_of, flow_file, peek

__all__ = ["FLOW_NAME", "LocalBackend", "check_flow_name", "etag_of"]

KEEP_BACKUPS = 50
POLL_SECONDS = 0.2


_SERIAL = re.compile(rb'"serial"\s*:\s*(\d+)')


class LocalBackend:
    kind = "local"

    def __init__(self, root: str | os.PathLike[str], lease_seconds: float = 60.0) -> None:
        self.root = Path(root)
        self.lease_seconds = lease_seconds
        self._paths: dict[tuple[str, str], Path] = {}  # (flow, suffix) -> its file: asked at every journal record
        self._journal_fds: dict[str, int] = {}  # flow -> its journal, kept open (see `_journal_fd`)
        self._journal_lock = threading.Lock()
        self._syncs: dict[str, _GroupSync] = {}  # flow -> its journal's group commit
        weakref.finalize(self, _close_all, self._journal_fds)

    # -- paths -------------------------------------------------------------------------------
    def _path(self, flow: str, suffix: str = ".json") -> Path:
        path = self._paths.get((flow, suffix))
        if path is None:  # (the name is checked once, when first seen)
            path = self._paths[flow, suffix] = flow_file(self.root, flow, suffix)
        return path

    def peek(self, flow: str) -> tuple[str | None, bool]:
        """(the state's etag, whether a journal is waiting): what the no-op plan shortcut checks."""
        return peek(self.root, flow)

    def describe(self, flow: str) -> str:
        return str(self._path(flow))

    def _ensure_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _mutex(self, flow: str) -> Iterator[None]:
        """Serialises the check-and-swap of a write (and lock creation) between processes. Held for moments
        (a process stopped inside it, kill -STOP, holds the others up until it is continued)."""
        self._ensure_root()
        with open(self._path(flow, ".mutex"), "a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    # -- state -------------------------------------------------------------------------------
    def list_flows(self) -> list[str]:
        if not self.root.is_dir():
            return []
        names = {p.stem for p in self.root.glob("*.json") if not p.name.startswith(".")}
        # A flow whose first apply crashed has only a journal so far.
        names |= {p.name[:-len(JOURNAL_SUFFIX)] for p in self.root.glob("*" + JOURNAL_SUFFIX)}
        return sorted(names)

    def read_bytes(self, flow: str) -> tuple[bytes | None, str | None]:
        try:
            data = self._path(flow).read_bytes()
        except FileNotFoundError:
            return None, None
        return data, etag_of(data)

    def _current_etag(self, path: Path) -> str | None:
        try:
            with path.open("rb") as f:
                return _etag_of_parts(_file_parts(f))
        except FileNotFoundError:
            return None

    def write_bytes(self, flow: str, data: bytes, expected_etag: str | None, *, serial: int, lineage: str,
                    lock_id: str | None = None) -> str | None:
        return self.write_parts(flow, (data,), expected_etag, serial=serial, lineage=lineage, lock_id=lock_id)

    def write_parts(self, flow: str, parts: Iterable[bytes], expected_etag: str | None, *, serial: int,
                    lineage: str, lock_id: str | None = None) -> str | None:
        path = self._path(flow)
        with self._mutex(flow):  # the lock file is created and removed under this mutex too: one atomic step
            if lock_id is not None:
                held = self.read_lock(flow)
                if held is None or held.id != lock_id:
                    return None
            if self._current_etag(path) != expected_etag:
                return None
            if path.exists():
                self._keep_previous(flow, path)
            digest = blake3()
            write_atomic_parts(path, _hashed(parts, digest), durable=True)
        return digest.hexdigest()[:ETAG_CHARS]

    def _keep_previous(self, flow: str, path: Path) -> None:
        """The version about to be replaced, as .bak and in the history: copied, never read whole."""
        with path.open("rb") as f:
            write_atomic_parts(path.with_name(path.name + ".bak"), _file_parts(f), durable=True)
        self._keep_history(flow, path)

    def _history_dir(self, flow: str) -> Path:
        return self.root / "history" / check_flow_name(flow)

    def _keep_history(self, flow: str, path: Path) -> None:
        folder = self._history_dir(flow)
        folder.mkdir(parents=True, exist_ok=True)
        with path.open("rb") as f:
            # the serial sits at the top of the file: parsing a 30 MB state for it costs 100+ MB
            found = _SERIAL.search(f.read(4096))
            serial = int(found.group(1)) if found else 0
            f.seek(0)
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            write_atomic_parts(folder / f"{stamp}-s{serial}.json", _file_parts(f), durable=True)
        versions = sorted(folder.glob("*.json"))
        for old in versions[:-KEEP_BACKUPS]:
            old.unlink(missing_ok=True)

    def history(self, flow: str) -> list[HistoryEntry]:
        entries: list[HistoryEntry] = []
        path = self._path(flow)
        if path.exists():
            entries.append(self._entry(path, "latest", latest=True))
        folder = self._history_dir(flow)
        if folder.is_dir():
            for p in sorted(folder.glob("*.json"), reverse=True):
                entries.append(self._entry(p, p.stem))
        return entries

    def _entry(self, path: Path, version_id: str, latest: bool = False) -> HistoryEntry:
        serial = lineage = None
        try:
            raw = json.loads(path.read_bytes())
            serial, lineage = raw.get("serial"), raw.get("lineage")
        except ValueError:
            pass
        st = path.stat()
        modified = dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc).isoformat(timespec="seconds")
        return HistoryEntry(version_id=version_id, serial=serial, lineage=lineage, modified=modified,
                            size=st.st_size, latest=latest)

    def read_version_bytes(self, flow: str, version_id: str) -> tuple[bytes, str]:
        path = self._path(flow) if version_id == "latest" else self._history_dir(flow) / f"{version_id}.json"
        if "/" in version_id or not path.is_file():
            if version_id == "latest":
                raise StateError(f"flow '{flow}' has no state", file=str(path))
            raise StateError(f"no version '{version_id}' of flow '{flow}' (see `flows state history`)")
        return path.read_bytes(), str(path)

    # -- lock --------------------------------------------------------------------------------
    def read_lock(self, flow: str) -> LockInfo | None:
        try:
            return LockInfo.model_validate_json(self._path(flow, ".lock").read_bytes())
        except FileNotFoundError:
            return None
        except ValueError:
            return LockInfo(id="unreadable", who="?", host="?", pid=0, created="?")

    def _lease(self, info: LockInfo) -> LockInfo:
        end = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=self.lease_seconds)
        return info.model_copy(update={"expires": end.isoformat(timespec="milliseconds")})

    def lock(self, flow: str, info: LockInfo, *, timeout: float = 0.0, break_expired: bool = False) -> LockInfo:
        self._ensure_root()
        path = self._path(flow, ".lock")
        deadline = time.monotonic() + timeout
        while True:
            with self._mutex(flow):
                held = self.read_lock(flow)
                if held is not None and break_expired and (held.expired() or held.holder_gone()):
                    path.unlink(missing_ok=True)
                    info = info.model_copy(update={"operation": f"{info.operation} (broke {held.id})"})
                    held = None
                if held is None:
                    info = self._lease(info)
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                    with os.fdopen(fd, "wb") as f:
                        f.write(info.model_dump_json().encode())
                        f.flush()
                        os.fsync(f.fileno())
                    return info
            if time.monotonic() >= deadline:
                raise LockHeldError(f"state is locked: {held.describe()}. If that process is gone, run "
                                    f"`flows state unlock {held.id}`", file=str(path))
            time.sleep(POLL_SECONDS)  # poll: the holder releases by deleting the file

    def renew(self, flow: str, info: LockInfo) -> LockInfo:
        with self._mutex(flow):
            held = self.read_lock(flow)
            if held is None or held.id != info.id:
                raise LockLostError(f"lost the state lock {info.id} (it was broken by someone else)",
                                 file=str(self._path(flow, ".lock")))
            info = self._lease(info)
            write_atomic(self._path(flow, ".lock"), info.model_dump_json().encode(), durable=True)
            return info

    def unlock(self, flow: str, lock_id: str) -> None:
        with self._mutex(flow):
            held = self.read_lock(flow)
            if held is None:
                raise StateError(f"flow '{flow}' is not locked")
            if held.id != lock_id:
                raise StateError(f"lock id {lock_id} does not match the held {held.describe()}")
            self._path(flow, ".lock").unlink(missing_ok=True)

    # -- journal -----------------------------------------------------------------------------
    def journal_append(self, flow: str, data: bytes, durable: bool = True) -> None:
        line = data.rstrip(b"\n") + b"\n"
        if not durable:  # one write under the lock, on the kept descriptor (no duplicate: nothing waits after it)
            with self._journal_lock:
                os.write(self._kept_journal_fd(flow), line)
            return
        fd = self._journal_fd(flow)
        try:
            os.write(fd, line)
            self._sync(flow, fd)
        finally:
            os.close(fd)

    def _sync(self, flow: str, fd: int) -> None:
        """Return once the journal is on disk up to this caller's record (group commit): an fsync that started
        after the record was written covers it, so records written while one fsync runs share the next one
        instead of each waiting for its own (an fsync costs ~1.5 ms here)."""
        sync = self._syncs.get(flow) or self._syncs.setdefault(flow, _GroupSync())  # (one made once, not per record)
        with sync.cond:
            sync.written += 1
            mine = sync.written
            while sync.synced < mine and sync.running:
                sync.cond.wait()
            if sync.synced >= mine:
                return
            sync.running, upto = True, sync.written  # every record counted so far is in the file
        done = False
        try:
            os.fsync(fd)
            done = True
        finally:
            with sync.cond:
                sync.running = False
                if done:
                    sync.synced = max(sync.synced, upto)
                sync.cond.notify_all()  # (after a failed fsync a waiter tries its own)

    def _journal_fd(self, flow: str) -> int:
        """A descriptor of the flow's journal (O_APPEND: every record lands whole at its end), for one record.
        The file stays open between records: opening it per record waited behind the other workers' fsyncs
        (its inode lock), ~0.9 ms a record. Each record gets its own duplicate, so closing the kept one (the
        journal cleared) never pulls a descriptor from under a write; a journal removed by someone else (no
        name left) is opened again."""
        with self._journal_lock:
            return os.dup(self._kept_journal_fd(flow))

    def _kept_journal_fd(self, flow: str) -> int:
        """Under the journal lock: the descriptor kept open for the flow's journal (opened again when someone
        else removed the file: no name left)."""
        fd = self._journal_fds.get(flow)
        if fd is not None and os.fstat(fd).st_nlink == 0:
            os.close(self._journal_fds.pop(flow))
            fd = None
        if fd is None:
            path, flags = self._path(flow, JOURNAL_SUFFIX), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            try:
                fd = os.open(path, flags, 0o644)
            except FileNotFoundError:  # the state folder is made on first need, not checked on every record
                self._ensure_root()
                fd = os.open(path, flags, 0o644)
            self._journal_fds[flow] = fd
        return fd

    def _forget_journal_fd(self, flow: str) -> None:
        with self._journal_lock:
            fd = self._journal_fds.pop(flow, None)
        if fd is not None:
            os.close(fd)

    def journal_read(self, flow: str) -> Iterator[bytes]:
        """Line by line: the journal of a 10,000-node apply is tens of MB, and reading it whole (plus its split
        lines) while folding it held two or three copies of it at once."""
        try:
            f = self._path(flow, JOURNAL_SUFFIX).open("rb")
        except FileNotFoundError:
            return
        with f:
            for line in f:
                # A line is complete only if it ends with a newline: a crash mid-write leaves the last one torn,
                # and everything before it is intact.
                if line.endswith(b"\n") and line != b"\n":
                    yield line[:-1]

    def journal_clear(self, flow: str, lock_id: str | None = None) -> None:
        # Under the mutex the lock is taken under too: a takeover (and so any record of the new holder)
        # comes either before this check or after the journal is gone.
        with self._mutex(flow):
            if lock_id is not None:
                held = self.read_lock(flow)
                if held is None or held.id != lock_id:
                    return
            self._path(flow, JOURNAL_SUFFIX).unlink(missing_ok=True)
            self._forget_journal_fd(flow)


@dataclasses.dataclass
class _GroupSync:
    cond: threading.Condition = dataclasses.field(default_factory=threading.Condition)
    written: int = 0      # records written (numbered in order)
    synced: int = 0       # records known to be on disk
    running: bool = False  # an fsync is under way


def _close_all(fds: dict[str, int]) -> None:
    for fd in fds.values():
        os.close(fd)
    fds.clear()


def _file_parts(f: BinaryIO, size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := f.read(size):
        yield chunk


def _hashed(parts: Iterable[bytes], digest: Any) -> Iterator[bytes]:
    for part in parts:
        digest.update(part)
        yield part


def _etag_of_parts(parts: Iterable[bytes]) -> str:
    """`etag_of` of the concatenation of `parts`."""
    digest = blake3()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()[:ETAG_CHARS]
