"""A flow and the modules it imports from its project are traced as their source says, never from a stale .pyc.

Python trusts a .pyc whose recorded source mtime (whole seconds) and size match the file, so an edit made in the same
second that keeps the size (a commit id, a threshold, a file name of the same length) would be traced as the old code,
while the plan keys the new content: a wrong cache hit. Each case makes such a .pyc deterministically: it is written
first (by the user's own Python, or by flows's own plan where bytecode is on), then the source is edited to the same
size and given back its old mtime."""
from __future__ import annotations

import importlib.util
import os
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

from tests.fixtures.projects import FLOWS, flows, write_project
from tests.test_noop_plan import FLOW, HELPERS, INPUTS  # the chain flow whose report command a helper module holds


def edit_keeping_size_and_mtime(path: Path, old: str, new: str) -> None:
    assert len(old) == len(new)
    before = path.stat()
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size


def applied(tmp_path: Path) -> Path:
    root = write_project(tmp_path / "proj", FLOW, files={"helpers.py": HELPERS})
    r = flows("apply", "flow.py", "wf", *INPUTS, "--auto-approve", cwd=root)
    assert r.code == 0, r.text
    return root


def full_plan(root: Path) -> str:
    r = flows("plan", "flow.py", "wf", *INPUTS, cwd=root, env={"FLOWS_PLAN_SHORTCUT": "0"})
    assert r.code == 0, r.text
    return r.out


def test_a_helper_and_the_flow_edited_under_the_users_own_pyc_are_seen(tmp_path: Path) -> None:
    root = applied(tmp_path)
    for module in ("helpers.py", "flow.py"):  # what `python -c 'import helpers'` or a test run leaves behind
        assert Path(py_compile.compile(str(root / module), doraise=True)).is_file()
    assert "No changes." in full_plan(root)

    edit_keeping_size_and_mtime(root / "helpers.py", "notes.txt", "other.txt")
    assert "wf/report  update" in full_plan(root)
    edit_keeping_size_and_mtime(root / "helpers.py", "other.txt", "notes.txt")
    assert "No changes." in full_plan(root)

    edit_keeping_size_and_mtime(root / "flow.py", "factor: int = 2", "factor: int = 3")
    assert "wf/scale  update" in full_plan(root)


def test_where_bytecode_is_on_flows_leaves_a_pyc_checked_by_the_sources_hash(tmp_path: Path) -> None:
    root = applied(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["FLOWS_PLAN_SHORTCUT"] = "0"

    def plan() -> str:
        p = subprocess.run([FLOWS, "plan", "flow.py", "wf", *INPUTS], cwd=root, env=env, capture_output=True,
                           text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, p.stdout + p.stderr
        return p.stdout

    shutil.rmtree(root / ".flows" / "graphs")  # no traced graph to reuse: this plan imports the flow
    assert "No changes." in plan()
    for module in ("flow.py", "helpers.py"):
        pyc = Path(importlib.util.cache_from_source(str(root / module))).read_bytes()
        assert pyc[4:8] == (0b11).to_bytes(4, "little"), module  # PEP 552: checked against the source's hash
    edit_keeping_size_and_mtime(root / "helpers.py", "notes.txt", "other.txt")
    assert "wf/report  update" in plan()
    # Python itself now validates that .pyc by the source: a job importing the helper runs what the key says.
    check = subprocess.run([sys.executable, "-c", "import helpers; print(helpers.REPORT)"], cwd=root, env=env,
                           capture_output=True, text=True, timeout=60)
    assert check.stdout.strip() == "python scripts/report.py other.txt", check.stderr
