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


def _error_json(e: FlowsError) -> dict[str, Any]:
    return {"message": e.message, "file": e.file, "line": e.line, "node": e.node, "field": e.field, "text": e.render()}


def _print_warnings(graph: FlowGraph) -> None:
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for text in graph.warnings:
        err.print(f"[yellow]Warning:[/yellow] {escape(redact(text))}")


@app.command()
def validate(
    flow_file: Path = typer.Argument(..., metavar="FLOW_FILE", help="The flow file (the workflow.py you run on Domino)."),
    workflow: Optional[str] = typer.Argument(None, metavar="WORKFLOW",
                                             help="The workflow to check (all of the file's workflows when omitted)."),
    as_json: bool = typer.Option(False, "--json", help="Print the checked graph (or the error) as JSON."),
) -> None:
    """Load a flow file, check it, and show its nodes, bindings, inputs, outputs and artifacts.

    Without WORKFLOW, every workflow of the file is checked and reported. Exit 0 when all are valid,
    1 (with one clear message per invalid workflow) when one is not.
    """
    try:
        if workflow is None:
            from reconcile.loader import load_every_workflow
            results = load_every_workflow(flow_file)
            if len(results) > 1:
                _validate_each(results, as_json)
                return
            graph = render_graph.redacted(_one(results[0][1]))
        else:
            graph = _load(flow_file, workflow)
    except FlowsError as e:
        if as_json:
            typer.echo(json.dumps(redact_obj({"valid": False, "error": _error_json(e)}), indent=2))
        raise  # the entry point prints it on stderr and exits 1
    _print_warnings(graph)
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


def _one(result: Any) -> FlowGraph:
    if isinstance(result, FlowsError):
        raise result
    return result


def _validate_each(results: list[tuple[str, Any]], as_json: bool) -> None:
    """Several workflows, none named: report each (valid with its summary, or its error), then the count."""
    bad = [name for name, r in results if isinstance(r, FlowsError)]
    if as_json:
        items = [{"workflow": name, "valid": False, "error": redact_obj(_error_json(r))} if isinstance(r, FlowsError)
                 else render_graph.as_json(render_graph.redacted(r)) for name, r in results]
        typer.echo(json.dumps({"valid": not bad, "workflows": items}, indent=2, ensure_ascii=False))
    else:
        console = _console()
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        for name, r in results:
            if isinstance(r, FlowsError):
                err.print(f"[red]✗[/red] workflow [bold]{escape(name)}[/bold]: {escape(redact(r.render()))}")
                continue
            graph = render_graph.redacted(r)
            _print_warnings(graph)
            console.print(f"[green]✓[/green] {escape(graph.file)}: workflow [bold]{escape(name)}[/bold] is valid")
            console.print(render_graph.report(graph))
            console.print(render_graph.summary_line(graph))
            console.print()
        console.print(f"{len(results)} workflows: {len(results) - len(bad)} valid"
                      + (f", {len(bad)} invalid ({', '.join(bad)})" if bad else ""))
    if bad:
        raise typer.Exit(1)


@dataclasses.dataclass
class PlannedGraph:
    """A flow graph (secrets masked) with, when its inputs were known, the plan and state that colour it."""

    graph: FlowGraph
    plan: Any = None
    state: Any = None
    note: str = ""  # why the picture has no plan actions

    @property
    def actions(self) -> dict[str, str]:
        return {n.address: n.action for n in self.plan.nodes} if self.plan is not None else {}


def _plan_for_graph(flow_file: Path, workflow: Optional[str], input_args: list[str],
                    inputs_file: Optional[str]) -> PlannedGraph:
    """Plan exactly as `flows plan` does (reads the state, never writes it). Without inputs: the plain graph."""
    from reconcile.loader import load_flow
    from reconcile.session import LoadedFlow

    given = bool(input_args or inputs_file)
    if not given:
        graph = load_flow(flow_file, workflow)
        missing = [n for n, fi in graph.inputs.items() if fi.required]
        if missing:
            flags = " ".join(f"--{n} VALUE" for n in missing)
            return PlannedGraph(render_graph.redacted(graph),
                           note=f"no plan actions: the flow's inputs are not given (add {flags}, or --inputs FILE, "
                                "to colour each node by what `flows plan` would do)")
        workflow = graph.workflow
    try:
        loaded = LoadedFlow(flow_file, workflow, input_args, inputs_file)
        plan, view = loaded.plan([], [])
    except FlowsError as e:
        if given:
            raise  # the user asked for a plan: a bad input is their error to see
        # Every input has a default, so we tried on our own: a picture without actions is still useful.
        return PlannedGraph(render_graph.redacted(load_flow(flow_file, workflow)),
                       note=f"no plan actions: could not plan ({e.render()})")
    # Masked like the graph, so a node whose address holds a secret still finds its action and record.
    return PlannedGraph(render_graph.redacted(loaded.graph), type(plan).model_validate(redact_obj(plan.model_dump(mode="json"))),
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


def _print_tree(console: Console, planned: PlannedGraph) -> None:
    console.print(render_graph.tree(planned.graph, planned.actions))
    if planned.plan is not None:
        from reconcile.render_plan import summary_line
        console.print(summary_line(planned.plan))
