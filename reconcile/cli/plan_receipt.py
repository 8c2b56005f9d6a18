"""What a `flows plan` printed, kept for its no-op receipt (reconcile/noop_plan.py): the receipt replays it."""
from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from reconcile.cli.output import PIPE_WIDTH
from reconcile.render_plan import line_writer


class CapturingConsole:
    """Passes every print to the real console and keeps the markup, for the receipt."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.lines: list[str] = []
        self.plain_only = True
        self._say = line_writer(console)

    def plan_line(self, markup: str, plain: str) -> None:
        """A node's line: written as the plan writes it to that console (plain text to a pipe, not through rich)."""
        self._say(markup, plain)
        self.lines.append(markup)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self.console.print(*objects, **kwargs)
        if kwargs or len(objects) > 1 or (objects and not isinstance(objects[0], str)):
            self.plain_only = False  # something the receipt cannot replay: leave none
        self.lines.append(objects[0] if objects else "")


def plain_text(lines: list[str]) -> str:
    """What the plan printed, as the full plan prints it to a pipe (reconcile/cli/output.py)."""
    buf = io.StringIO()
    console = Console(file=buf, highlight=False, width=PIPE_WIDTH)
    for line in lines:
        console.print(line)
    return buf.getvalue()
