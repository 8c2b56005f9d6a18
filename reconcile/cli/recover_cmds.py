"""`flows recover [RUN_ID]`: finish a partial run without redoing or double-launching anything.

A run is partial when its apply died (kill -9, a lost machine, a cancelled CI job), was interrupted
(Ctrl-C) or failed. Recover finishes the latest run of a flow under its own id: it folds what the dead
apply left in the journal, re-attaches to jobs still running, re-validates every finished node against
the current flow, code and inputs, and runs what is left. Only the latest run: an older partial run was
superseded by the apply after it, and finishing it would bring back its inputs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from reconcile.cli.main import app
from reconcile.cli.output import out_console
from vocab.errors import InputError, LockHeldError
from vocab.masking import redact

console = out_console()
PARTIAL = ("interrupted", "failed", "running")
ENDED_BADLY = ("Failed", "Error", "Stopped")  # Domino's terminal statuses other than Succeeded


def _live(lock: Any) -> bool:
    """Whether a lock's holder may still be working (lease not expired, process not known gone)."""
    return lock is not None and not (lock.expired() or lock.holder_gone())


def _pick_run(state: Any, run_id: Optional[str]) -> Any:
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


def _tidy(ws: Any, flow: str, view: Any, lock: Any) -> None:
    """Nothing to finish, but a dead apply may have left its lock and journal: release the one, record
    the other, so the next apply starts clean. A live holder's lock and journal are left alone."""
    if _live(lock):
        return
    store = ws.store(flow)
    if lock is not None:
        store.force_unlock(lock.id, "recover")  # fences the dead holder out, and records its journal
        console.print(f"Released the dead apply's lock {lock.id} (run {lock.run_id or 'not recorded'}).")
    elif view.journal:
        with store.locked("recover"):
            pass  # taking the lock records what the dead apply left in the journal
    if view.journal:
        state, _ = store.read()
        console.print(f"Recorded the results the dead apply left in the journal (state serial "
                      f"{state.serial if state else 0}).")


def _take_lock_for(ws: Any, flow: str, run: Any, opts: Any) -> Any:
    """Take the lock; break a held one only if it is the dead run's own (expired lease or process gone)."""
    store = ws.store(flow)
    held = store.read_lock()
    if held is not None:
        if _live(held):
            raise LockHeldError(f"state is locked by a live process: {held.describe()}")
        if held.run_id != run.id:
            raise LockHeldError(f"state is locked by a process that is gone, but not by run {run.id}: "
                                f"{held.describe()}. If nothing else is working on this flow, release it with "
                                f"`flows state unlock {held.id}`")
        store.force_unlock(held.id, "recover")
        console.print(f"[yellow]Broke the dead run's lock {held.id}.[/yellow]")
    return store.lock("recover", run_id=run.id, timeout=opts.lock_timeout)


