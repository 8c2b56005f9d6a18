"""`flows apply` end to end with the local provider: full apply, reuse, re-runs, early cutoff, outputs, logs,
the run record and the plain progress log. Real `flows` processes, real job processes, real files."""
from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.projects import FLOWS
from tests.fixtures.apply_kit import Project, make_project, poll, stop

FLOW = '''
@workflow
def wf(data: CSV, factor: int = 2) -> tuple[CSV, int]:
    prep = run_domino_job_task(
        flyte_task_name="prep", command="python scripts/prep.py",
        inputs=[Input(name="data", type=CSV, value=data)],
        output_specs=[Output(name="clean", type=CSV)])
    scale = run_domino_job_task(
        flyte_task_name="scale", command="python /mnt/code/scripts/scale.py",
        inputs=[Input(name="clean", type=CSV, value=prep["clean"]), Input(name="factor", type=int, value=factor)],
        output_specs=[Output(name="scaled", type=CSV)])
    report = run_domino_job_task(
        flyte_task_name="report", command="python scripts/report.py",
        inputs=[Input(name="scaled", type=CSV, value=scale["scaled"])],
        output_specs=[Output(name="total", type=int)])
    return scale["scaled"], report["total"]
'''

SCRIPTS = {
    "prep": '''
        mark("start")
        rows = [r for r in read("data").splitlines() if r.strip()]
        write("clean", "\\n".join(rows) + "\\n")
        print("prep kept", len(rows), "rows")
        mark("end")
    ''',
    "scale": '''
        mark("start")
        factor = int(open("/workflow/inputs/factor").read())
        rows = open("/workflow/inputs/clean").read().split()
        open("/workflow/outputs/scaled", "w").write("\\n".join(str(int(r) * factor) for r in rows) + "\\n")
        mark("end")
    ''',
    "report": '''
        mark("start")
        total = sum(int(r) for r in read("scaled").split())
        print("report total", total)
        write("total", str(total))
        mark("end")
    ''',
}
INPUTS = ("--data", "data/in.csv")
NODES = ("wf/prep", "wf/scale", "wf/report")


def chain(root: Path) -> Project:
    return make_project(root, FLOW, SCRIPTS, files={"data/in.csv": "1\n2\n\n3\n"})


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, str]:
    """One chain project applied once; the tests using it only read."""
    p = chain(tmp_path_factory.mktemp("run") / "proj")
    r = p.apply(*INPUTS)
    return p, r.out


@pytest.fixture
def fresh(tmp_path: Path) -> Project:
    p = chain(tmp_path / "proj")
    p.apply(*INPUTS)
    return p


