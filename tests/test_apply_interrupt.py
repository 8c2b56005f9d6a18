"""Interrupting apply: Ctrl-C (SIGINT), `kill -9`, a concurrent apply and a stale saved plan.
The state is always valid afterwards, finished nodes are never lost, and the lock is released or reported."""
from __future__ import annotations

import fcntl
import json
import signal
import time
from pathlib import Path

import pytest

from tests.fixtures.apply_kit import Project, alive, kill_pids, make_project, poll, stop

FLOW = '''
@workflow
def wf(n: int = 1) -> None:
    prep = run_domino_job_task(flyte_task_name="prep", command="python scripts/prep.py",
                               inputs=[Input(name="n", type=int, value=n)],
                               output_specs=[Output(name="out", type=TXT)])
    hold = run_domino_job_task(flyte_task_name="hold", command="python scripts/hold.py",
                               inputs=[Input(name="x", type=TXT, value=prep["out"])],
                               output_specs=[Output(name="out", type=TXT)])
    run_domino_job_task(flyte_task_name="tail", command="python scripts/tail.py",
                        inputs=[Input(name="x", type=TXT, value=hold["out"])])
'''
SCRIPTS = {
    "prep": 'mark("start")\nwrite("out", read("n"))\nmark("end")\n',
    # Holds until the test creates marks/go (or a minute passes): a job that is certainly running.
    "hold": 'hold_lock()\nmark("start")\nwait_for(exists("go"), 60)\nwrite("out", read("x"))\nmark("end")\n',
    "tail": 'mark("start")\nmark("end")\n',
}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "proj", FLOW, SCRIPTS)


def hold_pid(p: Project) -> int:
    """The running hold job's pid as seen from here (the pid it sees itself is its own PID namespace's)."""
    poll(lambda: p.events("hold"), "the hold job to start")
    return p.holders("hold")[0]


def test_ctrl_c_cancels_records_and_releases(project: Project) -> None:
    proc = project.spawn("apply", "flow.py", "wf", "--auto-approve")
    try:
        pid = hold_pid(project)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130, project.output()
    finally:
        stop(proc)
    out = project.output()
    assert "Interrupted: cancelling running jobs" in out and "Traceback" not in out
    assert "wf/tail: not started: apply interrupted" in out
    assert ": interrupted. State serial 1." in out
    assert not alive(pid), "the running job was not stopped"
    state = project.state()  # valid JSON, and the model reads it (plan below)
    assert {a: n["status"] for a, n in state["nodes"].items()} == {"wf/prep": "succeeded", "wf/hold": "cancelled"}
    [run] = state["runs"].values()
    assert run["outcome"] == "interrupted" and run["counts"] == {"succeeded": 1, "cancelled": 1, "skipped": 1}
    assert not project.lock_file.exists()
    assert not (project.root / ".flows" / "state" / "wf.journal.jsonl").exists()
    assert project.actions() == {"wf/prep": "reuse", "wf/hold": "run", "wf/tail": "create"}
    assert [n["reasons"][0]["message"] for n in project.plan()["nodes"] if n["address"] == "wf/hold"] == \
        ["cancelled last time"]


def test_kill_9_loses_no_finished_node(project: Project) -> None:
    proc = project.spawn("apply", "flow.py", "wf", "--auto-approve")
    orphans: list[int] = []
    try:
        orphans.append(hold_pid(project))
        assert [e for e, _, _ in project.events("prep")] == ["start", "end"]  # prep finished
        proc.kill()
        proc.wait(timeout=30)
    finally:
        stop(proc)
        kill_pids(orphans)  # the killed apply's job runs on, as a real orphan would; end it
    assert not project.state_file.exists()  # the crash came before the end-of-run state write
    runs = project.run("runs", "list", "--flow", "wf", "--json")
    assert runs.code == 0 and [r["outcome"] for r in json.loads(runs.out)] == ["interrupted"], runs.text
    # The next plan reads the journal: prep is reused, not lost.
    assert project.actions() == {"wf/prep": "reuse", "wf/hold": "create", "wf/tail": "create"}
    r = project.apply(code=1)
    assert "state is locked" in r.err and f"(pid {proc.pid})" in r.err
    assert f"its process {proc.pid} is gone: run again with --break-expired-lock to take the lock over" in r.err
    (project.marks / "go").touch()
    r = project.apply("--break-expired-lock")
    assert "Took over an expired lock" in r.err
    assert project.starts("prep") == 1 and project.starts("tail") == 1
    state = project.state()
    assert all(n["status"] == "succeeded" for n in state["nodes"].values()) and len(state["nodes"]) == 3
    outcomes = sorted(run["outcome"] for run in state["runs"].values())
    assert outcomes == ["interrupted", "succeeded"]
    assert not project.lock_file.exists()


