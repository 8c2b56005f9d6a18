"""`flows validate` and `flows graph`: load a flow file, check it, show it. No state, no jobs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from reconcile import render_graph
from reconcile.cli.main import app
from reconcile.errors import FlowsError
from reconcile.graph import FlowGraph
from reconcile.secrets import redact, redact_obj

FORMATS = ("text", "dot", "mermaid")


class UsageError(FlowsError):
    """A bad option value: reported like any FlowsError (one line, no traceback), with click's usage exit code."""

    exit_code = 2


def _load(flow_file: Path, workflow: Optional[str]) -> FlowGraph:
    from reconcile.loader import load_flow  # imported here so `flows --help` stays fast
    return render_graph.redacted(load_flow(flow_file, workflow))


def _console() -> Console:
    # Created per command (not at import) so the terminal width is read when the command runs.
    return Console(highlight=False, soft_wrap=False)


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


@app.command()
def graph(
    flow_file: Path = typer.Argument(..., metavar="FLOW_FILE", help="The flow file (the workflow.py you run on Domino)."),
    workflow: Optional[str] = typer.Argument(None, metavar="WORKFLOW",
                                             help="The workflow to draw (needed when the file has several)."),
    fmt: str = typer.Option("text", "--format", "-f", metavar="text|dot|mermaid",
                            help="text: a tree in the terminal; dot: Graphviz; mermaid: a Mermaid flowchart."),
) -> None:
    """Print the DAG of a flow: a text tree by default, or Graphviz DOT / Mermaid to render elsewhere."""
    # Checked here rather than with a typer choice type, so a typo is one clean line like every other error.
    if fmt not in FORMATS:
        raise UsageError(f"{fmt!r} is not one of {', '.join(FORMATS)}", field="--format")
    loaded = _load(flow_file, workflow)
    if fmt == "dot":
        typer.echo(redact(render_graph.to_dot(loaded)), nl=False)
    elif fmt == "mermaid":
        typer.echo(redact(render_graph.to_mermaid(loaded)), nl=False)
    else:
        _console().print(render_graph.tree(loaded))
