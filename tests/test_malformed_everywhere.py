"""Malformed values, files and flags fed to every command (issue 17): each gives one line on stderr, a
non-zero exit, no traceback (nor an "internal error"), and writes nothing under .flows/."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.fixtures.projects import flows, write_project
from tests.test_bad_input import written

INPUTS = ["--data", "data/in.csv"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The chain flow applied once (so state, runs, cache and logs exist), with malformed files beside it."""
    root = write_project(tmp_path_factory.mktemp("malformed") / "p")
    assert flows("apply", "flow.py", *INPUTS, "--auto-approve", cwd=root).code == 0
    os.mkfifo(root / "pipe.py")
    os.mkfifo(root / "pipe.csv")
    (root / "binary.py").write_bytes(b"\x00\xff\xfe garbage")
    (root / "latin1.py").write_bytes(b"x = '\xe9t\xe9'\n")
    (root / "garbage.json").write_text("{not json")
    (root / "list.json").write_text("[1, 2]")
    (root / "plan.json").write_text('{"schema_version": 1, "flow": "wf"}')
    return root


FLOW_FILES = ["nope.py", "data", "pipe.py", "binary.py", "latin1.py"]
CASES: list[list[str]] = [
    *[[cmd, f] for cmd in ("validate", "graph", "plan", "apply") for f in FLOW_FILES],
    ["graph", "flow.py", "--format", "png"],
    ["plan", "flow.py", *INPUTS, "--target", "wf/nope"],
    ["plan", "flow.py", *INPUTS, "--replace", "wf/nope"],
    ["plan", "flow.py", *INPUTS, "--inputs", "missing.json"],
    ["plan", "flow.py", *INPUTS, "--inputs", "garbage.json"],
    ["plan", "flow.py", *INPUTS, "--inputs", "list.json"],
    ["plan", "flow.py", "--data", "missing.csv"],
    ["plan", "flow.py", "--data", "pipe.csv"],
    ["plan", "flow.py", *INPUTS, "--factor", "two"],
    ["plan", "flow.py", *INPUTS, "--factor", "\udcff"],
    ["plan", "flow.py", *INPUTS, "--nope", "1"],
    ["plan", "flow.py", *INPUTS, "stray"],
    ["plan", "flow.py", *INPUTS, "--out", "/nonexistent/plan.json"],
    ["plan", "flow.py", *INPUTS, "--bogus-flag"],
    ["apply", "flow.py", *INPUTS, "--lock-timeout", "-5"],
    ["apply", "flow.py", *INPUTS, "--lock-timeout", "soon"],
    ["apply", "flow.py", *INPUTS, "--parallelism", "0"],
    ["apply", "garbage.json"],
    ["apply", "plan.json"],
    ["recover", "r-nope"],
    ["outputs", "wf/nope"],
    ["logs", "wf/nope"],
    ["state", "show", "wf/nope"],
    ["state", "rm", "wf/nope"],
    ["state", "mv", "wf/nope", "wf/x"],
    ["state", "pull", "--version", "nope"],
    ["state", "push", "garbage.json"],
    ["state", "push", "missing.json"],
    ["state", "unlock", "nope"],
    ["state", "list", "--flow", "nope"],
    ["runs", "show", "r-nope"],
    ["runs", "list", "--flow", "nope"],
    ["cache", "rm", "nope"],
    ["cache", "gc", "--keep-last", "-1"],
    ["artifacts", "show", "nope"],
    ["lineage", "nope"],
    ["bogus-command"],
]


@pytest.mark.parametrize("args", CASES, ids=[" ".join(a).encode("ascii", "replace").decode() for a in CASES])
def test_one_line_nonzero_no_traceback_nothing_written(project, args):
    before = written(project)
    r = flows(*args, cwd=project, timeout=60)
    lines = r.err.strip().splitlines()
    assert r.code != 0, r.text
    assert "Traceback" not in r.text and "internal error" not in r.text, r.text
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.text
    assert written(project) == before, "something was written under .flows/"


def test_the_project_still_plans_clean(project):
    r = flows("plan", "flow.py", *INPUTS, "--detailed-exitcode", cwd=project)
    assert r.code == 0 and json.dumps("No changes.")[1:-1] in r.out, r.text
