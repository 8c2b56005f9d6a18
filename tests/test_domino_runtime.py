"""The in-job runtime on its own (issue 13, problems 1 and 2): one standard-library file for Python 3.8+,
proved by `vermin` and by running it with bare interpreters; the bootstrap that reaches it; what it does when
the job's user cannot have /workflow or the job has no Python; the job's data only through presigned URLs
(moto's S3 server on 127.0.0.1)."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.s3 import FAKE_SECRET, S3Env

RUNTIME = Path(__file__).resolve().parents[1] / "providers" / "domino" / "runtime.py"
VERMIN = Path(sys.executable).with_name("vermin")


def _python38() -> str | None:
    found = shutil.which("python3.8")
    for candidate in [found, *sorted(Path("/root/.pyenv/versions").glob("3.8*/bin/python3.8"))]:
        if candidate and subprocess.run([str(candidate), "-c", "import sys; assert sys.version_info[:2] == (3, 8)"],
                                        capture_output=True).returncode == 0:
            return str(candidate)
    return None


def result_of(log: str) -> dict:
    line = next(ln for ln in reversed(log.splitlines()) if "::flows-result::" in ln)
    return json.loads(base64.b64decode(line.split("::flows-result::", 1)[1]))


def test_runtime_is_one_standard_library_file_for_python_38() -> None:
    done = subprocess.run([str(VERMIN), "--no-tips", "--violations", "-t=3.8-", "--eval-annotations", str(RUNTIME)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    # Alone in a folder, with no site-packages and no path of ours: every import must be the standard library's.
    alone = subprocess.run([sys.executable, "-I", "-S", str(RUNTIME)], capture_output=True, text=True,
                           cwd="/", env={"PATH": "/usr/bin:/bin"})
    assert alone.returncode == 2 and "usage: runtime.py" in alone.stderr, alone.stderr


@pytest.mark.skipif(_python38() is None, reason="no Python 3.8 interpreter on this machine")
def test_runtime_runs_a_job_on_python_38(tmp_path: Path, s3: S3Env) -> None:
    """The whole path a Domino job takes, with Python 3.8 as the job's only Python: bootstrap, manifest and
    runtime by presigned GET, inputs, the command, outputs by presigned PUT, then verified and stored."""
    from providers.base import InputValue, JobSpec
    from providers.domino.staging import Staging, attempt_marker

    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    (project / "scripts" / "double.py").write_text(
        "import os, sys\nn = int(open('{0}/inputs/n').read())\n"
        "open('{0}/outputs/twice', 'w').write(str(2 * n))\nos.makedirs('{0}/outputs/many/sub')\n"
        "open('{0}/outputs/many/sub/a.txt', 'w').write(open('{0}/inputs/data').read().upper())\n"
        "print('python', sys.version_info[:2], 'workflow', os.environ['DOMINO_IS_WORKFLOW_JOB'])\n"
        .format(tmp_path / "wf"))
    blobs = s3.blobs()
    (tmp_path / "data.txt").write_text("some data\n")
    data = blobs.put_file(tmp_path / "data.txt")
    job = JobSpec(run_id="r1", address="wf/double", task_name="double", kind="domino_job",
                  command="scripts/double.py", outputs={"twice": "int", "many": "dir"}, project_root=str(project),
                  flow_file="", log_path=str(tmp_path / "log"))
    inputs = {"n": InputValue(type="int", value=21), "data": InputValue(type="file", uri=data.uri, digest=data.digest)}
    staging = Staging(blobs)
    staging.workflow_dir = str(tmp_path / "wf")
    marker = attempt_marker(job.run_id, job.address, job.attempt)
    command = staging.prepare(job, inputs, marker, ["python3", "python"], {})
    assert FAKE_SECRET not in command and "providers" not in command
    bin_dir = tmp_path / "bin"   # the job's PATH: a sh and Python 3.8 as `python`, nothing else
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(_python38())
    for tool in ("sh", "bash"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    done = subprocess.run(["bash", "-c", command], cwd=project, capture_output=True, text=True,
                          env={"PATH": str(bin_dir), "DOMINO_WORKING_DIR": str(project)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "python (3, 8) workflow true" in done.stdout
    assert "X-Amz-" not in done.stdout + done.stderr
    result = result_of(done.stdout)
    outputs, warnings = staging.collect(job, marker, result, tmp_path / "scratch")
    assert outputs["twice"].value == 42
    restored = tmp_path / "restored"
    blobs.get_dir(outputs["many"].uri, restored)
    assert (restored / "sub" / "a.txt").read_text() == "SOME DATA\n"
    staging.clear(marker)
    assert staging.staged_keys(marker) == []


@pytest.mark.parametrize("command", ["echo done > /dev/null", "exit 3"])
def test_the_runtime_leaves_no_folder_behind(tmp_path: Path, s3: S3Env, command: str) -> None:
    """The bootstrap writes the runtime into a folder of its own under $TMPDIR and removes it when the node's
    job ends, succeeded or failed (on Domino the container goes with it; the emulator's jobs and any machine that
    keeps /tmp would otherwise gather one folder per job)."""
    from providers.base import JobSpec
    from providers.domino.staging import Staging, attempt_marker

    project = tmp_path / "project"
    project.mkdir()
    job = JobSpec(run_id="r1", address="wf/a", task_name="a", kind="domino_job", command=command, outputs={},
                  project_root=str(project), flow_file="", log_path=str(tmp_path / "log"))
    staging = Staging(s3.blobs())
    staging.workflow_dir = str(tmp_path / "wf")
    marker = attempt_marker(job.run_id, job.address, job.attempt)
    bootstrap = staging.prepare(job, {}, marker, ["python3"], {})
    job_tmp = tmp_path / "job-tmp"
    job_tmp.mkdir()
    done = subprocess.run(["bash", "-c", bootstrap], cwd=project, capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "DOMINO_WORKING_DIR": str(project), "TMPDIR": str(job_tmp)})
    assert done.returncode == (0 if command.startswith("echo") else 3), done.stdout + done.stderr
    assert "::flows-result::" in done.stdout
    assert list(job_tmp.iterdir()) == []


def test_a_staged_output_that_is_not_what_the_job_sent_is_refused(tmp_path: Path, s3: S3Env) -> None:
    """The apply side checks size and sha256 of every staged upload; a mismatch keeps nothing."""
    import hashlib

    from providers.base import JobSpec
    from providers.domino.staging import Staging, attempt_marker
    from vocab.errors import ProviderError

    blobs = s3.blobs()
    staging = Staging(blobs)
    job = JobSpec(run_id="r1", address="wf/a", task_name="a", kind="domino_job", command="true",
                  outputs={"model": "file"}, project_root=str(tmp_path), flow_file="", log_path="")
    marker = attempt_marker("r1", "wf/a", 1)
    sent = b"the model the job wrote"
    s3.client.put_object(Bucket=s3.bucket, Key=f"blobs/staging/{marker}/out/model", Body=b"something else!")
    report = {"outputs": {"model": {"size": len(sent), "sha256": hashlib.sha256(sent).hexdigest()}}}
    with pytest.raises(ProviderError, match="output 'model': the staged upload .* is not what the job sent"):
        staging.collect(job, marker, report, tmp_path / "scratch")
    before = set(s3.keys("blobs/"))
    staging.clear(marker)
    assert set(s3.keys("blobs/")) == before - {f"blobs/staging/{marker}/out/model"}
    assert not [k for k in s3.keys() if "/staging/" in k]


def test_no_python_on_the_path_is_one_clear_line(tmp_path: Path) -> None:
    from providers.domino.staging import bootstrap_command

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sh").symlink_to(shutil.which("sh"))
    done = subprocess.run([shutil.which("bash"), "-c", bootstrap_command("https://example.invalid/m", ["python3", "python"])],
                          capture_output=True, text=True, env={"PATH": str(bin_dir)})
    assert done.returncode == 127
    assert done.stdout.strip() == (f"flows: this job has no python3 or python on its PATH ({bin_dir}); the "
                                   "environment needs a Python 3.8 or newer for the flows runtime")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to run as another user")
def test_workflow_that_cannot_be_had_is_one_line_naming_what_was_tried(request: pytest.FixtureRequest) -> None:
    """The job's user cannot create /workflow, has no sudo and no unshare: one line says what was tried."""
    if not Path("/workflow").is_dir():
        Path("/workflow").mkdir()
    if os.stat("/workflow").st_mode & 0o002:
        pytest.skip("/workflow is world-writable here")
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="flows-runtime-test-"))  # readable by the job's user (tmp_path is not)
    request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
    shutil.copy(RUNTIME, folder / "runtime.py")
    (folder / "manifest.json").write_text(json.dumps({"address": "wf/a", "command": "true", "outputs": {}}))
    os.chmod(folder, 0o755)
    python = shutil.which("python3", path="/usr/bin:/bin")
    done = subprocess.run([shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", python, "-I",
                           str(folder / "runtime.py"), "--manifest", str(folder / "manifest.json")],
                          capture_output=True, text=True, cwd=folder, env={"PATH": "/nonexistent"})
    assert done.returncode == 2, done.stdout + done.stderr
    error = result_of(done.stdout)["error"]
    assert error == ("cannot create /workflow as user 65534 (uid 65534); tried mkdir: permission denied; "
                     "sudo: not installed; unshare: not installed. Give the job's user passwordless sudo "
                     "or a writable /workflow in the environment"), error


