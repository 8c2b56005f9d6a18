"""The emulator's routes: Domino's v4/v1 paths and JSON shapes, read with Domino's own field names.

Bodies are read as plain JSON with Domino's names (not with the client's models), so a wrong field
name in the client shows up as a failing test rather than as a shared mistake.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from providers.domino.emulator_jobs import GIT_REF_TYPES, EmulatedJob, Outcome, domino_quoting
from providers.domino.emulator_world import EnvironmentSpec, ProjectSpec, hexid

if TYPE_CHECKING:
    from providers.domino.emulator import DominoEmulator


class ApiError(Exception):
    """Answered as `{"message": ...}` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Handler = Callable[["DominoEmulator", dict[str, str], dict[str, str], Any], Any]
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ROUTES.append((method, re.compile("^" + pattern + "$"), fn))
        return fn
    return register


def dispatch(emu: DominoEmulator, method: str, path: str, query: dict[str, str], body: Any,
             authorized: bool) -> tuple[int, Any]:
    for route_method, pattern, handler in ROUTES:
        match = pattern.match(path)
        if match and route_method == method:
            if not authorized and path != "/version":   # /version is public (python-domino calls it first)
                return 401, {"message": "Unauthorized: no valid credentials in the request"}
            try:
                return 200, handler(emu, match.groupdict(), query, body)
            except ApiError as e:
                return e.status, {"message": e.message}
    return 404, {"message": f"No route {method} {path}"}


def project_by_id(emu: DominoEmulator, project_id: Any) -> ProjectSpec:
    p = next((p for p in emu.config.projects if p.id == project_id), None)
    if p is None:
        raise ApiError(404, f"Project {project_id} not found")
    return p


def job_of(emu: DominoEmulator, job_id: Any) -> EmulatedJob:
    with emu.lock:
        job = emu.jobs.get(str(job_id))
    if job is None:
        raise ApiError(404, f"Job {job_id} not found")
    return job


