"""The Domino provider end to end: the real `flows` CLI, the Domino API emulator and moto's S3 server,
all over HTTP on 127.0.0.1. Jobs run the in-job runtime as real subprocesses, in the emulator's realistic
mode where this machine allows it (root): a non-root job user, only the system Python, no credentials."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from providers.domino.emulator import DominoEmulator
from providers.domino.emulator_world import EmulatorConfig, Faults, demo_project
from tests.fixtures.domino import API_KEY, OWNER, PROJECT, domino_env
from tests.fixtures.projects import flows
from tests.fixtures.s3 import FAKE_SECRET, REGION, S3Env, aws_env

REALISTIC = os.geteuid() == 0 and bool(shutil.which("setpriv"))  # dropping to the job's user needs root
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ai_training"
ARGS = ("flow.py", "model_training", "--data_path_a", "data/a.csv", "--data_path_b", "data/b.csv")


def _project(tmp_path: Path, s3env: S3Env, **provider: Any) -> Path:
    root = tmp_path / "project"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".flows"))
    settings = {"poll_interval": 0.05, "max_poll_interval": 0.2, "retry_backoff": 0.0, "retries": 8, **provider}
    lines = ["[tool.flows.provider]", 'type = "domino"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    lines += ["", "[tool.flows.blobs]", f'url = "s3://{s3env.bucket}/blobs/"', f'endpoint_url = "{s3env.endpoint}"',
              f'region = "{REGION}"']
    (root / "flows.toml").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def start_emulator(tmp_path: Path) -> Any:
    started: list[DominoEmulator] = []

    def start(root: Path, faults: Faults | None = None) -> DominoEmulator:
        project = demo_project(root, OWNER, PROJECT, git=True)  # the example: git-based, code at /mnt/code
        emu = DominoEmulator(EmulatorConfig(projects=[project], api_key=API_KEY, faults=faults or Faults(),
                                            work_dir=tmp_path / f"emu{len(started)}", realistic=REALISTIC)).start()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


def _env(emu: DominoEmulator, **extra: str) -> dict[str, str]:
    return {**aws_env(), **domino_env(emu), **extra}


def _run(root: Path, emu: DominoEmulator, *args: str, **env: str) -> Any:
    return flows(*args, cwd=root, env=_env(emu, **env), timeout=180)


def _accuracy(root: Path, emu: DominoEmulator) -> str:
    r = _run(root, emu, "outputs", "model_training/Train Model", "--json")
    assert r.code == 0, r.text
    return json.loads(r.out)["accuracy"]["value"]


def test_example_applies_through_domino_and_reapplies_for_free(tmp_path: Path, s3: S3Env,
                                                               start_emulator: Callable[..., DominoEmulator]) -> None:
    root = _project(tmp_path, s3)
    emu = start_emulator(root)
    r = _run(root, emu, "apply", *ARGS, "--auto-approve")
    assert r.code == 0, r.text
    assert len(emu.started_jobs) == 5
    starts = emu.calls("POST", "/v4/jobs/start")
    body = starts[0].body
    # A bootstrap that needs nothing installed: no module of this project, one presigned URL.
    assert body["commandToRun"].startswith("sh -c ") and "providers" not in body["commandToRun"]
    assert body["title"].startswith("flows: model_training/") and " [flows-" in body["title"]
    assert body["overrideHardwareTierId"] in ("small-k8s", "medium-k8s")
    assert 0.5 < float(_accuracy(root, emu)) <= 1.0
    # Outputs are content-addressed in S3, not on this machine.
    assert any(k.startswith("blobs/") for k in s3.keys())
    r = _run(root, emu, "apply", *ARGS, "--auto-approve")
    assert r.code == 0 and "Nothing to do." in r.out, r.text
    assert len(emu.started_jobs) == 5  # zero jobs started by the re-apply


def test_a_new_commit_changes_nothing_an_edited_script_reruns_its_node(tmp_path: Path, s3: S3Env,
                                                                        start_emulator: Any) -> None:
    """Code identity is content (issue 13, problem 6): Domino's commit moving is not a change."""
    root = _project(tmp_path, s3)
    emu = start_emulator(root)
    assert _run(root, emu, "apply", *ARGS, "--auto-approve").code == 0
    emu.new_commit()
    r = _run(root, emu, "plan", *ARGS, "--detailed-exitcode")
    assert r.code == 0, r.text
    script = root / "scripts" / "process_data.py"
    script.write_text(script.read_text() + "\n# a comment: the file changed\n")
    r = _run(root, emu, "plan", *ARGS, "--json")
    actions = {n["address"]: n["action"] for n in json.loads(r.out)["nodes"]}
    assert actions["model_training/Process Data"] == "update", actions
    assert {a for a, act in actions.items() if act not in ("reuse", "pending")} == {"model_training/Process Data"}


