"""Asking a person at a terminal to approve a gate (`⏸ approve deploy ... [y/N]`), with the gate's timeout as the
longest wait; `--approve NAME` answers in advance, and without a terminal nobody is asked (the run ends waiting)."""
from __future__ import annotations

import contextlib
import select
import sys
import threading
import time
from typing import Any, Callable, TextIO

from rich.console import Console
from rich.markup import escape

from reconcile.gates import Answer, AskApproval, GateQuestion
from reconcile.plan import fmt_seconds
from vocab.masking import redact


def read_answer(stream: TextIO, seconds: float | None, cancel: threading.Event | None = None) -> str | None:
    """One line from `stream`, waiting at most `seconds` (None: no limit); None when the time ran out. A set
    `cancel` (Ctrl-C) ends the wait as end of input ("")."""
    deadline = None if seconds is None else time.monotonic() + max(0.0, seconds)
    while True:
        if cancel is not None and cancel.is_set():
            return ""
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return None
        ready, _, _ = select.select([stream], [], [], 0.25 if left is None else min(0.25, left))
        if ready:
            return stream.readline()


def terminal_asker(console: Console, approver: str, pause: Callable[[], Any] | None = None,
                   stream: TextIO | None = None, cancel: threading.Event | None = None) -> AskApproval:
    """The question put at a terminal: y approves, anything else refuses, end of input leaves it unanswered,
    and the gate's timeout running out fails it (as Flyte fails the execution). `pause()` is a context manager
    that stops the live progress view while the person reads and types."""
    def ask(question: GateQuestion) -> Answer:
        with (pause() if pause is not None else contextlib.nullcontext()):
            console.print(f"[bold bright_yellow]⏸ approve {escape(question.name)}[/bold bright_yellow]  "
                          f"[dim]({escape(', '.join(question.addresses))})[/dim]")
            for text in question.values:
                console.print(f"    value: {escape(redact(text))}", soft_wrap=True)
            limit = (f" (times out in {fmt_seconds(question.seconds_left)})"
                     if question.seconds_left is not None else "")
            console.print(f"Approve '{escape(question.name)}' as {escape(approver)}?{limit} " + escape("[y/N]: "), end="")
            line = read_answer(stream or sys.stdin, question.seconds_left, cancel)
            if line is None:
                console.print()
                return "timed out"
            if line == "":  # end of input: nobody is there to answer
                console.print()
                return "unanswered"
            return "approved" if line.strip().lower() in ("y", "yes") else "refused"
    return ask