def _body(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object")
    return body


def _revision(env: EnvironmentSpec, spec: Any) -> str:
    if spec in (None, "ActiveRevision"):
        return env.active
    if spec == "LatestRevision":
        return env.revisions[-1]
    if isinstance(spec, dict) and spec.get("revisionId") in env.revisions:
        return str(spec["revisionId"])
    raise ApiError(400, f"Invalid environmentRevisionSpec {spec!r} for environment {env.id}")


def _tier_id(p: ProjectSpec, value: Any) -> str:
    if value is None:
        return p.default_tier.id
    if p.tier(str(value)) is None:
        raise ApiError(400, f"Hardware tier {value} not found in project {p.owner}/{p.name}")
    return str(value)


def _environment(p: ProjectSpec, value: Any) -> EnvironmentSpec:
    env = p.environment(str(value if value is not None else p.default_environment_id))
    if env is None:
        raise ApiError(400, f"Environment {value} is not usable in project {p.owner}/{p.name}")
    return env


def _commit(p: ProjectSpec, value: Any) -> str:
    if value is None:
        return p.commits[-1]
    if value not in p.commits:
        raise ApiError(400, f"Commit {value} not found in project {p.owner}/{p.name}")
    return str(value)


@route("GET", "/version")
def _version(emu: DominoEmulator, _: dict[str, str], __: dict[str, str], ___: Any) -> Any:
    return {"version": emu.config.version}


@route("GET", "/v4/gateway/projects/findProjectByOwnerAndName")
def _find_project(emu: DominoEmulator, _: dict[str, str], query: dict[str, str], __: Any) -> Any:
    owner, name = query.get("ownerName"), query.get("projectName")
    p = next((p for p in emu.config.projects if p.owner == owner and p.name == name), None)
    if p is None:
        raise ApiError(404, f"Project {owner}/{name} not found")
    return {"id": p.id, "name": p.name, "ownerUsername": p.owner, "ownerId": hexid(p.owner)}


@route("GET", "/v4/projects/(?P<pid>[^/]+)/useableEnvironments")
def _environments(emu: DominoEmulator, params: dict[str, str], _: dict[str, str], __: Any) -> Any:
    p = project_by_id(emu, params["pid"])
    envs = [{"id": e.id, "name": e.name, "visibility": "Global",
             "activeRevision": {"id": e.active}, "latestRevision": {"id": e.revisions[-1]}} for e in p.environments]
    return {"environments": envs, "currentlySelectedEnvironment": {"id": p.default_environment_id}}


@route("GET", "/v4/projects/(?P<pid>[^/]+)/hardwareTiers")
def _tiers(emu: DominoEmulator, params: dict[str, str], _: dict[str, str], __: Any) -> Any:
    p = project_by_id(emu, params["pid"])
    return [{"hardwareTier": {"id": t.id, "name": t.name, "isDefault": t.is_default,
                              "hwtResources": {"cores": t.cores, "memory": {"value": t.memory_gib, "unit": "GiB"}},
                              "centsPerMinute": 0.0}} for t in p.hardware_tiers]


@route("GET", "/v1/projects/(?P<owner>[^/]+)/(?P<name>[^/]+)/commits")
def _commits(emu: DominoEmulator, params: dict[str, str], _: dict[str, str], __: Any) -> Any:
    p = next((p for p in emu.config.projects if p.owner == params["owner"] and p.name == params["name"]), None)
    if p is None:
        raise ApiError(404, "Project not found")
    return list(reversed(p.commits))


@route("POST", "/v4/jobs/(?P<pid>[^/]+)/resolveJobDefaults")
def _resolve_defaults(emu: DominoEmulator, params: dict[str, str], _: dict[str, str], body: Any) -> Any:
    """UNCONFIRMED in detail: required answer fields from Domino's generated v4 schema; a specific
    revision in the plugin's `SomeRevision` form; a git ref resolved to the head commit."""
    b, p = _body(body), project_by_id(emu, params["pid"])
    tier = b.get("hardwareTierId")
    env = _environment(p, b.get("environmentId"))
    ref = b.get("mainRepoGitRef")
    if p.git_head is not None and (ref is None or ref.get("type") != "commitId"):
        ref = {"type": "commitId", "value": p.git_head}
    return {
        "commitId": _commit(p, b.get("commitId")),
        "mainRepoGitRef": ref,
        "hardwareTierId": {"value": _tier_id(p, tier.get("value") if isinstance(tier, dict) else tier)},
        "environmentId": env.id,
        "environmentRevisionSpec": {"_type": "domino.environments.api.SomeRevision",
                                    "revisionId": _revision(env, b.get("environmentRevisionSpec"))},
        "datasetSnapshots": b.get("datasetSnapshots") or [],
        "netAppVolumeSnapshots": b.get("netAppVolumeSnapshots") or [],
        "externalVolumeMountIds": b.get("externalVolumeMountIds") or [],
        "netAppVolumeIds": b.get("netAppVolumeIds") or [],
        "volumeSizeGiB": b.get("volumeSizeGiB") or p.volume_size_gib,
        "computeClusterProperties": b.get("computeClusterProperties"),
    }


@route("POST", "/v4/jobs/start")
def _start(emu: DominoEmulator, _: dict[str, str], __: dict[str, str], body: Any) -> Any:
    b = _body(body)
    p = project_by_id(emu, b.get("projectId"))
    command = b.get("commandToRun")
    if not isinstance(command, str) or not command.strip():
        raise ApiError(400, "commandToRun is required")
    env = _environment(p, b.get("environmentId"))
    ref = b.get("mainRepoGitRef")
    outcome: Outcome = "run"
    if isinstance(ref, dict) and ref.get("type") not in GIT_REF_TYPES:
        outcome = "bad-ref"                      # accepted, then the job dies (as on Domino)
    rule = next((r for r in emu.config.faults.job_rules if r.match in command), None)
    if rule is not None and outcome == "run":
        outcome = rule.outcome
    commit, tier = _commit(p, b.get("commitId")), _tier_id(p, b.get("overrideHardwareTierId"))
    revision = _revision(env, b.get("environmentRevisionSpec"))
    job_id = uuid.uuid4().hex[:24]
    job = EmulatedJob(id=job_id, number=emu.next_number(), project_id=p.id, owner=p.owner, project_name=p.name,
                      command=command, title=b.get("title"), commit_id=commit, git_ref=ref, hardware_tier_id=tier,
                      environment_id=env.id, revision_id=revision,
                      started_by=emu.config.username, dir=emu.work_dir / "jobs" / job_id, project_dir=p.dir,
                      outcome=outcome,
                      working_dir=(p.working_dir if emu.config.realistic else
                                   "/mnt/code" if emu.runner.isolate else str(p.dir)))
    if emu.config.realistic:
        job.stored_command = domino_quoting(command)
        job.on_finish = lambda _job: emu.commit_results(p)
    with emu.lock:
        emu.jobs[job_id] = job
        emu.started_jobs.append(job_id)
    run_env = {"DOMINO_API_HOST": emu.url, "DOMINO_PROJECT_OWNER": p.owner, "DOMINO_PROJECT_NAME": p.name,
               "DOMINO_PROJECT_ID": p.id, "DOMINO_RUN_ID": job_id, "DOMINO_RUN_NUMBER": str(job.number),
               "DOMINO_HARDWARE_TIER_ID": job.hardware_tier_id, "DOMINO_STARTING_USERNAME": emu.config.username,
               "DOMINO_WORKING_DIR": job.working_dir, "DOMINO_IS_GIT_BASED": str(p.git_head is not None).lower()}
    answer = job.to_json()      # as Domino answers a start: Queued, whatever the runner does next
    emu.runner.submit(job, queue_seconds=emu.config.faults.queue_seconds, env=run_env)
    return answer


@route("GET", "/v4/jobs/(?P<job_id>[^/]+)")
def _status(emu: DominoEmulator, params: dict[str, str], _: dict[str, str], __: Any) -> Any:
    return job_of(emu, params["job_id"]).to_json()


@route("GET", "/v4/jobs")
def _list(emu: DominoEmulator, _: dict[str, str], query: dict[str, str], __: Any) -> Any:
    p = project_by_id(emu, query.get("projectId"))
    size = int(query.get("page_size") or 3)      # python-domino documents 3 as Domino's default
    with emu.lock:
        jobs = sorted((j for j in emu.jobs.values() if j.project_id == p.id), key=lambda j: -j.number)
    return {"jobs": [j.to_json() for j in jobs[:size]], "totalCount": len(jobs)}


@route("POST", "/v4/jobs/stop")
def _stop(emu: DominoEmulator, _: dict[str, str], __: dict[str, str], body: Any) -> Any:
    b = _body(body)
    job = job_of(emu, b.get("jobId"))
    if b.get("projectId") != job.project_id:
        raise ApiError(400, "jobId does not belong to projectId")
    with emu.lock:
        emu.stop_calls.append(job.id)
    job.stop_requested.set()
    return job.to_json()


@route("GET", "/v1/projects/(?P<owner>[^/]+)/(?P<name>[^/]+)/run/(?P<job_id>[^/]+)/stdout")
def _stdout(emu: DominoEmulator, params: dict[str, str], _: dict[str, str], __: Any) -> Any:
    job = job_of(emu, params["job_id"])
    if (job.owner, job.project_name) != (params["owner"], params["name"]):
        raise ApiError(404, "Run not found in this project")
    return job.stdout_json()
