"""`flows recover [RUN_ID]`: finish a partial run without redoing or double-launching anything."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from reconcile.cli.main import app
from reconcile.errors import InputError, LockHeldError

console = Console(highlight=False)
PARTIAL = ("interrupted", "failed", "running")


def _pick_run(state: Any, run_id: Optional[str]) -> Any:
    if run_id is not None:
        run = state.runs.get(run_id)
        if run is None:
            raise InputError(f"no run '{run_id}' in the state of '{state.flow}' (see `flows runs list`)")
        return run
    partial = [r for r in state.runs.values() if r.outcome in PARTIAL]
    return max(partial, key=lambda r: r.started_at) if partial else None


def _take_lock_for(ws: Any, flow: str, run: Any, opts: Any) -> Any:
    """Take the lock; break a held one only if it is the dead run's own (expired lease or process gone)."""
    from state.backend import LockInfo
    held = ws.backend.read_lock(flow)
    if held is not None:
        if held.run_id != run.id or not (held.expired() or held.holder_gone()):
            raise LockHeldError(f"state is locked by a live process: {held.describe()}")
        ws.backend.unlock(flow, held.id)
        console.print(f"[yellow]Broke the dead run's lock {held.id}.[/yellow]")
    return ws.backend.lock(flow, LockInfo(operation="recover", run_id=run.id), timeout=opts.lock_timeout)


@app.command()
def recover(
    run_id: Optional[str] = typer.Argument(None, help="The run to finish; default: the latest unfinished one."),
    flow: Optional[str] = typer.Option(None, "--flow", help="Flow (workflow name); default: the only one."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be re-attached, reused and re-run."),
    parallelism: Optional[int] = typer.Option(None, "--parallelism", min=1),
    keep_going: bool = typer.Option(False, "--keep-going"),
) -> None:
    """Resume an interrupted or failed run: re-attach to jobs still running, re-validate finished nodes
    against the current flow, code and inputs, and run what is left, under the same run id."""
    from reconcile.apply import ApplyOptions
    from reconcile.cli.flow_cmds import Prepared, _project_workspace, apply_session
    from reconcile.render_plan import print_plan

    ws, flow = _project_workspace(flow)
    view = ws.read_state(flow)
    state = view.state
    for r in state.runs.values():  # a run the journal still shows as running died with its apply
        if r.outcome == "running" and view.journal:
            lock = ws.backend.read_lock(flow)
            if lock is None or lock.run_id != r.id or lock.expired() or lock.holder_gone():
                r.outcome = "interrupted"
    run = _pick_run(state, run_id)
    if run is None:
        console.print(f"Nothing to recover: every run of '{flow}' finished.")
        return
    if run.outcome in ("succeeded", "recovered"):
        console.print(f"Nothing to recover: run {run.id} {run.outcome}.")
        return
    if run.outcome == "running":
        lock = ws.backend.read_lock(flow)
        if lock is not None and lock.run_id == run.id and not lock.expired() and not lock.holder_gone():
            raise LockHeldError(f"run {run.id} is still running: {lock.describe()}")
    if not Path(run.flow_file).is_file():
        raise InputError(f"the flow file of run {run.id} is gone", file=run.flow_file)
    prep = Prepared(Path(run.flow_file), flow, [], None, inputs=run.inputs)
    attach = {a: j for a, j in run.jobs.items() if j.get("status") == "running" and j.get("job_id")}
    if dry_run:
        the_plan = prep.make_plan(state, state.serial, state.lineage, [], [])
        console.print(f"[bold]Recover run {run.id}[/bold] ({run.outcome}, started {run.started_at})")
        for address, job in attach.items():
            console.print(f"  re-attach {escape(address)} to job {job['job_id']} if it is still running "
                          "and its key still matches; otherwise re-run it")
        print_plan(the_plan, console)
        return
    opts = ApplyOptions(parallelism=parallelism or ws.config.parallelism or os.cpu_count() or 2,
                        keep_going=keep_going)
    lock = _take_lock_for(ws, flow, run, opts)
    console.print(f"[bold]Recovering run {run.id}[/bold] ({run.outcome}, started {run.started_at})")
    apply_session(prep, opts, run, lock, target=[], replace=[], attach=attach, resumed=True)