def _jobs_to_attach(view: Any, run: Any, provider: Any) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(attach, found): address -> {"job_id", "key", ...} of every job the run launched that has not
    finished as far as the state knows; `found`: those found on the provider for a start the journal only
    announced."""
    from state.journal import unjournaled_starts
    attach = {a: j for a, j in run.jobs.items() if j.get("status") == "running" and j.get("job_id")}
    found = {}
    for address, intent in unjournaled_starts(view.journal, run.id).items():
        job_id = provider.find_started(run.id, address, intent.attempt)
        if job_id is not None:
            console.print(f"Found job {job_id} of {escape(address)}: started, but the dead process did not "
                          "journal it.")
            found[address] = {"job_id": job_id, "key": intent.key, "attempt": intent.attempt, "status": "running"}
    return {**attach, **found}, found


def _dry_run(state: Any, run: Any, plan: Any, attach: dict[str, dict[str, Any]], provider: Any) -> None:
    """Say, node by node, what recover would do; change nothing."""
    counts = {"re-attach": 0, "reuse": 0, "run": 0}
    lines = []
    for change in plan.nodes:
        a, job, verb = change.address, attach.get(change.address), "run"
        # a job still running for a node that needs no run is stopped (it would bill for nothing)
        stopped = f" (job {job['job_id']}, still running for it, will be stopped)" if job is not None else ""
        if change.action == "reuse":
            rec = state.nodes.get(a)
            verb, why = "reuse", ("finished in this run" if rec is not None and rec.run_id == run.id
                                  else f"cache hit from run {change.reused_from_run or '?'}") + stopped
        elif change.action == "forget":
            verb, why = "forget", "no longer in the flow"
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
        if verb in counts:
            counts[verb] += 1
        lines.append(f"  {verb:<9} {escape(a)}: {escape(redact(why))}")
    for a in sorted(set(attach) - {c.address for c in plan.nodes}):
        lines.append(f"  {'stop':<9} {escape(a)}: no longer in the flow; its job {attach[a]['job_id']} is stopped")
    console.print(f"[bold]Would recover run {run.id}[/bold] ({run.outcome}, started {run.started_at}):")
    for line in lines:
        console.print(line)
    console.print(f"Would re-attach {counts['re-attach']}, reuse {counts['reuse']}, run {counts['run']}. "
                  "Nothing was changed (--dry-run).")


def _run_inputs(run: Any, graph: Any, input_args: list[str]) -> dict[str, Any]:
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


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def recover(
    ctx: typer.Context,
    flow: Optional[str] = typer.Option(None, "--flow", help="Flow (workflow name); default: the only one."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be re-attached, reused and re-run."),
    parallelism: Optional[int] = typer.Option(None, "--parallelism", min=1),
    keep_going: bool = typer.Option(False, "--keep-going"),
) -> None:
    """Resume an interrupted or failed run: re-attach to jobs still running, re-validate finished nodes
    against the current flow, code and inputs, and run what is left, under the same run id.

    Usage: flows recover [RUN_ID] [--<input> VALUE ...]   (only inputs whose values are masked in the state)
    """
    from reconcile.apply import ApplyOptions
    from reconcile.cli.flow_cmds import Prepared, _project_workspace, apply_session
    from reconcile.loader import load_flow
    from state import journal

    # RUN_ID (default: the flow's latest run) comes first; typer would take `--tok` for it, so it is read here.
    args = list(ctx.args)
    run_id = args.pop(0) if args and not args[0].startswith("--") else None
    ws, flow = _project_workspace(flow, none_ok=True)
    if flow is None:  # e.g. an apply that died before it recorded anything: nothing is lost, nothing to do
        console.print("Nothing to recover: no interrupted run in this project.")
        return
    view = ws.read_state(flow)  # a run whose apply is gone shows as interrupted
    state = view.state
    lock = ws.store(flow).read_lock()
    run = _pick_run(state, run_id)
    if run is None or run.outcome not in PARTIAL:
        what = f"the latest run {run.id} {run.outcome}" if run else f"'{flow}' has no runs"
        if not dry_run:
            _tidy(ws, flow, view, lock)
        console.print(f"Nothing to recover: {what}.")
        return
    if run.outcome == "running":
        raise LockHeldError(f"run {run.id} is still running: {lock.describe()}")
    if not Path(run.flow_file).is_file():
        raise InputError(f"the flow file of run {run.id} is gone", file=run.flow_file)
    inputs = _run_inputs(run, load_flow(Path(run.flow_file), flow), args)
    prep = Prepared(Path(run.flow_file), flow, [], None, inputs=inputs)
    attach, found = _jobs_to_attach(view, run, ws.provider)
    if dry_run:
        the_plan = prep.make_plan(state, state.serial, state.lineage, [], [])
        _dry_run(state, run, the_plan, attach, ws.provider)
        if _live(lock):
            console.print(f"[yellow]Note:[/yellow] recover would be refused now: {escape(lock.describe())}")
        return
    opts = ApplyOptions(parallelism=parallelism or ws.config.parallelism or os.cpu_count() or 2,
                        keep_going=keep_going)
    held = _take_lock_for(ws, flow, run, opts)
    for address, job in found.items():  # journaled now: a recover that dies in turn still knows these jobs
        held.append(journal.NodeStarted(run_id=run.id, address=address, key=job["key"], job_id=job["job_id"],
                                        attempt=job["attempt"]))
    console.print(f"[bold]Recovering run {run.id}[/bold] ({run.outcome}, started {run.started_at})")
    apply_session(prep, opts, run, held, target=[], replace=[], attach=attach, resumed=True)
