"""The Domino provider against the emulator's realistic mode: jobs run as a non-root user with only the
system Python on PATH (this project is not importable there), no cloud credentials in the job, a root-owned
/workflow, the project at DOMINO_WORKING_DIR, jobRunCommand in Domino's own quoting, and a new project
commit after every finished job. The real `flows` CLI, moto's S3 server and the emulator, all on 127.0.0.1.
One test per numbered problem of issue 13, then the end-to-end cases."""
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
from tests.fixtures.s3 import FAKE_KEY_ID, FAKE_SECRET, REGION, S3Env, aws_env, moto_endpoint, s3  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("unshare"),
                                reason="realistic Domino jobs need root here to drop to the job's user")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ai_training"
ARGS = ("flow.py", "model_training", "--data_path_a", "data/a.csv", "--data_path_b", "data/b.csv")


def toml(s3env: S3Env, **provider: Any) -> str:
    settings = {"poll_interval": 0.05, "max_poll_interval": 0.2, "retry_backoff": 0.0, "retries": 8, **provider}
    lines = ["[tool.flows.provider]", 'type = "domino"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    lines += ["", "[tool.flows.blobs]", f'url = "s3://{s3env.bucket}/blobs/"', f'endpoint_url = "{s3env.endpoint}"',
              f'region = "{REGION}"']
    return "\n".join(lines) + "\n"


def example(tmp_path: Path, s3env: S3Env, name: str = "project") -> Path:
    root = tmp_path / name
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".flows"))
    (root / "flows.toml").write_text(toml(s3env))
    return root


@pytest.fixture
def realistic(tmp_path: Path) -> Any:
    started: list[DominoEmulator] = []

    def start(project_dir: Path, *, git: bool = False, faults: Faults | None = None, **config: Any) -> DominoEmulator:
        project = demo_project(project_dir, OWNER, PROJECT, git=git)
        emu = DominoEmulator(EmulatorConfig(projects=[project], api_key=API_KEY, realistic=True,
                                            faults=faults or Faults(), work_dir=tmp_path / f"emu{len(started)}",
                                            **config)).start()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


def run(root: Path, emu: DominoEmulator, *args: str, **env: str) -> Any:
    return flows(*args, cwd=root, env={**aws_env(), **domino_env(emu), **env}, timeout=240)


def job_logs(emu: DominoEmulator) -> list[str]:
    return [emu.job(j).stdout() for j in emu.started_jobs]


def test_ai_training_applies_on_realistic_domino_and_replans_to_nothing(tmp_path: Path, s3: S3Env,
                                                                         realistic: Callable[..., DominoEmulator]) -> None:
    """Problems 1, 2 and 6: a job with only the system Python and no credentials runs the example; every
    job moved the project's commit, and the next plan is still a no-op."""
    root = example(tmp_path, s3)
    emu = realistic(root, git=True)  # the AI-training template is a git-based project (code at /mnt/code)
    first_commit = emu.project.commits[-1]
    r = run(root, emu, "apply", *ARGS, "--auto-approve")
    assert r.code == 0, r.text + "\n".join(job_logs(emu))
    assert len(emu.started_jobs) == 5
    assert "/workflow is a private folder in a user namespace" in job_logs(emu)[0]  # the job's user is not root
    assert emu.project.commits[-1] != first_commit and len(emu.project.commits) == 6  # each job committed
    r = run(root, emu, "outputs", "model_training/Train Model", "--json")
    assert r.code == 0 and 0.5 < float(json.loads(r.out)["accuracy"]["value"]) <= 1.0, r.text
    r = run(root, emu, "plan", *ARGS, "--detailed-exitcode")
    assert r.code == 0, r.text  # the commit moved five times; the code did not
    # No credential anywhere a job can see it; no presigned URL anywhere flows writes.
    for job_id in emu.started_jobs:
        job = emu.job(job_id)
        for text in (job.command, job.stdout()):
            assert FAKE_SECRET not in text and API_KEY not in text
        assert "X-Amz-Signature" not in job.stdout()
    for path in (root / ".flows").rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "X-Amz-Signature" not in text and FAKE_SECRET not in text and API_KEY not in text, path
    # Staging keys are gone: only content-addressed blobs remain.
    assert not [k for k in s3.keys() if "/staging/" in k]
