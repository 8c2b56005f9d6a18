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
from tests.fixtures.s3 import FAKE_SECRET, REGION, S3Env, aws_env

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
    assert "X-Amz-" not in r.text and "://127.0.0.1" not in r.text.replace(emu.url, "")  # no presigned URL shown
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


MIXED_FLOW = '''
from typing import TypeVar

from flytekit import task, workflow
from flytekit.types.file import FlyteFile
from flytekitplugins.domino.artifact import DATA, Artifact
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task
from flytekitplugins.domino.task import DominoJobConfig, DominoJobTask

CSV = FlyteFile[TypeVar("csv")]
Cleaned = Artifact(name="Cleaned data", type=DATA)


@task
def count(data: FlyteFile) -> int:
    import helpers  # a module of the project, found from the job's working directory
    return helpers.rows(data)


@workflow
def mixed(raw: CSV) -> int:
    clean = DominoJobTask(
        name="clean",
        domino_job_config=DominoJobConfig(Command="python scripts/clean.py"),
        inputs={"raw": CSV},
        outputs={"cleaned": Cleaned.File(name="cleaned.csv")},
        use_latest=True,
    )
    cleaned = clean(raw=raw)
    stats = run_domino_job_task(
        flyte_task_name="stats", command="scripts/stats.py --column value",
        inputs=[Input(name="data", type=CSV, value=cleaned)],
        output_specs=[Output(name="mean", type=float)],
        use_project_defaults_for_omitted=True,
    )
    return count(data=cleaned)
'''
CLEAN = '''import os
if os.environ.get("DOMINO_IS_WORKFLOW_JOB") != "true":
    raise SystemExit("not a flow job")
rows = [r for r in open("/workflow/inputs/raw").read().splitlines() if r.strip() and ",," not in r]
open("/workflow/outputs/cleaned", "w").write("\\n".join(rows) + "\\n")
print("cleaned", len(rows) - 1, "rows as", os.getuid())
print("credentials in the job:", sorted(k for k in os.environ if k.startswith("AWS_") or "KEY" in k or "TOKEN" in k))
'''
STATS = '''import sys
column = sys.argv[sys.argv.index("--column") + 1]
lines = open("/workflow/inputs/data").read().split()
index = lines[0].split(",").index(column)
values = [float(r.split(",")[index]) for r in lines[1:]]
open("/workflow/outputs/mean", "w").write(str(sum(values) / len(values)))
'''
HELPERS = "def rows(path):\n    return len(open(path).read().split()) - 1\n"
RAW = "id,value\n1,10\n2,,\n3,20\n4,30\n"


def mixed_project(root: Path, s3env: S3Env) -> Path:
    (root / "scripts").mkdir(parents=True)
    (root / "data").mkdir()
    files = {"mixed.py": MIXED_FLOW, "scripts/clean.py": CLEAN, "scripts/stats.py": STATS, "helpers.py": HELPERS,
             "data/raw.csv": RAW, "flows.toml": toml(s3env)}
    for rel, text in files.items():
        (root / rel).write_text(text)
    return root


MIXED = ("mixed.py", "mixed", "--raw", "data/raw.csv")


def value(root: Path, emu: DominoEmulator, address: str, name: str) -> Any:
    r = run(root, emu, "outputs", address, "--json")
    assert r.code == 0, r.text
    return json.loads(r.out)[name]["value"]


