"""Parallel branches really run at once, each in its own /workflow; --parallelism 1 runs one at a time;
ordering-only upstreams (`a >> b`) are waited for. Overlap is measured by the jobs' own timestamps."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.fixtures.apply_kit import ISOLATED, Project, make_project, poll, stop

pytestmark = pytest.mark.skipif(not ISOLATED, reason="parallel jobs need private /workflow folders (unshare)")

FLOW = '''
@workflow
def wf() -> TXT:
    a = run_domino_job_task(flyte_task_name="a", command="python scripts/a.py",
                            output_specs=[Output(name="out", type=TXT)])
    b = run_domino_job_task(flyte_task_name="b", command="python scripts/b.py",
                            output_specs=[Output(name="out", type=TXT)])
    join = run_domino_job_task(
        flyte_task_name="join", command="python scripts/join.py",
        inputs=[Input(name="a", type=TXT, value=a["out"]), Input(name="b", type=TXT, value=b["out"])],
        output_specs=[Output(name="both", type=TXT)])
    return join["both"]


@workflow
def serial() -> None:
    run_domino_job_task(flyte_task_name="c", command="python scripts/c.py")
    run_domino_job_task(flyte_task_name="d", command="python scripts/d.py")


@workflow
def ordered() -> None:
    first = run_domino_job_task(flyte_task_name="first", command="python scripts/first.py")
    second = run_domino_job_task(flyte_task_name="second", command="python scripts/second.py")
    first >> second
'''

# Each branch writes /workflow/outputs/out, then waits (with a deadline) until the other branch has written
# its own: a barrier only jobs running at the same time pass. Then it checks its file is still its own.
BRANCH = '''
    OTHER = "{other}"
    mark("start")
    mine = "from " + NODE + "\\n"
    open("/workflow/outputs/out", "w").write(mine)
    mark("wrote")
    met = wait_for(lambda: any(l.startswith("wrote") for l in open_lines(OTHER)), seconds=20)
    if not met:
        mark("alone")
        raise SystemExit(NODE + ": the other branch never ran at the same time")
    assert open("/workflow/outputs/out").read() == mine, "another job's file is in my /workflow/outputs"
    assert os.listdir("/workflow/outputs") == ["out"]
    mark("end")
'''
OPEN_LINES = '''
def open_lines(node):
    path = os.path.join(MARKS, node + ".log")
    return open(path).read().splitlines() if os.path.exists(path) else []
'''
SCRIPTS = {
    "a": OPEN_LINES + textwrap.dedent(BRANCH).format(other="b"),
    "b": OPEN_LINES + textwrap.dedent(BRANCH).format(other="a"),
    "join": '''
        mark("start")
        write("both", read("a") + read("b"))
        mark("end")
    ''',
    "c": 'mark("start")\nmark("end")\n',
    "d": 'mark("start")\nmark("end")\n',
    "first": 'mark("start")\nwait_for(exists("go"))\nmark("end")\n',  # holds until the test says go
    "second": 'mark("start")\nmark("end")\n',
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return make_project(tmp_path_factory.mktemp("par") / "proj", FLOW, SCRIPTS)


def span(p: Project, node: str) -> tuple[float, float]:
    events = {e: at for e, at, _ in p.events(node)}
    return events["start"], events["end"]


def test_parallel_branches_overlap_and_same_output_names_do_not_clash(project: Project) -> None:
    r = project.apply("--parallelism", "2")
    (a0, a1), (b0, b1) = span(project, "a"), span(project, "b")
    assert a0 < b1 and b0 < a1, "the two branches did not run at the same time"
    nodes = project.state()["nodes"]
    assert Path(nodes["wf/a"]["outputs"]["out"]["uri"]).read_text() == "from a\n"
    assert Path(nodes["wf/b"]["outputs"]["out"]["uri"]).read_text() == "from b\n"
    assert Path(nodes["wf/join"]["outputs"]["both"]["uri"]).read_text() == "from a\nfrom b\n"
    assert span(project, "join")[0] > max(a1, b1)  # never before its inputs exist
    assert "succeeded" in r.out


def test_parallelism_one_runs_one_job_at_a_time(project: Project) -> None:
    r = project.run("apply", "flow.py", "serial", "--parallelism", "1", "--auto-approve")
    assert r.code == 0, r.text
    (c0, c1), (d0, d1) = span(project, "c"), span(project, "d")
    assert c1 <= d0 or d1 <= c0, "two jobs overlapped with --parallelism 1"


def test_ordering_only_upstream_is_waited_for(project: Project) -> None:
    proc = project.spawn("apply", "flow.py", "ordered", "--auto-approve", "--parallelism", "2")
    try:
        poll(lambda: project.events("first"), "the first job to start")
        # Had `second` been free to start, the same scheduler pass would have journaled it already.
        journal = project.root / ".flows" / "state" / "ordered.journal.jsonl"
        started = [json.loads(line)["address"] for line in journal.read_text().splitlines()
                   if json.loads(line)["type"] == "node_started"]
        assert started == ["ordered/first"]
        (project.marks / "go").touch()
        assert proc.wait(timeout=60) == 0, project.output()
    finally:
        stop(proc)
    assert span(project, "first")[1] <= span(project, "second")[0]
