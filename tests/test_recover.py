"""`flows recover`, case by case, on the ten-node flow of tests/fixtures/recover_kit.py (real subprocesses;
the Domino cases on the emulator and moto's S3 server over HTTP on 127.0.0.1)."""
from __future__ import annotations

import collections
import fcntl
import json
from pathlib import Path
from typing import Iterator

import pytest

from providers import sandbox
from providers.domino.emulator import DominoEmulator
from providers.domino.emulator_world import EmulatorConfig, demo_project
from tests.fixtures.domino import API_KEY, OWNER, PROJECT, domino_env
from tests.fixtures.s3 import REGION, S3Env, aws_env
from tests.fixtures.waiting import alive
from tests.fixtures.recover_kit import (APPLY_ARGS, FLOW_NAME, NODES, PLAN_ARGS, HoldingProxy, domino_toml, flow_source,
                                    journal_records, load_state, make_project, markers_of, open_gate, run_flows,
                                    start_flows, state_dir, wait_until, write_script)

W = FLOW_NAME


def _job_after_the_kill(pid: int) -> bool:
    """Whether the job of a killed apply runs on as an orphan (for recover to stop). Run by the resident launcher
    (root, PID namespaces) it dies with the apply: the launcher kills its jobs when the apply's socket closes."""
    if sandbox.launcher_available():
        wait_until(lambda: not alive(pid))  # the launcher kills it when the socket closes
        return False
    assert alive(pid), "the job outlives the killed apply"
    return True


def test_job_left_running_for_a_node_that_is_now_a_cache_hit_is_stopped(tmp_path: Path) -> None:
    """The interrupted run launched `left` for new data; the data is put back before recover, so `left` is a
    cache hit again: recover reuses the cached result and stops the job nobody needs (it would bill on)."""
    markers = tmp_path / "markers"
    root = make_project(tmp_path / "project", markers, knobs={"left": {"gate": True}}, nodes=DIAMOND)
    open_gate(markers, "left")
    assert run_flows(*APPLY_ARGS, cwd=root).code == 0  # everything cached for the original data
    (markers / "left.go").unlink()  # from now on left waits
    data = root / "data" / "in.csv"
    original = data.read_text()
    data.write_text(original + "4,40\n")  # new data: every key changes
    apply = start_flows(*APPLY_ARGS, cwd=root, log=tmp_path / "apply.log")
    wait_until(lambda: len(markers_of(markers, DIAMOND)[f"{W}/left"]) == 2)
    started = wait_until(lambda: [r for r in journal_records(root)
                                  if r["type"] == "node_started" and r["address"] == f"{W}/left"])
    apply.kill()
    job_id = started[-1]["job_id"]
    pid = int(job_id.split("-")[1])
    orphan = _job_after_the_kill(pid)
    expected = {"src_a": 2, "left": 2, "right": 2, "join": 1}
    if not orphan:  # right's job died with the apply, before or after it started: recover must not run it again
        expected["right"] = counts(markers, DIAMOND)["right"]
    data.write_text(original)  # back to the original data: left is a cache hit again
    r = run_flows("recover", "--dry-run", "--flow", W, cwd=root)
    assert r.code == 0 and f"(job {job_id}, still running for it, will be stopped)" in r.out, r.out
    assert alive(pid) == orphan, "--dry-run changes nothing"
    r = run_flows("recover", "--flow", W, cwd=root)
    assert r.code == 0, r.text
    assert f"stopped job {job_id} left running by the interrupted run" in r.out, r.out
    assert not alive(pid)
    assert counts(markers, DIAMOND) == expected
    assert run_flows(*PLAN_ARGS, "--detailed-exitcode", cwd=root).code == 0


