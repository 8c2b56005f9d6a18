"""Masking never changes what recovery uses (issue 15, item 8), and a job's log is masked when it is written.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.fixtures.projects import flows, write_project
from tests.fixtures.recover_kit import journal_records, load_state, open_gate, run_flows, start_flows, wait_until

TOKEN = "tok-Vq93-live-7f3e1a"  # also in the environment as MY_TOKEN: it looks like a secret, so it is masked

TOKEN_FLOW = '''
from typing import TypeVar
from flytekit import workflow
from flytekit.types.file import FlyteFile
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task

CSV = FlyteFile[TypeVar("csv")]


@workflow
def wf(data: CSV, tok: str) -> CSV:
    first = run_domino_job_task(
        flyte_task_name="first", command="python scripts/first.py",
        inputs=[Input(name="data", type=CSV, value=data)],
        output_specs=[Output(name="out", type=CSV)])
    second = run_domino_job_task(
        flyte_task_name="second", command="python scripts/second.py",
        inputs=[Input(name="x", type=CSV, value=first["out"]), Input(name="tok", type=str, value=tok)],
        output_specs=[Output(name="out", type=CSV)])
    return second["out"]
'''

FIRST = '''
import shutil
shutil.copy("/workflow/inputs/data", "/workflow/outputs/out")
'''

# The first run of `second` waits for a gate (so the test can kill apply while it runs); it writes the
# digest of the token it was given, never the token.
SECOND = '''
import hashlib, os, time
here = os.path.dirname(os.path.abspath(__file__))
gate = os.path.join(open(os.path.join(here, "..", "gate_dir.txt")).read().strip(), "gate")
if not os.path.exists(gate + ".seen"):
    open(gate + ".seen", "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)  # poll for the gate, under the deadline above
tok = open("/workflow/inputs/tok").read()
open("/workflow/outputs/out", "w").write(hashlib.sha256(tok.encode()).hexdigest())
'''


def _token_project(root: Path) -> Path:
    # gate_dir.txt: named in no command, so part of no key
    return write_project(root, TOKEN_FLOW, {"scripts/first.py": FIRST, "scripts/second.py": SECOND,
                                            "gate_dir.txt": str(root.parent)})


def test_recover_never_runs_a_node_with_a_masked_input(tmp_path: Path) -> None:
    root = _token_project(tmp_path / "p")
    env = {"MY_TOKEN": TOKEN}
    apply = start_flows("apply", "flow.py", "wf", "--data", "data/in.csv", "--tok", TOKEN, "--auto-approve",
                        cwd=root, log=tmp_path / "apply.log", env=env)
    try:
        # killed after the first node: its result is durable, `second` is running
        wait_until(lambda: any(r.get("type") == "node_finished" for r in journal_records(root))
                   and (tmp_path / "gate.seen").exists() or apply.proc.poll() is not None)
        apply.kill()
    finally:
        (tmp_path / "gate").touch()
    assert TOKEN not in (root / ".flows" / "state" / "wf.journal.jsonl").read_text()  # masked where it is kept

    r = run_flows("recover", "--flow", "wf", cwd=root, env=env)
    assert r.code != 0, f"recover ran with the masked token:\n{r.text}"
    assert "--tok" in r.err and "Traceback" not in r.text, r.text
    assert TOKEN not in r.text
    runs = run_flows("runs", "list", "--flow", "wf", "--json", cwd=root, env=env)
    assert [r["outcome"] for r in json.loads(runs.out)] == ["interrupted"], runs.text

    r = run_flows("recover", "--flow", "wf", "--tok", "not-the-token", cwd=root, env=env)
    assert r.code != 0 and "--tok" in r.err, r.text  # a different value is not the one the run was started with

    r = run_flows("recover", "--flow", "wf", "--tok", TOKEN, cwd=root, env=env)
    assert r.code == 0, r.text
    state = load_state(root)
    assert [run.outcome for run in state.runs.values()] == ["recovered"]
    out = Path(state.nodes["wf/second"].outputs["out"].uri or "").read_text()
    assert out == hashlib.sha256(TOKEN.encode()).hexdigest(), "the job got a masked value, not the token"
    assert TOKEN not in (root / ".flows" / "state" / "wf.json").read_text()
    r = run_flows("plan", "flow.py", "wf", "--data", "data/in.csv", "--tok", TOKEN, "--detailed-exitcode",
                  cwd=root, env=env)
    assert r.code == 0, r.text


ECHO_FLOW = '''
from flytekit import workflow
from flytekitplugins.domino.helpers import Output, run_domino_job_task


@workflow
def wf() -> int:
    talk = run_domino_job_task(
        flyte_task_name="talk", command="bash scripts/talk.sh",
        output_specs=[Output(name="n", type=int)])
    return talk["n"]
'''

TALK = 'echo "using key $DOMINO_USER_API_KEY"\necho "and again: ${DOMINO_USER_API_KEY}!" >&2\necho 1 > /workflow/outputs/n\n'
API_KEY = "dk-9c1f04e2b7a65d38"


def test_a_job_log_is_masked_when_written_not_only_when_shown(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", ECHO_FLOW, {"scripts/talk.sh": TALK})
    env = {"DOMINO_USER_API_KEY": API_KEY}
    r = flows("apply", "flow.py", "wf", "--auto-approve", cwd=root, env=env)
    assert r.code == 0, r.text
    logs = [p for p in (root / ".flows" / "logs").rglob("*") if p.is_file()]
    assert logs, "no job log was written"
    mentions = [p for p in logs if "using key" in p.read_text(errors="replace")]
    assert mentions, "the job's output is not in its log"
    leaks = [str(p) for p in logs if API_KEY in p.read_text(errors="replace")]
    assert not leaks, f"the raw log holds the API key: {leaks}"
    shown = flows("logs", "wf/talk", cwd=root, env=env)
    assert shown.code == 0 and "using key ***" in shown.out and API_KEY not in shown.text, shown.text