def summary_rows(out: str) -> dict[str, list[str]]:
    """The summary table's rows: address -> [action, result, duration, job id]."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 5 and cells[0].startswith("wf/"):
            rows[cells[0]] = cells[1:]
    return rows


# ---- a full apply -------------------------------------------------------------------------------------

def test_full_apply_runs_every_node_once_and_records_it(applied: tuple[Project, str]) -> None:
    p, out = applied
    assert [p.starts(s) for s in ("prep", "scale", "report")] == [1, 1, 1]
    state = p.state()
    assert state["serial"] == 1
    for address in NODES:
        rec = state["nodes"][address]
        assert rec["status"] == "succeeded" and rec["attempts"] == 1 and rec["job_id"].startswith("local-")
        assert rec["key"] in state["cache"]
        for o in rec["outputs"].values():
            assert Path(o["uri"]).is_file() and o["uri"].startswith(str(p.root / ".flows" / "blobs"))
    assert state["nodes"]["wf/report"]["outputs"]["total"]["value"] == 12
    scaled = state["nodes"]["wf/scale"]["outputs"]["scaled"]
    assert Path(scaled["uri"]).read_text() == "2\n4\n6\n"
    assert not (p.root / ".flows" / "state" / "wf.journal.jsonl").exists()  # folded into the state
    assert not p.lock_file.exists()


def test_after_an_apply_the_stat_cache_vouches_for_every_output_it_stored(applied: tuple[Project, str]) -> None:
    """The next plan checks every output still exists unchanged through the stat cache: an output whose stat moved
    after it was recorded (its job's folder emptied: a name of the file unlinked) was read and hashed again by
    that plan, and by every job that took it as input (a model of many GB, hashed again each time)."""
    p, _ = applied
    entries = json.loads((p.root / ".flows" / "statcache.json").read_text())
    blobs = [o["uri"] for rec in p.state()["nodes"].values() for o in rec["outputs"].values() if o.get("uri")]
    assert blobs
    for uri in blobs:
        st = os.stat(uri)
        assert entries[uri][:-1] == [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev], uri


def test_progress_is_a_plain_log_and_ends_with_summary_and_outputs(applied: tuple[Project, str]) -> None:
    _, out = applied
    assert "\x1b[" not in out  # not a terminal: no live view, no colour codes
    lines = out.splitlines()
    started = [i for i, line in enumerate(lines) if re.match(r"wf/\w+: started local-", line)]
    finished = [i for i, line in enumerate(lines) if re.match(r"wf/\w+: succeeded \(\d+\.\ds\)", line)]
    assert len(started) == 3 and len(finished) == 3
    table = summary_rows(out)
    assert {a: row[:2] for a, row in table.items()} == {
        "wf/prep": ["create", "succeeded"], "wf/scale": ["create", "succeeded"], "wf/report": ["create", "succeeded"]}
    assert all(re.fullmatch(r"\d+\.\ds", row[2]) and row[3].startswith("local-") for row in table.values())
    assert out.index("Apply summary") > max(finished)
    tail = out[out.index("Outputs:"):]
    assert re.search(r"o0 = \S+/\.flows/blobs/", tail) and "o1 = 12" in tail
    assert re.search(r"Run r\d{8}-\d{6}-\w+: succeeded\. State serial 1\.", tail)


def test_run_record(applied: tuple[Project, str]) -> None:
    p, _ = applied
    r = p.run("runs", "list", "--json")
    assert r.code == 0, r.text
    [run] = json.loads(r.out)
    assert run["outcome"] == "succeeded" and run["counts"] == {"succeeded": 3}
    assert run["user"] and run["host"] and run["pid"]
    assert run["started_at"] <= run["finished_at"]
    assert len(run["flow_digest"]) == 64 and run["flow_file"] == str(p.root / "flow.py")
    assert run["inputs"]["data"] == str(p.root / "data" / "in.csv")
    shown = p.run("runs", "show", run["id"], "--json")
    assert shown.code == 0, shown.text
    jobs = json.loads(shown.out)["jobs"]
    assert set(jobs) == set(NODES) and all(j["status"] == "succeeded" and j["attempt"] == 1 for j in jobs.values())
    text = p.run("runs", "show", run["id"])
    assert text.code == 0 and "succeeded" in text.out and "wf/scale" in text.out
    missing = p.run("runs", "show", "r-nope")
    assert missing.code == 1 and "no run 'r-nope'" in missing.err and "Traceback" not in missing.text


def test_outputs_copies_files_and_values(applied: tuple[Project, str], tmp_path: Path) -> None:
    p, _ = applied
    r = p.run("outputs", "wf/scale", "--dest", str(tmp_path / "out"))
    assert r.code == 0, r.text
    assert (tmp_path / "out" / "scaled").read_text() == "2\n4\n6\n"
    assert "scaled (file[csv], 6 bytes" in r.out and str(tmp_path / "out" / "scaled") in r.out
    r = p.run("outputs", "wf/report", "--json")
    assert r.code == 0, r.text
    assert json.loads(r.out)["total"]["value"] == 12
    r = p.run("outputs", "wf/nope")
    assert r.code == 1 and "no node 'wf/nope'" in r.err and "Traceback" not in r.text
    r = p.run("outputs", "wf/scale", "--dest", "/proc/no/such/place")
    assert r.code == 1 and "cannot copy output 'scaled' to /proc/no/such/place/scaled" in r.err
    assert "Traceback" not in r.text


def test_outputs_whose_blob_is_gone(fresh: Project, tmp_path: Path) -> None:
    blob = Path(fresh.state()["nodes"]["wf/scale"]["outputs"]["scaled"]["uri"])
    blob.unlink()
    r = fresh.run("outputs", "wf/scale", "--dest", str(tmp_path / "out"))
    assert r.code == 1 and "output 'scaled' is no longer in the blob store" in r.err and "Traceback" not in r.text
    plan = fresh.plan(*INPUTS)  # and the plan runs it again
    assert {n["address"]: n["action"] for n in plan["nodes"]}["wf/scale"] == "run"


def test_logs_show_the_last_job_log(applied: tuple[Project, str]) -> None:
    p, _ = applied
    r = p.run("logs", "wf/report")
    assert r.code == 0, r.text
    assert r.out == "report total 12\n"
    log = Path(p.state()["nodes"]["wf/prep"]["log"])
    assert log.parent.parent == p.root / ".flows" / "logs" / "wf"  # logs/<flow>/<run>/<node>.<attempt>.log
    assert log.name == "wf_prep.1.log" and log.read_text() == "prep kept 3 rows\n"


# ---- re-applying --------------------------------------------------------------------------------------

def test_reapply_is_all_reuse_and_starts_no_process(fresh: Project) -> None:
    state_before = fresh.state_file.read_bytes()
    logs_before = sorted((fresh.root / ".flows" / "logs").rglob("*.log"))
    r = fresh.apply(*INPUTS)
    assert "Nothing to do." in r.out and "Plan: 0 to create, 0 to update, 0 to run, 0 pending, 3 reused" in r.out
    assert [fresh.starts(s) for s in ("prep", "scale", "report")] == [1, 1, 1]
    assert sorted((fresh.root / ".flows" / "logs").rglob("*.log")) == logs_before
    assert fresh.state_file.read_bytes() == state_before  # nothing to record: no new serial, no new run
    assert "o1 = 12" in r.out


def test_editing_one_script_reruns_only_that_node_and_what_its_output_changes(fresh: Project) -> None:
    fresh.edit("scripts/scale.py", "int(r) * factor", "int(r) * factor + 1")
    assert fresh.actions(*INPUTS) == {"wf/prep": "reuse", "wf/scale": "update", "wf/report": "pending"}
    r = fresh.apply(*INPUTS)
    assert [fresh.starts(s) for s in ("prep", "scale", "report")] == [1, 2, 2]
    assert {a: row[:2] for a, row in summary_rows(r.out).items()} == {
        "wf/prep": ["reuse", "reused"], "wf/scale": ["update", "succeeded"], "wf/report": ["pending", "succeeded"]}
    assert fresh.state()["nodes"]["wf/report"]["outputs"]["total"]["value"] == 15
    assert fresh.actions(*INPUTS) == dict.fromkeys(NODES, "reuse")


def test_early_cutoff_stops_the_rerun_where_output_is_unchanged(fresh: Project) -> None:
    # A semantic no-op: the script's bytes change (so prep re-runs), its output does not.
    fresh.edit("scripts/prep.py", 'mark("start")', 'mark("start")\nunused = "no effect on the output"')
    keys_before = {a: n["key"] for a, n in fresh.state()["nodes"].items()}
    r = fresh.apply(*INPUTS)
    assert [fresh.starts(s) for s in ("prep", "scale", "report")] == [2, 1, 1]
    assert "wf/scale: early cutoff" in r.out and "wf/report: early cutoff" in r.out
    assert {a: row[:2] for a, row in summary_rows(r.out).items()} == {
        "wf/prep": ["update", "succeeded"], "wf/scale": ["pending", "reused"], "wf/report": ["pending", "reused"]}
    state = fresh.state()
    assert state["nodes"]["wf/prep"]["key"] != keys_before["wf/prep"]
    assert {a: state["nodes"][a]["key"] for a in ("wf/scale", "wf/report")} == \
        {a: keys_before[a] for a in ("wf/scale", "wf/report")}
    [run] = [r for r in state["runs"].values() if r["counts"].get("reused")]
    assert run["counts"] == {"succeeded": 1, "reused": 2}


def test_reverting_an_input_reuses_the_older_results(fresh: Project) -> None:
    fresh.apply(*INPUTS, "--factor", "3")
    assert fresh.starts("scale") == 2
    assert fresh.state()["nodes"]["wf/report"]["outputs"]["total"]["value"] == 18
    r = fresh.apply(*INPUTS)  # back to factor 2: cache hits, nothing runs, the state points at them again
    assert [fresh.starts(s) for s in ("prep", "scale", "report")] == [1, 2, 2]
    assert "o1 = 12" in r.out
    assert fresh.state()["nodes"]["wf/report"]["outputs"]["total"]["value"] == 12
    assert fresh.actions(*INPUTS) == dict.fromkeys(NODES, "reuse")
    assert not any(n["reasons"] for n in fresh.plan(*INPUTS)["nodes"])  # recorded: no "cache hit" reasons left


def test_apply_without_a_terminal_needs_auto_approve(tmp_path: Path) -> None:
    p = chain(tmp_path / "proj")
    r = p.run("apply", "flow.py", "wf", *INPUTS)
    assert r.code == 1 and "apply needs --auto-approve when not run interactively" in r.err
    assert "Traceback" not in r.text and p.starts("prep") == 0
    assert not p.state_file.exists() and not p.lock_file.exists()


def test_target_then_replace(tmp_path: Path) -> None:
    p = chain(tmp_path / "proj")
    r = p.apply(*INPUTS, "--target", "wf/scale")
    assert set(summary_rows(r.out)) == {"wf/prep", "wf/scale"}
    assert [p.starts(s) for s in ("prep", "scale", "report")] == [1, 1, 0] and "wf/report" not in p.state()["nodes"]
    p.apply(*INPUTS)
    assert [p.starts(s) for s in ("prep", "scale", "report")] == [1, 1, 1]
    r = p.apply(*INPUTS, "--replace", "wf/prep")  # runs although cached; the same output stops the re-run
    assert [p.starts(s) for s in ("prep", "scale", "report")] == [2, 1, 1]
    assert {a: row[1] for a, row in summary_rows(r.out).items()} == \
        {"wf/prep": "succeeded", "wf/scale": "reused", "wf/report": "reused"}


# ---- python tasks -------------------------------------------------------------------------------------

PY_FLOW = '''
from flytekit import task


@task
def double(n: int) -> int:
    import os
    with open(os.path.join(os.environ["MARKS"], "double.log"), "a") as f:
        f.write(f"start 0 {os.getpid()}\\n")
    return n * 2


@task
def describe(n: int, label: str) -> str:
    return f"{label}={n}"


@workflow
def pywf(n: int = 4) -> tuple[str, int]:
    return describe(n=double(n=n), label="twice"), n
'''


def test_python_tasks_run_in_subprocesses_through_the_blob_store(tmp_path: Path) -> None:
    p = make_project(tmp_path / "py", PY_FLOW, {}, flow_name="pywf")
    r = p.apply()
    assert "o0 = 'twice=8'" in r.out and "o1 = 4" in r.out  # a flow input passed through is shown as given
    [(_, _, pid)] = p.events("double")
    assert pid != 0
    nodes = p.state()["nodes"]
    assert nodes["pywf/double"]["outputs"]["o0"]["value"] == 8
    assert Path(nodes["pywf/describe"]["outputs"]["o0"]["uri"]).read_text() == "twice=8"
    p.apply()
    assert p.starts("double") == 1


# ---- on a terminal: the live view ---------------------------------------------------------------------

HOLD_FLOW = '''
@workflow
def wf() -> None:
    run_domino_job_task(flyte_task_name="hold", command="python scripts/hold.py")
'''


def test_live_view_on_a_terminal_shows_running_nodes_and_counts(tmp_path: Path) -> None:
    p = make_project(tmp_path / "tty", HOLD_FLOW, {"hold": 'mark("start")\nwait_for(exists("go"), 60)\n'})
    master, slave = pty.openpty()
    proc = subprocess.Popen([FLOWS, "apply", "flow.py", "wf", "--auto-approve"], cwd=p.root, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, env={**os.environ, **p.env, "COLUMNS": "120", "TERM": "xterm"})
    os.close(slave)
    screen = bytearray()

    def read_some() -> bool:
        """Read what the terminal got; False at EOF."""
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                return False
            if not chunk:
                return False
            screen.extend(chunk)
        return True

    try:
        # the counts can be drawn a frame before the node's job id is known: wait for both
        poll(lambda: not read_some() or (re.search(rb"running 1\s+left 0", screen) is not None
                                         and re.search(rb"wf/hold\s+local-\d+-\w+\s+\d+\.\ds", screen) is not None),
             "a live frame with 1 running and its job id")
        frame = screen.decode(errors="replace")
        assert re.search(r"wf/hold\s+local-\d+-\w+\s+\d+\.\ds", frame), frame  # the running node's line
        assert re.search(r"done 0\s+reused 0\s+failed 0\s+skipped 0\s+running 1\s+left 0", frame), frame
        (p.marks / "go").touch()
        poll(lambda: not read_some(), "the apply to finish")
        assert proc.wait(timeout=30) == 0
    finally:
        os.close(master)
        stop(proc)
    text = screen.decode(errors="replace")
    assert "Apply summary" in text and "succeeded" in text


WIDE = '''
@workflow
def wide(n: int) -> int:
    outs = [run_domino_job_task(
        flyte_task_name=f"t{i:02d}", command="exit 3" if i == 7 else "echo 1 > /workflow/outputs/o",
        inputs=[Input(name="n", type=int, value=n)], output_specs=[Output(name="o", type=int)])
        for i in range(60)]
    return outs[0]["o"]
'''


def test_summary_of_a_big_run_lists_only_what_did_not_simply_succeed(tmp_path: Path) -> None:
    p = make_project(tmp_path / "wide", WIDE, {}, flow_name="wide")
    r = p.apply("--n", "1", "--keep-going", code=1)
    summary = r.out[r.out.index("Apply summary"):]
    listed = re.findall(r"│ (wide/t\d\d)\s+│", summary)
    assert listed == ["wide/t07"], summary
    assert "failed" in summary
    run_id = re.search(r"Run (r\S+): failed", r.out).group(1)
    assert f"Not listed: 59 succeeded, 0 reused (each is in the log above; `flows runs show {run_id}`" in summary
    assert len(re.findall(r"^wide/t\d\d: succeeded", r.out, re.M)) == 59  # the log still has every node
