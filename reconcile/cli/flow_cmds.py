"""`flows plan`, `flows apply`, `flows outputs`, `flows logs`: arguments in, `reconcile.session` use cases, output."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from reconcile.cli.main import app
from reconcile.cli.output import out_console
from vocab.errors import InputError
from vocab.masking import redact

EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}
console = out_console()
err_console = Console(stderr=True, highlight=False)


@app.command(context_settings=EXTRA)
def plan(
    ctx: typer.Context,
    flow_file: Path = typer.Argument(..., help="The flow file (the workflow.py you run on Domino)."),
    inputs_file: Optional[str] = typer.Option(None, "--inputs", help="JSON file of flow inputs."),
    out: Optional[Path] = typer.Option(None, "--out", help="Save the plan, to apply it later with `flows apply PLAN`."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON (schema in the README)."),
    target: list[str] = typer.Option([], "--target", help="Plan only this node and what it needs (repeatable)."),
    replace: list[str] = typer.Option([], "--replace", help="Force this node to run (repeatable)."),
    detailed_exitcode: bool = typer.Option(False, "--detailed-exitcode", help="Exit 0: no changes, 1: error, 2: changes."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="List every reused node, however many."),
) -> None:
    """Show which nodes would run and exactly why. Never writes state, never runs a job.

    Usage: flows plan FLOW_FILE [WORKFLOW] [--<input> VALUE ...]
    """
    from reconcile.cli.output import warn
    from reconcile.session import LoadedFlow, split_workflow, write_saved_plan

    workflow, input_args = split_workflow(list(ctx.args))
    if out is not None and not out.parent.is_dir():  # before any work, not after it
        raise InputError(f"cannot save the plan: no folder {out.parent}", file=str(out))
    loaded = LoadedFlow(flow_file, workflow, input_args, inputs_file, warn=warn)
    result, view = loaded.plan(target, replace)
    if as_json:
        typer.echo(redact(result.model_dump_json(indent=2)))
    else:
        from reconcile.render_plan import print_plan
        if view.journal:
            console.print("[yellow]Note:[/yellow] an interrupted run left results in the journal; "
                          "they are included (the next apply or `flows recover` records them).")
        if view.rekeyed:
            console.print(f"[yellow]Note:[/yellow] the state was written by an earlier flows, whose cache keys are "
                          f"computed differently (key schema 1): {view.rekeyed} recorded key(s) were re-keyed from "
                          "their fingerprints; a node whose fingerprint no longer matches runs once.")
        from reconcile.cli.plan_receipt import CapturingConsole, plain_text
        captured = CapturingConsole(console)
        print_plan(result, captured, verbose_reuse=verbose)  # type: ignore[arg-type]
        if out is None and captured.plain_only and not result.has_changes():  # a no-op: the next identical plan
            from reconcile.noop_plan import leave_receipt  # is answered from its receipt
            leave_receipt(loaded, view, result, captured.lines, plain_text(captured.lines))
    if out is not None:
        write_saved_plan(result, out)
        if not as_json:
            console.print(f"Saved the plan to {escape(str(out))}; apply it with: flows apply {escape(str(out))}")
    if detailed_exitcode and result.has_changes():
        raise typer.Exit(2)


@app.command(context_settings=EXTRA)
def apply(
    ctx: typer.Context,
    flow_file: Path = typer.Argument(..., help="The flow file, or a plan saved with `flows plan --out`."),
    inputs_file: Optional[str] = typer.Option(None, "--inputs", help="JSON file of flow inputs."),
    auto_approve: bool = typer.Option(False, "--auto-approve", help="Do not ask for confirmation."),
    parallelism: Optional[int] = typer.Option(None, "--parallelism", min=1, help="Jobs at once (default: cores)."),
    keep_going: bool = typer.Option(False, "--keep-going", help="Independent branches go on after a failure."),
    lock_timeout: str = typer.Option("0s", "--lock-timeout", help="Wait this long for the state lock (e.g. 60s)."),
    break_expired_lock: bool = typer.Option(False, "--break-expired-lock",
                                            help="Take over a lock whose lease has expired (its holder is gone)."),
    target: list[str] = typer.Option([], "--target", help="Apply only this node and what it needs."),
    replace: list[str] = typer.Option([], "--replace", help="Force this node to run."),
    approve: list[str] = typer.Option([], "--approve", metavar="NAME",
                                      help="Approve this approval gate in advance (repeatable); without it, a gate "
                                           "asks on a terminal and otherwise ends the run waiting (exit 3)."),
) -> None:
    """Run exactly the invalidated nodes; record each result the moment it finishes.

    Usage: flows apply FLOW_FILE [WORKFLOW] [--<input> VALUE ...]   |   flows apply PLAN_FILE
    """
    import os

    from reconcile.apply import ApplyOptions
    from reconcile.cli.apply_view import apply_and_report
    from reconcile.cli.output import warn
    from reconcile.gates import check_approvals
    from reconcile.session import begin_apply, load_for_apply

    lock_wait = _seconds(lock_timeout)  # a bad flag is refused before the flow is loaded
    loaded, saved = load_for_apply(flow_file, list(ctx.args), inputs_file, warn)
    approved = check_approvals(loaded.graph, approve)  # a mistyped gate name: before the lock, before anything runs
    if saved is not None:
        target, replace = saved.targets, saved.replace
    graph = loaded.graph
    opts = ApplyOptions(parallelism=parallelism or loaded.ws.config.parallelism or os.cpu_count() or 2,
                        keep_going=keep_going or graph.failure_policy == "FAIL_AFTER_EXECUTABLE_NODES_COMPLETE",
                        lock_timeout=lock_wait, break_expired_lock=break_expired_lock, approve=approved)
    run, lease = begin_apply(loaded, opts)
    if "(broke" in lease.info.operation:
        err_console.print(f"[yellow]Took over an expired lock: {escape(lease.info.operation)}[/yellow]")
    apply_and_report(loaded, opts, run, lease, target=target, replace=replace, saved=saved, auto_approve=auto_approve)


def _seconds(text: str) -> float:
    t = text.strip().lower()
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0}
    unit = next((u for u in ("ms", "s", "m") if t.endswith(u)), "")
    try:
        value = float(t[:len(t) - len(unit)]) * scale.get(unit, 1.0)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):  # also NaN
        raise InputError(f"not a duration: {text!r} (e.g. 0s, 60s, 2m; never negative)", field="--lock-timeout")
    return value


@app.command()
def outputs(
    address: str = typer.Argument(..., help="Node address, e.g. 'model_training/Train Model'."),
    dest: Optional[Path] = typer.Option(None, "--dest", help="Copy the output files into this folder."),
    flow: Optional[str] = typer.Option(None, "--flow", help="The flow (workflow name) if the state has several."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show a node's outputs, or copy them out of the blob store with --dest."""
    from reconcile.session import copy_output, find_node, flow_of_address, open_flow

    ws, name = open_flow(flow_of_address(address, flow))
    rec = find_node(ws.read_state(name).state, address)
    if rec.status != "succeeded":
        raise InputError(f"node '{address}' has no outputs: it {rec.status} in run {rec.run_id}" +
                         (f" ({rec.error})" if rec.error else ""))
    copied = {name: copy_output(ws, name, out, dest) for name, out in rec.outputs.items()
              if dest is not None and out.uri}
    if as_json:
        typer.echo(redact(json.dumps({k: {**v.model_dump(), **({"copied_to": copied[k]} if k in copied else {})}
                                      for k, v in rec.outputs.items()}, indent=2, default=str)))
        return
    for name, out in rec.outputs.items():
        value = f" = {out.value!r}" if out.value is not None else ""
        where = f" -> {copied[name]}" if name in copied else ""
        console.print(f"{escape(name)} ({escape(out.type)}, {out.size} bytes, {out.digest[:12]}){escape(redact(value))}"
                      f"{escape(where)}", soft_wrap=True)


@app.command()
def logs(
    address: str = typer.Argument(..., help="Node address."),
    flow: Optional[str] = typer.Option(None, "--flow", help="The flow (workflow name) if the state has several."),
) -> None:
    """Show the log of a node's last job."""
    from reconcile.session import find_node, flow_of_address, node_log, open_flow

    ws, name = open_flow(flow_of_address(address, flow))
    rec = find_node(ws.read_state(name).state, address)
    typer.echo(redact(node_log(ws, address, rec)), nl=False)