def test_mixed_flow_on_a_realistic_dfs_project(tmp_path: Path, s3: S3Env, realistic: Any) -> None:
    """DominoJobTask, run_domino_job_task with a bare `.py` command, a @task importing a project module, a DATA
    artifact: all run on a DFS project (working directory /mnt, not /mnt/code) as a non-root user; the commit
    moves after every job and the next plan is a no-op; editing one script re-runs exactly that node."""
    root = mixed_project(tmp_path / "project", s3)
    emu = realistic(root)  # DFS
    r = run(root, emu, "apply", *MIXED, "--auto-approve")
    assert r.code == 0, r.text + "\n".join(job_logs(emu))
    assert len(emu.started_jobs) == 3
    assert value(root, emu, "mixed/stats", "mean") == 20.0
    assert value(root, emu, "mixed/count", "o0") == 3
    clean_log = next(log for log in job_logs(emu) if "cleaned 3 rows" in log)
    assert "working directory /mnt)" in clean_log and "cleaned 3 rows as 0" in clean_log  # ns-root, really uid 65534
    assert "credentials in the job: []" in clean_log
    assert len(emu.project.commits) == 4
    r = run(root, emu, "plan", *MIXED, "--detailed-exitcode")
    assert r.code == 0, r.text
    # Edit one script without changing what it writes: that node alone runs; its dependents are reused.
    script = root / "scripts" / "clean.py"
    script.write_text(script.read_text() + "# tidied\n")
    r = run(root, emu, "apply", *MIXED, "--auto-approve")
    assert r.code == 0, r.text
    assert len(emu.started_jobs) == 4
    assert emu.job(emu.started_jobs[-1]).title.startswith("flows: mixed/clean [flows-")
    # Edit it so that its output changes: now its dependents run too.
    script.write_text(script.read_text().replace('",," not in r', '",," not in r and not r.startswith("4,")'))
    r = run(root, emu, "apply", *MIXED, "--auto-approve")
    assert r.code == 0, r.text
    assert len(emu.started_jobs) == 7
    assert value(root, emu, "mixed/stats", "mean") == 15.0 and value(root, emu, "mixed/count", "o0") == 2
    # The job's command is stored in Domino's quoting: nothing may compare it with ours.
    start = emu.calls("POST", "/v4/jobs/start")[0].body
    assert emu.job(emu.started_jobs[0]).to_json()["jobRunCommand"] != start["commandToRun"]


def test_code_that_was_not_synced_fails_before_running(tmp_path: Path, s3: S3Env, realistic: Any) -> None:
    """Problem 6: the job checks the planned digests of the files it uses, in its working directory."""
    root = mixed_project(tmp_path / "project", s3)
    synced = tmp_path / "on-domino"
    shutil.copytree(root, synced)
    emu = realistic(synced)
    stats = root / "scripts" / "stats.py"
    stats.write_text(stats.read_text() + "print('a local edit nobody pushed')\n")
    r = run(root, emu, "apply", *MIXED, "--auto-approve")
    assert r.code == 1
    assert "scripts/stats.py on Domino differs from the planned one: push or sync the project" in r.out, r.out
    assert "a local edit" not in "".join(job_logs(emu))  # the script never ran


SETTINGS_FLOW = '''
from flytekit import workflow
from flytekitplugins.domino.task import (ClusterProperties, DatasetSnapshot, DominoJobConfig, DominoJobTask,
                                         EnvironmentRevisionSpecification, EnvironmentRevisionType)


@workflow
def settings() -> int:
    big = DominoJobTask(
        name="big",
        domino_job_config=DominoJobConfig(
            Command="python scripts/one.py", Title="Nightly training", VolumeSizeGiB=50,
            ExternalVolumeMountIds=["vol-1"], EnvironmentId="{env}",
            EnvironmentRevisionSpec=EnvironmentRevisionSpecification(EnvironmentRevisionType.SomeRevision, "{rev}"),
            ComputeClusterProperties=ClusterProperties(ClusterType="Spark", ComputeEnvironmentId="{env}",
                                                       WorkerHardareTierId="small-k8s", WorkerCount=2,
                                                       WorkerStorageGiB=10, MasterHardwareTierId="medium-k8s"),
            {extra}),
        outputs={{"x": int}},
    )
    return big()
'''


