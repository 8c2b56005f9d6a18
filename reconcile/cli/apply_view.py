"""What `flows apply` and `flows recover` show while a plan is applied, and the exit code of the outcome."""
from __future__ import annotations

import collections
import contextlib
import signal
import sys
import threading
from typing import Any, Iterator

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reconcile.apply import ApplyOptions, NodeOutcome
from reconcile.gates import AskApproval
from reconcile.cli.output import out_console
from reconcile.graph import FlowGraph
from reconcile.plan_model import Plan
from reconcile.session import ApplyResult, LoadedFlow, PlanDeclined, ReporterContext, apply_plan
from state.model import RunRecord, State
from state.store import Lease
from vocab.errors import InputError

console = out_console()
err_console = Console(stderr=True, highlight=False)
SUMMARY_ROWS = 50  # a bigger run lists only the nodes that did not simply succeed or get reused
# An apply that stopped at an approval gate nobody answered: not a failure, not done (Terraform-like: a distinct
# non-zero code, so CI can tell "waiting for a person" from "broken").
WAITING_EXIT = 3


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


class ConsoleApplyUI:
    """`session.ApplyUI` on the terminal. Ctrl-C stays handled (not raised) until the command has shown the
    outcome, so the exit code always matches the outcome recorded in the state."""

    def __init__(self, graph: FlowGraph, inputs: dict[str, Any], stack: contextlib.ExitStack, approver: str) -> None:
        self.graph, self.inputs, self.stack, self.approver = graph, inputs, stack, approver
        self._reporter: Any = None
        self._cancel: threading.Event | None = None

    def show_plan(self, plan: Plan) -> None:
        from reconcile.render_plan import print_plan
        print_plan(plan, console)

    def nothing_to_do(self, state: State) -> None:
        console.print("Nothing to do.")
        print_flow_outputs(self.graph, state, self.inputs)

    def repointing(self, nodes: list[str]) -> None:
        console.print(f"Nothing runs; {len(nodes)} node(s) go back to an earlier result from the cache "
                      "(recorded in the state).")

    def approve(self, plan: Plan) -> bool:
        if not sys.stdin.isatty():
            raise InputError("apply needs --auto-approve when not run interactively")
        return typer.confirm("Apply this plan?", default=False)

    def warn(self, text: str) -> None:
        err_console.print(f"[yellow]{escape(text)}[/yellow]")

    def reporter(self) -> ReporterContext:
        from reconcile.progress import ConsoleReporter
        self._reporter = ConsoleReporter(console)
        return self._reporter

    def ask_approval(self) -> AskApproval | None:
        if not sys.stdin.isatty():
            return None  # nobody to ask: an unanswered gate ends the run waiting (`--approve NAME` goes on)
        from reconcile.cli.approval import terminal_asker
        return terminal_asker(console, self.approver,
                              pause=lambda: self._reporter.paused() if self._reporter else contextlib.nullcontext(),
                              cancel=self._cancel)

    def interruptible(self, cancel: threading.Event) -> None:
        self._cancel = cancel  # a question at the terminal ends at Ctrl-C too
        self.stack.enter_context(_interruptible(cancel))


def apply_and_report(loaded: LoadedFlow, opts: ApplyOptions, run: RunRecord, lease: Lease, *,
                     target: list[str], replace: list[str], saved: Plan | None = None, auto_approve: bool = True,
                     attach: dict[str, Any] | None = None, resumed: bool = False) -> None:
    """Apply under `lease`, show the summary, and exit 0 (succeeded), 1 (failed or declined), 3 (waiting at an
    approval gate nobody answered), 130 (interrupted)."""
    with contextlib.ExitStack() as stack:
        ui = ConsoleApplyUI(loaded.graph, loaded.inputs, stack, opts.approver)
        try:
            result = apply_plan(loaded, opts, run, lease, ui, target=target, replace=replace, saved=saved,
                                auto_approve=auto_approve, attach=attach, resumed=resumed)
        except PlanDeclined:
            console.print("Apply cancelled; nothing was run.")
            raise typer.Exit(1) from None
        if result is None:
            return
        _report(loaded, result)
    if result.outcome == "interrupted":
        raise typer.Exit(130)
    if result.outcome == "waiting":
        raise typer.Exit(WAITING_EXIT)
    if result.outcome not in ("succeeded", "recovered"):
        raise typer.Exit(1)


def _report(loaded: LoadedFlow, result: ApplyResult) -> None:
    if result.lease_error is not None:  # the writes were fenced and compare-and-swap protected; still, say it
        err_console.print(f"[yellow]Warning: the state lock's lease could not always be renewed: "
                          f"{escape(str(result.lease_error))}[/yellow]")
    console.print(summary_table(result.outcomes, result.run_id))
    print_flow_outputs(loaded.graph, result.state, loaded.inputs)
    console.print(f"Run {result.run_id}: [bold]{result.outcome}[/bold]. State serial {result.state.serial}.")
    waiting = result.state.runs[result.run_id].waiting
    if result.outcome == "waiting" and waiting:
        flags = " ".join(f"--approve {_quoted(name)}" for name in waiting)
        console.print(f"Waiting for approval: {escape(', '.join(waiting))}. Go on with `flows apply ... {escape(flags)}` "
                      f"(a new run) or `flows recover {result.run_id} {escape(flags)}` (this run); nothing finished "
                      "runs again.", soft_wrap=True)


def _quoted(name: str) -> str:
    import shlex
    return shlex.quote(name)


def summary_table(outcomes: dict[str, NodeOutcome], run_id: str) -> Any:
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


def print_flow_outputs(graph: FlowGraph, state: State, inputs: dict[str, Any]) -> None:
    if not graph.outputs:
        return
    console.print("[bold]Outputs:[/bold]")
    for name, b in graph.outputs.items():
        if b.kind == "node_output":
            rec = state.nodes.get(str(b.node))
            out = rec.outputs.get(str(b.output)) if rec and rec.status == "succeeded" else None
            shown = "(not produced)" if out is None else (repr(out.value) if out.value is not None else out.uri)
        elif b.kind == "flow_input":  # a flow input passed straight through
            shown = repr(inputs.get(str(b.name), graph.inputs[str(b.name)].default))
        else:
            shown = repr(b.value)
        console.print(f"  {escape(name)} = {escape(str(shown))}", soft_wrap=True)  # a URI stays one line
