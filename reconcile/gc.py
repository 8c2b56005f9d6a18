"""`flows cache gc`: delete only the blobs that it can prove no state references.

A blob store may be shared: several projects, each with its own state key, one blob prefix (the layout the
README suggests for a team). So the store keeps a list of its users: every apply registers the location of
its state (an S3 key template, or a local folder on a host) in the store (`users/<id>.json`). gc reads every
flow of every registered state under its lock (so no apply can be storing outputs its state does not name
yet), and keeps whatever any of them references. A user it cannot read from here (another host's local
folder, a bucket it may not read) makes the proof impossible: gc then only shows what it would delete, and
names the states it could not read.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from blake3 import blake3

from vocab.errors import FlowsError
from reconcile.state_surgery import evict, referenced_digests
from state.backend import Backend
from state.local import LocalBackend
from state.store import Lease, StateStore

if TYPE_CHECKING:
    from reconcile.workspace import Workspace


def state_location(ws: Workspace) -> dict[str, Any]:
    """Where this project's state lives, as a record another project can open (no credentials in it)."""
    b, cfg = ws.backend, ws.config.backend
    if isinstance(b, LocalBackend):
        return {"type": "local", "host": socket.gethostname(), "path": str(b.root.resolve())}
    from state.s3 import S3Backend  # the only other kind; already imported when configured
    assert isinstance(b, S3Backend), type(b)
    return {"type": "s3", "bucket": b.bucket, "key": b.template, "region": cfg.region,
            "endpoint_url": cfg.endpoint_url}


def describe_location(loc: dict[str, Any]) -> str:
    if loc.get("type") == "s3":
        return f"s3://{loc.get('bucket')}/{loc.get('key')}"
    return f"{loc.get('host')}:{loc.get('path')}"


def user_id(loc: dict[str, Any]) -> str:
    return blake3(json.dumps(loc, sort_keys=True).encode()).hexdigest()[:24]


def register(ws: Workspace) -> None:
    """Record in the blob store that this project's state uses it (once; cheap when already there)."""
    loc = state_location(ws)
    ws.blobs.register_user(user_id(loc), json.dumps(loc, sort_keys=True).encode())


def _open(ws: Workspace, loc: dict[str, Any]) -> tuple[Backend | None, str]:
    """A backend for a registered state, or None and why it cannot be read from here."""
    if loc == state_location(ws):
        return ws.backend, ""
    try:
        if loc.get("type") == "local":
            if loc.get("host") != socket.gethostname():
                return None, "a local state on another host"
            if not Path(str(loc.get("path"))).is_dir():
                return None, "its folder is gone (delete its entry if that project is gone)"
            backend: Backend = LocalBackend(str(loc["path"]), lease_seconds=ws.config.backend.lease_seconds)
        elif loc.get("type") == "s3":
            from state.s3 import S3Backend
            backend = S3Backend(bucket=str(loc["bucket"]), key=str(loc["key"]), region=loc.get("region"),
                                endpoint_url=loc.get("endpoint_url"), profile=ws.config.backend.profile,
                                lease_seconds=ws.config.backend.lease_seconds)
        else:
            return None, f"an unknown kind of state ({loc.get('type')!r})"
        backend.list_flows()  # can we read it at all?
        return backend, ""
    except FlowsError as e:
        return None, e.message


@dataclasses.dataclass
class GcReport:
    dry_run: bool
    evicted: list[str]
    unreferenced: list[str]
    deleted: int
    kept: int
    states: list[str]                 # every state read (location), this project's first
    unreadable: dict[str, str]        # location -> why it could not be read


@contextlib.contextmanager
def _locked_all(stores: list[StateStore]) -> Iterator[list[Lease]]:
    """Every flow's lock at once, in one global order (so two gc runs cannot deadlock)."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(s.locked("cache gc")) for s in sorted(stores, key=lambda s: s.describe())]


def collect(ws: Any, flow: str, *, keep_last: int | None, dry_run: bool) -> GcReport:
    """Evict old cache entries of `flow` (--keep-last), then delete the blobs no registered state references.
    Forced to a dry run when a registered state cannot be read from here."""
    register(ws)  # a store first used by an older flows has no entry for us yet
    users = {uid: json.loads(data) for uid, data in ws.blobs.users().items()}
    backends: list[tuple[str, Any]] = []
    unreadable: dict[str, str] = {}
    for loc in sorted(users.values(), key=lambda loc: (loc != state_location(ws), describe_location(loc))):
        backend, why = _open(ws, loc)
        if backend is None:
            unreadable[describe_location(loc)] = why
        else:
            backends.append((describe_location(loc), backend))
    dry_run = dry_run or bool(unreadable)
    stores = [StateStore(b, name, ws.config.backend.lease_seconds) if b is not ws.backend else ws.store(name)
              for _, b in backends for name in sorted(set(b.list_flows()) | ({flow} if b is ws.backend else set()))]
    evicted: list[str] = []
    referenced: set[str] = set()
    if dry_run:  # read only: no lock taken, nothing written
        for store in stores:
            st = store.view().state
            if store.backend is ws.backend and store.flow == flow and keep_last is not None:
                st = st.model_copy(deep=True)
                evicted = evict(st, keep_last)
            referenced |= referenced_digests(st, ws.blobs)
        stored = ws.blobs.list_digests()
        unreferenced = stored - referenced
        return GcReport(True, evicted, sorted(unreferenced), 0, len(stored & referenced),
                        [d for d, _ in backends], unreadable)
    with _locked_all(stores) as leases:
        for lease in leases:
            st = lease.state
            if lease.backend is ws.backend and lease.flow == flow and keep_last is not None:
                st = st.model_copy(deep=True)
                evicted = evict(st, keep_last)
                if evicted:
                    lease.commit(st)
            referenced |= referenced_digests(st, ws.blobs)
        stored = ws.blobs.list_digests()
        unreferenced = stored - referenced
        deleted = ws.blobs.delete(unreferenced)
    return GcReport(False, evicted, sorted(unreferenced), deleted, len(stored & referenced),
                    [d for d, _ in backends], unreadable)