def test_a_folder_output_linking_out_of_the_outputs_folder_fails_the_node(tmp_path: Path) -> None:
    """The local stores' rule, in the job: links inside the outputs folder are followed, others refused."""
    from providers.domino import runtime

    outputs = tmp_path / "outputs"
    (outputs / "d").mkdir(parents=True)
    (outputs / "d" / "a.txt").write_text("a")
    (outputs / "d" / "same.txt").symlink_to(outputs / "d" / "a.txt")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    tar = runtime._tar("d", str(outputs / "d"), str(scratch), str(outputs))
    import tarfile
    with tarfile.open(tar) as t:
        assert sorted(t.getnames()) == ["a.txt", "same.txt"]
    (outputs / "d" / "pw").symlink_to("/etc/passwd")
    with pytest.raises(runtime.JobError, match="output 'd': d/pw is a link to /etc/passwd, outside the outputs folder"):
        runtime.upload_outputs({"d": {"kind": "dir", "type": "dir"}}, {"d": "http://127.0.0.1:9/never"},
                               str(outputs), str(scratch), 1 << 20)


def test_urls_expire_after_the_nodes_timeout_plus_a_margin(tmp_path: Path, s3: S3Env) -> None:
    from urllib.parse import parse_qs, urlsplit

    from providers.base import InputValue, JobSpec
    from providers.domino.staging import URL_MARGIN, Staging, attempt_marker

    blobs = s3.blobs()
    staging = Staging(blobs)
    job = JobSpec(run_id="r1", address="wf/a", task_name="a", kind="domino_job", command="true", timeout_seconds=600,
                  outputs={"n": "int"}, project_root=str(tmp_path), flow_file="", log_path="")
    marker = attempt_marker("r1", "wf/a", 1)
    command = staging.prepare(job, {"x": InputValue(type="int", value=1)}, marker, ["python3"], {})
    manifest = json.loads(s3.client.get_object(Bucket=s3.bucket, Key=f"blobs/staging/{marker}/manifest.json")["Body"].read())
    urls = [manifest["runtime"]["url"], *manifest["uploads"].values(), command.rsplit(" ", 1)[1].strip("'")]
    for url in urls:
        query = parse_qs(urlsplit(url).query)
        assert query["X-Amz-Expires"] == [str(int(600 + URL_MARGIN))], url  # SigV4, node timeout + margin
    assert set(manifest["uploads"]) == {"n"} and f"staging/{marker}/out/n" in manifest["uploads"]["n"]


