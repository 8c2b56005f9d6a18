"""Bad values, files and flow files: one line on stderr naming the input, file or line; a non-zero exit; no
traceback; no hang; nothing written under .flows/. Each case is shaped like its reproduction in issue 17."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.projects import FLOWS, flows, write_project
from tests.fixtures.waiting import wait_until

KINDS_FLOW = '''
import datetime
from typing import Dict, TypeVar
from flytekit import workflow
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task

CSV = FlyteFile[TypeVar("csv")]


@workflow
def wf(data: CSV, s: str = "x", d: Dict[str, float] = {"a": 1.0}, when: datetime.datetime = datetime.datetime(2024, 1, 1),
       folder: FlyteDirectory = None) -> CSV:
    a = run_domino_job_task(flyte_task_name="A", command="python scripts/prep.py",
        inputs=[Input(name="data", type=CSV, value=data), Input(name="s", type=str, value=s),
                Input(name="d", type=Dict[str, float], value=d), Input(name="when", type=datetime.datetime, value=when),
                Input(name="folder", type=FlyteDirectory, value=folder)],
        output_specs=[Output(name="clean", type=CSV)])
    return a["clean"]
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = write_project(tmp_path / "p", KINDS_FLOW)
    (root / "dir").mkdir()
    (root / "dir" / "ok.txt").write_text("ok")
    return root


def written(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under .flows/ with its size and mtime: what a command wrote shows up as a difference.
    (An apply takes the state lock before it can compare a saved plan with the state: the empty file the
    local lock is taken on is not state, and is left out.)"""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in (root / ".flows").rglob("*")
            if p.is_file() and p.suffix != ".mutex"}


def one_clean_line(root: Path, *args: str, timeout: float = 60, env: dict[str, str] | None = None) -> str:
    """Run flows; assert the shape every bad input must have; return the one stderr line."""
    before = written(root)
    r = flows(*args, cwd=root, timeout=timeout, env=env)
    lines = r.err.strip().splitlines()
    assert r.code != 0, r.text
    assert "Traceback" not in r.text and len(lines) == 1 and lines[0].startswith("Error: "), r.text
    assert written(root) == before, "something was written under .flows/"
    return lines[0]


def write_inputs(root: Path, text: str) -> str:
    (root / "in.json").write_text(text)
    return "in.json"


@pytest.mark.parametrize("args, message", [
    (["--s", "\udcff\udcfe"], "Error: --s: the value is not valid UTF-8 (byte 0xff at position 0)"),
    (["--d", '{"a": "x"}'], "Error: --d: key 'a': expected a float, got 'x'"),
    (["--d", '{"a": null}'], "Error: --d: key 'a': expected a float, got None"),
    (["--d", "null"], "Error: --d: expected a dict, got None"),
    (["--when", "yesterday"], "Error: --when: not a valid datetime: Invalid isoformat string: 'yesterday'"),
])
def test_bad_values_on_the_command_line(project, args, message):
    assert one_clean_line(project, "plan", "flow.py", "--data", "data/in.csv", *args) == message


@pytest.mark.parametrize("inputs, message", [
    ('{"s": "\\ud800"}', "Error: --s: the value in the inputs file holds a lone surrogate U+D800 at position 0 "
                         "(not valid Unicode text)"),
    ('{"d": {"a": [1, 2]}}', "Error: --d: key 'a': expected a float, got [1, 2]"),
    ('{"d": {"a": 1, "b": null}}', "Error: --d: key 'b': expected a float, got None"),
    ('{"when": "yesterday"}', "Error: --when: expected an ISO 8601 datetime (e.g. 2024-05-01T12:00:00), "
                              "got 'yesterday'"),
])
def test_bad_values_in_an_inputs_file(project, inputs, message):
    name = write_inputs(project, inputs)
    assert one_clean_line(project, "plan", "flow.py", "--data", "data/in.csv", "--inputs", name) == message


def test_good_values_of_the_same_kinds_plan(project):
    name = write_inputs(project, '{"d": {"a": 1, "b": 2.5}, "when": "2024-05-01T12:00:00", "s": "é"}')
    r = flows("plan", "flow.py", "--data", "data/in.csv", "--inputs", name, "--folder", "dir", cwd=project)
    assert r.code == 0, r.text


