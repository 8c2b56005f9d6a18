"""The journal: one durable, typed record per event of a run, folded into the state (serial + 1) later.

Records are a versioned pydantic discriminated union on `type` (as Dagster's typed events): `v` says the
record schema, `fence` the lock generation of the writer. `parse_record` is the back-compat hook: a record
written before versioning (no `v`) has the same fields and is read as version 1 without a fence; a record
from a newer flows is refused with a clear error.

Folding is a pure function of (state, records) and idempotent, so a crash between writing the folded
state and clearing the journal only folds the same records again. A record whose writer had lost the
lock (its fence is older than the state's) adds only its cache entry: a finished result is kept where it
cannot mislead, but the node records and runs stay those of the legitimate holder.
"""
from __future__ import annotations

import json
from typing import Annotated, Any, Iterable, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from state.fingerprint_text import STORED
from state.model import Approval, CacheEntry, GateWait, NodeRecord, RunRecord, State, now
from vocab.errors import StateError

# 2: `gate_approved` records, `waiting` in `run_finished` (approval gates); 3: fingerprints as their JSON text
JOURNAL_VERSION = 3


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")
    v: int = JOURNAL_VERSION
    fence: int | None = None   # the writer's lock generation (None: written before fencing existed)


class RunStarted(_Record):
    type: Literal["run_started"] = "run_started"
    run: RunRecord


class RunResumed(_Record):
    type: Literal["run_resumed"] = "run_resumed"
    run_id: str
    at: str = Field(default_factory=now)


class NodeStarting(_Record):
    """The intent to start a job that outlives this process: recover finds it by run, node and attempt."""

    type: Literal["node_starting"] = "node_starting"
    run_id: str
    address: str
    key: str | None = None
    attempt: int = 1
    at: str = Field(default_factory=now)


class NodeStarted(_Record):
    type: Literal["node_started"] = "node_started"
    run_id: str
    address: str
    key: str | None = None
    job_id: str | None = None
    attempt: int = 1
    at: str = Field(default_factory=now)


class NodeFinished(_Record):
    type: Literal["node_finished"] = "node_finished"
    run_id: str
    node: NodeRecord
    cache: CacheEntry | None = None


class GateApproved(_Record):
    """A person approved an approval gate of the run: durable at once, so a kill after it keeps the approval."""

    type: Literal["gate_approved"] = "gate_approved"
    run_id: str
    name: str
    approval: Approval


class RunFinished(_Record):
    type: Literal["run_finished"] = "run_finished"
    run_id: str
    outcome: str
    counts: dict[str, int] = Field(default_factory=dict)
    error: str | None = None
    at: str = Field(default_factory=now)
    waiting: dict[str, GateWait] = Field(default_factory=dict)  # outcome `waiting`: the unanswered gates


JournalRecord = Annotated[Union[RunStarted, RunResumed, NodeStarting, NodeStarted, NodeFinished, GateApproved,
                                RunFinished], Field(discriminator="type")]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(JournalRecord)


def parse_record(data: bytes | str | dict[str, Any], source: str) -> JournalRecord:
    """One record from its stored form; upgrades an older record, refuses a newer or unknown one."""
    raw = json.loads(data) if isinstance(data, (bytes, str)) else data
    if not isinstance(raw, dict):
        raise StateError("a journal record is not a JSON object", file=source)
    version = raw.get("v", 1)  # version 0 (no `v`) had the fields of version 1, without a fence
    if not isinstance(version, int) or version > JOURNAL_VERSION:
        raise StateError(f"journal record version {version} was written by a newer flows; this flows reads up "
                         f"to version {JOURNAL_VERSION}. Upgrade flows.", file=source)
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise StateError(f"journal record {raw.get('type')!r} does not match the schema: {loc}: {first['msg']}",
                         file=source) from None


def dump_record(record: JournalRecord) -> str:
    """A journal line: fingerprints as their text, as the state document stores them."""
    return record.model_dump_json(exclude_none=False, context=STORED)


