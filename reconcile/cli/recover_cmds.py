"""`flows recover [RUN_ID]`: finish a partial run without redoing or double-launching anything (the use case
is `reconcile.recovery`; this module parses and shows)."""
from __future__ import annotations

import os
from typing import Optional

import typer
from rich.markup import escape

from reconcile.cli.main import app
from reconcile.cli.output import out_console
from vocab.masking import redact

console = out_console()


def _say(text: str) -> None:
    console.print(escape(redact(text)), soft_wrap=True)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def recover(
    ctx: typer.Context,
    flow: Optional[str] = typer.Option(None, "--flow", help="Flow (workflow name); default: the only one."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be re-attached, reused and re-run."),
    parallelism: Optional[int] = typer.Option(None, "--parallelism", min=1),
    keep_going: bool = typer.Option(False, "--keep-going"),
    approve: list[str] = typer.Option([], "--approve", metavar="NAME",
                                      help="Approve this approval gate of the run (repeatable)."),
) -> None:
    """Resume an interrupted or failed run: re-attach to jobs still running, re-validate finished nodes
    against the current flow, code and inputs, and run what is left, under the same run id.

    Usage: flows recover [RUN_ID] [--approve NAME ...] [--<input> VALUE ...]   (inputs: only those whose values
    are masked in the state)
    """
    from reconcile.apply import ApplyOptions
    from reconcile.cli.apply_view import apply_and_report
    from reconcile.gates import check_approvals
    from reconcile.recovery import begin_recovery, find_recovery, live, preview

    # RUN_ID (default: the flow's latest run) comes first; typer would take `--tok` for it, so it is read here.
    args = list(ctx.args)
    run_id = args.pop(0) if args and not args[0].startswith("--") else None
    rec = find_recovery(flow, run_id, args, dry_run=dry_run, say=_say)
    if rec is None:
        return
    run = rec.run
    approved = check_approvals(rec.loaded.graph, approve)  # a mistyped gate name: before anything is done
    if dry_run:
        _, steps = preview(rec)
        console.print(f"[bold]Would recover run {run.id}[/bold] ({run.outcome}, started {run.started_at}):")
        for step in steps:
            console.print(f"  {step.verb:<9} {escape(step.address)}: {escape(redact(step.why))}", soft_wrap=True)
        count = {verb: sum(s.verb == verb for s in steps) for verb in ("re-attach", "reuse", "run")}
        console.print(f"Would re-attach {count['re-attach']}, reuse {count['reuse']}, run {count['run']}. "
                      "Nothing was changed (--dry-run).")
        if rec.lock is not None and live(rec.lock):
            console.print(f"[yellow]Note:[/yellow] recover would be refused now: {escape(rec.lock.describe())}")
        return
    opts = ApplyOptions(parallelism=parallelism or rec.ws.config.parallelism or os.cpu_count() or 2,
                        keep_going=keep_going, approve=approved)
    lease = begin_recovery(rec, opts, _say)
    console.print(f"[bold]Recovering run {run.id}[/bold] ({run.outcome}, started {run.started_at})")
    apply_and_report(rec.loaded, opts, run, lease, target=[], replace=[], attach=rec.attach, resumed=True)
