"""A run's timeline: per node when it was queued, started and finished, its outcome and why it ran.

`apply` writes it beside the run's logs (`<logs>/<flow>/<run id>/timeline.json`, masked) when the run ends;
`flows runs show RUN --html FILE` draws it (`reconcile.render_run`). A run whose timeline file is not on this
machine (applied elsewhere, or before timelines existed) is rebuilt from the state's records of that run, with
what they hold: times, outcomes, job ids and attempts, but no plan reasons.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from vocab.files import write_atomic_parts
from vocab.masking import json_masked, secret_values

if TYPE_CHECKING:
    from reconcile.graph import FlowGraph
    from reconcile.plan_model import Plan
    from state.model import RunRecord, State

TIMELINE_FILE = "timeline.json"
TIMELINE_VERSION = 1


def _iso(wall: float | None) -> str | None:
    if wall is None:
        return None
    return dt.datetime.fromtimestamp(wall, dt.timezone.utc).isoformat(timespec="milliseconds")


def timeline_path(logs_dir: Path, flow: str, run_id: str) -> Path:
    return logs_dir / flow / run_id / TIMELINE_FILE


def write_from_outcomes(path: Path, *, graph: FlowGraph, plan: Plan, run: RunRecord, outcomes: dict[str, Any],
                        state: State | None) -> None:
    """The timeline of a run that just ended, from the scheduler's outcomes, written node by node (masked,
    atomically): the whole timeline of a 10,000-node run, its masked copy and its text were tens of MB at once at
    the very end of the apply. A timeline is a convenience: failing to write one never fails the run."""
    head = {"version": TIMELINE_VERSION, "run_id": run.id, "flow": run.flow}
    offset = time.time() - time.monotonic()
    entries = ((address, node_entry(address, o, offset, graph=graph, plan=plan, run=run, state=state))
               for address, o in outcomes.items())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic_parts(path, _json_parts(head, "nodes", entries))
    except OSError:
        pass


def _json_parts(head: dict[str, Any], last: str, items: Iterator[tuple[str, Any]]) -> Iterator[bytes]:
    """`redact_obj({**head, last: dict(items)})` as JSON text, encoded, in pieces: one line per item."""
    values = secret_values()  # (once for the document, not twice per item)
    text = json_masked({**head, last: {}}, values)
    yield text[:-len("{}}")].encode()
    sep = "{\n"
    for key, value in items:
        yield f"{sep}{json_masked(key, values)}: {json_masked(value, values)}".encode()
        sep = ",\n"
    yield ("{}}" if sep == "{\n" else "\n}}").encode()


def node_entry(address: str, o: Any, offset: float, *, graph: FlowGraph, plan: Plan, run: RunRecord,
               state: State | None) -> dict[str, Any]:
    """One node of a run that just ended, from its scheduler outcome (`offset`: monotonic clock → wall clock)."""
    change = plan.node(address)
    node = graph.nodes.get(address)
    rec = state.nodes.get(address) if state is not None else None
    mine = rec is not None and rec.run_id == run.id
    return {
        "address": address, "action": o.action, "result": o.result,
        "queued_at": _iso(o.queued + offset if o.queued is not None else None),
        "started_at": _iso(o.started + offset if o.started is not None else None),
        "finished_at": _iso(o.finished + offset if o.finished is not None else None),
        "job_id": o.job_id, "attempts": o.attempts, "detail": o.detail,
        "reasons": [r.message for r in change.reasons] if change is not None else [],
        "reused_from": (rec.reused_from if rec is not None and mine and rec.reused_from else None) or
                       (change.reused_from_run if change is not None else None),
        "upstreams": sorted(node.upstreams()) if node is not None else [],
        "log": rec.log if rec is not None and mine else None,
    }


def read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == TIMELINE_VERSION else None


def from_state(state: State, run: RunRecord) -> dict[str, Any]:
    """What the state holds of a run: the nodes whose record it wrote, and the jobs it launched."""
    nodes: dict[str, Any] = {}
    for address, rec in state.nodes.items():
        if rec.run_id != run.id:
            continue
        result = "reused" if rec.reused_from else rec.status
        nodes[address] = {"address": address, "action": "", "result": result, "queued_at": None,
                          "started_at": rec.started_at or (rec.finished_at if rec.reused_from else None),
                          "finished_at": rec.finished_at, "job_id": rec.job_id, "attempts": rec.attempts,
                          "detail": rec.error or "", "reasons": [], "reused_from": rec.reused_from,
                          "upstreams": sorted({s.node for s in run.sources.get(address, {}).values()
                                               if s.kind == "node_output" and s.node}),
                          "log": rec.log}
    for address, job in run.jobs.items():
        if address not in nodes:
            nodes[address] = {"address": address, "action": "", "result": str(job.get("status") or "started"),
                              "queued_at": None, "started_at": job.get("started_at"), "finished_at": None,
                              "job_id": job.get("job_id"), "attempts": job.get("attempt") or 0, "detail": "",
                              "reasons": [], "reused_from": None, "upstreams": [], "log": None}
    return {"version": TIMELINE_VERSION, "run_id": run.id, "flow": run.flow, "nodes": nodes, "partial": True}


def with_log_tails(timeline: dict[str, Any]) -> dict[str, Any]:
    from reconcile.render_html import log_tail  # the page's helper; apply need not import the renderers
    for n in timeline["nodes"].values():
        n["log_tail"] = log_tail(n.get("log"))
    return timeline


def for_run(logs_dir: Path, state: State, run: RunRecord) -> dict[str, Any]:
    """The timeline of `run`: its file when this machine applied it, else what the state holds; log tails in."""
    timeline = read(timeline_path(logs_dir, run.flow, run.id)) or from_state(state, run)
    return with_log_tails(timeline)
