"""`flows plan`, `flows apply`, `flows outputs`, `flows logs`: thin wrappers over plan/apply."""
from __future__ import annotations

import collections
import contextlib
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reconcile.cli.main import app
from reconcile.cli.output import out_console
from vocab.errors import InputError, StalePlanError
from vocab.masking import redact

EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}
console = out_console()
err_console = Console(stderr=True, highlight=False)


def _split_workflow(args: list[str]) -> tuple[str | None, list[str]]:
    if args and not args[0].startswith("--"):
        return args[0], args[1:]
    return None, args


class Prepared:
    """A loaded flow with its inputs resolved, in its project's workspace."""

    def __init__(self, flow_file: Path, workflow: str | None, input_args: list[str], inputs_file: str | None,
                 inputs: dict[str, Any] | None = None) -> None:
        from vocab.digest import file_digest
        from reconcile.inputs import read_inputs_file, resolve_inputs, split_cli_args
        from reconcile.loader import load_flow
        from reconcile.workspace import Workspace

        self.graph = load_flow(flow_file, workflow)
        for text in self.graph.warnings:  # loads, but probably not what was meant: say so before planning
            err_console.print(f"[yellow]Warning:[/yellow] {escape(redact(text))}", soft_wrap=True)
        if inputs is not None:  # a saved plan's: checked like any inputs file (it may have been edited by hand)
            defaults = {n: fi.default for n, fi in self.graph.inputs.items() if not fi.required}
            given = {n: v for n, v in inputs.items() if n not in defaults or v != defaults[n]}
            self.inputs = {**inputs, **resolve_inputs(self.graph, {}, given)}
        else:
            from_file = read_inputs_file(inputs_file) if inputs_file else None
            self.inputs = resolve_inputs(self.graph, split_cli_args(input_args), from_file)
        self.flow_digest = file_digest(self.graph.file)
        self.ws = Workspace(Path(self.graph.project_root))

    def keyer(self) -> Any:
        from reconcile.plan import NodeKeyer
        return NodeKeyer(self.graph, self.inputs, self.ws.provider, self.ws.digests, self.ws.remote_digest)

    def make_plan(self, state: Any, stored_serial: int | None, stored_lineage: str | None,
                  targets: list[str], replace: list[str], save_digests: bool = True) -> Any:
        from reconcile.plan import Planner
        planner = Planner(self.graph, state, self.keyer(), self.ws.blobs, targets=targets, replace=replace)
        plan = planner.plan(self.flow_digest, self.inputs, self.ws.backend.kind, self.ws.provider.name,
                            stored_serial, stored_lineage)
        if save_digests:
            self.ws.digests.save()
        return plan


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
    workflow, input_args = _split_workflow(list(ctx.args))
    if out is not None and not out.parent.is_dir():  # before any work, not after it
        raise InputError(f"cannot save the plan: no folder {out.parent}", file=str(out))
    prep = Prepared(flow_file, workflow, input_args, inputs_file)
    view = prep.ws.read_state(prep.graph.workflow)
    stored = view.stored
    result = prep.make_plan(view.state, stored.serial if stored else None, stored.lineage if stored else None,
                            target, replace)
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
        print_plan(result, console, verbose_reuse=verbose)
    if out is not None:
        try:
            out.write_text(redact(result.model_dump_json(indent=1)))
        except OSError as e:
            raise InputError(f"cannot save the plan: {e.strerror or e}", file=str(out)) from None
        if not as_json:
            console.print(f"Saved the plan to {escape(str(out))}; apply it with: flows apply {escape(str(out))}")
    if detailed_exitcode and result.has_changes():
        raise typer.Exit(2)


def _load_saved_plan(path: Path) -> Any:
    from pydantic import ValidationError

    from reconcile.plan_model import PLAN_SCHEMA_VERSION, Plan
    try:
        raw = json.loads(path.read_text())
    except ValueError as e:
        raise StalePlanError(f"not a saved plan (invalid JSON: {e})", file=str(path)) from None
    if not isinstance(raw, dict) or "schema_version" not in raw:
        raise StalePlanError("not a saved plan", file=str(path))
    if raw["schema_version"] != PLAN_SCHEMA_VERSION:
        raise StalePlanError(f"saved plan schema {raw['schema_version']} is not {PLAN_SCHEMA_VERSION}", file=str(path))
    try:
        return Plan.model_validate(raw)
    except ValidationError as e:
        raise StalePlanError(f"saved plan is malformed: {e.errors()[0]['loc']}", file=str(path)) from None