def test_every_setting_reaches_the_job_start_or_the_plan_refuses_it(tmp_path: Path, s3: S3Env, realistic: Any) -> None:
    """Problem 7: cluster properties, volumes, volume size, environment revision and Title are sent; a setting
    Domino's start cannot take is a plan-time error naming the node and the field."""
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "one.py").write_text('open("/workflow/outputs/x", "w").write("1")\n')
    (root / "flows.toml").write_text(toml(s3))
    emu = realistic(root)
    env = emu.project.environments[1]
    (root / "flow.py").write_text(SETTINGS_FLOW.format(env=env.id, rev=env.revisions[0], extra=""))
    r = run(root, emu, "apply", "flow.py", "settings", "--auto-approve")
    assert r.code == 0, r.text
    body = emu.calls("POST", "/v4/jobs/start")[0].body
    assert body["title"].startswith("Nightly training [flows-")
    assert body["overrideVolumeSizeGiB"] == 50 and body["externalVolumeMounts"] == ["vol-1"]
    assert body["environmentId"] == env.id
    assert body["environmentRevisionSpec"] == {"_type": "domino.environments.api.SomeRevision",
                                               "revisionId": env.revisions[0]}
    assert body["computeClusterProperties"] == {
        "clusterType": "Spark", "computeEnvironmentId": env.id, "masterHardwareTierId": {"value": "medium-k8s"},
        "workerHardwareTierId": {"value": "small-k8s"}, "workerCount": 2,
        "workerStorage": {"value": 10, "unit": "GiB"}}
    (root / "flow.py").write_text(SETTINGS_FLOW.format(env=env.id, rev=env.revisions[0],
                                                       extra='DatasetSnapshots=[DatasetSnapshot("ds-1", 3)]'))
    r = run(root, emu, "plan", "flow.py", "settings")
    assert r.code == 1 and "Traceback" not in r.text, r.text
    assert "settings/big" in r.err and "DatasetSnapshots" in r.err and "POST /v4/jobs/start" in r.err, r.err
    assert len(emu.started_jobs) == 1


def test_recover_finds_its_job_although_domino_requoted_the_command(tmp_path: Path, s3: S3Env, realistic: Any) -> None:
    """Problem 8: apply dies after Domino started a job and before its id was journaled; Domino answers the
    job's command in its own quoting. recover finds the job by the marker in its title, re-attaches, and no
    node's job starts twice. No credential reaches any job."""
    from tests.fixtures.recover_kit import HoldingProxy, start_flows, wait_until

    root = mixed_project(tmp_path / "project", s3)
    emu = realistic(root)
    held = b'"title": "flows: mixed/stats ['
    proxy = HoldingProxy(emu.url, lambda method, path, body: path == "/v4/jobs/start" and held in body)
    try:
        apply = start_flows("apply", *MIXED, "--auto-approve", cwd=root, log=tmp_path / "apply.log",
                            env={**aws_env(), **domino_env(emu), "DOMINO_API_HOST": proxy.url})
        wait_until(lambda: proxy.held.is_set() or apply.proc.poll() is not None, timeout=120)
        assert proxy.held.is_set(), apply.text()
        apply.kill()
    finally:
        proxy.close()
    stats = next(j for j in emu.started_jobs if "mixed/stats" in (emu.job(j).title or ""))
    answered = emu.job(stats).to_json()["jobRunCommand"]
    assert answered != emu.job(stats).command  # Domino's quoting, not ours
    r = run(root, emu, "recover", "--flow", "mixed")
    assert r.code == 0, r.text
    assert f"Found job {stats} of mixed/stats" in r.out, r.out
    titles = [emu.job(j).title.rsplit(" [flows-", 1)[0] for j in emu.started_jobs]
    assert sorted(titles) == ["flows: mixed/clean", "flows: mixed/count", "flows: mixed/stats"], titles
    assert value(root, emu, "mixed/stats", "mean") == 20.0
    for job_id in emu.started_jobs:
        job = emu.job(job_id)
        assert FAKE_SECRET not in job.command + job.stdout() and API_KEY not in job.command + job.stdout()


def test_injected_latency_delays_every_answer(tmp_path: Path, realistic: Any) -> None:
    import time

    from tests.fixtures.domino import make_client

    emu = realistic(tmp_path, latency_seconds=0.3)
    with make_client(domino_env(emu)) as client:
        began = time.monotonic()
        client.version()
        client.project_id()
        assert time.monotonic() - began >= 0.6  # two answers, each at least 0.3 s late


