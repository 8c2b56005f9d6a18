"""`flows validate` and `flows graph`: load a flow file, check it, show it; `graph` colours it by the plan.

Neither writes the state nor runs a job."""
from __future__ import annotations

import dataclasses
import io
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from reconcile.cli.lazy import lazy_module
from reconcile.cli.main import app
from reconcile.cli.output import out_console
from vocab.errors import FlowsError
from vocab.masking import redact, redact_obj

if TYPE_CHECKING:
    from reconcile.graph import FlowGraph

render_graph = lazy_module("reconcile.render_graph")  # pydantic and the graph model load when a command runs

FORMATS = ("text", "dot", "mermaid", "svg", "html")


class UsageError(FlowsError):
    """A bad option value: reported like any FlowsError (one line, no traceback), with click's usage exit code."""

    exit_code = 2


def _load(flow_file: Path, workflow: Optional[str]) -> FlowGraph:
    from reconcile.loader import load_flow  # imported here so `flows --help` stays fast
    return render_graph.redacted(load_flow(flow_file, workflow))


def _console() -> Console:
    # Created per command (not at import) so the terminal width is read when the command runs.
    return out_console(soft_wrap=False)


@app.command()
def validate(
    flow_file: Path = typer.Argument(..., metavar="FLOW_FILE", help="The flow file (the workflow.py you run on Domino)."),
    workflow: Optional[str] = typer.Argument(None, metavar="WORKFLOW",
                                             help="The workflow to check (needed when the file has several)."),
    as_json: bool = typer.Option(False, "--json", help="Print the checked graph (or the error) as JSON."),
) -> None:
    """Load a flow file, check it, and show its nodes, bindings, inputs, outputs and artifacts.

    Exit 0 when the flow is valid, 1 (with one clear message) when it is not.
    """
    try:
        graph = _load(flow_file, workflow)
    except FlowsError as e:
        if as_json:
            error = {"message": e.message, "file": e.file, "line": e.line, "node": e.node, "field": e.field,
                     "text": e.render()}
            typer.echo(json.dumps(redact_obj({"valid": False, "error": error}), indent=2))
        raise  # the entry point prints it on stderr and exits 1
    if as_json:
        # The graph's strings are already masked; masking the JSON text too could hit `true`/`false` and break it.
        typer.echo(json.dumps(render_graph.as_json(graph), indent=2, ensure_ascii=False))
        return
    console = _console()
    console.print(f"[green]✓[/green] {escape(graph.file)}: workflow "
                  f"[bold]{escape(graph.workflow)}[/bold] is valid")
    console.print(render_graph.report(graph))
    others = [w for w in graph.workflows if w != graph.workflow]
    if others:
        console.print(f"[dim]Other workflows in this file: {escape(', '.join(others))}[/dim]")
    console.print(render_graph.summary_line(graph))


@dataclasses.dataclass
class Planned:
    """A flow graph (secrets masked) with, when its inputs were known, the plan and state that colour it."""

    graph: FlowGraph
    plan: Any = None
    state: Any = None
    note: str = ""  # why the picture has no plan actions

    @property
    def actions(self) -> dict[str, str]:
        return {n.address: n.action for n in self.plan.nodes} if self.plan is not None else {}


