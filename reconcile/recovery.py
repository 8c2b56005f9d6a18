"""The recover use case: finish a partial run without redoing or double-launching anything.

A run is partial when its apply died (kill -9, a lost machine, a cancelled CI job), was interrupted
(Ctrl-C) or failed. Recover finishes the latest run of a flow under its own id: it folds what the dead
apply left in the journal, re-attaches to jobs still running, re-validates every finished node against
the current flow, code and inputs, and runs what is left (`session.apply_plan(..., resumed=True)`). Only the
latest run: an older partial run was superseded by the apply after it, and finishing it would bring back
its inputs.
"""
from __future__ import annotations

import dataclasses
import datetime
import time
from pathlib import Path
from typing import Any, Callable

from providers.base import Provider
from reconcile.apply import ApplyOptions
from reconcile.graph import FlowGraph
from reconcile.plan_model import Plan
from reconcile.session import LoadedFlow, open_project
from reconcile.workspace import Workspace
from state import journal
from state.backend import LockInfo
from state.model import RunRecord, State
from state.store import Lease, StateView
from vocab.errors import InputError, LockHeldError

PARTIAL = ("interrupted", "failed", "running", "waiting")  # waiting: stopped at an approval gate nobody answered
ENDED_BADLY = ("Failed", "Error", "Stopped")  # Domino's terminal statuses other than Succeeded
Say = Callable[[str], None]  # what recover tells the person as it goes (plain text; the CLI styles it)


def live(lock: LockInfo | None) -> bool:
    """Whether a lock's holder may still be working (lease not expired, process not known gone)."""
    return lock is not None and not (lock.expired() or lock.holder_gone())


@dataclasses.dataclass
class Recovery:
    """A partial run found, and what finishing it starts from."""
    ws: Workspace
    flow: str
    view: StateView
    lock: LockInfo | None
    run: RunRecord
    loaded: LoadedFlow
    attach: dict[str, dict[str, Any]]  # address -> {"job_id", "key", ...}: jobs of the run not known finished
    found: dict[str, dict[str, Any]]   # those found on the provider for a start the journal only announced


def find_recovery(flow: str | None, run_id: str | None, input_args: list[str], *, dry_run: bool,
                  say: Say) -> Recovery | None:
    """The run to finish, or None (said why) when there is nothing to recover. Not dry: a dead apply's lock and
    journal are tidied even then, so the next apply starts clean."""
    ws, name = open_project(flow, none_ok=True)
    if name is None:  # e.g. an apply that died before it recorded anything: nothing is lost, nothing to do
        say("Nothing to recover: no interrupted run in this project.")
        return None
    view = ws.read_state(name)  # a run whose apply is gone shows as interrupted
    state = view.state
    lock = ws.store(name).read_lock()
    run = pick_run(state, run_id)
    if run is None or run.outcome not in PARTIAL:
        what = f"the latest run {run.id} {run.outcome}" if run else f"'{name}' has no runs"
        if not dry_run:
            _tidy(ws, name, view, lock, say)
        say(f"Nothing to recover: {what}.")
        return None
    if run.outcome == "running":
        raise LockHeldError(f"run {run.id} is still running: {lock.describe() if lock else 'no lock found'}")
    if not Path(run.flow_file).is_file():
        raise InputError(f"the flow file of run {run.id} is gone", file=run.flow_file)
    from reconcile.loader import load_flow
    inputs = run_inputs(run, load_flow(Path(run.flow_file), name), input_args)
    loaded = LoadedFlow(Path(run.flow_file), name, [], None, inputs=inputs)
    attach, found = _jobs_to_attach(view, run, ws.provider, say)
    return Recovery(ws=ws, flow=name, view=view, lock=lock, run=run, loaded=loaded, attach=attach, found=found)


