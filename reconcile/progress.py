"""What the user sees while an apply runs: a live view on a terminal, a plain log otherwise (CI)."""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Iterator

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from reconcile.apply import NodeOutcome, Reporter
from vocab.masking import redact

RESULT_STYLE = {"succeeded": "green", "reused": "dim", "failed": "red", "skipped": "yellow",
                "cancelled": "red", "running": "cyan", "awaiting": "bright_yellow", "blocked": "yellow"}


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


class ConsoleReporter(Reporter):
    def __init__(self, console: Console, outcomes: dict[str, NodeOutcome] | None = None) -> None:
        self.console = console
        self.live: Live | None = None
        self.outcomes: dict[str, NodeOutcome] = outcomes if outcomes is not None else {}
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self._is_plain: bool | None = None

    def attach(self, outcomes: dict[str, NodeOutcome]) -> None:
        self.outcomes = outcomes

    def _plain(self) -> bool:
        """Whether the console writes text as it is (no colours, no terminal, nothing recorded); asked once."""
        if self._is_plain is None:
            c = self.console
            self._is_plain = c.color_system is None and not c.is_terminal and not c.record
        return self._is_plain

    def __enter__(self) -> "ConsoleReporter":
        if self.console.is_terminal:
            self.live = Live(self._render(), console=self.console, refresh_per_second=8, transient=True,
                             get_renderable=self._render)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)
            self.live = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The live view stopped (a question is put to the person at the terminal), then started again."""
        live = self.live
        if live is not None:
            live.stop()
        try:
            yield
        finally:
            if live is not None:
                live.start()

    def _render(self) -> Any:
        counts = {k: 0 for k in ("succeeded", "reused", "failed", "skipped", "running", "waiting")}
        running = []
        for o in list(self.outcomes.values()):
            # handed to a worker but its job not started yet (waiting for a job slot): still left to do
            result = "waiting" if o.result == "running" and o.job_id is None else o.result
            counts[result] = counts.get(result, 0) + 1
            if result == "running":
                running.append(o)
        table = Table.grid(padding=(0, 2))
        for o in running:
            table.add_row(Text("⠿", style="cyan"), escape(o.address), o.job_id or "", o.status,
                          fmt_duration(o.duration))
        line = Text(f"done {counts['succeeded']}  reused {counts['reused']}  failed {counts['failed']}  "
                    f"skipped {counts['skipped']}  running {counts['running']}  left {counts['waiting']}  "
                    f"[{fmt_duration(time.monotonic() - self.started)}]")
        return Group(table, line)

    def event(self, outcome: NodeOutcome, message: str) -> None:
        if self.live is not None and outcome.result in ("running", "reused") and "warning" not in message:
            return  # the live view shows these
        if self.live is None and self._plain():
            # A plain log (CI, a file): the very line rich would write, without rendering it (twice per node).
            line = f"{outcome.address}: {redact(message)}"
            if outcome.result in ("succeeded", "failed") and outcome.duration is not None:
                line += f" ({fmt_duration(outcome.duration)})"
            tail = redact(outcome.log_tail.rstrip()) if outcome.result == "failed" and outcome.log_tail else ""
            if line.isprintable() and all(part.isprintable() for part in tail.split("\n")):  # else rich cleans it
                with self._lock:
                    self.console.file.write(line + "\n" + (tail + "\n" if tail else ""))
                    self.console.file.flush()
                return
        # Text pieces, not markup: nothing to parse or escape, and it is printed twice per node.
        text = Text.assemble((outcome.address, RESULT_STYLE.get(outcome.result, "")), ": ", redact(message))
        if outcome.result in ("succeeded", "failed") and outcome.duration is not None:
            text.append(f" ({fmt_duration(outcome.duration)})", style="dim")
        # A plain log (CI) keeps one event per line, unwrapped, so it can be grepped.
        soft = self.live is None
        with self._lock:
            self.console.print(text, highlight=False, soft_wrap=soft)
            if outcome.result == "failed" and outcome.log_tail:
                self.console.print(Text(redact(outcome.log_tail.rstrip()), style="dim"), soft_wrap=soft)
