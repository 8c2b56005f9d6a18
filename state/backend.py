"""The Backend protocol: where a flow's state, its lock and its journal live, as bytes.

Backends move bytes and nothing more (as Terraform's remote-state clients): compare-and-swap of the state
document, the lock and its lease, journal append and read, history. Parsing, serialising, masking, serial,
lineage, fencing and journal folding belong to the one StateStore (state/store.py). Every write is
compare-and-swap against the token (`etag`) the caller read, so no update is ever silently lost.
"""
from __future__ import annotations

import datetime as dt
import getpass
import os
import socket
import uuid
from pathlib import Path
from typing import Iterable, Protocol

from pydantic import BaseModel, Field

from vocab.errors import StateError
from state.model import now


class LockLostError(StateError):
    """This process no longer holds the lock it worked under (taken over or released by someone else)."""


class LockInfo(BaseModel):
    """Who holds a flow's lock; written into the lock object and shown when someone else wants it."""

    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    operation: str = "apply"
    who: str = Field(default_factory=lambda: _user())
    host: str = Field(default_factory=socket.gethostname)
    pid: int = Field(default_factory=os.getpid)
    created: str = Field(default_factory=now)
    run_id: str | None = None
    expires: str | None = None  # lease end (UTC ISO); renewed by the holder while it works
    # Where the pid means something: a pid names a process only on the same boot and in the same PID namespace
    # (a container with host networking shares the host name, not the pids).
    boot_id: str | None = Field(default_factory=lambda: _boot_id())
    pid_ns: str | None = Field(default_factory=lambda: _pid_ns())

    def expired(self, at: dt.datetime | None = None) -> bool:
        if not self.expires:
            return False
        at = at or dt.datetime.now(dt.timezone.utc)
        return dt.datetime.fromisoformat(self.expires) < at

    def holder_gone(self) -> bool:
        """The holding process provably no longer exists: same host, same boot, same PID namespace, and no
        process with its pid. Anything less proves nothing (a pid from another namespace names another process,
        or none), so the answer is then False."""
        if self.host != socket.gethostname() or not self.boot_id or not self.pid_ns:
            return False
        if self.boot_id != _boot_id() or self.pid_ns != _pid_ns():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def describe(self) -> str:
        lease = f", lease until {self.expires}" if self.expires else ""
        run = f", run {self.run_id}" if self.run_id else ""
        return f"lock {self.id} held by {self.who}@{self.host} (pid {self.pid}) for {self.operation} since {self.created}{run}{lease}"


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _pid_ns() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


class HistoryEntry(BaseModel):
    version_id: str
    serial: int | None = None
    lineage: str | None = None
    modified: str | None = None
    who: str | None = None
    size: int | None = None
    latest: bool = False


class Backend(Protocol):
    """Storage for per-flow state, lock and journal: bytes only (see the module doc)."""

    kind: str

    def describe(self, flow: str) -> str:
        """Where this flow's state lives (for messages), e.g. `s3://bucket/key` or a path."""
        ...

    def list_flows(self) -> list[str]: ...

    def read_bytes(self, flow: str) -> tuple[bytes | None, str | None]:
        """The state document and its version token (etag); (None, None) when the flow has no state yet."""
        ...

    def write_bytes(self, flow: str, data: bytes, expected_etag: str | None, *, serial: int, lineage: str,
                    lock_id: str | None = None) -> str | None:
        """Write if the stored token still equals `expected_etag` (None: must not exist); the new token, or None
        when the condition did not hold. `lock_id`: a backend that can check the lock in the same step as the
        write (local: under its mutex) refuses (None) unless that lock is held. An ambiguous failure (no
        answer) raises: the caller reads back to learn what happened. The previous version stays recoverable."""
        ...

    def write_parts(self, flow: str, parts: Iterable[bytes], expected_etag: str | None, *, serial: int,
                    lineage: str, lock_id: str | None = None) -> str | None:
        """`write_bytes` of the concatenation of `parts` (consumed only once the condition holds). A backend that
        can stream (local) never holds the document whole: a 10,000-node state is 30+ MB."""
        ...

    def lock(self, flow: str, info: LockInfo, *, timeout: float = 0.0, break_expired: bool = False) -> LockInfo:
        """Take the flow's lock or raise LockHeldError naming the holder (polls up to `timeout` seconds).
        A live lease is never broken; `break_expired` takes over a lock whose lease ended (or whose holder
        provably died: LockInfo.holder_gone). Recognises its own lock (by id) after an unanswered write."""
        ...

    def renew(self, flow: str, info: LockInfo) -> LockInfo:
        """Extend the lease of a lock we hold; StateError when it is not ours any more."""
        ...

    def read_lock(self, flow: str) -> LockInfo | None: ...

    def unlock(self, flow: str, lock_id: str) -> None:
        """Release (or force-release) the lock with this id; StateError if the id does not match."""
        ...

    def history(self, flow: str) -> list[HistoryEntry]: ...

    def read_version_bytes(self, flow: str, version_id: str) -> tuple[bytes, str]:
        """One earlier version's bytes and where they came from (for messages)."""
        ...

    def journal_append(self, flow: str, data: bytes, durable: bool = True) -> None:
        """Make one journal record durable before returning (O(1): never rewrites the state).

        `durable=False`: written (a crash of this process keeps it) but not forced to disk; for records whose
        subject dies with the machine anyway (a local job's start)."""
        ...

    def journal_read(self, flow: str) -> Iterable[bytes]:
        """The records in append order, up to the first damaged one (a torn last write); read as iterated where
        the backend can (the journal of a large apply is tens of MB)."""
        ...

    def journal_clear(self, flow: str, lock_id: str | None = None) -> None:
        """Delete the journal. With `lock_id`, only while that lock is held: a holder that was taken over (paused
        between its state write and this) must not delete the journal of the run that took over."""
        ...