def pick_run(state: State, run_id: str | None) -> RunRecord | None:
    """The run to finish: the latest one (None if the flow has no runs), or `run_id` if it is the latest."""
    latest = max(state.runs.values(), key=lambda r: r.started_at, default=None)
    if run_id is None:
        return latest
    run = state.runs.get(run_id)
    if run is None:
        raise InputError(f"no run '{run_id}' in the state of '{state.flow}' (see `flows runs list`)")
    if latest is not None and run is not latest and run.outcome in PARTIAL:
        raise InputError(f"run {run_id} was superseded by run {latest.id} (started {latest.started_at}); "
                         "recover finishes only the latest run of a flow: run `flows apply` instead")
    return run


def _tidy(ws: Workspace, flow: str, view: StateView, lock: LockInfo | None, say: Say) -> None:
    """Nothing to finish, but a dead apply may have left its lock and journal: release the one, record
    the other. A live holder's lock and journal are left alone."""
    if live(lock):
        return
    store = ws.store(flow)
    if lock is not None:
        store.force_unlock(lock.id, "recover")  # fences the dead holder out, and records its journal
        say(f"Released the dead apply's lock {lock.id} (run {lock.run_id or 'not recorded'}).")
    elif view.journal:
        with store.locked("recover"):
            pass  # taking the lock records what the dead apply left in the journal
    if view.journal:
        state, _ = store.read()
        say(f"Recorded the results the dead apply left in the journal (state serial "
            f"{state.serial if state else 0}).")


def _jobs_to_attach(view: StateView, run: RunRecord, provider: Provider,
                    say: Say) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    from state.journal import unjournaled_starts
    attach = {a: j for a, j in run.jobs.items() if j.get("status") == "running" and j.get("job_id")}
    found = {}
    for address, intent in unjournaled_starts(view.journal, run.id).items():
        job_id = _find_started(provider, run.id, address, intent.attempt, intent.at, say)
        if job_id is not None:
            say(f"Found job {job_id} of {address}: started, but the dead process did not journal it.")
            found[address] = {"job_id": job_id, "key": intent.key, "attempt": intent.attempt, "status": "running"}
    return {**attach, **found}, found


def _find_started(provider: Provider, run_id: str, address: str, attempt: int, intended_at: str,
                  say: Say) -> str | None:
    """The job of a start the dead apply journaled but never saw answered. A start sent just before the apply
    died may still be served: until `start_in_flight_seconds` after the intent, "not found" is asked again."""
    job_id = provider.find_started(run_id, address, attempt)
    settled = _epoch(intended_at) + provider.start_in_flight_seconds
    if job_id is None and time.time() < settled:
        say(f"Waiting up to {settled - time.time():.0f} s for a job of {address}: its start may have been in "
            "flight when the apply died.")
        pause = 0.2
        while job_id is None and time.time() < settled:
            time.sleep(min(pause, max(0.0, settled - time.time())))
            pause = min(pause * 2, 2.0)
            job_id = provider.find_started(run_id, address, attempt)
    return job_id


def _epoch(stamp: str) -> float:
    try:
        return datetime.datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return 0.0  # unreadable: old enough that nothing is in flight


def run_inputs(run: RunRecord, graph: FlowGraph, input_args: list[str]) -> dict[str, Any]:
    """The inputs the run was started with. Those whose recorded values are masked (they looked like secrets)
    must be given again (`--NAME VALUE`, as to apply) and match what the run was started with: recover never
    runs a node with a mask in place of a value."""
    from reconcile.inputs import resolve_inputs, split_cli_args
    from state.store import masked_input_digest

    given = split_cli_args(input_args)
    unknown = sorted(set(given) - set(run.masked_inputs))
    if unknown:
        raise InputError(f"recover takes only the inputs whose values are masked in the state; "
                         f"{', '.join('--' + n for n in unknown)} "
                         f"{'is' if len(unknown) == 1 else 'are'} recorded in run {run.id}")
    kept = {k: v for k, v in run.inputs.items() if k not in run.masked_inputs}
    inputs = resolve_inputs(graph, given, kept) if given else dict(kept)
    missing = [n for n in run.masked_inputs if n not in given]
    wrong = [n for n in run.masked_inputs if n in given
             and masked_input_digest(run.id, n, inputs[n]) != run.masked_inputs[n]]
    if missing or wrong:
        names = " ".join(f"--{n} VALUE" for n in run.masked_inputs)
        what = (f"input(s) {', '.join('--' + n for n in missing)} of run {run.id} are masked in the state "
                "(their values look like secrets), so recover cannot know them" if missing else
                f"{', '.join('--' + n for n in wrong)} differ(s) from the value run {run.id} was started with")
        raise InputError(f"{what}: pass the values the run was started with: flows recover {run.id} {names}")
    return inputs


