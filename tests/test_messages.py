"""Messages that used to mislead (issue 17): each says what actually happened."""
from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures.projects import flows, write_project

FIFO_FLOW = '''
from flytekit import workflow
from flytekit.types.file import FlyteFile
from flytekitplugins.domino.helpers import Output, run_domino_job_task


@workflow
def wf():
    run_domino_job_task(flyte_task_name="A", command="python scripts/fifo.py", output_specs=[Output(name="o", type=FlyteFile)])
'''


def test_a_fifo_output_is_called_a_fifo_not_a_directory(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", FIFO_FLOW, files={"scripts/fifo.py": "import os\nos.mkfifo('/workflow/outputs/o')\n"})
    r = flows("apply", "flow.py", "--auto-approve", cwd=root)
    assert r.code == 1, r.text
    state = json.loads(next((root / ".flows" / "state").glob("wf.json")).read_text())
    assert state["nodes"]["wf/A"]["error"] == ("output 'o' is declared file but the job wrote a FIFO (named pipe), "
                                               "not a regular file")


def test_recover_with_nothing_recorded_says_so_and_exits_0(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    r = flows("recover", cwd=root)
    assert (r.code, r.out, r.err) == (0, "Nothing to recover: no interrupted run in this project.\n", "")