def fold(state: State, records: Iterable[JournalRecord], *, copy: bool = True) -> State:
    """Apply journal records to a copy of `state` (serial is the store's business); with copy=False, to `state`
    itself (an apply's own state at its end: a deep copy of 10,000 nodes costs seconds and doubles the memory)."""
    out = state.model_copy(deep=True) if copy else state
    for rec in records:
        stale = rec.fence is not None and rec.fence < out.fence
        if isinstance(rec, NodeFinished):
            node, cache = _held_or_read(out, rec)
            if cache is not None and not (stale and cache.key in out.cache):
                out.cache[cache.key] = cache
            if stale:
                continue
            out.nodes[node.address] = node
            run = out.runs.get(rec.run_id)
            if run is not None and rec.node.address in run.jobs:
                run.jobs[rec.node.address]["status"] = rec.node.status
                if rec.node.job_id:
                    run.jobs[rec.node.address]["job_id"] = rec.node.job_id
            continue
        if stale:
            continue
        if isinstance(rec, RunStarted):
            if rec.run.id not in out.runs:
                out.runs[rec.run.id] = rec.run.model_copy(deep=True)
        elif isinstance(rec, RunResumed):
            run = out.runs.get(rec.run_id)
            if run is not None:
                run.outcome = "running"
                run.recovered_at = rec.at
        elif isinstance(rec, NodeStarted):
            run = out.runs.get(rec.run_id)
            if run is not None:
                run.jobs[rec.address] = {"key": rec.key, "job_id": rec.job_id, "attempt": rec.attempt,
                                         "started_at": rec.at, "status": "running"}
        elif isinstance(rec, GateApproved):
            run = out.runs.get(rec.run_id)
            if run is not None:
                run.approvals.setdefault(rec.name, rec.approval)  # the first approval stands
                run.waiting.pop(rec.name, None)
        elif isinstance(rec, RunFinished):
            run = out.runs.get(rec.run_id)
            if run is not None:
                run.outcome = rec.outcome  # type: ignore[assignment]
                run.counts = rec.counts
                run.finished_at = rec.at
                run.error = rec.error
                # a gate still unanswered keeps the time it first waited (its timeout runs from then)
                run.waiting = {name: run.waiting.get(name, wait) if run.waiting.get(name, wait).address == wait.address
                               else wait for name, wait in rec.waiting.items()}
    return out


def _held_or_read(state: State, rec: NodeFinished) -> tuple[NodeRecord, CacheEntry | None]:
    """The node record and cache entry to fold: those `state` already holds when they are equal to the ones read
    (an apply's own state at its end holds every record it journaled; the copies read back, parsed afresh, took as
    much memory again). Only equal content is shared, so the folded state is the same either way."""
    node = rec.node
    held = state.nodes.get(node.address)
    if held is not None and held == node:
        node = held
    cache = rec.cache
    if cache is None:
        return node, None
    held_entry = state.cache.get(cache.key)
    if held_entry is not None and held_entry == cache:
        return node, held_entry
    if cache.fingerprint == node.fingerprint:
        cache.fingerprint = node.fingerprint  # one copy, not two, of each read-back fingerprint
    return node, cache


def unjournaled_starts(records: list[JournalRecord], run_id: str) -> dict[str, NodeStarting]:
    """address -> the intent to start a job (`node_starting`) that a dead process journaled without living to
    journal the job's id: the job may or may not exist."""
    pending: dict[str, NodeStarting] = {}
    for rec in records:
        if getattr(rec, "run_id", None) != run_id:
            continue
        if isinstance(rec, NodeStarting):
            pending[rec.address] = rec
        elif isinstance(rec, NodeStarted):
            pending.pop(rec.address, None)
        elif isinstance(rec, NodeFinished):
            pending.pop(rec.node.address, None)
    return pending