@dataclasses.dataclass
class Step:
    """What recover would do with one node (`--dry-run`)."""
    verb: str      # re-attach | reuse | run | forget | stop
    address: str
    why: str


def preview(rec: Recovery) -> tuple[Plan, list[Step]]:
    """Node by node, what recovering `rec` would do; changes nothing."""
    state, run, attach, provider = rec.view.state, rec.run, rec.attach, rec.ws.provider
    plan = rec.loaded.make_plan(state, state.serial, state.lineage, [], [])
    steps = []
    for change in plan.nodes:
        a, job, verb = change.address, attach.get(change.address), "run"
        # a job still running for a node that needs no run is stopped (it would bill for nothing)
        stopped = f" (job {job['job_id']}, still running for it, will be stopped)" if job is not None else ""
        if change.action == "reuse":
            done = state.nodes.get(a)
            verb, why = "reuse", ("finished in this run" if done is not None and done.run_id == run.id
                                  else f"cache hit from run {change.reused_from_run or '?'}") + stopped
        elif change.action == "forget":
            verb, why = "forget", "no longer in the flow"
        elif change.action == "approve":
            verb, why = "approve", "; ".join(r.message for r in change.reasons)
        elif job is not None and not provider.jobs_outlive_the_process:
            why = (f"its {provider.name} job {job['job_id']} cannot be re-attached from another process: "
                   "it is stopped")
        elif job is not None and change.key is not None and change.key != job.get("key"):
            why = f"changed since job {job['job_id']} started (that job will be stopped)"
        elif job is not None:
            status = provider.job_status(job["job_id"])
            if status in ENDED_BADLY:
                why = f"its {provider.name} job {job['job_id']} ended {status} while no apply watched it"
            else:
                verb, why = "re-attach", f"{provider.name} job {job['job_id']} ({status})"
        elif change.pending_on and change.key is None:  # pending, or a create keyed only after apply
            why = f"after {', '.join(change.pending_on)} (its inputs are known then)"
        else:
            why = "; ".join(r.message for r in change.reasons) or change.action
        steps.append(Step(verb, a, why))
    for a in sorted(set(attach) - {c.address for c in plan.nodes}):
        steps.append(Step("stop", a, f"no longer in the flow; its job {attach[a]['job_id']} is stopped"))
    return plan, steps


def begin_recovery(rec: Recovery, opts: ApplyOptions, say: Say) -> Lease:
    """Take the lock for the run (breaking a held one only if it is the dead run's own: expired lease or
    process gone) and journal the jobs found on the provider, so a recover that dies in turn still knows them."""
    store = rec.ws.store(rec.flow)
    held = store.read_lock()
    if held is not None:
        if live(held):
            raise LockHeldError(f"state is locked by a live process: {held.describe()}")
        if held.run_id != rec.run.id:
            raise LockHeldError(f"state is locked by a process that is gone, but not by run {rec.run.id}: "
                                f"{held.describe()}. If nothing else is working on this flow, release it with "
                                f"`flows state unlock {held.id}`")
        store.force_unlock(held.id, "recover")
        say(f"Broke the dead run's lock {held.id}.")
    lease = store.lock("recover", run_id=rec.run.id, timeout=opts.lock_timeout)
    for address, job in rec.found.items():
        lease.append(journal.NodeStarted(run_id=rec.run.id, address=address, key=job["key"], job_id=job["job_id"],
                                         attempt=job["attempt"]))
    return lease
