"""The local provider with real subprocesses, real files and a real local blob store."""
from __future__ import annotations

import datetime as dt
import json
import os
import py_compile
import random
import shlex
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from providers import sandbox
from providers.base import InputValue, JobHandle, JobResult, JobSpec
from providers.blobs.local import LocalBlobStore
from providers.local import NO_ISOLATION, LocalProvider
from providers.pytask import go_duration, parse_duration
from vocab.digest import StatCache
from vocab.errors import FlowLoadError, ProviderError
from reconcile.code_identity import CodeIdentity
from reconcile.graph import Node
from tests.fixtures.waiting import alive, lock_holders, wait_until

ISOLATED = sandbox.isolation_available()
needs_isolation = pytest.mark.skipif(not ISOLATED, reason="unshare mount namespaces are not available here")
DEADLINE = 10.0


def poll(check: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Wait for `check()` with a deadline (no fixed sleeps)."""
    wait_until(check, timeout, interval=0.005, what=what)


def gone(pid: int) -> bool:
    """The process no longer runs (absent, or a zombie waiting to be reaped by someone else)."""
    return not alive(pid)


@pytest.fixture()
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / ".flows" / "blobs")


@pytest.fixture(params=[pytest.param(True, marks=needs_isolation, id="isolated"),
                        pytest.param(False, id="shared")])
def provider(request: pytest.FixtureRequest, tmp_path: Path, blobs: LocalBlobStore) -> Iterator[LocalProvider]:
    local = LocalProvider(blobs, tmp_path / ".flows" / "logs", isolate=request.param, kill_grace=0.3)
    yield local
    for job_id in list(local._running):  # a failed test must not leave its jobs running
        local.stop(JobHandle(provider="local", job_id=job_id))


def spec(tmp_path: Path, command: str = "", *, inputs: dict[str, InputValue] | None = None,
         outputs: dict[str, str] | None = None, address: str = "wf/job", **extra: Any) -> JobSpec:
    return JobSpec(run_id="run-1", address=address, task_name=address.split("/")[-1],
                   kind=extra.pop("kind", "domino_job"), command=command, inputs=inputs or {},
                   outputs=outputs or {}, project_root=str(tmp_path), flow_file=str(tmp_path / "flow.py"),
                   log_path=str(tmp_path / "logs" / f"{address.replace('/', '_')}.log"), **extra)


def run(provider: LocalProvider, job: JobSpec, cancel: threading.Event | None = None) -> JobResult:
    return provider.wait(provider.start(job), job, cancel or threading.Event())


# Scripts use $FLOWS_*_DIR so the same test runs with and without isolation.
IN, OUT = '"$FLOWS_INPUTS_DIR"', '"$FLOWS_OUTPUTS_DIR"'


# ---- inputs ---------------------------------------------------------------------------------------

def test_every_input_is_written_as_domino_writes_it(tmp_path: Path, provider: LocalProvider,
                                                   blobs: LocalBlobStore) -> None:
    data = tmp_path / "data.csv"
    data.write_bytes(b"a,b\n1,2\n")
    folder = tmp_path / "folder"
    (folder / "deep").mkdir(parents=True)
    (folder / "deep" / "x.txt").write_text("x")
    stored = blobs.put_dir(folder)
    stored_file = blobs.put_bytes(b"from the store")
    inputs = {
        "s": InputValue(type="str", value="héllo\nworld"),
        "i": InputValue(type="int", value=-42),
        "f": InputValue(type="float", value=0.1),
        "f_whole": InputValue(type="float", value=1),
        "f_big": InputValue(type="float", value=1e20),
        "yes": InputValue(type="bool", value=True),
        "no": InputValue(type="bool", value=False),
        "xs": InputValue(type="list[int]", value=[1, 2, 3]),
        "d": InputValue(type="dict[str,int]", value={"b": 2, "a": 1}),
        "when": InputValue(type="datetime", value="2024-05-01T12:30:00"),
        "when_tz": InputValue(type="datetime", value=dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
        "day": InputValue(type="date", value="2024-05-01"),
        "span": InputValue(type="timedelta", value=5400.0),
        "nothing": InputValue(type="optional[int]", value=None),
        "csv": InputValue(type="file[csv]", uri=str(data)),
        "blob": InputValue(type="file", uri=stored_file.uri),
        "dir": InputValue(type="dir", uri=str(folder)),
        "stored_dir": InputValue(type="dir", uri=stored.uri),
    }
    job = spec(tmp_path, f"cp -r {IN}/. {OUT}/all", inputs=inputs, outputs={"all": "dir"})
    result = run(provider, job)
    assert result.status == "succeeded", result
    got = tmp_path / "got"
    blobs.get_dir(result.outputs["all"].uri, got)
    expected = {
        "s": "héllo\nworld", "i": "-42", "f": "0.1", "f_whole": "1", "f_big": "100000000000000000000",
        "yes": "true", "no": "false", "xs": "[1, 2, 3]", "d": '{"a": 1, "b": 2}',
        "when": "2024-05-01T12:30:00Z", "when_tz": "2024-05-01T12:00:00+02:00", "day": "2024-05-01",
        "span": "1h30m0s", "nothing": "null", "csv": "a,b\n1,2\n", "blob": "from the store",
        "dir/deep/x.txt": "x", "stored_dir/deep/x.txt": "x",
    }
    assert {k: (got / k).read_text() for k in expected} == expected
    assert sorted(p.name for p in got.iterdir()) == sorted(k.split("/")[0] for k in expected)


@needs_isolation
def test_jobs_see_their_inputs_at_slash_workflow(tmp_path: Path, blobs: LocalBlobStore) -> None:
    provider = LocalProvider(blobs, tmp_path / "logs")
    job = spec(tmp_path, "expr $(cat /workflow/inputs/n) + 1 > /workflow/outputs/m",
               inputs={"n": InputValue(type="int", value=41)}, outputs={"m": "int"})
    assert run(provider, job).outputs["m"].value == 42


def test_inputs_are_copies_a_job_cannot_change_the_store(tmp_path: Path, provider: LocalProvider,
                                                        blobs: LocalBlobStore) -> None:
    stored = blobs.put_bytes(b"original")
    job = spec(tmp_path, f"chmod u+w {IN}/f; echo changed > {IN}/f",
               inputs={"f": InputValue(type="file", uri=stored.uri)})
    assert run(provider, job).status == "succeeded"
    assert Path(stored.uri).read_bytes() == b"original"


@needs_isolation
def test_a_finished_jobs_folder_serves_the_next_job_with_nothing_of_the_last_one(tmp_path: Path,
                                                                                  blobs: LocalBlobStore) -> None:
    provider = LocalProvider(blobs, tmp_path / ".flows" / "logs")
    if not provider.contained:
        pytest.skip("folders are reused only for jobs in a PID namespace of their own")
    stored = blobs.put_bytes(b"one\n")
    # The first job scribbles on its input and leaves a file it did not declare.
    first = spec(tmp_path, "cat /workflow/inputs/a /workflow/inputs/b > /workflow/outputs/out; "
                           "echo scribbled > /workflow/inputs/a; echo left > /workflow/outputs/extra",
                 inputs={"a": InputValue(type="file", uri=stored.uri), "b": InputValue(type="str", value="bee")},
                 outputs={"out": "file"}, address="wf/first")
    handle = provider.start(first)
    done = provider.wait(handle, first, threading.Event())
    assert done.status == "succeeded", done
    # The second has the same input names, one of them an optional file not given: it must not see a `b`.
    second = spec(tmp_path, "{ ls -A /workflow/inputs /workflow/outputs; cat /workflow/inputs/a; } > /tmp/seen; "
                            "mv /tmp/seen /workflow/outputs/seen",
                  inputs={"a": InputValue(type="str", value="two"), "b": InputValue(type="optional[file]")},
                  outputs={"seen": "file"}, address="wf/second")
    again = provider.start(second)
    result = provider.wait(again, second, threading.Event())
    assert result.status == "succeeded", result
    assert again.data["folder"] == handle.data["folder"]  # the same folder, emptied
    assert blobs.read_bytes(result.outputs["seen"].uri) == b"/workflow/inputs:\na\n\n/workflow/outputs:\ntwo"
    assert blobs.read_bytes(done.outputs["out"].uri) == b"one\nbee"  # the first job's output intact
    assert blobs.read_bytes(stored.uri) == b"one\n"  # the input's blob was never written through
    provider.close()
    assert not Path(handle.data["folder"]).exists()


@pytest.mark.parametrize("value, message", [
    (InputValue(type="file", uri="/no/such/file.csv"), "input 'data': no such file: /no/such/file.csv"),
    (InputValue(type="dir", uri="/no/such/dir"), "input 'data': no such directory: /no/such/dir"),
    (InputValue(type="file", uri="s3://bucket/key.csv"), "input 'data': s3://bucket/key.csv is on S3 but the blob store is local"),
    (InputValue(type="int", value="many"), "input 'data': 'many' is not an int"),
])
def test_unreadable_input_is_a_clear_error(tmp_path: Path, provider: LocalProvider, value: InputValue,
                                           message: str) -> None:
    job = spec(tmp_path, "true", inputs={"data": value})
    with pytest.raises(ProviderError) as e:
        provider.start(job)
    assert e.value.render().startswith(f"node 'wf/job': {message}")
    assert not list((tmp_path / ".flows" / "jobs").rglob("inputs"))  # nothing left behind


def test_input_names_cannot_escape_the_inputs_folder(tmp_path: Path, provider: LocalProvider) -> None:
    job = spec(tmp_path, "true", inputs={"../../evil": InputValue(type="str", value="x")})
    with pytest.raises(ProviderError, match="node 'wf/job': input name '../../evil' would be written outside"):
        provider.start(job)
    assert not (tmp_path / ".flows" / "jobs" / "evil").exists()


# ---- outputs --------------------------------------------------------------------------------------

def test_outputs_of_every_type_are_parsed_and_stored(tmp_path: Path, provider: LocalProvider,
                                                     blobs: LocalBlobStore) -> None:
    script = f"""
        cd {OUT}
        printf 'hello\\n' > s; echo 5 > n; printf 2.5 > x; echo true > ok
        echo '[1, 2]' > xs; echo '{{"a": 1}}' > d; echo 2024-05-01T10:00:00Z > when; echo 1m30s > span
        printf 'a,b\\n' > table; mkdir -p model/w && echo w > model/w/0
    """
    outputs = {"s": "str", "n": "int", "x": "float", "ok": "bool", "xs": "list[int]", "d": "dict[str,int]",
               "when": "datetime", "span": "timedelta", "table": "file[csv]", "model": "dir", "maybe": "optional[int]"}
    result = run(provider, spec(tmp_path, script, outputs=outputs))
    assert result.status == "succeeded", result
    values = {k: v.value for k, v in result.outputs.items() if k not in ("table", "model")}
    assert values == {"s": "hello\n", "n": 5, "x": 2.5, "ok": True, "xs": [1, 2], "d": {"a": 1},
                      "when": "2024-05-01T10:00:00Z", "span": 90.0, "maybe": None}
    assert {k: v.type for k, v in result.outputs.items()} == outputs
    assert blobs.read_bytes(result.outputs["table"].uri) == b"a,b\n"
    assert result.outputs["table"].size == 4
    blobs.get_dir(result.outputs["model"].uri, tmp_path / "model")
    assert (tmp_path / "model" / "w" / "0").read_text() == "w\n"
    assert blobs.read_bytes(result.outputs["n"].uri) == b"5"  # primitives are stored as canonical text
    run_folder = tmp_path / ".flows" / "jobs" / "run-1"
    left = [f for f in run_folder.rglob("*") if f.is_file() and not f.is_symlink()]
    assert left and all(f.stat().st_size == 0 for f in left)  # the job's files give their space back at once
    provider.close()
    assert not run_folder.exists()  # and its folder goes when the provider closes


def test_equal_values_written_differently_have_one_digest(tmp_path: Path, provider: LocalProvider) -> None:
    a = run(provider, spec(tmp_path, f"echo 7 > {OUT}/n", outputs={"n": "int"}))
    b = run(provider, spec(tmp_path, f"printf ' 7' > {OUT}/n", outputs={"n": "int"}))
    c = run(provider, spec(tmp_path, f"printf 8 > {OUT}/n", outputs={"n": "int"}))
    assert a.outputs["n"].digest == b.outputs["n"].digest != c.outputs["n"].digest


def test_missing_output_lists_what_the_job_wrote(tmp_path: Path, provider: LocalProvider) -> None:
    job = spec(tmp_path, f"echo 1 > {OUT}/totl; mkdir {OUT}/plots; echo 2 > {OUT}/n",
               outputs={"n": "int", "total": "int", "report": "file"})
    result = run(provider, job)
    assert result.status == "failed"
    assert result.error == "missing outputs 'total', 'report'; the job wrote: n, plots/, totl"


def test_missing_output_when_nothing_was_written(tmp_path: Path, provider: LocalProvider) -> None:
    result = run(provider, spec(tmp_path, "echo working", outputs={"model": "file"}))
    assert result.error == "missing output 'model'; the job wrote nothing to /workflow/outputs"


def test_name_with_an_extension_is_accepted_with_a_warning(tmp_path: Path, provider: LocalProvider,
                                                           blobs: LocalBlobStore) -> None:
    result = run(provider, spec(tmp_path, f"printf 'id\\n1\\n' > {OUT}/datasetA.csv", outputs={"datasetA": "file[csv]"}))
    assert result.status == "succeeded", result
    assert blobs.read_bytes(result.outputs["datasetA"].uri) == b"id\n1\n"
    assert result.warnings == ["output 'datasetA': the job wrote 'datasetA.csv'; using it as 'datasetA'"]


def test_two_candidate_extensions_are_not_guessed(tmp_path: Path, provider: LocalProvider) -> None:
    result = run(provider, spec(tmp_path, f"touch {OUT}/data.csv {OUT}/data.tsv", outputs={"data": "file"}))
    assert result.status == "failed"
    assert result.error == "missing output 'data'; the job wrote: data.csv, data.tsv"


@pytest.mark.parametrize("text, t, error", [
    ("abc", "int", "output 'sum' is not an int: 'abc'"),
    ("4.5", "int", "output 'sum' is not an int: '4.5'"),
    ("yes", "bool", "output 'sum' is not a bool: 'yes'"),
    ("1,2", "float", "output 'sum' is not a float: '1,2'"),
    ('[1, "x"]', "list[int]", "output 'sum' is not a list[int]: '[1, \"x\"]' (expected an int, got 'x')"),
    ("soon", "datetime", "output 'sum' is not a datetime: 'soon'"),
])
def test_bad_primitive_output_fails_the_node(tmp_path: Path, provider: LocalProvider, text: str, t: str,
                                             error: str) -> None:
    result = run(provider, spec(tmp_path, f"printf '%s' '{text}' > {OUT}/sum", outputs={"sum": t}))
    assert (result.status, result.error) == ("failed", error)


def test_file_output_that_is_a_directory(tmp_path: Path, provider: LocalProvider) -> None:
    result = run(provider, spec(tmp_path, f"mkdir {OUT}/model", outputs={"model": "file"}))
    assert result.error == "output 'model' is declared file but the job wrote a directory"


def test_outputs_never_escape_the_outputs_folder(tmp_path: Path, provider: LocalProvider) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not store me")
    by_name = run(provider, spec(tmp_path, f"echo 1 > {OUT}/../x", outputs={"../x": "int"}))
    assert by_name.error == "output '../x' points outside the outputs folder"
    by_link = run(provider, spec(tmp_path, f"ln -s {secret} {OUT}/leak", outputs={"leak": "file"}))
    assert by_link.error == "output 'leak' points outside the outputs folder"


# ---- failures, timeouts, cancellation ----------------------------------------------------------------

def test_failing_command_reports_exit_code_and_log_tail(tmp_path: Path, provider: LocalProvider,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWS_TEST_API_KEY", "s3cr3t-value")
    job = spec(tmp_path, 'for i in $(seq 1 30); do echo "line $i"; done; echo "key=$FLOWS_TEST_API_KEY" >&2; exit 3',
               outputs={"n": "int"})
    result = run(provider, job)
    assert (result.status, result.error) == ("failed", "exit code 3")
    lines = result.log_tail.splitlines()
    assert lines == [f"line {i}" for i in range(12, 31)] + ["key=***"]
    raw = Path(job.log_path).read_text()  # masked when written, not only when shown (issue 15)
    assert "key=***" in raw and "s3cr3t-value" not in raw


def _marker_job(tmp_path: Path, **extra: Any) -> JobSpec:
    # The leader starts a grandchild that ignores SIGTERM and holds a lock on child.lock while it lives (its
    # pid would be its own PID namespace's), says so in child.pid, then both keep running.
    script = f"""
        (trap '' TERM; exec 9>>{tmp_path}/child.lock; flock 9; echo ready > {tmp_path}/child.pid
         while true; do sleep 0.05; done) &
        sleep 30
    """
    return spec(tmp_path, script, **extra)


def test_timeout_kills_the_whole_process_group(tmp_path: Path, provider: LocalProvider) -> None:
    job = _marker_job(tmp_path, timeout_seconds=0.5)
    started = time.monotonic()
    result = run(provider, job)
    assert (result.status, result.error) == ("timed_out", "timed out after 0.5s")
    assert time.monotonic() - started < 5
    poll(lambda: not lock_holders(tmp_path / "child.lock"), "the grandchild to be killed", timeout=2)


def test_cancel_stops_a_running_job(tmp_path: Path, provider: LocalProvider) -> None:
    job = _marker_job(tmp_path)
    cancel = threading.Event()
    handle = provider.start(job)
    setter = threading.Thread(target=lambda: (poll(lambda: lock_holders(tmp_path / "child.lock"), "child"), cancel.set()))
    setter.start()
    result = provider.wait(handle, job, cancel)
    setter.join()
    assert (result.status, result.error) == ("cancelled", "cancelled")
    poll(lambda: not lock_holders(tmp_path / "child.lock"), "the grandchild to be killed", timeout=2)
    assert gone(handle.data["pid"])


def test_stop_ends_a_job_that_is_being_waited_for(tmp_path: Path, provider: LocalProvider) -> None:
    job = _marker_job(tmp_path)
    handle = provider.start(job)
    stopper = threading.Thread(target=lambda: (poll(lambda: (tmp_path / "child.pid").exists(), "child"),
                                               provider.stop(handle)))
    stopper.start()
    result = provider.wait(handle, job, threading.Event())
    stopper.join()
    assert (result.status, result.error) == ("cancelled", "stopped")


def test_background_leftovers_do_not_outlive_a_successful_job(tmp_path: Path, provider: LocalProvider) -> None:
    job = spec(tmp_path, f"(exec 9>>{tmp_path}/bg.lock; flock 9; echo ready > {tmp_path}/bg.pid; exec sleep 30) & "
                         f"while [ ! -s {tmp_path}/bg.pid ]; do sleep 0.01; done; echo 1 > {OUT}/n",
               outputs={"n": "int"})
    assert run(provider, job).status == "succeeded"
    poll(lambda: not lock_holders(tmp_path / "bg.lock"), "the background process to be killed", timeout=2)


def test_parallel_jobs_writing_the_same_output_name_do_not_clash(tmp_path: Path, provider: LocalProvider) -> None:
    # Each job waits until both have started, so they really overlap, then writes `result`.
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    script = f"""
        touch {barrier}/$(cat {IN}/me)
        for i in $(seq 1 1000); do [ $(ls {barrier} | wc -l) -ge 2 ] && break; sleep 0.01; done
        cat {IN}/me > {OUT}/result
    """
    jobs = [spec(tmp_path, script, inputs={"me": InputValue(type="str", value=name)}, outputs={"result": "str"},
                 address=f"wf/{name}") for name in ("left", "right")]
    handles = [provider.start(j) for j in jobs]
    results: dict[str, JobResult] = {}
    threads = [threading.Thread(target=lambda h=h, j=j: results.__setitem__(j.address, provider.wait(h, j, threading.Event())))
               for h, j in zip(handles, jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {a: (r.status, r.outputs["result"].value) for a, r in results.items()} == {
        "wf/left": ("succeeded", "left"), "wf/right": ("succeeded", "right")}


def test_without_isolation_jobs_run_one_at_a_time_and_it_says_so(tmp_path: Path, blobs: LocalBlobStore) -> None:
    shared = LocalProvider(blobs, tmp_path / "logs", isolate=False)
    assert (shared.max_parallel, shared.warnings) == (1, [NO_ISOLATION])
    if ISOLATED:
        isolated = LocalProvider(blobs, tmp_path / "logs")
        assert (isolated.max_parallel, isolated.warnings) == (None, [])


# ---- logs, attach ----------------------------------------------------------------------------------

def test_logs_of_a_job_from_another_provider_instance(tmp_path: Path, provider: LocalProvider,
                                                      blobs: LocalBlobStore) -> None:
    handle = provider.start(spec(tmp_path, "echo hello from the job"))
    provider.wait(handle, spec(tmp_path), threading.Event())
    second = spec(tmp_path, "echo the second job", address="wf/second")
    other = provider.start(second)
    provider.wait(other, second, threading.Event())
    later = LocalProvider(blobs, tmp_path / ".flows" / "logs")
    assert later.logs(handle.job_id) == "hello from the job\n"
    assert later.logs(other.job_id) == "the second job\n"
    with pytest.raises(ProviderError, match="no log for local job local-1-nope"):
        later.logs("local-1-nope")
    index = tmp_path / ".flows" / "logs" / ".local-jobs"
    assert [p.suffix for p in index.iterdir()] == [".jsonl"]  # one index file per apply, not one per job
    old_log = tmp_path / "old.log"  # a job of an apply from before the index files: a file of its own
    old_log.write_text("from an older apply\n")
    (index / "local-7-0ld0ld00.json").write_text(json.dumps({"log": str(old_log)}))
    assert later.logs("local-7-0ld0ld00") == "from an older apply\n"


def test_attach(tmp_path: Path, provider: LocalProvider, blobs: LocalBlobStore) -> None:
    job = _marker_job(tmp_path)
    handle = provider.start(job)
    assert provider.attach(handle.job_id, job) == handle  # its own running job
    # Another apply (a new instance) cannot wait for it: the orphan is stopped, the node runs afresh.
    other = LocalProvider(blobs, tmp_path / ".flows" / "logs", kill_grace=0.3)
    poll(lambda: lock_holders(tmp_path / "child.lock"), "the job to start")
    assert other.attach(handle.job_id, job) is None
    result = provider.wait(handle, job, threading.Event())
    # Stopped: SIGTERM, then SIGKILL. In its own PID namespace bash (PID 1 there, immune to SIGTERM) outlives
    # its command and reports the command's SIGTERM as exit code 143, unless the SIGKILL came first.
    assert result.status == "failed" and (result.error.startswith("killed by signal") or
                                          result.error == "exit code 143"), result.error
    poll(lambda: not lock_holders(tmp_path / "child.lock"), "the grandchild to be killed", timeout=2)
    assert other.attach("local-999999-gone", job) is None


# ---- python tasks ----------------------------------------------------------------------------------

FLOW = '''
from typing import NamedTuple
from flytekit import task, workflow
from flytekit.types.file import FlyteFile

Stats = NamedTuple("Stats", [("total", int), ("mean", float)])


@task
def add(a: int, b: int = 1) -> int:
    return a + b


@task(cache_version="1")
def stats(xs: list[int]) -> Stats:
    return Stats(total=sum(xs), mean=sum(xs) / len(xs))


@task
def upper(doc: FlyteFile, suffix: str) -> tuple[FlyteFile, int]:
    text = open(doc).read().upper() + suffix
    with open("upper.txt", "w") as f:  # the job runs in the project root
        f.write(text)
    return FlyteFile("upper.txt"), len(text)


@task
def broken(a: int) -> int:
    raise RuntimeError("bad things")


@workflow
def wf(a: int) -> int:
    return add(a=a)
'''


def python_job(tmp_path: Path, qualname: str, **kwargs: Any) -> JobSpec:
    return spec(tmp_path, kind="python", python={"file": str(tmp_path / "flow.py"), "qualname": qualname,
                                                 "module": "flow"}, address=f"wf/{qualname}", **kwargs)


def test_python_tasks_run_in_a_subprocess(tmp_path: Path, provider: LocalProvider, blobs: LocalBlobStore) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "doc.txt").write_text("abc")
    add = run(provider, python_job(tmp_path, "add", inputs={"a": InputValue(type="int", value=41),
                                                            "b": InputValue(type="int", value=1)},
                                   outputs={"o0": "int"}))
    assert add.outputs["o0"].value == 42
    stats = run(provider, python_job(tmp_path, "stats", inputs={"xs": InputValue(type="list[int]", value=[1, 2, 3, 6])},
                                     outputs={"total": "int", "mean": "float"}))
    assert {k: v.value for k, v in stats.outputs.items()} == {"total": 12, "mean": 3.0}
    upper = run(provider, python_job(tmp_path, "upper", inputs={"doc": InputValue(type="file", uri=str(tmp_path / "doc.txt")),
                                                                "suffix": InputValue(type="str", value="!")},
                                     outputs={"o0": "file", "o1": "int"}))
    assert upper.status == "succeeded", upper
    assert blobs.read_bytes(upper.outputs["o0"].uri) == b"ABC!"
    assert upper.outputs["o1"].value == 4


def test_a_module_a_python_task_imports_as_it_runs_comes_from_its_source(tmp_path: Path,
                                                                          provider: LocalProvider) -> None:
    """Not from a .pyc that only looks fresh (an edit in the same second, the same size): the node's key has the new
    content, so the job must run it."""
    (tmp_path / "flow.py").write_text(FLOW + "\n\n@task\ndef plus_k(a: int) -> int:\n    import konst\n"
                                              "    return a + konst.K\n")
    konst = tmp_path / "konst.py"
    konst.write_text("K = 1\n")
    py_compile.compile(str(konst), doraise=True)  # as the user's own Python leaves it
    job = python_job(tmp_path, "plus_k", inputs={"a": InputValue(type="int", value=1)}, outputs={"o0": "int"})
    assert run(provider, job).outputs["o0"].value == 2
    before = konst.stat()
    konst.write_text("K = 5\n")
    os.utime(konst, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert run(provider, job).outputs["o0"].value == 6


def test_python_task_errors_fail_with_the_traceback_in_the_log(tmp_path: Path, provider: LocalProvider) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    result = run(provider, python_job(tmp_path, "broken", inputs={"a": InputValue(type="int", value=1)},
                                      outputs={"o0": "int"}))
    assert (result.status, result.error) == ("failed", "exit code 1")
    assert result.log_tail.splitlines()[-1] == "RuntimeError: bad things"
    missing = run(provider, python_job(tmp_path, "nope", outputs={"o0": "int"}))
    assert (missing.status, missing.error) == ("failed", "exit code 2")
    assert f"no function 'nope' in {tmp_path / 'flow.py'}" in missing.log_tail


def test_python_task_returning_the_wrong_number_of_values(tmp_path: Path, provider: LocalProvider) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    result = run(provider, python_job(tmp_path, "add", inputs={"a": InputValue(type="int", value=1),
                                                               "b": InputValue(type="int", value=1)},
                                      outputs={"o0": "int", "o1": "int"}))
    assert result.status == "failed"
    assert "task 'add' returned one value but declares 2 outputs (o0, o1)" in result.log_tail
    wrong_type = run(provider, python_job(tmp_path, "add", inputs={"a": InputValue(type="int", value=1),
                                                                   "b": InputValue(type="int", value=1)},
                                          outputs={"o0": "str"}))
    assert wrong_type.log_tail.splitlines()[-1] == "flows: output 'o0' is declared str: expected a str, got 2"


# ---- code identity ---------------------------------------------------------------------------------


def test_code_identity_of_a_command_is_the_files_it_names(tmp_path: Path, provider: LocalProvider) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "train.py").write_text("print(1)")
    (tmp_path / "scripts" / "other.py").write_text("print(2)")
    node = Node(address="wf/train", task_name="train", kind="domino_job",
                command="python /mnt/code/scripts/train.py")
    before = CodeIdentity(tmp_path, StatCache(None)).of(node)
    assert list(before) == ["scripts/train.py"]
    (tmp_path / "scripts" / "other.py").write_text("print(3)")
    assert CodeIdentity(tmp_path, StatCache(None)).of(node) == before
    (tmp_path / "scripts" / "train.py").write_text("print(4)")
    assert CodeIdentity(tmp_path, StatCache(None)).of(node) != before


def test_code_identity_of_a_python_task_is_its_own_source(tmp_path: Path, blobs: LocalBlobStore) -> None:
    flow = tmp_path / "flow.py"

    def identity(text: str) -> dict[str, str]:
        flow.write_text(text)
        node = Node(address="wf/add", task_name="add", kind="python",
                    python={"file": str(flow), "module": "flow", "qualname": "add"})
        return CodeIdentity(tmp_path, StatCache(None)).of(node)

    base = identity(FLOW)
    assert list(base) == ["flow.py::add"]
    assert identity(FLOW.replace("raise RuntimeError", "raise ValueError")) == base      # another function
    assert identity(FLOW.replace("return a + b", "return a + b  # sum")) == base        # a comment
    assert identity(FLOW.replace("return a + b", "return a - b")) != base


def test_code_identity_of_a_missing_task_function(tmp_path: Path, provider: LocalProvider) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    node = Node(address="wf/gone", task_name="gone", kind="python",
                python={"file": str(tmp_path / "flow.py"), "module": "flow", "qualname": "gone"})
    with pytest.raises(FlowLoadError, match="node 'wf/gone': cannot find the task function 'gone' in"):
        CodeIdentity(tmp_path, StatCache(None)).of(node)


# ---- export artifacts --------------------------------------------------------------------------------

def test_export_artifacts_copies_files_into_the_local_export_folder(tmp_path: Path, provider: LocalProvider,
                                                                    blobs: LocalBlobStore) -> None:
    model = blobs.put_bytes(b"weights")
    report = blobs.put_bytes(b"<html>")
    job = spec(tmp_path, kind="export_artifacts", address="wf/export artifacts",
               inputs={"My_Model.model.json": InputValue(type="file[json]", uri=model.uri),
                       "report.index.html": InputValue(type="file[html]", uri=report.uri)},
               export_specs=[{"kind": "ExportArtifactToDatasetsSpec", "artifact": "My Model", "dataset_id": "ds1"},
                             {"kind": "ExportArtifactToNetAppVolumesSpec", "artifact": "report",
                              "netapp_volume_id": "vol9", "target_relative_path": None}])
    result = run(provider, job)
    assert result.status == "succeeded", result
    exports = tmp_path / ".flows" / "exports"
    assert (exports / "ds1" / "My Model" / "model.json").read_bytes() == b"weights"
    assert (exports / "vol9" / "report" / "index.html").read_bytes() == b"<html>"
    assert sorted(p.relative_to(exports).as_posix() for p in exports.rglob("*") if p.is_file()) == [
        "ds1/My Model/model.json", "vol9/report/index.html"]
    assert "exported report.index.html" in Path(job.log_path).read_text()


# ---- the value format ------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (0.5, "500ms"), (1.5, "1.5s"), (90, "1m30s"), (3600, "1h0m0s"), (5400.25, "1h30m0.25s"),
    (0.000002, "2µs"), (-61, "-1m1s"),
])
def test_durations_are_written_as_go_does(seconds: float, text: str) -> None:
    assert go_duration(dt.timedelta(seconds=seconds)) == text
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


def test_job_spec_json_round_trip_for_the_runner(tmp_path: Path, blobs: LocalBlobStore) -> None:
    # The runner gets its spec as one shell-quoted JSON word: odd characters must survive bash.
    job = python_job(tmp_path, "add", inputs={"it's \"q\" $x": InputValue(type="int", value=1)},
                     outputs={"o0": "int"})
    command = LocalProvider(blobs, tmp_path / "logs", isolate=False)._command(job)
    assert json.loads(shlex.split(command)[-1])["inputs"] == {"it's \"q\" $x": "int"}


def test_a_flow_that_seeds_random_does_not_repeat_job_ids(tmp_path: Path, provider: LocalProvider) -> None:
    """A job id's random part comes from the provider's own generator: a flow (imported in this process) that seeds
    `random` cannot make two applies, or two jobs, draw the same ids."""
    ids = []
    for address in ("wf/a", "wf/b"):
        random.seed(7)
        job = spec(tmp_path, "true", address=address)
        handle = provider.start(job)
        assert provider.wait(handle, job, threading.Event()).status == "succeeded"
        ids.append(handle.job_id.rsplit("-", 1)[1])
    assert ids[0] != ids[1]
