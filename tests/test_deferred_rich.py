"""`flows --help` does not import what typer's help formatter imports but never uses here (issue 18: `flows --help`
< 0.3 s), and what it deferred still works when something does use it (reconcile/cli/deferred_rich.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.fixtures.projects import flows

CHECK_USE = """
import sys
from reconcile.cli import deferred_rich
deferred_rich.install()
import typer.rich_utils as formatter
from rich.console import Console
assert type(sys.modules["rich.markdown"]).__name__ == "_StandIn"
console = Console(record=True, width=60)
console.print(formatter.Markdown("# Title\\n\\n*some* text"))
assert type(sys.modules["rich.markdown"]).__name__ == "module"  # the real one replaced it
try:
    raise ValueError("boom")
except ValueError as e:
    console.print(formatter.Traceback.from_exception(type(e), e, e.__traceback__))
print(console.export_text())
"""


def test_help_imports_neither_markdown_nor_rich_tracebacks(tmp_path: Path) -> None:
    r = flows("--help", cwd=tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"})  # (a real process reports its imports)
    assert r.code == 0 and "Commands" in r.out, r.text
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.err.splitlines() if line.startswith("import time:")}
    assert "typer.rich_utils" in imported  # the help was formatted by typer's rich formatter
    deferred = {m for m in imported if m.startswith(("markdown_it", "rich.markdown", "rich.traceback"))}
    assert not deferred, sorted(deferred)


def test_what_was_deferred_loads_when_it_is_used() -> None:
    r = subprocess.run([sys.executable, "-c", CHECK_USE], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Title" in r.stdout and "some text" in r.stdout  # the real Markdown rendered it
    assert "ValueError: boom" in r.stdout and "Traceback" in r.stdout  # and the real rich traceback


def test_an_error_of_the_cli_is_still_one_line(tmp_path: Path) -> None:
    r = flows("plan", "missing.py", "wf", cwd=tmp_path)
    assert r.code != 0 and "Traceback" not in r.text
    assert r.err.strip().startswith("Error:") and len(r.err.strip().splitlines()) == 1, r.err