def test_symlink_loop_as_a_file_input(project):
    os.symlink("loop2", project / "loop1")
    os.symlink("loop1", project / "loop2")
    assert one_clean_line(project, "plan", "flow.py", "--data", "loop1") == \
        f"Error: --data: symlink loop: {project}/loop1"


def test_fifo_as_a_file_input_does_not_hang(project):
    os.mkfifo(project / "pipe")
    assert one_clean_line(project, "plan", "flow.py", "--data", "pipe", timeout=30) == \
        f"Error: --data: a FIFO (named pipe), not a regular file: {project}/pipe"


@pytest.mark.parametrize("make, what", [
    (lambda d: os.symlink("nowhere", d / "dangling"), "{d}/dangling is a broken symbolic link (to nowhere)"),
    (lambda d: os.mkfifo(d / "fifo"), "{d}/fifo is neither a file nor a folder"),
    (lambda d: os.symlink(".", d / "self"), "{d}/self is a symbolic link loop (back to {d})"),
])
def test_directory_input_holding_what_a_digest_cannot_read(project, make, what):
    make(project / "dir")
    line = one_clean_line(project, "plan", "flow.py", "--data", "data/in.csv", "--folder", "dir", timeout=30)
    assert line == "Error: --folder: " + what.format(d=project / "dir")


def test_fifo_as_a_literal_input_names_the_node_once(tmp_path):
    root = write_project(tmp_path / "p", KINDS_FLOW.replace("value=data)", 'value="pipe")'))
    os.mkfifo(root / "pipe")
    line = one_clean_line(root, "plan", "flow.py", "--data", "data/in.csv", timeout=30)
    assert line == f"Error: wf/A: input data: a FIFO (named pipe), not a regular file: {root}/pipe"


LOOPING = '''
from flytekit import workflow
while True:
    pass
'''

# Waits in short sleeps: a signal that lands after the interpreter's last check and before a long sleep begins is
# acted on only when that sleep ends (CPython runs handlers between bytecodes); seen once in ~160 tries under load.
SLEEPING = '''
import time
from flytekit import workflow
print("started", flush=True)
while True: time.sleep(0.05)
'''


@pytest.mark.parametrize("command", ["validate", "plan", "graph"])
def test_a_flow_that_loops_at_import_is_stopped_by_the_load_timeout(tmp_path, command):
    root = write_project(tmp_path / "p", LOOPING)
    line = one_clean_line(root, command, "flow.py", env={"FLOWS_LOAD_TIMEOUT": "1"}, timeout=60)
    line = line.replace("flow.py:3:", "flow.py:4:")  # stopped in the loop's test or in its body
    assert line == (f"Error: {root}/flow.py:4: loading took longer than 1s and was stopped here (a loop or a wait "
                    "at import time?); raise the limit with load_timeout in [tool.flows] or FLOWS_LOAD_TIMEOUT")


def test_the_load_timeout_is_set_in_flows_toml(tmp_path):
    root = write_project(tmp_path / "p", LOOPING)
    (root / "flows.toml").write_text("[tool.flows]\nload_timeout = 1.5\n")
    assert "loading took longer than 1.5s" in one_clean_line(root, "validate", "flow.py")
    (root / "flows.toml").write_text("[tool.flows]\nload_timeout = -1\n")
    assert one_clean_line(root, "validate", "flow.py") == \
        f"Error: load_timeout in {root}/flows.toml: expected a positive number of seconds, got -1"


