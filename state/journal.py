"""The journal: one durable record per event of a run, folded into the state (serial + 1) later.

Folding is a pure function of (state, records) and idempotent, so a crash between writing the
folded state and clearing the journal only folds the same records again.
"""
from __future__ import annotations

from typing import Any

from state.model import CacheEntry, NodeRecord, RunRecord, State, now


def run_started(run: RunRecord) -> dict[str, Any]:
    return {"type": "run_started", "run": run.model_dump(mode="json")}


def run_resumed(run_id: str) -> dict[str, Any]:
    return {"type": "run_resumed", "run_id": run_id, "at": now()}


def node_started(run_id: str, address: str, key: str | None, job_id: str | None, attempt: int) -> dict[str, Any]:
    return {"type": "node_started", "run_id": run_id, "address": address, "key": key, "job_id": job_id,
            "attempt": attempt, "at": now()}


def node_finished(run_id: str, node: NodeRecord, cache: CacheEntry | None) -> dict[str, Any]:
    return {"type": "node_finished", "run_id": run_id, "node": node.model_dump(mode="json"),
            "cache": cache.model_dump(mode="json") if cache else None}


def run_finished(run_id: str, outcome: str, counts: dict[str, int], error: str | None = None) -> dict[str, Any]:
    return {"type": "run_finished", "run_id": run_id, "outcome": outcome, "counts": counts, "error": error,
            "at": now()}


def fold(state: State, records: list[dict[str, Any]]) -> State:
    """Apply journal records to a copy of `state` (serial is the writer's business)."""
    out = state.model_copy(deep=True)
    for rec in records:
        kind = rec.get("type")
        if kind == "run_started":
            run = RunRecord.model_validate(rec["run"])
            if run.id not in out.runs:
                out.runs[run.id] = run
        elif kind == "run_resumed":
            run = out.runs.get(rec["run_id"])
            if run is not None:
                run.outcome = "running"
                run.recovered_at = rec.get("at")
        elif kind == "node_started":
            run = out.runs.get(rec["run_id"])
            if run is not None:
                run.jobs[rec["address"]] = {"key": rec.get("key"), "job_id": rec.get("job_id"),
                                           "attempt": rec.get("attempt"), "started_at": rec.get("at"),
                                           "status": "running"}
        elif kind == "node_finished":
            node = NodeRecord.model_validate(rec["node"])
            out.nodes[node.address] = node
            if rec.get("cache"):
                entry = CacheEntry.model_validate(rec["cache"])
                out.cache[entry.key] = entry
            run = out.runs.get(rec["run_id"])
            if run is not None and node.address in run.jobs:
                run.jobs[node.address]["status"] = node.status
                if node.job_id:
                    run.jobs[node.address]["job_id"] = node.job_id
        elif kind == "run_finished":
            run = out.runs.get(rec["run_id"])
            if run is not None:
                run.outcome = rec["outcome"]
                run.counts = rec.get("counts") or {}
                run.finished_at = rec.get("at")
                run.error = rec.get("error")
    return out
