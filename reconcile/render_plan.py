"""Terraform-like plan output: one line per node with a symbol and colour, reasons under it, a summary."""
from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

from rich.console import Console
from rich.markup import escape

from reconcile.plan_model import COLOURS, SYMBOLS, Plan
from vocab.masking import redact

ORDER = ("create", "update", "run", "pending", "approve", "reuse", "forget")
WORDS = {"create": "to create", "update": "to update", "run": "to run", "pending": "pending",
         "approve": "to approve", "reuse": "reused", "forget": "to forget"}


def summary_line(plan: Plan) -> str:
    s = plan.summary
    # "to approve" only when the flow has gates: a plan without any reads as it always did
    parts = [f"{s.get(a, 0)} {WORDS[a]}" for a in ORDER if a != "approve" or s.get(a, 0)]
    return "Plan: " + ", ".join(parts) + "."


COLLAPSE_REUSED = 20  # beyond this many plain cache hits, list them only with --verbose (like Terraform)


def print_plan(plan: Plan, console: Console, verbose_reuse: bool = False) -> None:
    console.print(f"[bold]Flow[/bold] {escape(plan.flow)}  ({escape(plan.flow_file)})  "
                  f"state serial {plan.state_serial if plan.state_serial is not None else '-'}")
    if plan.targets:
        console.print(f"[yellow]Targeted plan:[/yellow] {escape(', '.join(plan.targets))} and what they need")
    console.print()
    plain_reuse = [n for n in plan.nodes if n.action == "reuse" and not n.reasons and not n.notes]
    collapse = not verbose_reuse and len(plain_reuse) > COLLAPSE_REUSED
    hidden = {id(n) for n in plain_reuse} if collapse else set()
    say = line_writer(console)
    for n in plan.nodes:
        if id(n) in hidden:
            continue
        colour = COLOURS[n.action]
        key = f"  {n.key[:12]}" if n.key else ("  (known after apply)" if n.action == "create" else "")
        dim_key = f"  [dim]{key[2:]}[/dim]" if key else ""
        if n.action == "approve":  # `⏸ approve deploy  (wf/approve deploy)`: apply stops there for a person
            say(f"[{colour}]{SYMBOLS[n.action]} approve {escape(n.gate or '')}[/{colour}]  "
                f"[dim]({escape(n.address)})[/dim]{dim_key}",
                f"{SYMBOLS[n.action]} approve {n.gate or ''}  ({n.address}){key}")
        else:
            say(f"[{colour}]{SYMBOLS[n.action]} {escape(n.address)}[/{colour}]  [{colour}]{n.action}[/{colour}]{dim_key}",
                f"{SYMBOLS[n.action]} {n.address}  {n.action}{key}")
        reasons = n.reasons
        if n.action == "reuse" and not reasons:
            reasons = []
            if verbose_reuse and n.reused_from_run:
                say(f"      [dim]cache hit from run {n.reused_from_run}[/dim]", f"      cache hit from run {n.reused_from_run}")
        for r in reasons:
            message = redact(r.message)
            say(f"      {escape(message)}", f"      {message}")
        for note in n.notes:
            message = redact(note.message)
            say(f"      [dim]{escape(message)}[/dim]", f"      {message}")
    if collapse:
        console.print(f"[dim]= {len(plain_reuse):,} nodes reused unchanged (--verbose lists them)[/dim]")
    console.print()
    if not plan.has_changes():
        console.print("[green]No changes.[/green] Every node is reused from the cache.")
    console.print(f"[bold]{summary_line(plan)}[/bold]")


@runtime_checkable
class PlanLines(Protocol):
    """A stand-in console that takes the plan's lines itself (the plan command's, which keeps them for the no-op
    receipt): given each line both ways."""

    def plan_line(self, markup: str, plain: str) -> None: ...


def line_writer(console: Console) -> Callable[[str, str], None]:
    """say(markup, plain): one line of the plan. On a plain console (no colours, no terminal: CI, a file) a line
    that rich would write unchanged (printable, shorter than the width, no `:emoji:` to replace) is written as
    it is: rendering thousands of plan lines through rich took longer than planning them. A `PlanLines` takes
    each line itself; anything else that prints (a terminal) gets every line through its `print`."""
    if isinstance(console, PlanLines):
        return console.plan_line
    if not isinstance(console, Console) or console.color_system is not None or console.is_terminal or console.record:
        return lambda markup, plain: console.print(markup)
    width, out = console.width, console.file

    def say(markup: str, plain: str) -> None:
        if len(plain) < width and plain.isascii() and plain.isprintable() and plain.count(":") < 2:
            out.write(plain + "\n")
        else:
            console.print(markup)
    return say