@pytest.mark.parametrize("sig, name", [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_a_signal_while_loading_prints_one_line(tmp_path, sig, name):
    root = write_project(tmp_path / "p", SLEEPING)
    proc = subprocess.Popen([FLOWS, "plan", "flow.py"], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stderr is not None
    assert wait_until(proc.stderr.readline, timeout=60, what="the flow to start loading") == "started\n"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    err = err.replace("flow.py:4:", "flow.py:5:")  # the signal may land while `print` returns
    assert (out, err) == ("", f"Error: {root}/flow.py:5: loading was interrupted ({name}); nothing was run or written\n")


PRINTING = '''
import os
from flytekit import workflow
from flytekitplugins.domino.helpers import Output, run_domino_job_task
print("hello from the flow")
os.system("echo hello from a subprocess")


@workflow
def wf():
    print("tracing")
    a = run_domino_job_task(flyte_task_name="A", command="python scripts/prep.py", output_specs=[Output(name="o", type=int)])
    run_domino_job_task(flyte_task_name="B", command="python scripts/prep.py", inputs=[Input(name="o", type=int, value=a["o"])])
'''.replace("import Output", "import Input, Output")


@pytest.mark.parametrize("args", [["plan", "flow.py", "--json"], ["graph", "flow.py", "--format", "dot"],
                                  ["graph", "flow.py", "--format", "mermaid"]])
def test_what_a_flow_prints_while_loading_goes_to_stderr(tmp_path, args):
    root = write_project(tmp_path / "p", PRINTING)
    r = flows(*args, cwd=root)
    assert r.code == 0, r.text
    assert "hello" not in r.out and "tracing" not in r.out
    # (graph without inputs loads the flow twice: once to see whether it can plan)
    assert set(r.err.splitlines()) == {"hello from the flow", "hello from a subprocess", "tracing"}
    if args[-1] == "--json":
        assert [n["address"] for n in json.loads(r.out)["nodes"]] == ["wf/A", "wf/B"]
    elif args[-1] == "dot":
        assert r.out.startswith("digraph")
    else:
        assert r.out.lstrip().startswith(("flowchart", "graph", "%%"))



SAVED_ARGS = ("plan", "flow.py", "--data", "data/in.csv")


def test_plan_out_to_a_missing_folder_is_one_line(project):
    assert one_clean_line(project, *SAVED_ARGS, "--out", "/nonexistent/x.json") == \
        "Error: /nonexistent/x.json: cannot save the plan: no folder /nonexistent"


def test_a_saved_plan_is_recognised_by_content_whatever_its_name(project):
    r = flows(*SAVED_ARGS, "--out", "tfplan", cwd=project)
    assert r.code == 0 and "apply it with: flows apply tfplan" in r.out, r.text
    r = flows("apply", "tfplan", cwd=project)
    assert r.code == 0, r.text
    assert ": succeeded. State serial 1." in r.out


def test_a_hand_edited_saved_plan_is_one_line(project):
    assert flows(*SAVED_ARGS, "--out", "plan.json", cwd=project).code == 0
    plan = json.loads((project / "plan.json").read_text())
    plan["inputs"]["data"] = 5
    (project / "plan.json").write_text(json.dumps(plan))
    assert one_clean_line(project, "apply", "plan.json") == \
        "Error: plan.json: saved plan input --data: expected a path or URI, got 5"
    plan["nodes"][0]["action"] = "explode"
    (project / "plan.json").write_text(json.dumps(plan))
    assert one_clean_line(project, "apply", "plan.json") == \
        "Error: plan.json: saved plan is malformed: ('nodes', 0, 'action')"


def test_a_stale_saved_plan_says_which_input_and_file_moved_with_both_keys(project):
    r = flows(*SAVED_ARGS, "--json", "--out", "plan.json", cwd=project)
    old_key = json.loads(r.out)["nodes"][0]["key"]
    (project / "data" / "in.csv").write_text("7\n8\n")
    new_key = json.loads(flows(*SAVED_ARGS, "--json", cwd=project).out)["nodes"][0]["key"]
    line = one_clean_line(project, "apply", "plan.json")
    assert line.startswith("Error: saved plan is stale: wf/A: input data (file): digest ")
    assert f"({project}/data/in.csv) (key {old_key[:12]} → {new_key[:12]}); run `flows plan` again" in line


TASK_PRINTING = '''
from flytekit import task, workflow
print("hello at import")


@task
def double(x: int) -> int:
    return 2 * x


@workflow
def wf(x: int = 1) -> int:
    return double(x=x)
'''


def test_a_python_task_flow_printing_at_import_keeps_plan_json_clean(tmp_path):
    """A @task's code identity imports the flow file again: that import prints to stderr too."""
    root = write_project(tmp_path / "p", TASK_PRINTING)
    r = flows("plan", "flow.py", "--json", cwd=root)
    assert r.code == 0, r.text
    assert [n["address"] for n in json.loads(r.out)["nodes"]] == ["wf/double"]
    assert "hello at import" in r.err
