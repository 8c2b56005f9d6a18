"""Output that pipes and programs can use (issue 17): when stdout is not a terminal no table cell is wrapped,
whatever COLUMNS says, and every listing command has --json."""
from __future__ import annotations

import json

import pytest

from tests.fixtures.projects import flows
from tests.test_artifacts import applied


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return applied(tmp_path_factory.mktemp("pipes") / "p")


@pytest.mark.parametrize("args, whole", [
    (["artifacts", "list"], "model.json"),
    (["state", "list"], "wf/train"),
    (["runs", "list"], "succeeded"),
    (["cache", "list"], "wf/train"),
])
def test_a_narrow_terminal_width_never_splits_a_cell_in_a_pipe(project, args, whole):
    r = flows(*args, cwd=project, env={"COLUMNS": "30"})
    assert r.code == 0, r.text
    assert any(whole in line for line in r.out.splitlines()), r.out  # `| grep model.json` finds it
    # one table row per line: the row that names the cell also carries its neighbours
    assert max(len(line) for line in r.out.splitlines()) > 30


@pytest.mark.parametrize("args", [["artifacts", "list"], ["state", "list"], ["runs", "list"], ["cache", "list"],
                                  ["state", "history"]])
def test_every_listing_command_has_json(project, args):
    r = flows(*args, "--json", cwd=project)
    assert r.code == 0, r.text
    json.loads(r.out)