def blocked_on_flock(pid: int) -> bool:
    """The process waits for a file lock (a `->` line of /proc/locks names the blocked waiters)."""
    return any(line.split()[1] == "->" and line.split()[5] == str(pid)
               for line in Path("/proc/locks").read_text().splitlines() if "->" in line)


def test_second_apply_is_refused_at_once_or_waits_with_lock_timeout(project: Project) -> None:
    first = project.spawn("apply", "flow.py", "wf", "--auto-approve", name="first")
    waiter = None
    try:
        hold_pid(project)
        t0 = time.monotonic()
        r = project.run("apply", "flow.py", "wf", "--auto-approve")
        assert r.code == 1 and time.monotonic() - t0 < 10, r.text
        holder = json.loads(project.lock_file.read_text())
        assert f"state is locked: lock {holder['id']} held by {holder['who']}@{holder['host']} (pid {first.pid}) " \
               f"for apply since {holder['created']}" in r.err
        assert "Traceback" not in r.text and project.starts("prep") == 1
        runs = project.run("runs", "list", "--flow", "wf", "--json")  # read without the lock: it is running
        assert [run["outcome"] for run in json.loads(runs.out)] == ["running"], runs.text
        # Hold the backend's mutex so the waiter is caught inside its lock attempt, seen in /proc/locks: once
        # we let go it finds the lock held and, with --lock-timeout, must wait instead of failing.
        with open(project.root / ".flows" / "state" / "wf.mutex", "a") as mutex:
            fcntl.flock(mutex.fileno(), fcntl.LOCK_EX)
            waiter = project.spawn("apply", "flow.py", "wf", "--auto-approve", "--lock-timeout", "60s",
                                   name="waiter")
            poll(lambda: blocked_on_flock(waiter.pid), "the waiter to try the lock")
            fcntl.flock(mutex.fileno(), fcntl.LOCK_UN)
        assert waiter.poll() is None, project.output("waiter")
        (project.marks / "go").touch()
        assert first.wait(timeout=60) == 0, project.output("first")
        assert waiter.wait(timeout=60) == 0, project.output("waiter")
    finally:
        stop(first)
        if waiter is not None:
            stop(waiter)
    assert "Nothing to do." in project.output("waiter")  # it ran after the first apply, on its state
    assert [project.starts(n) for n in ("prep", "hold", "tail")] == [1, 1, 1]


def test_stale_saved_plan_is_refused(project: Project) -> None:
    (project.marks / "go").touch()
    project.apply()
    assert project.run("plan", "flow.py", "wf", "--n", "2", "--out", "p.json").code == 0
    project.apply("--n", "3")  # the state moves on: serial 2
    before = project.state_file.read_bytes()
    r = project.run("apply", "p.json")
    assert r.code == 1 and "saved plan is stale: it was made against state serial 1, the state is now at " \
                           "serial 2; run `flows plan` again" in r.err, r.text
    assert "Traceback" not in r.text and project.state_file.read_bytes() == before
    assert not project.lock_file.exists()

    assert project.run("plan", "flow.py", "wf", "--n", "2", "--out", "q.json").code == 0
    project.edit("flow.py", "@workflow", "# edited\n@workflow")
    r = project.run("apply", "q.json")
    assert r.code == 1 and "saved plan is stale: the flow file changed since it was planned" in r.err, r.text
    assert project.state_file.read_bytes() == before and project.starts("prep") == 2


def test_a_ctrl_c_after_the_last_node_interrupted_nothing() -> None:
    # The exit code follows the recorded outcome, so a late Ctrl-C must not turn a finished run into a
    # failure (a real SIGINT cannot be timed into that window from a test).
    from reconcile.apply import NodeOutcome, outcome_of
    done = {"a": NodeOutcome(address="a", action="create", result="succeeded"),
            "b": NodeOutcome(address="b", action="reuse", result="reused")}
    assert outcome_of(done, cancelled=True) == "succeeded"
    done["c"] = NodeOutcome(address="c", action="create", result="cancelled")
    assert outcome_of(done, cancelled=True) == "interrupted"