def _is_saved_plan(path: Path) -> bool:
    """A saved plan is recognised by its content, whatever its name (`flows plan --out tfplan`): a JSON object
    (a flow file is Python, which never starts with `{`). A .json file is taken as a plan too, so a broken one
    is refused as a plan, not as Python."""
    if not path.is_file():
        return False
    if path.suffix == ".json":
        return True
    try:
        with path.open("rb") as f:
            head = f.read(64).lstrip()
    except OSError:
        return False
    return head.startswith(b"{")


@contextlib.contextmanager
def _interruptible(cancel: threading.Event) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM): stop starting nodes, cancel running jobs, record them; second: hard stop."""
    def handler(signum: int, frame: Any) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        err_console.print("[yellow]Interrupted: cancelling running jobs and recording them "
                          "(Ctrl-C again to stop at once).[/yellow]")
    old_int = signal.signal(signal.SIGINT, handler)
    old_term = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def _check_not_stale(saved: Any, fresh: Any, stored: Any, flow_digest: str, graph: Any = None) -> None:
    if saved.flow_digest != flow_digest:
        raise StalePlanError("saved plan is stale: the flow file changed since it was planned", file=saved.flow_file)
    serial = stored.serial if stored else None
    lineage = stored.lineage if stored else None
    if (saved.state_serial, saved.state_lineage) != (serial, lineage):
        raise StalePlanError(f"saved plan is stale: it was made against state serial {saved.state_serial}, "
                             f"the state is now at serial {serial}" +
                             (" of another lineage" if saved.state_lineage != lineage else "") +
                             "; run `flows plan` again")
    before = [(n.address, n.action, n.key) for n in saved.nodes]
    after = [(n.address, n.action, n.key) for n in fresh.nodes]
    if before != after:
        moved = next((_what_moved(a, b, graph, saved.inputs) for a, b in zip(saved.nodes, fresh.nodes)
                      if (a.address, a.action, a.key) != (b.address, b.action, b.key)), None)
        if moved is None:
            gone = sorted({n.address for n in saved.nodes} ^ {n.address for n in fresh.nodes})
            moved = "the set of nodes changed" + (f" ({', '.join(gone[:3])})" if gone else "")
        raise StalePlanError(f"saved plan is stale: {moved}; run `flows plan` again")


def _what_moved(saved: Any, fresh: Any, graph: Any, inputs: dict[str, Any]) -> str:
    """`wf/A: input data (file[csv]): digest 1a2b… → 3c4d… (key 5e6f7a8b9c0d → 0d9c8b7a6f5e)`: the first thing
    that changed between the node as planned and as it would be planned now."""
    from reconcile.reasons import fingerprint_reasons
    if saved.address != fresh.address:
        return f"node {saved.address} is now {fresh.address}"
    why = fingerprint_reasons(saved.fingerprint or {}, fresh.fingerprint or {}) if saved.fingerprint else []
    node = graph.nodes.get(fresh.address) if graph is not None else None

    def with_file(r: Any) -> str:  # name the file behind a changed input digest
        b = node.bindings.get(r.field[len("input "):]) if node is not None and r.field.startswith("input ") else None
        where = (inputs.get(b.name) if b is not None and b.kind == "flow_input" else
                 b.value if b is not None and b.kind == "literal" else None)
        return f"{r.message} ({where})" if isinstance(where, str) and "digest" in r.message else r.message
    what = "; ".join(with_file(r) for r in why[:2]) or (f"planned as {saved.action}, now {fresh.action}"
                                                      if saved.action != fresh.action else "its key changed")
    keys = f" (key {(saved.key or 'known after apply')[:12]} → {(fresh.key or 'known after apply')[:12]})"
    return f"{saved.address}: {what}{keys if saved.key != fresh.key else ''}"


SUMMARY_ROWS = 50  # a bigger run lists only the nodes that did not simply succeed or get reused


def _summary_table(outcomes: dict[str, Any], run_id: str) -> Any:
    from rich.console import Group
    from rich.text import Text

    from reconcile.progress import RESULT_STYLE, fmt_duration
    table = Table(title="Apply summary", title_justify="left")
    for col in ("node", "action", "result", "duration", "job id"):
        table.add_column(col)
    fold = len(outcomes) > SUMMARY_ROWS
    folded = collections.Counter(o.result for o in outcomes.values() if fold and o.result in ("succeeded", "reused"))
    for o in outcomes.values():
        if fold and o.result in folded:
            continue
        style = RESULT_STYLE.get(o.result, "")
        table.add_row(escape(o.address), o.action, f"[{style}]{o.result}[/{style}]",
                      fmt_duration(o.duration) if o.started else "-", o.job_id or "")
    if not fold:
        return table
    return Group(table, Text(f"Not listed: {folded['succeeded']} succeeded, {folded['reused']} reused (each is in "
                             f"the log above; `flows runs show {run_id}` lists every node)", style="dim"))


def _print_flow_outputs(graph: Any, state: Any, inputs: dict[str, Any]) -> None:
    if not graph.outputs:
        return
    console.print("[bold]Outputs:[/bold]")
    for name, b in graph.outputs.items():
        if b.kind == "node_output":
            rec = state.nodes.get(b.node)
            out = rec.outputs.get(b.output) if rec and rec.status == "succeeded" else None
            shown = "(not produced)" if out is None else (repr(out.value) if out.value is not None else out.uri)
        elif b.kind == "flow_input":  # a flow input passed straight through
            shown = repr(inputs.get(b.name, graph.inputs[b.name].default))
        else:
            shown = repr(b.value)
        console.print(f"  {escape(name)} = {escape(str(shown))}", soft_wrap=True)  # a URI stays one line


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
) -> None:
    """Run exactly the invalidated nodes; record each result the moment it finishes.

    Usage: flows apply FLOW_FILE [WORKFLOW] [--<input> VALUE ...]   |   flows apply PLAN_FILE
    """
    import os

    from reconcile.apply import ApplyOptions, start_run, take_lock

    lock_wait = _seconds(lock_timeout)  # a bad flag is refused before the flow is loaded
    saved = None
    if _is_saved_plan(flow_file):
        saved = _load_saved_plan(flow_file)
        if ctx.args:
            raise InputError("a saved plan takes no workflow or inputs (they are in the plan)")
        try:
            prep = Prepared(Path(saved.flow_file), saved.flow, [], None, inputs=saved.inputs)
        except InputError as e:
            raise StalePlanError(f"saved plan input {e.field or ''}: {e.message}".replace("input : ", "input: "),
                                 file=str(flow_file)) from None
        target, replace = saved.targets, saved.replace
    else:
        workflow, input_args = _split_workflow(list(ctx.args))
        prep = Prepared(flow_file, workflow, input_args, inputs_file)
    ws, graph = prep.ws, prep.graph
    flow = graph.workflow
    cfg_parallel = ws.config.parallelism
    opts = ApplyOptions(parallelism=parallelism or cfg_parallel or os.cpu_count() or 2, keep_going=keep_going,
                        lock_timeout=lock_wait, break_expired_lock=break_expired_lock)
    if graph.failure_policy == "FAIL_AFTER_EXECUTABLE_NODES_COMPLETE":
        opts.keep_going = True
    run = start_run(flow, graph, prep.flow_digest, ws.provider.name, prep.inputs)
    lease = take_lock(ws.store(flow), "apply", run.id, opts)
    if "(broke" in lease.info.operation:
        err_console.print(f"[yellow]Took over an expired lock: {escape(lease.info.operation)}[/yellow]")
    apply_session(prep, opts, run, lease, target=target, replace=replace, saved=saved, auto_approve=auto_approve)


def apply_session(prep: Prepared, opts: Any, run: Any, lease: Any, *, target: list[str], replace: list[str],
                  saved: Any = None, auto_approve: bool = True, attach: dict[str, Any] | None = None,
                  resumed: bool = False) -> None:
    """Under `lease` (released at the end; what a dead holder left is already folded): plan, confirm, execute,
    summarise, exit code."""
    from reconcile.apply import execute_plan
    from reconcile.fingerprint import upgrade_keys
    from reconcile.gc import register as register_blob_user
    from reconcile.progress import ConsoleReporter
    from reconcile.render_plan import print_plan

    ws, graph = prep.ws, prep.graph
    cancel = threading.Event()
    with contextlib.ExitStack() as stack:
        # Registered first, so it runs last: the lock is released on every way out.
        stack.callback(lease.release)
        with lease.keep_alive():
            stored_before = lease.stored
            state, etag = lease.state, lease.etag
            upgrade_keys(state)
            if resumed:
                run = state.runs[run.id]
            the_plan = prep.make_plan(state, state.serial if etag else None, state.lineage if etag else None,
                                      target, replace, save_digests=False)
            if saved is not None:
                _check_not_stale(saved, the_plan, stored_before, prep.flow_digest, graph)
            ws.digests.save()  # only now: a refused saved plan writes nothing under .flows/
            print_plan(the_plan, console)
            repoint = _older_hits(the_plan, state)
            if not the_plan.has_changes() and not repoint and not resumed:
                console.print("Nothing to do.")
                _print_flow_outputs(graph, state, prep.inputs)
                return
            if not the_plan.has_changes() and repoint:
                console.print(f"Nothing runs; {len(repoint)} node(s) go back to an earlier result from the cache "
                              "(recorded in the state).")
            if saved is None and not auto_approve:
                if not sys.stdin.isatty():
                    raise InputError("apply needs --auto-approve when not run interactively")
                if not typer.confirm("Apply this plan?", default=False):
                    console.print("Apply cancelled; nothing was run.")
                    raise typer.Exit(1)
            for w in ws.provider.warnings:
                err_console.print(f"[yellow]{escape(w)}[/yellow]")
            # Before the first blob is stored, never for a plan refused above (a stale plan writes nothing):
            # `flows cache gc` of any project sharing the blob store reads this state too.
            register_blob_user(ws)
            reporter = ConsoleReporter(console)
            # Ctrl-C is handled (not raised) until the summary is out, so the exit code always matches the
            # outcome recorded in the state: 0 succeeded, 1 failed, 130 interrupted.
            stack.enter_context(_interruptible(cancel))
            with reporter:
                outcomes, final = execute_plan(
                    graph=graph, plan=the_plan, state=state, keyer=prep.keyer(), provider=ws.provider,
                    blobs=ws.blobs, lease=lease, run=run, logs_dir=ws.logs_dir, opts=opts,
                    reporter=reporter, cancel=cancel, attach=attach, resumed=resumed)
            ws.digests.save()
        lease.release()  # before the summary: the next apply need not wait for it
        if lease.renew_error is not None:  # the writes were fenced and compare-and-swap protected; still, say it
            err_console.print(f"[yellow]Warning: the state lock's lease could not always be renewed: "
                              f"{escape(str(lease.renew_error))}[/yellow]")
        console.print(_summary_table(outcomes, run.id))
        _print_flow_outputs(graph, final, prep.inputs)
        result = final.runs[run.id].outcome
        console.print(f"Run {run.id}: [bold]{result}[/bold]. State serial {final.serial}.")
    if result == "interrupted":
        raise typer.Exit(130)
    if result not in ("succeeded", "recovered"):
        raise typer.Exit(1)


def _older_hits(plan: Any, state: Any) -> list[str]:
    """Reused nodes whose record points at another result (e.g. after reverting an input): the state must be
    updated to the cache hit even though no job runs, or outputs and the next plan would show the old one."""
    out = []
    for change in plan.nodes:
        rec = state.nodes.get(change.address)
        if change.action == "reuse" and (rec is None or rec.key != change.key or rec.status != "succeeded"):
            out.append(change.address)
    return out


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


def _project_workspace(flow: Optional[str], none_ok: bool = False) -> tuple[Any, Any]:
    """The workspace of the project around the current folder, and the flow to act on (`none_ok`: None when
    no flow has any state here, instead of an error)."""
    from reconcile.loader import project_root_for
    from reconcile.workspace import Workspace
    ws = Workspace(project_root_for(Path.cwd() / "flows.toml"))
    flows = ws.backend.list_flows()
    if flow is None and not flows and none_ok:
        return ws, None
    if flow is None:
        if len(flows) != 1:
            raise InputError("name the flow with --flow" + (f" (flows: {', '.join(flows)})" if flows else
                                                             " (no state found here)"))
        flow = flows[0]
    return ws, flow


def _find_node(state: Any, address: str) -> Any:
    rec = state.nodes.get(address)
    if rec is None:
        import difflib
        hint = difflib.get_close_matches(address, list(state.nodes), n=1)
        raise InputError(f"no node '{address}' in the state" + (f" (did you mean '{hint[0]}'?)" if hint else ""))
    return rec


@app.command()
def outputs(
    address: str = typer.Argument(..., help="Node address, e.g. 'model_training/Train Model'."),
    dest: Optional[Path] = typer.Option(None, "--dest", help="Copy the output files into this folder."),
    flow: Optional[str] = typer.Option(None, "--flow", help="The flow (workflow name) if the state has several."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show a node's outputs, or copy them out of the blob store with --dest."""
    ws, flow = _project_workspace(flow or address.split("/", 1)[0] if "/" in address else flow)
    rec = _find_node(ws.read_state(flow).state, address)
    if rec.status != "succeeded":
        raise InputError(f"node '{address}' has no outputs: it {rec.status} in run {rec.run_id}" +
                         (f" ({rec.error})" if rec.error else ""))
    copied = {name: _copy_out(ws, name, out, dest) for name, out in rec.outputs.items()
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


def _copy_out(ws: Any, name: str, out: Any, dest: Path) -> str:
    """Copy one output out of the blob store to DEST/<name>; one clear error for a missing blob or a bad DEST."""
    from providers.blobs.base import ensure_inside
    from vocab.flytetypes import is_dir
    try:
        target = ensure_inside(dest, name)
    except ValueError:
        raise InputError(f"output name '{name}' would be written outside {dest}") from None
    from providers.blobs.base import BlobChangedError
    try:
        (ws.blobs.get_dir if is_dir(out.type) else ws.blobs.get_file)(out.uri, target)
    except BlobChangedError:
        raise InputError(f"output '{name}' has changed in the blob store since it was stored (its bytes no longer "
                         "match its digest); the next `flows apply` runs its node again") from None
    except OSError as e:
        if not ws.blobs.exists([out.uri]).get(out.uri, False):
            raise InputError(f"output '{name}' is no longer in the blob store (deleted by `flows cache gc`?); "
                             "run the node again with `flows apply ... --replace ADDR`") from None
        raise InputError(f"cannot copy output '{name}' to {target}: {e.strerror or e}") from None
    return str(target)


@app.command()
def logs(
    address: str = typer.Argument(..., help="Node address."),
    flow: Optional[str] = typer.Option(None, "--flow", help="The flow (workflow name) if the state has several."),
) -> None:
    """Show the log of a node's last job."""
    ws, flow = _project_workspace(flow or address.split("/", 1)[0] if "/" in address else flow)
    rec = _find_node(ws.read_state(flow).state, address)
    if rec.log and Path(rec.log).is_file():
        typer.echo(redact(Path(rec.log).read_text(errors="replace")), nl=False)
    elif rec.job_id:
        typer.echo(redact(ws.provider.logs(rec.job_id)), nl=False)
    elif rec.status != "succeeded":
        raise InputError(f"node '{address}' has no log: it {rec.status} before a job started" +
                         (f" ({redact(rec.error)})" if rec.error else ""))
    else:
        raise InputError(f"node '{address}' has no log (it was reused from the cache: see its run "
                         f"{rec.reused_from or rec.run_id})")