@pytest.mark.parametrize("version", ["2.7", "3.6"])
def test_an_old_python_is_one_clear_line(tmp_path: Path, version: str) -> None:
    from providers.domino.staging import bootstrap_command

    found = sorted(Path("/root/.pyenv/versions").glob(f"{version}*/bin/python{version}")) if os.access(
        "/root/.pyenv/versions", os.R_OK) else []
    if not found:
        pytest.skip(f"no Python {version} on this machine")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sh").symlink_to(shutil.which("sh"))
    (bin_dir / "python").symlink_to(found[0])
    done = subprocess.run([shutil.which("bash"), "-c", bootstrap_command("https://example.invalid/m", ["python3", "python"])],
                          capture_output=True, text=True, env={"PATH": str(bin_dir)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip().startswith("flows: the job needs Python 3.8 or newer, ") and "Traceback" not in done.stderr


def test_a_command_over_the_size_limit_is_refused_before_any_job(tmp_path: Path, s3: S3Env) -> None:
    from providers.base import JobSpec
    from providers.domino.staging import MAX_COMMAND_BYTES, Staging
    from vocab.errors import ProviderError

    staging = Staging(s3.blobs())
    job = JobSpec(run_id="r1", address="wf/a", task_name="a", kind="domino_job", command="true",
                  project_root=str(tmp_path), flow_file="", log_path="")
    normal = staging.prepare(job, {}, "flows-0123456789abcdef.00000000", ["python3", "python"], {})
    assert len(normal.encode()) < MAX_COMMAND_BYTES // 2
    with pytest.raises(ProviderError, match=f"over the {MAX_COMMAND_BYTES} flows sends to Domino"):
        staging.prepare(job, {}, "flows-0123456789abcdef.00000001", ["/opt/" + "p" * MAX_COMMAND_BYTES], {})
    assert staging.staged_keys("flows-0123456789abcdef.00000001") == []  # no manifest left behind


def test_a_presigned_url_is_masked_wherever_flows_redacts() -> None:
    from vocab.masking import redact

    url = ("http://127.0.0.1:9/b/blobs/staging/x/manifest.json?X-Amz-Algorithm=AWS4-HMAC-SHA256"
           "&X-Amz-Credential=AKIAEXAMPLE%2F20261130%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261130T000000Z"
           "&X-Amz-Expires=3660&X-Amz-SignedHeaders=host&X-Amz-Signature=0123456789abcdef")
    shown = redact(f"failed: {url} (v2: ?AWSAccessKeyId=AKIAEXAMPLE&Signature=abc%2Bdef&Expires=1)")
    assert "AKIAEXAMPLE" not in shown and "0123456789abcdef" not in shown and "abc%2Bdef" not in shown
    assert "X-Amz-Signature=***" in shown and "X-Amz-Expires=3660" in shown