def test_git_project_job_is_pinned_to_the_pushed_checkout_head(tmp_path: Path, s3: S3Env, realistic: Any) -> None:
    """Problem 6, pinning: in a git-based project the job runs the checkout's HEAD when the code files are
    committed there and HEAD is on a remote branch; an uncommitted edit leaves the job on Domino's head."""
    import subprocess

    def git(*args: str, cwd: Path) -> str:
        return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                              env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
                                   "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}).stdout.strip()

    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    root = mixed_project(tmp_path / "project", s3)
    git("init", "-q", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "flow", cwd=root)
    git("remote", "add", "origin", str(remote), cwd=root)
    git("push", "-q", "origin", "HEAD:main", cwd=root)
    git("fetch", "-q", "origin", cwd=root)
    head = git("rev-parse", "HEAD", cwd=root)
    emu = realistic(root, git=True)
    r = run(root, emu, "apply", *MIXED, "--target", "mixed/clean", "--auto-approve")
    assert r.code == 0, r.text
    assert emu.calls("POST", "/v4/jobs/start")[0].body["mainRepoGitRef"] == {"type": "commitId", "value": head}
    clean = root / "scripts" / "clean.py"
    clean.write_text(clean.read_text() + "# not committed\n")
    r = run(root, emu, "apply", *MIXED, "--target", "mixed/clean", "--auto-approve")
    assert r.code == 0, r.text
    assert "mainRepoGitRef" not in emu.calls("POST", "/v4/jobs/start")[1].body


def test_a_commit_written_in_the_flow_stays_in_the_key(tmp_path: Path, s3: S3Env, realistic: Any) -> None:
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "one.py").write_text('open("/workflow/outputs/x", "w").write("1")\n')
    (root / "flows.toml").write_text(toml(s3))
    emu = realistic(root)
    first = emu.project.commits[-1]
    second = emu.new_commit()
    flow = ('from flytekit import workflow\nfrom flytekitplugins.domino.helpers import Output, run_domino_job_task\n\n\n'
            '@workflow\ndef pinned() -> int:\n    return run_domino_job_task(flyte_task_name="one", command="python '
            'scripts/one.py", output_specs=[Output(name="x", type=int)], dfs_repo_commit_id="{commit}")["x"]\n')

    def key(commit: str) -> str:
        (root / "flow.py").write_text(flow.format(commit=commit))
        r = run(root, emu, "plan", "flow.py", "pinned", "--json")
        assert r.code == 0, r.text
        return json.loads(r.out)["nodes"][0]["key"]

    pinned_second = key(second)
    assert key(first) != pinned_second
    emu.new_commit()  # the project moving on changes nothing for a node pinned in the flow
    assert key(second) == pinned_second


def test_ai_training_killed_mid_apply_recovers_without_starting_a_job_twice(tmp_path: Path, s3: S3Env,
                                                                             realistic: Any) -> None:
    """Done-when: kill apply while Domino jobs run, then `flows recover`: every node's job started once."""
    from tests.fixtures.recover_kit import start_flows, wait_until

    root = example(tmp_path, s3)
    emu = realistic(root, git=True, faults=Faults(queue_seconds=0.5))
    apply = start_flows("apply", *ARGS, "--auto-approve", cwd=root, log=tmp_path / "apply.log",
                        env={**aws_env(), **domino_env(emu)})
    wait_until(lambda: len(emu.started_jobs) >= 3 or apply.proc.poll() is not None, timeout=120)
    apply.kill()
    assert len(emu.started_jobs) < 5, "apply finished before it could be killed"
    r = run(root, emu, "recover", "--flow", "model_training")
    assert r.code == 0, r.text
    nodes = [emu.job(j).title.rsplit(" [flows-", 1)[0] for j in emu.started_jobs]
    assert sorted(nodes) == sorted(f"flows: model_training/{n}" for n in
                                   ("Load Data A", "Load Data B", "Merge Data", "Process Data", "Train Model")), nodes
    r = run(root, emu, "outputs", "model_training/Train Model", "--json")
    assert r.code == 0 and 0.5 < float(json.loads(r.out)["accuracy"]["value"]) <= 1.0, r.text
    assert run(root, emu, "plan", *ARGS, "--detailed-exitcode").code == 0