def test_job_left_running_for_a_node_removed_from_the_flow_is_stopped(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    root = make_project(tmp_path / "project", markers, knobs={"left": {"gate": True}}, nodes=DIAMOND)
    apply = start_flows(*APPLY_ARGS, cwd=root, log=tmp_path / "apply.log")
    started = wait_until(lambda: [r for r in journal_records(root)
                                  if r["type"] == "node_started" and r["address"] == f"{W}/left"])
    apply.kill()
    job_id = started[-1]["job_id"]
    pid = int(job_id.split("-")[1])
    orphan = _job_after_the_kill(pid)
    (root / "flow.py").write_text(flow_source({"src_a": [], "right": ["src_a"]}))  # left and join are gone
    r = run_flows("recover", "--dry-run", "--flow", W, cwd=root)
    assert r.code == 0 and f"stop      {W}/left: no longer in the flow; its job {job_id} is stopped" in r.out, r.out
    assert alive(pid) == orphan, "--dry-run changes nothing"
    r = run_flows("recover", "--flow", W, cwd=root)
    assert r.code == 0, r.text
    assert f"{W}/left: stopped job {job_id} left running by the interrupted run (not needed: no longer in the flow)" \
        in r.out, r.out
    assert not alive(pid)
    assert set(load_state(root).nodes) == {f"{W}/src_a", f"{W}/right"}


def runs_json(root: Path, *extra: str, env: dict[str, str] | None = None) -> list[dict]:
    r = run_flows("runs", "list", "--json", *extra, cwd=root, env=env)
    assert r.code == 0, r.text
    return json.loads(r.out)


# The Domino case needs no ten nodes, and each emulated job costs a second (the in-job runtime starts).
DIAMOND = {"src_a": [], "left": ["src_a"], "right": ["src_a"], "join": ["left", "right"]}


def counts(markers: Path, nodes: dict[str, list[str]] = NODES) -> dict[str, int]:
    return {a.split("/", 1)[1]: len(t) for a, t in markers_of(markers, nodes).items()}


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under .flows/state (state, backups, journal, lock): what --dry-run must not change."""
    return {str(p): p.read_bytes() for p in sorted(state_dir(root).rglob("*")) if p.is_file()
            and not p.name.endswith(".mutex")}


def test_failed_node_fixed_then_recovered(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    root = make_project(tmp_path / "project", markers, knobs={"chain2": {"fail": True}})
    r = run_flows(*APPLY_ARGS, cwd=root)
    assert r.code == 1 and "node chain2 is broken" in r.text, r.text
    assert run_flows(*APPLY_ARGS, cwd=root).code == 1  # tried again, unfixed: a second failed run
    old, run = runs_json(root)
    assert (old["outcome"], run["outcome"]) == ("failed", "failed")
    table = run_flows("runs", "list", cwd=root)
    assert run["id"] in table.out and "failed" in table.out
    # Only the latest run can be finished: the older one was superseded.
    r = run_flows("recover", old["id"], cwd=root)
    assert r.code == 1 and f"superseded by run {run['id']}" in r.err and "Traceback" not in r.text, r.text
    write_script(root, "chain2")  # the fix
    r = run_flows("recover", cwd=root)
    assert r.code == 0, r.text
    assert f"Recovering run {run['id']}" in r.out and f"Run {run['id']}: recovered" in r.out
    # Only the fixed node and its dependents ran again; everything before it was reused.
    assert counts(markers) == {"src_a": 1, "src_b": 1, "src_c": 1, "merge": 1, "chain1": 1, "chain2": 3,
                               "chain3": 1, "left": 1, "right": 1, "join": 1}
    old_after, again = runs_json(root)
    assert old_after == old, "recover must not touch the superseded run"
    assert again["id"] == run["id"] and again["outcome"] == "recovered"
    assert again["counts"] == {"reused": 5, "succeeded": 5}
    assert run_flows(*PLAN_ARGS, "--detailed-exitcode", cwd=root).code == 0


def test_node_changed_after_it_finished_reruns_and_dry_run_changes_nothing(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    root = make_project(tmp_path / "project", markers, knobs={"chain2": {"fail": True}})
    assert run_flows(*APPLY_ARGS, cwd=root).code == 1
    [run] = runs_json(root)
    # chain1 finished in the failed run; its script changes afterwards (same output, new code).
    script = root / "scripts" / "chain1.py"
    script.write_text(script.read_text() + "# reviewed\n")
    write_script(root, "chain2")
    before = snapshot(root)
    r = run_flows("recover", "--dry-run", cwd=root)
    assert r.code == 0, r.text
    assert f"Would recover run {run['id']} (failed" in r.out
    assert "reuse     wf/merge: finished in this run" in r.out
    assert "run       wf/chain1: code: scripts/chain1.py changed" in r.out
    assert "run       wf/join: after wf/left, wf/right" in r.out
    assert "Would re-attach 0, reuse 4, run 6." in r.out
    assert snapshot(root) == before and counts(markers)["chain1"] == 1
    r = run_flows("recover", cwd=root)
    assert r.code == 0, r.text
    c = counts(markers)
    assert (c["merge"], c["chain1"], c["chain2"], c["chain3"]) == (1, 2, 2, 1)
    assert load_state(root).runs[run["id"]].outcome == "recovered"


def test_recover_refused_while_a_live_apply_holds_the_lock_then_nothing_to_recover(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    root = make_project(tmp_path / "project", markers, knobs={"chain1": {"gate": True}})
    apply = start_flows(*APPLY_ARGS, cwd=root, log=tmp_path / "apply.log")
    try:
        wait_until(lambda: (markers / "chain1").is_file())  # the apply is working and holds the lock
        r = run_flows("recover", "--flow", W, cwd=root)
        assert r.code == 1 and "Traceback" not in r.text
        assert "is still running" in r.err and f"(pid {apply.proc.pid})" in r.err, r.text
        assert apply.proc.poll() is None, "the refused recover must not disturb the apply"
    finally:
        open_gate(markers, "chain1")
        done = apply.finish()
    assert done.code == 0, done.out
    r = run_flows("recover", cwd=root)
    assert r.code == 0, r.text
    assert "Nothing to recover: the latest run" in r.out and "succeeded" in r.out
    r = run_flows("recover", "r-no-such-run", cwd=root)
    assert r.code == 1 and "no run 'r-no-such-run'" in r.err and "Traceback" not in r.text


def _killed_after_its_last_record(tmp_path: Path) -> tuple[Path, Path]:
    """An apply killed after it journaled the end of its run but before it wrote the state: the test holds the
    state's mutex (the state write takes it) from while the last node runs until the apply is killed, so the apply
    waits there (the window between the two is otherwise a few milliseconds, and racing it failed now and then)."""
    markers = tmp_path / "markers"
    root = make_project(tmp_path / "project", markers, nodes=DIAMOND, knobs={"join": {"gate": True}})
    apply = start_flows(*APPLY_ARGS, cwd=root, log=tmp_path / "apply.log")
    try:
        wait_until(lambda: (markers / "join").is_file() or apply.proc.poll() is not None)
        with open(state_dir(root) / f"{W}.mutex", "a") as mutex:
            fcntl.flock(mutex.fileno(), fcntl.LOCK_EX)
            open_gate(markers, "join")
            wait_until(lambda: any(r.get("type") == "run_finished" for r in journal_records(root))
                       or apply.proc.poll() is not None)
            apply.kill()
    finally:
        open_gate(markers, "join")
        apply.kill()
    assert (state_dir(root) / f"{W}.journal.jsonl").exists(), apply.text()
    assert not (state_dir(root) / f"{W}.json").exists(), "the apply wrote its state before the kill"
    return root, markers


def test_recover_folds_what_a_dead_apply_left_when_nothing_is_left_to_run(tmp_path: Path) -> None:
    """Nothing runs, but the dead apply's journal is folded and its lock released, so the next apply
    does not find the state locked."""
    root, markers = _killed_after_its_last_record(tmp_path)
    assert (state_dir(root) / f"{W}.lock").exists()
    r = run_flows("recover", "--flow", W, cwd=root)
    assert r.code == 0, r.text
    assert "Released the dead apply's lock" in r.out and "Recorded the results the dead apply left" in r.out
    assert "Nothing to recover: the latest run" in r.out and "succeeded" in r.out
    assert not (state_dir(root) / f"{W}.lock").exists() and not (state_dir(root) / f"{W}.journal.jsonl").exists()
    assert all(n.status == "succeeded" for n in load_state(root).nodes.values())
    assert set(counts(markers, DIAMOND).values()) == {1}
    assert run_flows(*PLAN_ARGS, "--detailed-exitcode", cwd=root).code == 0


def test_runs_list_after_kill_shows_interrupted(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    root = make_project(tmp_path / "project", markers)
    apply = start_flows(*APPLY_ARGS, cwd=root, log=tmp_path / "apply.log")
    wait_until(lambda: (markers / "merge").is_file())
    apply.kill()
    assert [r["outcome"] for r in runs_json(root, "--flow", W)] == ["interrupted"]
    assert run_flows("runs", "list", cwd=root).code == 0  # finds the flow without --flow


# -- Domino: a job still running when apply died ---------------------------------------------------
@pytest.fixture
def domino_project(tmp_path: Path, s3: S3Env) -> Iterator[tuple[Path, Path, DominoEmulator, dict[str, str]]]:
    markers = tmp_path / "markers"
    root = make_project(tmp_path / "project", markers, toml=domino_toml(s3.bucket, s3.endpoint, REGION, "blobs"),
                        knobs={"left": {"gate": True}, "right": {"gate": True}}, nodes=DIAMOND)
    emu = DominoEmulator(EmulatorConfig(projects=[demo_project(root, OWNER, PROJECT)], api_key=API_KEY,
                                        work_dir=tmp_path / "emulator")).start()
    try:
        yield root, markers, emu, {**aws_env(), **domino_env(emu)}
    finally:
        emu.stop()


def _domino_job(emu: DominoEmulator, address: str) -> str:
    return next(j for j in emu.started_jobs if node_of(emu.job(j).title) == address)


def node_of(title: str) -> str:
    """`flows: wf/left [flows-<attempt marker>]` -> `wf/left`."""
    return title.removeprefix("flows: ").rsplit(" [flows-", 1)[0]


def test_running_domino_job_is_reattached_not_relaunched(tmp_path: Path, domino_project: tuple) -> None:
    root, markers, emu, env = domino_project
    apply = start_flows(*APPLY_ARGS, cwd=root, log=tmp_path / "apply.log", env=env)
    wait_until(lambda: (markers / "left").is_file() and (markers / "right").is_file())
    apply.kill()  # left and right are running on Domino; apply is gone
    left, right = _domino_job(emu, f"{W}/left"), _domino_job(emu, f"{W}/right")
    # While nobody watches, right fails on Domino; left is still running.
    open_gate(markers, "right", "fail-once")
    wait_until(lambda: emu.job(right).status == "Failed")
    r = run_flows("recover", "--dry-run", "--flow", W, cwd=root, env=env)
    assert r.code == 0, r.text
    assert f"re-attach wf/left: domino job {left} (Running)" in r.out
    assert f"run       wf/right: its domino job {right} ended Failed while no apply watched it" in r.out
    assert "reuse     wf/src_a: finished in this run" in r.out
    assert "run       wf/join: after wf/left, wf/right" in r.out
    recover = start_flows("recover", "--flow", W, cwd=root, log=tmp_path / "recover.log", env=env)
    try:
        wait_until(lambda: f"re-attached to running job {left}" in recover.text() or recover.proc.poll() is not None)
        assert emu.job(left).status == "Running", "left must still be running when recover attaches to it"
    finally:
        open_gate(markers, "left")
        done = recover.finish()
    assert done.code == 0, done.out
    starts = collections.Counter(node_of(emu.job(j).title) for j in emu.started_jobs)
    # left: one job, re-attached; right: its failed job, then one new start; everything else once.
    assert starts == {f"{W}/src_a": 1, f"{W}/left": 1, f"{W}/right": 2, f"{W}/join": 1}, starts
    assert counts(markers, DIAMOND) == {"src_a": 1, "left": 1, "right": 2, "join": 1}
    state = load_state(root)
    [run] = state.runs.values()
    assert run.outcome == "recovered" and state.nodes[f"{W}/left"].job_id == left
    assert not emu.stop_calls, "nothing had to be stopped"


def test_domino_job_started_but_not_journaled_is_found(tmp_path: Path, domino_project: tuple) -> None:
    """apply dies after Domino started a job but before the job id was journaled: recover finds that job
    (by the intent apply journaled first) and re-attaches to it instead of starting a second one."""
    root, markers, emu, env = domino_project
    start_left = f'"title": "flows: {W}/left '.encode()
    proxy = HoldingProxy(emu.url, lambda method, path, body: path == "/v4/jobs/start" and start_left in body)
    try:
        via_proxy = {**env, "DOMINO_API_HOST": proxy.url}
        apply = start_flows(*APPLY_ARGS, cwd=root, log=tmp_path / "apply.log", env=via_proxy)
        wait_until(lambda: proxy.held.is_set() or apply.proc.poll() is not None)
        records = [(r["type"], r.get("address")) for r in journal_records(root)]
        assert ("node_starting", f"{W}/left") in records and ("node_started", f"{W}/left") not in records
        apply.kill()
    finally:
        proxy.close()
    left = _domino_job(emu, f"{W}/left")  # it exists on Domino; nobody knows its id
    r = run_flows("recover", "--dry-run", "--flow", W, cwd=root, env=env)
    assert r.code == 0, r.text
    assert f"Found job {left} of wf/left" in r.out and f"re-attach wf/left: domino job {left}" in r.out, r.out
    open_gate(markers, "left")
    open_gate(markers, "right")
    r = run_flows("recover", "--flow", W, cwd=root, env=env)
    assert r.code == 0, r.text
    starts = collections.Counter(node_of(emu.job(j).title) for j in emu.started_jobs)
    assert starts == {f"{W}/{n}": 1 for n in DIAMOND}, starts
    assert counts(markers, DIAMOND) == {n: 1 for n in DIAMOND}
    assert load_state(root).nodes[f"{W}/left"].job_id == left


def test_a_start_in_flight_when_apply_died_is_found_not_started_twice(tmp_path: Path, domino_project: tuple) -> None:
    """apply dies while its start request is still on its way to Domino: recover's first look finds no job, but
    the job appears a moment later. recover must look again (until the provider's start_in_flight_seconds after
    the intent) and re-attach, not start the node a second time."""
    root, markers, emu, env = domino_project
    start_left = f'"title": "flows: {W}/left '.encode()
    proxy = HoldingProxy(emu.url, lambda method, path, body: path == "/v4/jobs/start" and start_left in body,
                         before=True)
    lists = lambda: len([c for c in emu.calls("GET", "/v4/jobs") if c.path == "/v4/jobs"])  # noqa: E731
    try:
        apply = start_flows(*APPLY_ARGS, cwd=root, log=tmp_path / "apply.log", env={**env, "DOMINO_API_HOST": proxy.url})
        wait_until(lambda: proxy.held.is_set() or apply.proc.poll() is not None)
        assert proxy.held.is_set(), apply.text()
        apply.kill()
        looked = lists()
        recover = start_flows("recover", "--flow", W, cwd=root, log=tmp_path / "recover.log", env=env)
        wait_until(lambda: lists() > looked or recover.proc.poll() is not None)
        proxy.released.set()  # the start reaches Domino only now, after recover first looked
        wait_until(lambda: any(node_of(emu.job(j).title) == f"{W}/left" for j in emu.started_jobs))
    finally:
        proxy.close()
    open_gate(markers, "left")
    open_gate(markers, "right")
    done = recover.finish()
    assert done.code == 0, done.out
    assert f"Found job {_domino_job(emu, f'{W}/left')} of {W}/left" in done.out, done.out
    starts = collections.Counter(node_of(emu.job(j).title) for j in emu.started_jobs)
    assert starts == {f"{W}/{n}": 1 for n in DIAMOND}, starts


@pytest.mark.slow  # the same path as above plus a stop; by hand with `pytest -m slow`
def test_running_domino_job_for_a_stale_key_is_stopped_and_rerun(tmp_path: Path, domino_project: tuple) -> None:
    root, markers, emu, env = domino_project
    apply = start_flows(*APPLY_ARGS, cwd=root, log=tmp_path / "apply.log", env=env)
    wait_until(lambda: (markers / "left").is_file() and (markers / "right").is_file())
    apply.kill()
    left = _domino_job(emu, f"{W}/left")
    script = root / "scripts" / "left.py"  # left's code moved on while apply was dead: its key changes
    script.write_text(script.read_text() + "# edited while no apply ran\n")
    open_gate(markers, "right")  # right may finish; its result is stale all the same
    recover = start_flows("recover", "--flow", W, cwd=root, log=tmp_path / "recover.log", env=env)
    try:
        wait_until(lambda: left in emu.stop_calls or recover.proc.poll() is not None)
    finally:
        open_gate(markers, "left")
        done = recover.finish()
    assert done.code == 0, done.out
    assert left in emu.stop_calls, "the job launched for the old key must be stopped"
    assert counts(markers, DIAMOND) == {"src_a": 1, "left": 2, "right": 1, "join": 1}
    assert load_state(root).nodes[f"{W}/left"].job_id != left
