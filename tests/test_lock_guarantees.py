"""What the state lock promises (issue 15, items 6, 7 and 9), each attack run as it was reported.

- A live lease is never broken, whatever a pid check says: an apply in another PID namespace (a container
  with host networking) looks dead to a pid check on the same host name, and is alive.
- An apply that lost its lock (paused past its lease, taken over legitimately, resumed) starts nothing
  more, never writes the state, and exits non-zero saying so; the state is the other run's.
- A dropped answer to the state PUT or to the lock PUT is resolved by reading back, not guessed.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from providers import sandbox
from state.model import State, parse_state
from tests.fixtures.projects import FLOWS, flows, write_project
from tests.fixtures.s3 import FaultProxy, S3Env, aws_env
from tests.fixtures.recover_kit import (FLOW_NAME, Background, make_project, markers_of, open_gate,
                                    pause_outside_the_mutex, run_flows, start_flows, state_dir, wait_until)

TWO = {"first": [], "second": ["first"]}
APPLY = ("apply", "flow.py", FLOW_NAME, "--data", "data/in.csv", "--auto-approve")


def _lock_file(root: Path) -> Path:
    return state_dir(root) / f"{FLOW_NAME}.lock"


def _state(root: Path) -> State:
    path = state_dir(root) / f"{FLOW_NAME}.json"
    return parse_state(path.read_bytes(), str(path))


def _stop_all(*procs: Background | subprocess.Popen[Any] | None) -> None:
    for p in procs:
        proc = p.proc if isinstance(p, Background) else p
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


# -- item 6: a live lease is never broken -------------------------------------------------------------
def _pid_namespaces() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _pid_namespaces(), reason="needs unshare with PID namespaces (root or user namespaces)")
def test_a_live_lease_held_from_another_pid_namespace_is_never_broken(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    root = make_project(tmp_path / "p", markers, nodes=TWO, knobs={"first": {"gate": True}})
    # The first apply runs in its own PID namespace (as in a container with host networking): same host name,
    # and a pid that names no process out here.
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    ns_pid = pid_max - 1000
    assert not Path(f"/proc/{ns_pid + 1}").exists()
    # (`; exit $?`: bash would otherwise exec the last command as pid 1 of the namespace)
    inner = f"echo {ns_pid} > /proc/sys/kernel/ns_last_pid && {FLOWS} " + " ".join(APPLY) + "; exit $?"
    env = {**os.environ, "COLUMNS": "200"}
    log = tmp_path / "first.log"
    with open(log, "wb") as out:
        first = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "bash", "-c", inner], cwd=root,
                                 env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    second = None
    try:
        wait_until(lambda: markers_of(markers, TWO)[f"{FLOW_NAME}/first"] or first.poll() is not None)
        held = json.loads(_lock_file(root).read_text())
        assert held["pid"] == ns_pid + 1 and not Path(f"/proc/{held['pid']}").exists()
        second = run_flows(*APPLY, "--break-expired-lock", cwd=root)
        assert second.code == 1, second.text
        assert "locked" in second.err and "Traceback" not in second.text
        assert json.loads(_lock_file(root).read_text())["id"] == held["id"]  # untouched
        open_gate(markers, "first")
        assert first.wait(timeout=120) == 0, log.read_text()
    finally:
        open_gate(markers, "first")
        _stop_all(first)
    state = _state(root)
    assert [r.outcome for r in state.runs.values()] == ["succeeded"]  # one run, the one that held the lock
    assert {n.run_id for n in state.nodes.values()} == set(state.runs)
    assert len(markers_of(markers, TWO)[f"{FLOW_NAME}/second"]) == 1


def _pause_past_its_lease(root: Path, apply: Background) -> None:
    """SIGSTOP the apply (outside the state's mutex) and wait until its lease has expired."""
    pause_outside_the_mutex(apply.proc.pid, state_dir(root) / f"{FLOW_NAME}.mutex")
    held = json.loads(_lock_file(root).read_text())
    wait_until(lambda: _expired(held["expires"]), timeout=30)


def _taken_over_then_resumed(root: Path, tmp_path: Path, first: Background, markers: Path,
                             meanwhile: Callable[[Background], Any] | None = None) -> Any:
    """A second apply breaks the paused first one's expired lock and finishes (the gate of `first` opened after
    `meanwhile(second)`); then the first resumes. Returns how the first finished."""
    second = start_flows(*APPLY, "--break-expired-lock", cwd=root, log=tmp_path / "second.log")
    try:
        if meanwhile is not None:
            meanwhile(second)
        open_gate(markers, "first")
        assert second.finish().code == 0, second.text()
    finally:
        _stop_all(second)
    os.kill(first.proc.pid, signal.SIGCONT)
    return first.finish()


def _lost_its_lock_and_the_state_is_the_others(result: Any, root: Path) -> None:
    assert result.code != 0, result.text
    assert "lost the state lock" in result.text and "Traceback" not in result.text, result.text
    state = _state(root)
    winner = [r for r in state.runs.values() if r.outcome == "succeeded"]
    assert len(winner) == 1, state.runs
    assert {n.run_id for n in state.nodes.values()} == {winner[0].id}, "the state mixes two runs"


# -- item 7: an apply that lost its lock goes no further ------------------------------------------------
def test_an_apply_paused_past_its_lease_and_taken_over_stops_and_writes_nothing(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    root = make_project(tmp_path / "p", markers, nodes=TWO, knobs={"first": {"gate": True}},
                        toml="[tool.flows.backend]\nlease_seconds = 1\n")
    first = start_flows(*APPLY, cwd=root, log=tmp_path / "first.log")
    try:
        wait_until(lambda: markers_of(markers, TWO)[f"{FLOW_NAME}/first"] or first.proc.poll() is not None)
        _pause_past_its_lease(root, first)  # kill -STOP: its lease runs out while it sleeps
        # both jobs of `first` end when the gate opens; the second apply goes on and finishes
        result = _taken_over_then_resumed(root, tmp_path, first, markers, lambda second: wait_until(
            lambda: len(markers_of(markers, TWO)[f"{FLOW_NAME}/first"]) == 2 or second.proc.poll() is not None))
    finally:
        open_gate(markers, "first")
        _stop_all(first)
    _lost_its_lock_and_the_state_is_the_others(result, root)
    runs = markers_of(markers, TWO)
    assert len(runs[f"{FLOW_NAME}/second"]) == 1, "the apply that lost its lock started a node"
    assert not _lock_file(root).exists()


def _expired(expires: str) -> bool:
    import datetime as dt
    return dt.datetime.fromisoformat(expires) < dt.datetime.now(dt.timezone.utc)


def _launcher_holds_log_of(apply_pid: int, node: str) -> bool:
    """Whether the apply's resident launcher holds `node`'s log open: its start waits there (or is starting)."""
    for children in Path(f"/proc/{apply_pid}/task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                if b"nslauncher" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    continue
                fds = list(Path(f"/proc/{pid}/fd").iterdir())
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(fd).endswith(f"_{node}.1.log"):
                        return True
                except OSError:
                    continue
    return False


@pytest.mark.skipif(not sandbox.launcher_available(), reason="starts wait in the resident launcher (root, PID ns)")
def test_a_start_waiting_in_the_launcher_of_an_apply_paused_past_its_lease_never_begins(tmp_path: Path) -> None:
    """The launcher runs on while its apply is paused (it has a session of its own): a start it holds may begin
    only while the apply could show the lock was its own, never after a takeover. (Both nodes wait for their
    gate: which of the two independent starts reaches the launcher first is not promised.)"""
    markers = tmp_path / "markers"
    nodes = {"first": [], "other": []}
    root = make_project(tmp_path / "p", markers, nodes=nodes, knobs={n: {"gate": True} for n in nodes},
                        toml="[tool.flows.backend]\nlease_seconds = 1\n")
    first = start_flows(*APPLY, "--parallelism", "1", cwd=root, log=tmp_path / "first.log")
    try:
        wait_until(lambda: any(markers_of(markers, nodes).values()) or first.proc.poll() is not None)
        running = [n for n in nodes if markers_of(markers, nodes)[f"{FLOW_NAME}/{n}"]]
        assert len(running) == 1, first.text()
        waiting = next(n for n in nodes if n not in running)
        wait_until(lambda: _launcher_holds_log_of(first.proc.pid, waiting))  # its start waits behind the other
        _pause_past_its_lease(root, first)
        open_gate(markers, running[0])  # the paused apply's job ends: its launcher's slot is free
        wait_until(lambda: not _launcher_holds_log_of(first.proc.pid, waiting))  # the waiting start was dealt with
        open_gate(markers, waiting)
        result = _taken_over_then_resumed(root, tmp_path, first, markers)
    finally:
        for n in nodes:
            open_gate(markers, n)
        _stop_all(first)
    _lost_its_lock_and_the_state_is_the_others(result, root)
    runs = markers_of(markers, nodes)
    assert len(runs[f"{FLOW_NAME}/{waiting}"]) == 1, "the launcher of the apply that lost its lock started a node"


# -- item 9: a dropped answer is resolved by reading back -------------------------------------------------
def _s3_project(root: Path, s3env: S3Env, state_endpoint: str) -> Path:
    write_project(root)
    (root / "flows.toml").write_text(s3env.flows_toml(state_endpoint=state_endpoint))
    return root


def _s3_state(s3env: S3Env) -> dict[str, Any]:
    body = s3env.client.get_object(Bucket=s3env.bucket, Key="projects/demo/wf.json")["Body"].read()
    parse_state(body, "s3")
    return json.loads(body)


def _lock_exists(s3env: S3Env) -> bool:
    return "projects/demo/wf.json.lock" in s3env.keys("projects/demo/")


@pytest.mark.parametrize("dropped", ["state", "lock"])
def test_a_dropped_answer_to_a_put_is_read_back_not_guessed(tmp_path: Path, s3: S3Env, fault_proxy: FaultProxy,
                                                             dropped: str) -> None:
    root = _s3_project(tmp_path / "p", s3, fault_proxy.endpoint)
    key = "projects/demo/wf.json" + (".lock" if dropped == "lock" else "")
    fault_proxy.drop_answer("PUT", key)
    r = flows("apply", "flow.py", "wf", "--data", "data/in.csv", "--auto-approve", cwd=root, env=aws_env())
    assert fault_proxy.dropped == [("PUT", key)]  # the fault did happen
    assert r.code == 0, r.text
    assert "nothing was written" not in r.text and "locked" not in r.text
    state = _s3_state(s3)
    assert [run["outcome"] for run in state["runs"].values()] == ["succeeded"]
    assert set(state["nodes"]) == {"wf/prep", "wf/scale", "wf/report"}
    assert not _lock_exists(s3), "apply left its own lock behind"
    again = flows("plan", "flow.py", "wf", "--data", "data/in.csv", "--detailed-exitcode", cwd=root, env=aws_env())
    assert again.code == 0, again.text  # the next command needs no --break-expired-lock and sees no changes