def test_failing_job_log_tail_and_timeout_stop(tmp_path: Path, s3: S3Env, start_emulator: Any) -> None:
    root = _project(tmp_path, s3)
    script = root / "scripts" / "merge_data.py"
    script.write_text("import sys\nprint('merge is broken: no join key')\nsys.exit(3)\n")
    emu = start_emulator(root)
    r = _run(root, emu, "apply", *ARGS, "--auto-approve")
    assert r.code == 1
    assert "merge is broken: no join key" in r.out
    assert "skipped: upstream failed" in r.out
    flow = root / "flow.py"
    flow.write_text(flow.read_text().replace('flyte_task_name="Merge Data",',
                                             'flyte_task_name="Merge Data", timeout=1,'))
    script.write_text("import time\nwhile True:\n    time.sleep(0.1)  # poll: a hung job (the job script loops forever; the test stops it)\n")
    r = _run(root, emu, "apply", *ARGS, "--auto-approve")
    assert r.code == 1 and "timed out after 1s" in r.out, r.text
    assert emu.stop_calls, "the provider must stop the job on Domino"


def test_injected_faults_still_complete(tmp_path: Path, s3: S3Env, start_emulator: Any) -> None:
    root = _project(tmp_path, s3)
    emu = start_emulator(root, Faults(error_rate=0.1, reset_rate=0.1, seed=7))
    r = _run(root, emu, "apply", *ARGS, "--auto-approve")
    assert r.code == 0, r.text
    titles = [emu.job(j).title for j in emu.started_jobs]
    assert len(titles) == len(set(titles)) == 5, titles  # no node's job started twice
    clean_root = _project(tmp_path / "clean", s3)
    clean = start_emulator(clean_root)
    assert _run(clean_root, clean, "apply", *ARGS, "--auto-approve").code == 0
    assert _accuracy(root, emu) == _accuracy(clean_root, clean)


def test_clear_errors_and_no_secret_anywhere(tmp_path: Path, s3: S3Env, start_emulator: Any) -> None:
    root = _project(tmp_path, s3)
    emu = start_emulator(root)
    r = _run(root, emu, "plan", *ARGS, DOMINO_USER_API_KEY="wrong-key-123456")
    assert r.code == 1 and "Traceback" not in r.text and "wrong-key-123456" not in r.text
    assert "credentials" in r.err.lower()
    r = _run(root, emu, "plan", *ARGS, DOMINO_PROJECT_NAME="nope")
    assert r.code == 1 and "nope" in r.err and "Traceback" not in r.text
    flow = root / "flow.py"
    original = flow.read_text()
    flow.write_text(original.replace('hardware_tier_name="Medium"', 'hardware_tier_name="Huge"'))
    r = _run(root, emu, "plan", *ARGS)
    assert r.code == 1 and "Huge" in r.err and "Traceback" not in r.text
    flow.write_text(original)
    r = _run(root, emu, "apply", *ARGS, "--auto-approve")
    assert r.code == 0, r.text
    r2 = _run(root, emu, "plan", *ARGS, "--json", "--out", "saved.json")
    texts = [r.text, r2.text, (root / "saved.json").read_text()]
    for path in (root / ".flows").rglob("*"):
        if path.is_file():
            texts.append(path.read_text(errors="replace"))
    for t in texts:
        assert API_KEY not in t and FAKE_SECRET not in t


