"""The Backend protocol: where a flow's state, its lock and its journal live.

Backends know nothing of flows beyond the state model. Every write is compare-and-swap against
the token (`etag`) the caller read, so no update is ever silently lost.
"""
from __future__ import annotations

import datetime as dt
import getpass
import os
import socket
import uuid
from typing import Any, Protocol

from pydantic import BaseModel, Field

from state.model import State, now


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

    def expired(self, at: dt.datetime | None = None) -> bool:
        if not self.expires:
            return False
        at = at or dt.datetime.now(dt.timezone.utc)
        return dt.datetime.fromisoformat(self.expires) < at

    def holder_gone(self) -> bool:
        """Same host and the holding process no longer exists."""
        if self.host != socket.gethostname():
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
    """Storage for per-flow state, lock and journal."""

    kind: str

    def describe(self, flow: str) -> str:
        """Where this flow's state lives (for messages), e.g. `s3://bucket/key` or a path."""
        ...

    def list_flows(self) -> list[str]: ...

    def read(self, flow: str) -> tuple[State | None, str | None]:
        """The state and its version token (etag); (None, None) when the flow has no state yet."""
        ...

    def write(self, flow: str, state: State, expected_etag: str | None) -> str:
        """Write if the stored token still equals `expected_etag` (None: must not exist); return the new token.

        A lost race raises StateError; the previous version stays recoverable (backup / object version).
        """
        ...

    def lock(self, flow: str, info: LockInfo, *, timeout: float = 0.0, break_expired: bool = False) -> LockInfo:
        """Take the flow's lock or raise LockHeldError naming the holder (polls up to `timeout` seconds)."""
        ...

    def renew(self, flow: str, info: LockInfo) -> LockInfo:
        """Extend the lease of a lock we hold."""
        ...

    def read_lock(self, flow: str) -> LockInfo | None: ...

    def unlock(self, flow: str, lock_id: str) -> None:
        """Release (or force-release) the lock with this id; StateError if the id does not match."""
        ...

    def history(self, flow: str) -> list[HistoryEntry]: ...

    def read_version(self, flow: str, version_id: str) -> State: ...

    def journal_append(self, flow: str, record: dict[str, Any], durable: bool = True) -> None:
        """Make one journal record durable before returning (O(1): never rewrites the state).

        `durable=False`: written (a crash of this process keeps it) but not forced to disk; for records whose
        subject dies with the machine anyway (a local job's start)."""
        ...

    def journal_read(self, flow: str) -> list[dict[str, Any]]: ...

    def journal_clear(self, flow: str) -> None: ...