def _plan_for_graph(flow_file: Path, workflow: Optional[str], input_args: list[str],
                    inputs_file: Optional[str]) -> Planned:
    """Plan exactly as `flows plan` does (reads the state, never writes it). Without inputs: the plain graph."""
    from reconcile.cli.flow_cmds import Prepared
    from reconcile.loader import load_flow

    given = bool(input_args or inputs_file)
    if not given:
        graph = load_flow(flow_file, workflow)
        missing = [n for n, fi in graph.inputs.items() if fi.required]
        if missing:
            flags = " ".join(f"--{n} VALUE" for n in missing)
            return Planned(render_graph.redacted(graph),
                           note=f"no plan actions: the flow's inputs are not given (add {flags}, or --inputs FILE, "
                                "to colour each node by what `flows plan` would do)")
        workflow = graph.workflow
    try:
        prep = Prepared(flow_file, workflow, input_args, inputs_file)
        view = prep.ws.read_state(prep.graph.workflow)
        stored = view.stored
        plan = prep.make_plan(view.state, stored.serial if stored else None, stored.lineage if stored else None,
                              [], [])
    except FlowsError as e:
        if given:
            raise  # the user asked for a plan: a bad input is their error to see
        # Every input has a default, so we tried on our own: a picture without actions is still useful.
        return Planned(render_graph.redacted(load_flow(flow_file, workflow)),
                       note=f"no plan actions: could not plan ({e.render()})")
    # Masked like the graph, so a node whose address holds a secret still finds its action and record.
    return Planned(render_graph.redacted(prep.graph), type(plan).model_validate(redact_obj(plan.model_dump(mode="json"))),
                   type(view.state).model_validate(redact_obj(view.state.model_dump(mode="json"))))


def _write(text: str, out: Optional[Path]) -> None:
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write {out}: {e.strerror}", field="--out") from None
    Console(stderr=True, highlight=False).print(f"Wrote {escape(str(out))}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def graph(
    ctx: typer.Context,
    flow_file: Path = typer.Argument(..., metavar="FLOW_FILE", help="The flow file (the workflow.py you run on Domino)."),
    fmt: str = typer.Option("text", "--format", "-f", metavar="text|dot|mermaid|svg|html",
                            help="text: a tree in the terminal; dot: Graphviz; mermaid: a Mermaid flowchart; "
                                 "svg: a picture (needs Graphviz); html: one self-contained page, click a node "
                                 "for its details (needs Graphviz)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
    inputs_file: Optional[str] = typer.Option(None, "--inputs", help="JSON file of flow inputs."),
) -> None:
    """Draw the DAG of a flow, each node coloured by its plan action when the flow's inputs are known.

    Usage: flows graph FLOW_FILE [WORKFLOW] [--<input> VALUE ...] [--format text|dot|mermaid|svg|html] [-o FILE]

    Inputs are given as for `flows plan` (or all have defaults); without them the plain graph is drawn.
    """
    # Checked here rather than with a typer choice type, so a typo is one clean line like every other error.
    if fmt not in FORMATS:
        raise UsageError(f"{fmt!r} is not one of {', '.join(FORMATS)}", field="--format")
    args = list(ctx.args)
    workflow = args.pop(0) if args and not args[0].startswith("-") else None
    if fmt in ("svg", "html") and shutil.which("dot") is None:
        raise FlowsError(render_graph.DOT_MISSING)  # before any planning work
    planned = _plan_for_graph(flow_file, workflow, args, inputs_file)
    if planned.note:
        # On stderr: stdout stays a valid DOT / Mermaid / SVG / HTML document.
        Console(stderr=True, highlight=False).print(f"[yellow]Note:[/yellow] {escape(redact(planned.note))}")
    loaded, actions = planned.graph, planned.actions
    if fmt == "dot":
        _write(redact(render_graph.to_dot(loaded, actions)), out)
    elif fmt == "mermaid":
        _write(redact(render_graph.to_mermaid(loaded, actions)), out)
    elif fmt == "svg":
        _write(redact(render_graph.run_dot(render_graph.to_dot(loaded, actions, legend=True))), out)
    elif fmt == "html":
        from reconcile import render_html
        from reconcile.render_plan import summary_line
        svg = render_graph.run_dot(render_graph.to_dot(loaded, actions))
        summary = summary_line(planned.plan) if planned.plan is not None else planned.note
        _write(render_html.page(loaded, svg, render_html.details(loaded, planned.plan, planned.state), summary), out)
    elif out is not None:
        console = Console(record=True, width=120, file=io.StringIO(), color_system=None)
        _print_tree(console, planned)
        _write(console.export_text(), out)
    else:
        _print_tree(_console(), planned)


def _print_tree(console: Console, planned: Planned) -> None:
    console.print(render_graph.tree(planned.graph, planned.actions))
    if planned.plan is not None:
        from reconcile.render_plan import summary_line
        console.print(summary_line(planned.plan))