def test_wait_notes_domino_status_for_the_progress_view(tmp_path: Path, s3: S3Env, start_emulator: Any) -> None:
    import threading

    from providers.base import JobSpec
    from providers.domino.provider import DominoProvider
    from reconcile.apply import NodeOutcome
    from tests.fixtures.domino import make_client

    root = tmp_path / "project"
    root.mkdir()
    emu = start_emulator(root)
    provider = DominoProvider(make_client(domino_env(emu)), s3.blobs(), blobs_settings={"endpoint_url": s3.endpoint})
    spec = JobSpec(run_id="r1", address="wf/hello", task_name="hello", kind="domino_job",
                   command="printf 42 > /workflow/outputs/answer", outputs={"answer": "int"},
                   project_root=str(root), flow_file="", log_path=str(tmp_path / "hello.log"),
                   job_config={"CommitId": emu.project.commits[-1]})
    handle = provider.start(spec)
    outcome = NodeOutcome(address="wf/hello", action="create")
    result = provider.wait(handle, spec, threading.Event(), on_status=outcome.hear_status)
    assert result.status == "succeeded", result
    assert result.outputs["answer"].value == 42
    assert outcome.status == "Succeeded"  # what the live view shows next to the job id
    provider.close()  # the job's staging keys are cleared off the critical path: gone once the provider closes
    assert not [k for k in s3.keys() if "/staging/" in k]


TASKS_FLOW = '''
from flytekit import task, workflow
from flytekit.types.file import FlyteFile


@task
def count_rows(data: FlyteFile) -> int:
    return len(open(data).read().splitlines()) - 1  # less the header


@task
def report(rows: int, label: str) -> FlyteFile:
    with open("/workflow/outputs/report.txt", "w") as f:  # a job's own scratch space
        f.write(f"{label}: {rows} rows\\n")
    return FlyteFile("/workflow/outputs/report.txt")


@workflow
def rows(data: FlyteFile, label: str = "a") -> FlyteFile:
    return report(rows=count_rows(data=data), label=label)
'''


def test_python_tasks_run_as_domino_jobs(tmp_path: Path, s3: S3Env, start_emulator: Any) -> None:
    root = _project(tmp_path, s3)
    (root / "tasks.py").write_text(TASKS_FLOW)
    emu = start_emulator(root)
    args = ("tasks.py", "rows", "--data", "data/a.csv")
    r = _run(root, emu, "apply", *args, "--auto-approve")
    assert r.code == 0, r.text
    assert len(emu.started_jobs) == 2
    command = emu.calls("POST", "/v4/jobs/start")[0].body["commandToRun"]
    assert "providers" not in command  # the runtime runs the @task; nothing of this project is installed
    rows = json.loads(_run(root, emu, "outputs", "rows/count_rows", "--json").out)["o0"]["value"]
    assert rows == len((root / "data" / "a.csv").read_text().splitlines()) - 1
    dest = tmp_path / "out"
    assert _run(root, emu, "outputs", "rows/report", "--dest", str(dest)).code == 0
    assert (dest / "o0").read_text() == f"a: {rows} rows\n"
    r = _run(root, emu, "plan", *args, "--detailed-exitcode")
    assert r.code == 0, r.text  # nothing changed: both cached
    r = _run(root, emu, "plan", *args, "--label", "b", "--json")
    actions = {n["address"]: n["action"] for n in json.loads(r.out)["nodes"]}
    assert actions == {"rows/count_rows": "reuse", "rows/report": "update"}, actions


def test_python_task_defined_outside_the_project_is_a_clear_error(tmp_path: Path, s3: S3Env,
                                                                  start_emulator: Any) -> None:
    root = _project(tmp_path, s3)
    shared = tmp_path / "shared"  # on this machine's PYTHONPATH, but not in the project Domino runs
    shared.mkdir()
    (shared / "outside_tasks.py").write_text("from flytekit import task\n\n\n@task\ndef one() -> int:\n    return 1\n")
    (root / "uses_outside.py").write_text("from flytekit import workflow\nfrom outside_tasks import one\n\n\n"
                                          "@workflow\ndef wf() -> int:\n    return one()\n")
    emu = start_emulator(root)
    r = _run(root, emu, "apply", "uses_outside.py", "wf", "--auto-approve", PYTHONPATH=str(shared))
    assert r.code == 1 and "Traceback" not in r.text, r.text
    assert f"the @task is defined in {shared / 'outside_tasks.py'}, outside the project" in r.out, r.out
    assert not emu.started_jobs
