"""The resident job launcher (issue 18): one process per apply forks every local job into its own namespaces.

What it must keep of the `unshare` path (a job's detached child, timeouts, cancel and stop are covered for both
paths by tests/test_local_provider.py and tests/test_integrity.py), and what is new: the jobs are its children;
a launcher that dies takes its jobs with it and fails their nodes with one clear line; the apply then fails
cleanly and `flows recover` finishes the run.
"""
from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from providers import sandbox
from providers.base import JobHandle, JobSpec
from providers.blobs.local import LocalBlobStore
from providers.local import LocalProvider
from vocab import masking
from vocab.errors import NotStartedError
from tests.fixtures.waiting import alive, lock_holders, wait_until
from tests.fixtures.apply_kit import make_project, stop

pytestmark = pytest.mark.skipif(not sandbox.launcher_available(),
                                reason="the resident launcher needs root and PID namespaces")
DEADLINE = 20.0


NSSPAWN = Path(sandbox.LAUNCHER).with_name("_nsspawn.so")


@pytest.fixture(params=["c", "python"])
def fork(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test below runs with the launcher's fork in C (providers/nsspawn.c, built by `make`) and with its
    fork of itself in Python (FLOWS_LAUNCHER_FORK=python, as where no C compiler built it)."""
    if request.param == "c" and not NSSPAWN.is_file():
        pytest.skip("providers/_nsspawn.so is not built (make builds it where a C compiler is found)")
    monkeypatch.setenv("FLOWS_LAUNCHER_FORK", request.param)
    return str(request.param)


@pytest.fixture()
def provider(tmp_path: Path, fork: str) -> Iterator[LocalProvider]:
    local = LocalProvider(LocalBlobStore(tmp_path / ".flows" / "blobs"), tmp_path / ".flows" / "logs", kill_grace=0.3)
    yield local
    for job_id in list(local._running):
        local.stop(JobHandle(provider="local", job_id=job_id))
    local.close()


def spec(tmp_path: Path, command: str, address: str = "wf/job", **extra: object) -> JobSpec:
    return JobSpec(run_id="run-1", address=address, task_name=address.split("/")[-1], kind="domino_job",
                   command=command, project_root=str(tmp_path), flow_file=str(tmp_path / "flow.py"),
                   log_path=str(tmp_path / "logs" / f"{address.replace('/', '_')}.log"), **extra)  # type: ignore[arg-type]


def holding_job(tmp_path: Path, name: str) -> JobSpec:
    """A job whose detached grandchild holds `<name>.lock` (seen in /proc/locks by its pid out here) until killed."""
    lock = tmp_path / f"{name}.lock"
    script = f"""
        setsid bash -c 'exec 9>>{lock}; flock 9; echo ready > {tmp_path}/{name}.ready; while true; do sleep 0.05; done' &
        while true; do sleep 0.05; done
    """
    return spec(tmp_path, script, address=f"wf/{name}")


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_every_job_is_a_child_of_one_resident_launcher(tmp_path: Path, provider: LocalProvider) -> None:
    jobs = [holding_job(tmp_path, name) for name in ("a", "b")]
    handles = [provider.start(j) for j in jobs]
    launcher = provider._launcher
    assert launcher is not None and launcher.pid is not None
    for h in handles:
        assert parent_of(h.data["pid"]) == launcher.pid  # no `unshare` process between them
        assert Path(f"/proc/{h.data['pid']}/comm").read_text().strip() == "bash"
    for h in handles:
        provider.stop(h)
    for h, j in zip(handles, jobs):
        assert provider.wait(h, j, threading.Event()).status == "cancelled"
    wait_until(lambda: not lock_holders(tmp_path / "a.lock") and not lock_holders(tmp_path / "b.lock"), DEADLINE,
               what="the detached grandchildren to end with their jobs")


def test_a_job_sees_its_own_namespace(tmp_path: Path, provider: LocalProvider) -> None:
    (tmp_path / ".flows" / "secret").parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / ".flows" / "secret").write_text("x")
    job = spec(tmp_path, "echo pid=$$; ls -A /mnt/code/.flows | wc -l; ls /workflow; cat /proc/1/comm; "
                         "echo 7 > /workflow/outputs/n", outputs={"n": "int"})
    result = provider.wait(provider.start(job), job, threading.Event())
    assert result.status == "succeeded" and result.outputs["n"].value == 7
    assert Path(job.log_path).read_text().split() == ["pid=1", "0", "inputs", "outputs", "bash"]


def test_the_launcher_forks_in_c_where_it_was_built(tmp_path: Path, provider: LocalProvider, fork: str) -> None:
    job = spec(tmp_path, "true")
    assert provider.wait(provider.start(job), job, threading.Event()).status == "succeeded"
    assert provider._launcher is not None and provider._launcher.pid is not None
    maps = Path(f"/proc/{provider._launcher.pid}/maps").read_text()
    assert ("_nsspawn.so" in maps) == (fork == "c")


def test_the_c_fork_is_built_by_make_where_there_is_a_compiler() -> None:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler here: the launcher forks itself in Python")
    assert NSSPAWN.is_file(), "make builds providers/_nsspawn.so (see the Makefile)"
    assert NSSPAWN.stat().st_mtime >= NSSPAWN.with_name("nsspawn.c").stat().st_mtime, "providers/_nsspawn.so is stale"


@pytest.mark.parametrize("what", ["workflow", "bash"])
def test_a_job_that_cannot_start_says_which_step_failed(tmp_path: Path, fork: str, what: str) -> None:
    launcher = sandbox.Launcher()
    try:
        workflow = tmp_path / "job"
        (workflow / "outputs").mkdir(parents=True)
        if what == "workflow":
            workflow = tmp_path / "gone"  # nothing to bind at /workflow
        else:
            launcher._bash = str(tmp_path / "no-bash")
        with pytest.raises(sandbox.LauncherError) as raised:
            launcher.spawn("true", cwd=tmp_path, workflow_dir=workflow, log_path=tmp_path / "log", env={}, hide=[])
        expected = ("mount /workflow: No such file or directory" if what == "workflow"
                    else f"exec {tmp_path / 'no-bash'}: No such file or directory")
        assert str(raised.value) == expected
        job = launcher.spawn("exit 3", cwd=tmp_path, workflow_dir=tmp_path / "job", log_path=tmp_path / "log",
                             env={}, hide=[]) if what == "workflow" else None
        assert job is None or job.wait() == 3  # the launcher goes on after a job that could not start
    finally:
        launcher.close()


def test_the_thread_waiting_for_a_job_hears_its_start_and_exit_on_the_jobs_own_socket(tmp_path: Path,
                                                                                     fork: str) -> None:
    """No reader thread hands a job's exit on: the waiting thread reads it itself. A look that finds the job still
    running (a timeout of 0, or a short one) says so and changes nothing."""
    launcher = sandbox.Launcher()
    try:
        workflow = tmp_path / "job"
        (workflow / "outputs").mkdir(parents=True)
        job = launcher.spawn("while [ ! -e /workflow/go ]; do sleep 0.01; done; exit 4", cwd=tmp_path,
                             workflow_dir=workflow, log_path=tmp_path / "log", env={}, hide=[])
        assert job.pid > 0
        assert not [t for t in threading.enumerate() if t.name == "job-launcher"]
        assert job.wait_exit(0) is False and job.wait_exit(0.02) is False
        assert job.returncode is None and not job.exited() and launcher.dead() is None
        (workflow / "go").touch()
        assert job.wait() == 4 and job.exited()
        assert launcher.dead() is None  # the launcher goes on
        assert launcher.spawn("exit 0", cwd=tmp_path, workflow_dir=workflow, log_path=tmp_path / "log", env={},
                              hide=[]).wait() == 0
    finally:
        launcher.close()


@pytest.mark.parametrize("secret", [False, True])
def test_a_prepared_job_has_its_folder_and_log_before_it_starts(tmp_path: Path, provider: LocalProvider,
                                                                monkeypatch: pytest.MonkeyPatch, secret: bool) -> None:
    if secret:  # a known secret: the log is written through the masking pump, not by the job itself
        monkeypatch.setattr(masking, "_registered", {"hush-8d1f2c"})
    job = spec(tmp_path, "echo hello hush-8d1f2c; echo 5 > /workflow/outputs/n", outputs={"n": "int"})
    provider.prepare(job)
    log = Path(job.log_path)
    assert log.is_file() and log.stat().st_size == 0  # made while the job waited for its slot
    folders = [p for p in provider.jobs_dir.glob("*/*") if p.is_dir()]
    assert len(folders) == 1 and (folders[0] / "inputs").is_dir()
    handle = provider.start(job)
    assert handle.data["folder"] == str(folders[0])  # the prepared folder, not a second one
    result = provider.wait(handle, job, threading.Event())
    assert result.status == "succeeded" and result.outputs["n"].value == 5
    assert log.read_text() == ("hello ***\n" if secret else "hello hush-8d1f2c\n")


def test_a_prepared_job_that_never_starts_leaves_nothing_behind(tmp_path: Path, provider: LocalProvider) -> None:
    job = spec(tmp_path, "true")
    provider.prepare(job)
    assert [p for p in provider.jobs_dir.glob("*/*") if p.is_dir()]
    provider.close()
    assert not [p for p in provider.jobs_dir.glob("*/*") if p.is_dir()]


def test_a_launcher_that_dies_takes_its_jobs_with_it_and_says_so(tmp_path: Path, provider: LocalProvider) -> None:
    job = holding_job(tmp_path, "a")
    handle = provider.start(job)
    wait_until(lambda: lock_holders(tmp_path / "a.lock"), DEADLINE, what="the job's grandchild")
    assert provider._launcher is not None and provider._launcher.pid is not None
    os.kill(provider._launcher.pid, signal.SIGKILL)
    result = provider.wait(handle, job, threading.Event())
    assert (result.status, result.error) == ("failed", "the job was killed: the job launcher exited")
    wait_until(lambda: not lock_holders(tmp_path / "a.lock"), DEADLINE, what="the job to die with its launcher")
    wait_until(lambda: not alive(handle.data["pid"]), DEADLINE, what="the job process to be gone")  # the lock goes first
    with pytest.raises(Exception) as raised:
        provider.start(spec(tmp_path, "true", address="wf/next"))
    assert str(raised.value) == "node 'wf/next': cannot start the job: the job launcher exited"


def test_closing_the_provider_ends_the_jobs_still_running(tmp_path: Path, provider: LocalProvider) -> None:
    job = holding_job(tmp_path, "a")
    handle = provider.start(job)
    wait_until(lambda: lock_holders(tmp_path / "a.lock"), DEADLINE, what="the job's grandchild")
    provider.close()
    wait_until(lambda: not lock_holders(tmp_path / "a.lock"), DEADLINE, what="the job to end with the launcher")
    assert provider.wait(handle, job, threading.Event()).status == "failed"


FLOW = '''
@workflow
def wf() -> TXT:
    first = run_domino_job_task(flyte_task_name="first", command="python scripts/first.py",
                                output_specs=[Output(name="o", type=TXT)])
    second = run_domino_job_task(flyte_task_name="second", command="python scripts/second.py",
                                 inputs=[Input(name="x", type=TXT, value=first["o"])],
                                 output_specs=[Output(name="o", type=TXT)])
    return second["o"]
'''
SCRIPTS = {
    "first": 'mark("start")\nwrite("o", "one\\n")\n',
    # the first time, waits (holding a lock) until the test has killed the launcher; later it just runs
    "second": '''
mark("start")
if not os.path.exists(os.path.join(MARKS, "killed")):
    hold_lock()
    wait_for(exists("never"), seconds=60)
write("o", read("x").upper())
''',
}


def launcher_of(pid: int) -> int:
    """The resident launcher started by the `flows` process `pid`."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if parent_of(int(entry.name)) == pid and b"nslauncher.py" in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except (OSError, ValueError):
                continue
    return 0


def test_an_apply_whose_launcher_dies_fails_cleanly_and_recover_finishes_it(tmp_path: Path) -> None:
    p = make_project(tmp_path / "proj", FLOW, SCRIPTS)
    apply = p.spawn("apply", "flow.py", "wf", "--auto-approve")
    try:
        wait_until(lambda: p.holders("second"), DEADLINE, what="the second job to run")
        launcher = wait_until(lambda: launcher_of(apply.pid), DEADLINE, what="the launcher")
        (p.marks / "killed").touch()
        os.kill(launcher, signal.SIGKILL)
        assert apply.wait(timeout=60) == 1
    finally:
        stop(apply)
    out = p.output()
    assert "wf/second: failed: the job was killed: the job launcher exited" in out, out
    assert "Traceback" not in out
    assert not p.holders("second")
    nodes = p.state()["nodes"]
    assert (nodes["wf/first"]["status"], nodes["wf/second"]["status"]) == ("succeeded", "failed")
    r = p.run("recover", "--flow", "wf")
    assert r.code == 0, r.text
    assert p.state()["nodes"]["wf/second"]["status"] == "succeeded"
    assert p.starts("first") == 1 and p.starts("second") == 2
    assert p.actions() == {"wf/first": "reuse", "wf/second": "reuse"}


# ---- starts held in the launcher (StartQueue): a slot never waits for the apply between two jobs ----------------
def a_lock_held_for_an_hour() -> float:
    return time.monotonic() + 3600


def waiting_job(tmp_path: Path, name: str, order: Path) -> JobSpec:
    """Says when it starts and ends (in `order`); ends once `<name>.release` exists."""
    release = tmp_path / f"{name}.release"
    script = f"echo {name}-start >> {order}; while [ ! -e {release} ]; do sleep 0.02; done; echo {name}-end >> {order}"
    return spec(tmp_path, script, address=f"wf/{name}")


def start_in_thread(provider: LocalProvider, job: JobSpec) -> tuple[threading.Thread, dict[str, object]]:
    """`provider.start(job)` in a thread (it may wait in the launcher); returns once its request has been sent."""
    launcher = provider._launcher
    assert launcher is not None
    sent = launcher._next + 1
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["handle"] = provider.start(job)
        except Exception as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(lambda: launcher._next >= sent, DEADLINE, what="the spawn request")
    with launcher._lock:  # (the request is sent under this lock: once it is free, the launcher has it)
        pass
    return thread, box


def test_starts_beyond_the_running_limit_wait_in_the_launcher_and_go_in_order(tmp_path: Path,
                                                                              provider: LocalProvider) -> None:
    assert provider.queue_starts(1, a_lock_held_for_an_hour) >= 1
    order = tmp_path / "order.txt"
    a = provider.start(waiting_job(tmp_path, "a", order))
    wait_until(lambda: order.exists() and "a-start" in order.read_text(), DEADLINE, what="a to start")
    later = [start_in_thread(provider, spec(tmp_path, f"echo {n}-start >> {order}; echo {n}-end >> {order}",
                                            address=f"wf/{n}")) for n in ("b", "c")]
    assert all(thread.is_alive() for thread, _ in later)  # their starts wait: a runs, and the limit is one
    (tmp_path / "a.release").touch()
    for thread, _ in later:
        thread.join(DEADLINE)
    handles = [a] + [box["handle"] for _, box in later]
    for handle, name in zip(handles, "abc"):
        assert isinstance(handle, JobHandle), later
        assert provider.wait(handle, spec(tmp_path, "", address=f"wf/{name}"), threading.Event()).status == "succeeded"
    # each started the moment the one before it had ended, with no word from this process
    assert order.read_text().split() == ["a-start", "a-end", "b-start", "b-end", "c-start", "c-end"]


def one_running_one_waiting(tmp_path: Path, provider: LocalProvider,
                            held_until: Callable[[], float | None] = lambda: time.monotonic() + 3600,
                            ) -> tuple[JobHandle, threading.Thread, dict[str, object]]:
    """One job at a time: `a` runs (until `a.release`), and the start of `b` (which would touch `b.ran`) waits in
    the launcher."""
    provider.queue_starts(1, held_until)
    order = tmp_path / "order.txt"
    a = provider.start(waiting_job(tmp_path, "a", order))
    wait_until(lambda: order.exists(), DEADLINE, what="a to start")
    thread, box = start_in_thread(provider, spec(tmp_path, f"touch {tmp_path}/b.ran", address="wf/b"))
    return a, thread, box


def test_a_hold_refuses_the_starts_waiting_in_the_launcher_and_every_later_one(tmp_path: Path,
                                                                               provider: LocalProvider) -> None:
    a, thread, box = one_running_one_waiting(tmp_path, provider)
    provider.hold("not started: the apply stops")
    thread.join(DEADLINE)
    error = box.get("error")
    assert isinstance(error, NotStartedError) and error.message == "not started: the apply stops", box
    with pytest.raises(NotStartedError, match="the apply stops"):
        provider.start(spec(tmp_path, f"touch {tmp_path}/c.ran", address="wf/c"))
    assert alive(a.data["pid"])  # what runs goes on
    (tmp_path / "a.release").touch()
    assert provider.wait(a, spec(tmp_path, "", address="wf/a"), threading.Event()).status == "succeeded"
    provider.close()  # (nothing held back can start after this either)
    assert not (tmp_path / "b.ran").exists() and not (tmp_path / "c.ran").exists()


def test_a_ctrl_c_holds_the_waiting_starts_before_the_running_job_is_killed(tmp_path: Path,
                                                                            provider: LocalProvider) -> None:
    a, thread, box = one_running_one_waiting(tmp_path, provider)
    cancel = threading.Event()
    cancel.set()
    result = provider.wait(a, spec(tmp_path, "", address="wf/a"), cancel)  # kills a: its slot frees
    assert result.status == "cancelled"
    thread.join(DEADLINE)
    assert isinstance(box.get("error"), NotStartedError), box
    provider.close()
    assert not (tmp_path / "b.ran").exists()


def test_get_ready_boots_the_launcher_that_the_first_start_then_uses(tmp_path: Path, provider: LocalProvider) -> None:
    provider.get_ready()  # (an apply calls it before it plans)
    launcher = provider._launcher
    assert launcher is not None and launcher.pid is not None and alive(launcher.pid)
    handle = provider.start(waiting_job(tmp_path, "a", tmp_path / "order.txt"))  # (alive until a.release)
    assert provider._launcher is launcher and parent_of(handle.data["pid"]) == launcher.pid
    (tmp_path / "a.release").touch()
    assert provider.wait(handle, spec(tmp_path, "", address="wf/a"), threading.Event()).status == "succeeded"


def test_a_waiting_start_whose_turn_comes_after_the_lock_was_shown_asks_again(tmp_path: Path,
                                                                               provider: LocalProvider) -> None:
    """A start waits in the launcher only as long as the apply can show it holds the lock (a paused apply's
    launcher runs on): past that, it is asked again; an apply that cannot show it any more starts nothing."""
    # a: shown for an hour; b: shown until now (past by the time a ends), then no longer
    answers = iter([a_lock_held_for_an_hour(), time.monotonic(), None])
    a, thread, box = one_running_one_waiting(tmp_path, provider, held_until=lambda: next(answers))
    (tmp_path / "a.release").touch()
    assert provider.wait(a, spec(tmp_path, "", address="wf/a"), threading.Event()).status == "succeeded"
    thread.join(DEADLINE)
    assert isinstance(box.get("error"), NotStartedError), box
    provider.close()
    assert not (tmp_path / "b.ran").exists()


def test_a_start_asked_again_with_the_lock_renewed_runs(tmp_path: Path, provider: LocalProvider) -> None:
    # a: shown for an hour; b: expired by its turn, renewed when asked again
    answers = iter([a_lock_held_for_an_hour(), time.monotonic(), a_lock_held_for_an_hour()])
    a, thread, box = one_running_one_waiting(tmp_path, provider, held_until=lambda: next(answers))
    (tmp_path / "a.release").touch()
    assert provider.wait(a, spec(tmp_path, "", address="wf/a"), threading.Event()).status == "succeeded"
    thread.join(DEADLINE)
    handle = box.get("handle")
    assert isinstance(handle, JobHandle), box
    assert provider.wait(handle, spec(tmp_path, "", address="wf/b"), threading.Event()).status == "succeeded"
    assert (tmp_path / "b.ran").exists()


def test_each_job_gets_exactly_its_own_environment_however_it_differs_from_the_last(tmp_path: Path,
                                                                                     fork: str) -> None:
    """The launcher keeps one environment and each start says what differs: a job sees its own variables, never
    one another job set or one it unset, also when it differs in too many for a difference (a new base)."""
    (tmp_path / "job").mkdir()
    launcher = sandbox.Launcher()
    common = {f"FLOWS_T_{i}": f"value {i}" for i in range(30)}
    wanted = [
        {**common, "ONLY_FIRST": "1"},
        {**common, "FLOWS_T_3": "changed", "ONLY_SECOND": "é 2"},  # (a changed and an added variable)
        {k: v for k, v in common.items() if k != "FLOWS_T_5"},  # one unset
        {f"OTHER_{i}": str(i) for i in range(40)},  # differs in everything: a new base
        {**{f"OTHER_{i}": str(i) for i in range(40)}, "OTHER_7": "seven"},
    ]
    try:
        for i, env in enumerate(wanted):
            log = tmp_path / f"env{i}.log"
            job = launcher.spawn("env -0", cwd=tmp_path, workflow_dir=tmp_path / "job", log_path=log, env=env,
                                 hide=[])
            assert job.wait() == 0
            seen = dict(entry.split("=", 1) for entry in log.read_text().split("\0") if entry)
            seen.pop("PWD", None), seen.pop("SHLVL", None), seen.pop("_", None)  # (set by bash itself)
            assert seen == env, i
        # One shared dict and each job's own variables (as the local provider starts its jobs): a job sees the
        # shared ones with its own set, never the last job's own; another shared dict is sent as a new base.
        shared, other = {**common}, {"ONLY": "other"}
        for i, (env, changes) in enumerate([(shared, {"RUN": "1"}), (shared, {"RUN": "2", "FLOWS_T_1": "x"}),
                                            (shared, {}), (other, {"RUN": "3"}), (shared, {"RUN": "4"})]):
            log = tmp_path / f"shared{i}.log"
            job = launcher.spawn("env -0", cwd=tmp_path, workflow_dir=tmp_path / "job", log_path=log, env=env,
                                 hide=[], env_changes=changes)
            assert job.wait() == 0
            seen = dict(entry.split("=", 1) for entry in log.read_text().split("\0") if entry)
            seen.pop("PWD", None), seen.pop("SHLVL", None), seen.pop("_", None)
            assert seen == {**env, **changes}, i
        assert shared == common  # (the shared dict is the caller's: never changed)
    finally:
        launcher.close()
