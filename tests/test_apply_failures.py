"""Failing nodes end to end: retries, timeouts, --keep-going and not, missing and badly typed outputs, a
provider error. Each failure is one clear line in the apply output and a failed record in the state."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.fixtures.apply_kit import Project, make_project, poll, stop

# One flow with a node for every kind of failure; applied once with --keep-going (see `faulty`).
FAULTY = '''
@workflow
def wf() -> int:
    ext = run_domino_job_task(flyte_task_name="ext", command="python scripts/ext.py",
                              output_specs=[Output(name="data", type=CSV)])
    missing = run_domino_job_task(flyte_task_name="missing", command="python scripts/missing.py",
                                  output_specs=[Output(name="result", type=TXT)])
    badint = run_domino_job_task(flyte_task_name="badint", command="python scripts/badint.py",
                                 output_specs=[Output(name="n", type=int)])
    crash = run_domino_job_task(flyte_task_name="crash", command="python scripts/crash.py",
                                output_specs=[Output(name="out", type=TXT)])
    after = run_domino_job_task(flyte_task_name="after", command="python scripts/after.py",
                                inputs=[Input(name="x", type=TXT, value=crash["out"])],
                                output_specs=[Output(name="out", type=TXT)])
    run_domino_job_task(flyte_task_name="after2", command="python scripts/after2.py",
                        inputs=[Input(name="x", type=TXT, value=after["out"])])
    flaky = run_domino_job_task(flyte_task_name="flaky", command="python scripts/flaky.py", retries=2,
                                output_specs=[Output(name="n", type=int)])
    run_domino_job_task(flyte_task_name="slow", command="python scripts/slow.py",
                        timeout=datetime.timedelta(seconds=2))
    return flaky["n"]
'''
FAULTY_SCRIPTS = {
    "ext": 'mark("start")\nwrite("data.csv", "a,b\\n")\n',
    "missing": 'mark("start")\nwrite("other", "x")\n',
    "badint": 'mark("start")\nwrite("n", "abc")\n',
    "crash": 'mark("start")\nfor i in range(1, 31):\n    print(f"crash line {i}")\nraise SystemExit(1)\n',
    "after": 'mark("start")\nwrite("out", "x")\n',
    "after2": 'mark("start")\n',
    "slow": 'hold_lock()\nmark("start")\nos.execvp("sleep", ["sleep", "120"])\n',  # the lock stays with `sleep`
    "flaky": '''
        mark("start")
        print("attempt", len([l for l in open(os.path.join(MARKS, "flaky.log")) if l.startswith("start")]))
        if not os.path.exists(os.path.join(MARKS, "flaky.failed")):
            open(os.path.join(MARKS, "flaky.failed"), "w").close()
            raise SystemExit(7)
        write("n", "42")
    ''',
}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, str, dict]:
    p = make_project(tmp_path_factory.mktemp("faulty") / "proj", FAULTY, FAULTY_SCRIPTS)
    r = p.apply("--keep-going", "--parallelism", "4", code=1)
    return p, r.out, p.state()


def node_line(out: str, address: str, starts: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(f"{address}: {starts}"))


def test_exit_code_summary_and_run_outcome(faulty: tuple[Project, str, dict]) -> None:
    _, out, state = faulty
    [run] = state["runs"].values()
    assert run["outcome"] == "failed"
    assert run["counts"] == {"succeeded": 2, "failed": 4, "skipped": 2}
    assert "Run r" in out and ": failed. State serial 1." in out
    assert re.search(r"│ wf/after2\s+│ create\s+│ skipped", out)


def test_output_with_an_extension_is_accepted_with_a_warning(faulty: tuple[Project, str, dict]) -> None:
    _, out, state = faulty
    assert "wf/ext: warning: output 'data': the job wrote 'data.csv'; using it as 'data'" in out
    rec = state["nodes"]["wf/ext"]
    assert rec["status"] == "succeeded" and Path(rec["outputs"]["data"]["uri"]).read_text() == "a,b\n"


def test_missing_output_names_what_the_job_wrote(faulty: tuple[Project, str, dict]) -> None:
    _, out, state = faulty
    message = "missing output 'result'; the job wrote: other"
    assert node_line(out, "wf/missing", "failed").startswith(f"wf/missing: failed: {message} (")
    rec = state["nodes"]["wf/missing"]
    assert rec["status"] == "failed" and rec["error"] == message and rec["outputs"] == {}


def test_bad_primitive_output(faulty: tuple[Project, str, dict]) -> None:
    _, out, state = faulty
    assert "wf/badint: failed: output 'n' is not an int: 'abc'" in out
    assert state["nodes"]["wf/badint"]["error"] == "output 'n' is not an int: 'abc'"


def test_failure_prints_the_last_20_log_lines_and_skips_dependents(faulty: tuple[Project, str, dict]) -> None:
    p, out, state = faulty
    assert "wf/crash: failed: exit code 1" in out
    tail = out[out.index("wf/crash: failed: exit code 1"):]
    assert "crash line 11\n" in tail and "crash line 30" in tail and "crash line 10\n" not in tail
    assert "wf/after: skipped: upstream failed" in out and "wf/after2: skipped: upstream failed" in out
    assert p.starts("after") == 0 and p.starts("after2") == 0
    assert "wf/after" not in state["nodes"] and "wf/after2" not in state["nodes"]
    assert state["nodes"]["wf/crash"]["log"].endswith("wf_crash.1.log")


def test_retries_record_the_attempt_count(faulty: tuple[Project, str, dict]) -> None:
    p, out, state = faulty
    rec = state["nodes"]["wf/flaky"]
    assert rec["status"] == "succeeded" and rec["attempts"] == 2 and rec["outputs"]["n"]["value"] == 42
    assert p.starts("flaky") == 2
    assert "wf/flaky: attempt 1 failed: exit code 7; retrying" in out
    run_id = rec["run_id"]
    logs = sorted(p for p in (p.root / ".flows" / "logs" / "wf" / run_id).glob("wf_flaky.*.log"))
    assert [log.name for log in logs] == ["wf_flaky.1.log", "wf_flaky.2.log"]
    r = p.run("logs", "wf/flaky")
    assert r.code == 0 and r.out == "attempt 2\n"  # the last attempt's log
    assert "o0 = 42" in out


def test_timeout_stops_the_job(faulty: tuple[Project, str, dict]) -> None:
    p, out, state = faulty
    assert "wf/slow: failed: timed out after 2s" in out
    rec = state["nodes"]["wf/slow"]
    assert rec["status"] == "failed" and rec["error"] == "timed out after 2s"
    assert [e for e, _, _ in p.events("slow")] == ["start"]  # the script that became `sleep 120`
    assert not p.holders("slow")  # stopped, not left running


def test_outputs_of_a_failed_node(faulty: tuple[Project, str, dict]) -> None:
    p, _, state = faulty
    r = p.run("outputs", "wf/crash")
    assert r.code == 1 and "Traceback" not in r.text
    assert f"node 'wf/crash' has no outputs: it failed in run {state['nodes']['wf/crash']['run_id']} " \
           "(exit code 1)" in r.err


def test_failed_nodes_plan_to_run_again(faulty: tuple[Project, str, dict]) -> None:
    p, _, _ = faulty
    plan = p.plan()
    actions = {n["address"]: n["action"] for n in plan["nodes"]}
    assert actions["wf/ext"] == "reuse" and actions["wf/flaky"] == "reuse"
    assert actions["wf/crash"] == "run" and actions["wf/after"] == "create"  # skipped last time: no record
    crash = next(n for n in plan["nodes"] if n["address"] == "wf/crash")
    assert crash["reasons"][0]["message"] == "failed last time: exit code 1"


# ---- without --keep-going: nothing new starts after the first failure --------------------------------

STOPS = '''
@workflow
def wf() -> None:
    f = run_domino_job_task(flyte_task_name="f", command="python scripts/f.py",
                            output_specs=[Output(name="out", type=TXT)])
    run_domino_job_task(flyte_task_name="d", command="python scripts/d.py",
                        inputs=[Input(name="x", type=TXT, value=f["out"])])
    i1 = run_domino_job_task(flyte_task_name="i1", command="python scripts/i1.py",
                             output_specs=[Output(name="out", type=TXT)])
    run_domino_job_task(flyte_task_name="i2", command="python scripts/i2.py",
                        inputs=[Input(name="x", type=TXT, value=i1["out"])])
'''
# i1 runs while f fails: it finishes only once f's failure is durable in the journal (the test says so with
# marks/f_failed: a job cannot see .flows/), so the scheduler has certainly seen the failure before i1's
# dependent could start.
STOPS_SCRIPTS = {
    "f": 'mark("start")\nprint("f goes wrong")\nraise SystemExit(2)\n',
    "d": 'mark("start")\n',
    "i1": '''
        mark("start")
        assert wait_for(exists("f_failed")), "f never failed"
        write("out", "i1")
        mark("end")
    ''',
    "i2": 'mark("start")\n',
}


def test_failure_without_and_with_keep_going(tmp_path: Path) -> None:
    p = make_project(tmp_path / "proj", STOPS, STOPS_SCRIPTS)
    journal = p.root / ".flows" / "state" / "wf.journal.jsonl"

    def f_failed() -> bool:
        text = journal.read_text() if journal.exists() else ""
        return '"address":"wf/f"' in text and '"status":"failed"' in text

    proc = p.spawn("apply", "flow.py", "wf", "--parallelism", "2", "--auto-approve")
    try:
        poll(f_failed, "f's failure in the journal")
        (p.marks / "f_failed").touch()
        assert proc.wait(timeout=120) == 1, p.output()
    finally:
        stop(proc)
    out = p.output()
    assert "wf/f: failed: exit code 2" in out and "f goes wrong" in out
    assert "wf/d: skipped: upstream failed" in out
    assert "wf/i2: not started: stopped after a failure" in out
    assert [p.starts(n) for n in ("f", "d", "i1", "i2")] == [1, 0, 1, 0]  # i1 was running: it finished
    state = p.state()
    assert {a: n["status"] for a, n in state["nodes"].items()} == {"wf/f": "failed", "wf/i1": "succeeded"}
    [run] = state["runs"].values()
    assert run["outcome"] == "failed" and run["counts"] == {"failed": 1, "succeeded": 1, "skipped": 2}
    assert not p.lock_file.exists()

    r = p.apply("--keep-going", code=1)  # the independent branch completes; f's dependent is still skipped
    assert [p.starts(n) for n in ("f", "d", "i1", "i2")] == [2, 0, 1, 1]
    assert "wf/d: skipped: upstream failed" in r.out
    assert p.state()["nodes"]["wf/i2"]["status"] == "succeeded"


# ---- an error inside the provider (not the job) --------------------------------------------------------

ONE = '''
@workflow
def wf() -> None:
    run_domino_job_task(flyte_task_name="only", command="python scripts/only.py")
'''


def test_provider_error_is_recorded_as_a_failed_node(tmp_path: Path) -> None:
    p = make_project(tmp_path / "proj", ONE, {"only": 'mark("start")\n'})
    (p.root / ".flows").mkdir()
    (p.root / ".flows" / "jobs").write_text("not a folder")  # the provider cannot make the job's folder
    r = p.apply(code=1)
    line = next(line for line in r.out.splitlines() if line.startswith("wf/only: failed: "))
    assert re.fullmatch(r"wf/only: failed: cannot create the job's folder: \[Errno 20\] Not a directory: "
                        r"'\S+/\.flows/jobs/\S+' \(\d+\.\ds\)", line), line
    rec = p.state()["nodes"]["wf/only"]
    assert rec["status"] == "failed" and rec["key"] and rec["error"] in line
    assert p.starts("only") == 0 and not p.lock_file.exists()
    logs = p.run("logs", "wf/only")
    assert logs.code == 1 and "node 'wf/only' has no log: it failed before a job started (cannot create" in logs.err
    plan = p.plan()
    assert plan["nodes"][0]["action"] == "run"
    assert plan["nodes"][0]["reasons"][0]["message"].startswith("failed last time: ")
    (p.root / ".flows" / "jobs").unlink()
    p.apply()
    assert p.starts("only") == 1
    assert json.loads((p.root / ".flows" / "state" / "wf.json").read_text())["nodes"]["wf/only"]["status"] == "succeeded"


# ---- secrets ------------------------------------------------------------------------------------------

SECRET = "tok-7f3a9c1e5b2d"


def test_a_secret_a_job_prints_never_reaches_any_output(tmp_path: Path) -> None:
    p = make_project(tmp_path / "proj", ONE, {"only": '''
        mark("start")
        print("using token", os.environ["TEAM_API_TOKEN"])
        raise SystemExit("bad token " + os.environ["TEAM_API_TOKEN"])
    '''})
    p.extra_env["TEAM_API_TOKEN"] = SECRET
    r = p.apply(code=1)
    assert "using token ***" in r.out and "bad token ***" in r.out
    logs = p.run("logs", "wf/only")
    assert logs.code == 0 and "using token ***" in logs.out
    shown = p.run("state", "show", "wf/only", "--json")
    runs = p.run("runs", "list", "--json")
    for text in (r.text, logs.text, shown.text, runs.text, p.state_file.read_text()):
        assert SECRET not in text
