"""The Domino API emulator over raw HTTP, and the contract test: python-domino's own client works with it."""
from __future__ import annotations

import select
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from providers.domino.emulator import DominoEmulator, Faults, JobRule
from providers.sandbox import isolation_available
from tests.fixtures.domino import API_KEY, OWNER, PROJECT, TOKEN, wait_until

KEY = {"X-Domino-Api-Key": API_KEY}


def get(emu: DominoEmulator, path: str, headers: dict[str, str] | None = None, **params: str) -> requests.Response:
    return requests.get(emu.url + path, headers=KEY if headers is None else headers, params=params, timeout=10)


def post(emu: DominoEmulator, path: str, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(emu.url + path, headers=KEY if headers is None else headers, json=body, timeout=10)


def start(emu: DominoEmulator, command: str, **fields: Any) -> dict[str, Any]:
    resp = post(emu, "/v4/jobs/start", {"projectId": emu.project.id, "commandToRun": command, **fields})
    assert resp.status_code == 200, resp.text
    return resp.json()


def status(emu: DominoEmulator, job_id: str) -> dict[str, Any]:
    return get(emu, f"/v4/jobs/{job_id}").json()


def finished(emu: DominoEmulator, job_id: str) -> dict[str, Any]:
    return wait_until(lambda: (s := status(emu, job_id))["statuses"]["isCompleted"] and s)


# ---------------------------------------------------------------------------------------------- auth

def test_version_is_public_and_everything_else_needs_credentials(make_emulator: Callable[..., DominoEmulator]) -> None:
    emu = make_emulator()
    assert get(emu, "/version", headers={}).json() == {"version": "6.0.0"}
    find = "/v4/gateway/projects/findProjectByOwnerAndName"
    assert get(emu, find, headers={}, ownerName=OWNER, projectName=PROJECT).status_code == 401
    assert get(emu, find, headers={"X-Domino-Api-Key": "nope"}, ownerName=OWNER, projectName=PROJECT).status_code == 401
    assert get(emu, find, headers={"Authorization": "Bearer nope"}, ownerName=OWNER, projectName=PROJECT).status_code == 401
    assert get(emu, find, ownerName=OWNER, projectName=PROJECT).json()["id"] == emu.project.id
    assert get(emu, find, headers={"Authorization": f"Bearer {TOKEN}"}, ownerName=OWNER,
               projectName=PROJECT).json()["id"] == emu.project.id
    assert get(emu, find, ownerName=OWNER, projectName="other").status_code == 404
    assert [r.auth for r in emu.requests] == ["none", "none", "api_key", "bearer", "api_key", "bearer", "api_key"]
    proxy = make_emulator(trust_proxy=True)
    assert get(proxy, find, headers={}, ownerName=OWNER, projectName=PROJECT).status_code == 200


def test_requests_are_recorded_without_credentials(emulator: DominoEmulator) -> None:
    job = start(emulator, "true", title="flows: a")
    assert post(emulator, "/v4/jobs/stop", {"projectId": emulator.project.id, "jobId": job["id"],
                                            "commitResults": False}).status_code == 200
    recorded = emulator.calls("POST")
    assert [(r.path, r.status, r.auth) for r in recorded] == [("/v4/jobs/start", 200, "api_key"),
                                                              ("/v4/jobs/stop", 200, "api_key")]
    assert recorded[0].body == {"projectId": emulator.project.id, "commandToRun": "true", "title": "flows: a"}
    assert emulator.started_jobs == [job["id"]] and emulator.stop_calls == [job["id"]]
    assert API_KEY not in repr(emulator.requests) + repr(emulator.config)


# ---------------------------------------------------------------------------------------------- jobs

def test_a_job_runs_its_command_with_a_private_workflow_folder(emulator: DominoEmulator) -> None:
    job = start(emulator, "bash scripts/produce.sh hello; ls /mnt/code", title="flows: wf/p")
    assert (job["statuses"], job["title"], job["jobRunCommand"]) == (
        {"isCompleted": False, "isArchived": False, "isScheduled": False, "executionStatus": "Queued"},
        "flows: wf/p", "bash scripts/produce.sh hello; ls /mnt/code")
    assert len(job["id"]) == 24 and job["number"] == 1 and job["projectId"] == emulator.project.id
    done = finished(emulator, job["id"])
    assert done["statuses"]["executionStatus"] == "Succeeded"
    times = done["stageTime"]
    assert times["submissionTime"] <= times["runStartTime"] <= times["completedTime"]
    assert done["commitDetails"]["inputCommitId"] == emulator.project.commits[-1]
    assert (emulator.job(job["id"]).workflow_dir / "outputs" / "x").read_text() == "hello"
    log = get(emulator, f"/v1/projects/{OWNER}/{PROJECT}/run/{job['id']}/stdout").json()
    assert log["stdout"].startswith("<pre style=") and "producing hello" in log["stdout"]
    assert get(emulator, f"/v1/projects/{OWNER}/other/run/{job['id']}/stdout").status_code == 404
    if isolation_available():
        assert "producing hello\nscripts\n" in log["stdout"]     # the project is at /mnt/code


@pytest.mark.skipif(not isolation_available(), reason="needs mount namespaces for a private /workflow")
def test_parallel_jobs_do_not_see_each_others_workflow(emulator: DominoEmulator) -> None:
    jobs = [start(emulator, f"sleep 0.2; bash scripts/produce.sh v{i}; cat /workflow/outputs/x")["id"] for i in range(3)]
    assert wait_until(lambda: any(status(emulator, j)["statuses"]["executionStatus"] == "Running" for j in jobs))
    for i, job_id in enumerate(jobs):
        assert finished(emulator, job_id)["statuses"]["executionStatus"] == "Succeeded"
        assert (emulator.job(job_id).workflow_dir / "outputs" / "x").read_text() == f"v{i}"


def test_a_nonzero_exit_fails_the_job(emulator: DominoEmulator) -> None:
    job = start(emulator, "echo oops >&2; exit 4")
    assert finished(emulator, job["id"])["statuses"]["executionStatus"] == "Failed"
    assert emulator.job(job["id"]).exit_code == 4
    assert "oops" in emulator.job(job["id"]).stdout()


def test_a_slow_queue_keeps_jobs_queued_until_stopped(make_emulator: Callable[..., DominoEmulator]) -> None:
    emu = make_emulator(faults=Faults(queue_seconds=600))
    job = start(emu, "touch /workflow/outputs/ran")
    for _ in range(3):
        assert status(emu, job["id"])["statuses"]["executionStatus"] == "Queued"
    post(emu, "/v4/jobs/stop", {"projectId": emu.project.id, "jobId": job["id"], "commitResults": True})
    done = finished(emu, job["id"])
    assert done["statuses"]["executionStatus"] == "Stopped" and done["stageTime"]["runStartTime"] is None
    assert not (emu.job(job["id"]).workflow_dir / "outputs" / "ran").exists()


def test_forced_outcomes_fail_hang_and_die(make_emulator: Callable[..., DominoEmulator]) -> None:
    rules = [JobRule(match="--fail", outcome="fail"), JobRule(match="--hang", outcome="hang"),
             JobRule(match="--die", outcome="die")]
    emu = make_emulator(faults=Faults(job_rules=rules))
    failed, hung, died = (start(emu, f"echo hi {flag}")["id"] for flag in ("--fail", "--hang", "--die"))
    assert finished(emu, failed)["statuses"]["executionStatus"] == "Failed"
    assert finished(emu, died)["statuses"]["executionStatus"] == "Error"
    wait_until(lambda: status(emu, hung)["statuses"]["executionStatus"] == "Running")
    post(emu, "/v4/jobs/stop", {"projectId": emu.project.id, "jobId": hung, "commitResults": False})
    assert finished(emu, hung)["statuses"]["executionStatus"] == "Stopped"


def test_a_singular_git_ref_type_kills_the_job_as_on_domino(emulator: DominoEmulator) -> None:
    job = start(emulator, "true", mainRepoGitRef={"type": "branch", "value": "main"})
    assert finished(emulator, job["id"])["statuses"]["executionStatus"] == "Error"
    assert "IllegalStateException: Unknown reference type" in emulator.job(job["id"]).stdout()


def test_bad_start_requests_are_refused(emulator: DominoEmulator) -> None:
    pid = emulator.project.id
    cases = [({"projectId": pid}, 400, "commandToRun is required"),
             ({"projectId": "nope", "commandToRun": "true"}, 404, "Project nope not found"),
             ({"projectId": pid, "commandToRun": "true", "overrideHardwareTierId": "huge"}, 400, "Hardware tier huge"),
             ({"projectId": pid, "commandToRun": "true", "environmentId": "e"}, 400, "Environment e is not usable"),
             ({"projectId": pid, "commandToRun": "true", "commitId": "abc"}, 400, "Commit abc not found")]
    for body, code, message in cases:
        resp = post(emulator, "/v4/jobs/start", body)
        assert (resp.status_code, message in resp.json()["message"]) == (code, True), body
    assert emulator.started_jobs == []
    assert get(emulator, "/v4/jobs/0000").status_code == 404


def test_resolve_job_defaults_fills_what_is_omitted(make_emulator: Callable[..., DominoEmulator]) -> None:
    emu = make_emulator(git=True)
    p = emu.project
    url = f"/v4/jobs/{p.id}/resolveJobDefaults"
    resolved = post(emu, url, {}).json()
    assert resolved == {
        "commitId": p.commits[-1], "mainRepoGitRef": {"type": "commitId", "value": p.git_head},
        "hardwareTierId": {"value": "small-k8s"}, "environmentId": p.default_environment_id,
        "environmentRevisionSpec": {"_type": "domino.environments.api.SomeRevision",
                                    "revisionId": p.environments[0].active},
        "datasetSnapshots": [], "netAppVolumeSnapshots": [], "externalVolumeMountIds": [], "netAppVolumeIds": [],
        "volumeSizeGiB": 10.0, "computeClusterProperties": None}
    pinned = post(emu, url, {"commitId": p.commits[-1], "mainRepoGitRef": {"type": "commitId", "value": "abc"},
                             "environmentId": p.environments[1].id, "environmentRevisionSpec": "LatestRevision",
                             "datasetSnapshots": [{"datasetId": "d", "snapshotVersion": 2}]}).json()
    assert pinned["mainRepoGitRef"] == {"type": "commitId", "value": "abc"}
    assert pinned["environmentRevisionSpec"]["revisionId"] == p.environments[1].revisions[-1]
    assert pinned["datasetSnapshots"] == [{"datasetId": "d", "snapshotVersion": 2}]
    old_head = p.git_head
    new = emu.new_commit()
    again = post(emu, url, {}).json()
    assert again["commitId"] == new and again["mainRepoGitRef"]["value"] != old_head
    assert post(emu, url, {"environmentRevisionSpec": {"revisionId": "zzz"}}).status_code == 400


def test_project_listings(emulator: DominoEmulator) -> None:
    p = emulator.project
    envs = get(emulator, f"/v4/projects/{p.id}/useableEnvironments").json()["environments"]
    assert [e["name"] for e in envs] == ["Domino Standard Environment Py3.11", "Flows Runtime Py3.11"]
    tiers = get(emulator, f"/v4/projects/{p.id}/hardwareTiers").json()
    assert [(t["hardwareTier"]["id"], t["hardwareTier"]["isDefault"]) for t in tiers] == [
        ("small-k8s", True), ("medium-k8s", False), ("gpu-small-k8s", False)]
    assert get(emulator, f"/v1/projects/{OWNER}/{PROJECT}/commits").json() == p.commits[::-1]
    ids = [start(emulator, "true", title=f"t{i}")["id"] for i in range(3)]
    listed = get(emulator, "/v4/jobs", projectId=p.id, page_size="2").json()["jobs"]
    assert [j["id"] for j in listed] == ids[::-1][:2]
    assert get(emulator, f"/v4/projects/{p.id}/nothing").status_code == 404


# -------------------------------------------------------------------------------------------- faults

def _fault_pattern(emu: DominoEmulator, n: int) -> list[str]:
    out = []
    for _ in range(n):
        try:
            out.append(str(get(emu, "/version").status_code))
        except requests.exceptions.ConnectionError:
            out.append("drop")
    return out


def test_faults_are_seeded_and_scoped(make_emulator: Callable[..., DominoEmulator]) -> None:
    faults = Faults(error_rate=0.3, reset_rate=0.3, seed=5)
    first, second = make_emulator(faults=faults), make_emulator(faults=faults)
    pattern = _fault_pattern(first, 30)
    assert pattern == _fault_pattern(second, 30)                      # same seed, same faults
    assert {"200", "drop"} <= set(pattern) and set(pattern) - {"200", "drop"} <= {"500", "502", "503", "504"}
    assert len(set(pattern) - {"200", "drop"}) >= 1
    first.set_faults(error_rate=1.0, reset_rate=0.0, paths=["/v4/jobs/start"])
    assert _fault_pattern(first, 3) == ["200"] * 3                    # other paths are spared
    assert post(first, "/v4/jobs/start", {"projectId": first.project.id, "commandToRun": "true"}).status_code >= 500
    assert first.started_jobs == []


def test_a_lost_answer_is_processed_then_dropped(make_emulator: Callable[..., DominoEmulator]) -> None:
    emu = make_emulator(faults=Faults(lost_response_rate=1.0, paths=["/v4/jobs/start"]))
    with pytest.raises(requests.exceptions.ConnectionError):
        post(emu, "/v4/jobs/start", {"projectId": emu.project.id, "commandToRun": "true"})
    assert len(emu.started_jobs) == 1


# ----------------------------------------------------------------------------------------------- CLI

def test_the_command_line_emulator_serves_until_terminated(project_dir: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "providers.domino.emulator", "--port", "0", "--project-dir",
                             str(project_dir), "--api-key", API_KEY], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the emulator did not start"
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("Domino emulator on http://127.0.0.1:")
        url = line.split()[-1]
        assert requests.get(url + "/version", timeout=10).json() == {"version": "6.0.0"}
        found = requests.get(url + "/v4/gateway/projects/findProjectByOwnerAndName", headers=KEY, timeout=10,
                             params={"ownerName": "flows-user", "projectName": "demo"})
        assert found.status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    bad = subprocess.run([sys.executable, "-m", "providers.domino.emulator", "--project-dir", str(project_dir)],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert bad.returncode == 2 and "give --api-key, --token or --trust-proxy" in bad.stderr


# ------------------------------------------------------------------------------------------ contract

def test_python_domino_speaks_to_the_emulator(emulator: DominoEmulator, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """python-domino, Domino's official client, starts, polls and stops jobs against the emulator."""
    from domino import Domino
    for name in ("DOMINO_API_PROXY", "DOMINO_TOKEN_FILE", "DOMINO_USER_API_KEY", "DOMINO_API_HOST"):
        monkeypatch.delenv(name, raising=False)
    d = Domino(f"{OWNER}/{PROJECT}", api_key=API_KEY, host=emulator.url)
    p = emulator.project
    job = d.job_start("bash scripts/produce.sh contract", commit_id=p.commits[-1], hardware_tier_id="medium-k8s",
                      environment_id=p.environments[1].id, title="contract")
    assert job["statuses"]["executionStatus"] == "Queued"
    done = wait_until(lambda: (s := d.job_status(job["id"]))["statuses"]["isCompleted"] and s)
    assert done["statuses"]["executionStatus"] == "Succeeded"
    assert (emulator.job(job["id"]).workflow_dir / "outputs" / "x").read_text() == "contract"
    assert d.runs_stdout(job["id"]).strip() == "producing contract"
    sent = emulator.calls("POST", "/v4/jobs/start")[0].body
    assert (sent["overrideHardwareTierId"], sent["environmentId"], sent["commitId"]) == (
        "medium-k8s", p.environments[1].id, p.commits[-1])
    # python-domino validated those ids against the emulator's listings before starting:
    assert {"/v4/projects/" + p.id + "/hardwareTiers", "/v4/projects/" + p.id + "/useableEnvironments",
            f"/v1/projects/{OWNER}/{PROJECT}/commits"} <= {r.path for r in emulator.calls("GET")}

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    d2 = Domino(f"{OWNER}/{PROJECT}", domino_token_file=str(token_file), host=emulator.url)
    running = d2.job_start("sleep 600", branch="main")
    wait_until(lambda: d2.job_status(running["id"])["statuses"]["executionStatus"] == "Running")
    assert d2.job_stop(running["id"]).status_code == 200
    assert wait_until(lambda: (s := d2.job_status(running["id"]))["statuses"]["isCompleted"] and s)[
        "statuses"]["executionStatus"] == "Stopped"
    stop = emulator.calls("POST", "/v4/jobs/stop")[0]
    assert (stop.body, stop.auth) == ({"projectId": p.id, "jobId": running["id"], "commitResults": True}, "bearer")
    assert emulator.calls("POST", "/v4/jobs/start")[1].body["mainRepoGitRef"] == {"type": "branches", "value": "main"}


def test_a_finished_jobs_log_is_complete(emulator: DominoEmulator) -> None:
    """The status says the job ended only once its log is all written (a reader right after sees the end)."""
    job = start(emulator, "seq 1 400000; echo last-line")
    assert finished(emulator, job["id"])["statuses"]["executionStatus"] == "Succeeded"
    assert emulator.job(job["id"]).stdout().rstrip().endswith("last-line")
