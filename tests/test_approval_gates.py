"""Approval gates, as real flow files write them (`approve(value, "deploy", timeout=timedelta(hours=1))`, also
imported as `flytekit.core.gate.approve` under another name, or called as `fk.approve`): what they load into,
and each misuse as one line naming the file and line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconcile.graph import FlowGraph
from reconcile.loader import load_flow
from vocab.errors import FlowLoadError

FLOWS = Path(__file__).parent / "flows" / "gated"


def load(name: str, workflow: str | None = None) -> FlowGraph:
    return load_flow(FLOWS / name, workflow)


def marked_lines(name: str, marker: str) -> list[int]:
    return [i for i, line in enumerate((FLOWS / name).read_text().splitlines(), 1) if marker in line]


def test_approve_is_a_gate_node_that_passes_its_value_through():
    g = load("flow.py", "release")
    gate = g.nodes["release/approve deploy"]
    assert (gate.kind, gate.gate, gate.timeout_seconds) == ("gate", "deploy", 3600)
    assert gate.source is not None and gate.source.line == marked_lines("flow.py", "# mark:gate")[0]
    value = gate.bindings["value"]
    assert (value.kind, value.node, value.output, value.type) == ("node_output", "release/Evaluate", "report", "str")
    assert gate.outputs == {}
    deploy = g.nodes["release/Deploy"]
    report = deploy.bindings["report"]  # the value itself, from Evaluate, available once the gate is approved
    assert (report.node, report.output, report.after) == ("release/Evaluate", "report", ["release/approve deploy"])
    assert "release/approve deploy" in deploy.upstreams()
    assert "release/approve deploy" not in deploy.data_upstreams()
    assert deploy.bindings["model"].after == []  # the model itself did not pass the gate


def test_aliases_and_chained_gates_load_and_order():
    g = load("flow.py", "release")
    score_gate = g.nodes["release/approve publish score"]  # fk.approve(..., timeout positionally)
    assert score_gate.timeout_seconds == 1800 and score_gate.bindings["value"].node == "release/Train"
    final = g.nodes["release/approve final check"]  # a helper's `approve as human_check`, on an approved value
    assert final.timeout_seconds == 4 * 3600
    assert final.bindings["value"].after == ["release/approve publish score"]
    assert "release/approve publish score" in final.upstreams()
    publish = g.nodes["release/Publish"].bindings["score"]
    assert (publish.node, publish.after) == ("release/Train", ["release/approve publish score",
                                                               "release/approve final check"])
    order = g.order()
    assert order.index("release/approve final check") < order.index("release/Publish") < order.index("release/Deploy")


@pytest.mark.parametrize("workflow, message", [
    ("gates_a_flow_input", "approve 'ok': the value to approve is a workflow input"),
    ("gates_two_outputs", "approve 'ok': 'gates_two_outputs/two' has 2 outputs; approve one of them"),
    ("gates_nothing", "approve 'ok': 'gates_nothing/none' returns nothing"),
    ("same_name_twice", "approve: two gates named 'ok' in one workflow (line "),
    ("bad_timeout", "approve 'ok': timeout must be a timedelta (e.g. timedelta(hours=1)), got '1h'"),
    ("no_timeout", "approve() missing 1 required positional argument: 'timeout'"),
    ("typo_keyword", "approve has no keyword 'timout' (did you mean 'timeout'?)"),
])
def test_each_misuse_of_approve_is_one_line_naming_file_and_line(workflow, message):
    with pytest.raises(FlowLoadError) as info:
        load("bad_gates.py", workflow)
    e = info.value
    line = marked_lines("bad_gates.py", "# mark:bad")[
        ["gates_a_flow_input", "gates_two_outputs", "gates_nothing", "same_name_twice", "bad_timeout", "no_timeout",
         "typo_keyword"].index(workflow)]
    assert (e.file, e.line) == (str(FLOWS / "bad_gates.py"), line), str(e)
    assert message in e.message and "\n" not in str(e)


# ---------------------------------------------------------------- end to end, through the real CLI

GATED_FLOW = '''
from datetime import timedelta

from flytekit import approve, workflow
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task


@workflow
def release(version: int = 1) -> str:
    train = run_domino_job_task(
        flyte_task_name="Train", command="python scripts/train.py",
        inputs=[Input(name="version", type=int, value=version)], output_specs=[Output(name="model", type=str)])
    run_domino_job_task(flyte_task_name="Report", command="python scripts/report.py",
                        output_specs=[Output(name="pages", type=int)])
    model = approve(train["model"], "deploy", timeout=timedelta(hours=1))
    deploy = run_domino_job_task(
        flyte_task_name="Deploy", command="python scripts/deploy.py",
        inputs=[Input(name="model", type=str, value=model)], output_specs=[Output(name="url", type=str)])
    return deploy["url"]
'''

SCRIPTS = {
    # each job appends a line to ran.log (outside /workflow, in the project): how often it really ran
    "scripts/train.py": 'v = open("/workflow/inputs/version").read()\n'
                        'open("/mnt/code/ran.log", "a").write("train\\n")\n'
                        'open("/workflow/outputs/model", "w").write("model-v" + v)\n',
    "scripts/report.py": 'open("/mnt/code/ran.log", "a").write("report\\n")\n'
                         'open("/workflow/outputs/pages", "w").write("3")\n',
    "scripts/deploy.py": 'm = open("/workflow/inputs/model").read()\n'
                         'open("/mnt/code/ran.log", "a").write("deploy\\n")\n'
                         'open("/workflow/outputs/url", "w").write("https://serve/" + m)\n',
}


def _ran(root: Path) -> list[str]:
    log = root / "ran.log"
    return log.read_text().split() if log.exists() else []


def _run_id(out: str) -> str:
    import re
    found = re.search(r"Run (r[0-9-]+[0-9a-f]+): ", out)
    assert found, out
    return found.group(1)


def test_a_gate_end_to_end_plan_stop_approve_recover_and_who_approved(tmp_path: Path) -> None:
    from tests.fixtures.projects import flows, write_project
    root = write_project(tmp_path / "p", GATED_FLOW, SCRIPTS)
    plan = flows("plan", "flow.py", "release", cwd=root)
    assert "⏸ approve deploy  (release/approve deploy)" in plan.out and "1 to approve" in plan.out, plan.out
    as_json = json.loads(flows("plan", "flow.py", "release", "--json", cwd=root).out)
    gate = next(n for n in as_json["nodes"] if n["address"] == "release/approve deploy")
    assert (gate["action"], gate["gate"], as_json["summary"]["approve"]) == ("approve", "deploy", 1)

    # No terminal and no --approve: everything not behind the gate runs, then the run waits.
    r = flows("apply", "flow.py", "release", "--auto-approve", cwd=root)
    assert r.code == 3, r.text
    assert sorted(_ran(root)) == ["report", "train"]
    assert ": waiting." in r.out and "--approve deploy" in r.out
    run_id = _run_id(r.out)
    shown = flows("runs", "show", run_id, cwd=root)
    assert "waiting for approval: deploy (release/approve deploy)" in shown.out, shown.out

    # A mistyped gate name is one line, before anything runs.
    bad = flows("recover", "--approve", "deplyo", cwd=root)
    assert bad.code == 1 and "no approval gate 'deplyo' (did you mean 'deploy'?)" in bad.err, bad.text
    assert len(bad.err.strip().splitlines()) == 1

    # recover --approve goes on under the same run: only deploy runs.
    r = flows("recover", "--approve", "deploy", cwd=root, env={"FLOWS_APPROVER": "alice"})
    assert r.code == 0, r.text
    assert sorted(_ran(root)) == ["deploy", "report", "train"]
    assert f"Run {run_id}: recovered" in r.out
    shown = json.loads(flows("runs", "show", run_id, "--json", cwd=root).out)
    assert shown["approvals"]["deploy"]["by"] == "alice" and shown["waiting"] == {}
    assert "approved: deploy by alice at " in flows("runs", "show", run_id, cwd=root).out
    again = flows("plan", "flow.py", "release", cwd=root)
    assert "No changes." in again.out and "approved by alice at" in again.out, again.out

    # A new model needs a new approval; a later apply --approve goes on without running train again.
    r = flows("apply", "flow.py", "release", "--version", "2", "--auto-approve", cwd=root)
    assert r.code == 3 and _ran(root).count("train") == 2, r.text
    r = flows("apply", "flow.py", "release", "--version", "2", "--auto-approve", "--approve", "deploy", cwd=root)
    assert r.code == 0, r.text
    assert _ran(root).count("train") == 2 and _ran(root).count("deploy") == 2
    assert "https://serve/model-v2" in r.out


def _on_a_terminal(args: list[str], cwd: Path, answers: dict[bytes, bytes], env: dict[str, str]) -> tuple[int, str]:
    """Run `flows ARGS` on a pseudo-terminal, typing `answers[prompt]` once each prompt appears."""
    import os
    import pty
    import select
    import subprocess
    import time

    from tests.fixtures.projects import FLOWS
    master, slave = pty.openpty()
    proc = subprocess.Popen([FLOWS, *args], stdin=slave, stdout=slave, stderr=slave, cwd=cwd, close_fds=True,
                            env={**os.environ, "COLUMNS": "160", **env})
    os.close(slave)
    seen, pending, deadline = b"", dict(answers), time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:  # the other side closed: the command ended
                break
            seen += data
            for prompt in [p for p in pending if p in seen]:
                os.write(master, pending.pop(prompt))
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=30), seen.decode(errors="replace")


def test_on_a_terminal_apply_asks_once_the_rest_is_done_and_a_yes_goes_on(tmp_path: Path) -> None:
    from tests.fixtures.projects import flows, write_project
    root = write_project(tmp_path / "p", GATED_FLOW, SCRIPTS)
    code, screen = _on_a_terminal(["apply", "flow.py", "release"], root,
                                  {b"Apply this plan?": b"y\n", b"as bob?": b"y\n"}, {"FLOWS_APPROVER": "bob"})
    assert code == 0, screen[-3000:]
    assert "value: release/Train.model = 'model-v1'" in screen and "(times out in 59m" in screen
    assert sorted(_ran(root)) == ["deploy", "report", "train"]
    runs = json.loads(flows("runs", "list", "--json", cwd=root).out)
    assert runs[-1]["approvals"]["deploy"]["by"] == "bob" and runs[-1]["outcome"] == "succeeded"


def test_new_flows_import_approve_from_reconcile(tmp_path: Path) -> None:
    (tmp_path / "flows.toml").write_text("[tool.flows]\n")
    (tmp_path / "flow.py").write_text(
        "from datetime import timedelta\n"
        "from reconcile import approve, task, workflow\n\n"
        "@task\ndef score(n: int) -> float:\n    return n / 10\n\n"
        "@task\ndef publish(s: float) -> str:\n    return str(s)\n\n"
        "@workflow\ndef wf(n: int = 3) -> str:\n"
        "    return publish(s=approve(score(n=n), 'publish', timedelta(minutes=5)))\n")
    g = load_flow(tmp_path / "flow.py")
    assert g.nodes["wf/approve publish"].gate == "publish"
    assert g.nodes["wf/publish"].bindings["s"].after == ["wf/approve publish"]
