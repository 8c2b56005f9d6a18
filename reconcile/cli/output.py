"""Consoles for command output: people on a terminal, pipes and programs otherwise.

On a terminal Rich fits tables to its width. When stdout is not a terminal (`| grep`, `> file`, CI), nothing is
wrapped: a table is printed at its full width, so a cell such as `model.json` is never split over two lines
(COLUMNS is ignored there; `--json` is the form for programs).
"""
from __future__ import annotations

import sys

from rich.console import Console

PIPE_WIDTH = 100_000  # wide enough that no table cell wraps; Rich pads nothing to it


def _piped(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return not (callable(isatty) and isatty())
    except ValueError:  # a closed stream
        return True


def out_console(**kw: object) -> Console:
    """The console for stdout (created when a command runs, so it sees the stdout the command writes to)."""
    if _piped(sys.stdout):
        kw.setdefault("width", PIPE_WIDTH)
    return Console(highlight=False, **kw)  # type: ignore[arg-type]


def warn(text: str) -> None:
    """A flow that loads but is probably not what was meant: said on stderr before planning."""
    from rich.markup import escape

    from vocab.masking import redact
    Console(stderr=True, highlight=False).print(f"[yellow]Warning:[/yellow] {escape(redact(text))}", soft_wrap=True)
