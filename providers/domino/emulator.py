"""A Domino API emulator: a real HTTP server on 127.0.0.1 that speaks the routes flows uses.

It knows a few projects (environments, hardware tiers, commits), checks credentials the way Domino
does (`X-Domino-Api-Key`, `Authorization: Bearer`, or trusts header-less calls as the in-run API
proxy), runs each job's command as a real subprocess (see `emulator_jobs`), records every request,
and injects faults on demand: 5xx answers, dropped connections, lost answers (done, then dropped),
slow queues, and jobs that fail, hang or die. Request bodies are read with Domino's field names
directly (not with the client's models), so a wrong name in the client shows up as a failure here.

    python -m providers.domino.emulator --port 8765 --project-dir . --api-key secret   # try flows offline
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import random
import re
import shutil
import signal
import socket
import ssl
import struct
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, Field, SecretStr

from providers.domino.emulator_jobs import GIT_REF_TYPES, EmulatedJob, JobRunner, Outcome

# ------------------------------------------------------------------------------------------- the world


class EnvironmentSpec(BaseModel):
    id: str
    name: str
    revisions: list[str]                 # oldest first; the last is the latest
    active_revision: str | None = None   # default: the first

    @property
    def active(self) -> str:
        return self.active_revision or self.revisions[0]


class HardwareTierSpec(BaseModel):
    id: str
    name: str
    is_default: bool = False
    cores: float = 1.0
    memory_gib: float = 4.0


class ProjectSpec(BaseModel):
    id: str
    owner: str
    name: str
    dir: Path                            # where job commands run
    commits: list[str]                   # DFS commits, oldest first; the last is the latest
    git_head: str | None = None          # a git-based project: the main repo's head commit
    environments: list[EnvironmentSpec]
    default_environment_id: str
    hardware_tiers: list[HardwareTierSpec]
    volume_size_gib: float = 10.0

    def environment(self, env_id: str) -> EnvironmentSpec | None:
        return next((e for e in self.environments if e.id == env_id), None)

    def tier(self, tier_id: str) -> HardwareTierSpec | None:
        return next((t for t in self.hardware_tiers if t.id == tier_id), None)

    @property
    def default_tier(self) -> HardwareTierSpec:
        return next((t for t in self.hardware_tiers if t.is_default), self.hardware_tiers[0])


class JobRule(BaseModel):
    match: str                           # a substring of commandToRun
    outcome: Literal["fail", "hang", "die"]


class Faults(BaseModel):
    error_rate: float = 0.0              # share of requests answered 500/502/503/504 (not processed)
    reset_rate: float = 0.0              # share of connections dropped before processing
    lost_response_rate: float = 0.0      # share processed, then the connection dropped (answer lost)
    seed: int = 0
    paths: list[str] = Field(default_factory=list)   # path prefixes the faults apply to (empty: all)
    queue_seconds: float = 0.0           # how long each job stays Queued
    job_rules: list[JobRule] = Field(default_factory=list)


class EmulatorConfig(BaseModel):
    projects: list[ProjectSpec]
    api_key: SecretStr | None = None
    tokens: list[SecretStr] = Field(default_factory=list)
    trust_proxy: bool = False            # accept calls with no credentials (we play the in-run API proxy)
    username: str = "flows-user"
    version: str = "6.0.0"
    faults: Faults = Field(default_factory=Faults)
    work_dir: Path | None = None         # where job folders go (default: a temporary folder)


def _hexid(*parts: object) -> str:
    """A 24-hex id, like Domino's Mongo ObjectIds, stable for the same parts."""
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:24]


def commit_sha(*parts: object) -> str:
    return hashlib.sha1(("commit/" + "/".join(map(str, parts))).encode()).hexdigest()


def demo_project(project_dir: Path, owner: str = "flows-user", name: str = "demo", *,
                 git: bool = False) -> ProjectSpec:
    """A small, realistic project: two environments (active ≠ latest revision) and three tiers."""
    envs = [EnvironmentSpec(id=_hexid(name, "env", i), name=env_name,
                            revisions=[_hexid(name, "env", i, "rev", r) for r in (1, 2)])
            for i, env_name in enumerate(["Domino Standard Environment Py3.11", "Flows Runtime Py3.11"])]
    tiers = [HardwareTierSpec(id="small-k8s", name="Small", is_default=True, cores=1, memory_gib=4),
             HardwareTierSpec(id="medium-k8s", name="Medium", cores=4, memory_gib=16),
             HardwareTierSpec(id="gpu-small-k8s", name="GPU (small)", cores=4, memory_gib=16)]
    return ProjectSpec(id=_hexid(owner, name), owner=owner, name=name, dir=project_dir,
                       commits=[commit_sha(owner, name, 1)], git_head=commit_sha(owner, name, "git", 1) if git else None,
                       environments=envs, default_environment_id=envs[0].id, hardware_tiers=tiers)


# ------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    auth: str                  # "api_key" | "bearer" | "none": the kind of credentials, never their value
    status: int | None         # None: the connection was dropped
    fault: str | None = None   # "error" | "reset" | "lost" | "override"


@dataclass
class _Override:
    method: str
    path: re.Pattern[str]
    status: int
    body: Any
    times: int | None


@dataclass(frozen=True)
class RawBody:
    """An answer that is not JSON (for tests of a misconfigured host)."""

    text: str
    content_type: str = "text/html"


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Handler = Callable[["DominoEmulator", dict[str, str], dict[str, str], Any], Any]
_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _ROUTES.append((method, re.compile("^" + pattern + "$"), fn))
        return fn
    return register


# ------------------------------------------------------------------------------------------ emulator


class DominoEmulator:
    """Start with `with DominoEmulator(config) as emu:` (or `.start()` / `.stop()`); `emu.url` is the host."""

    def __init__(self, config: EmulatorConfig, *, port: int = 0, tls: tuple[Path, Path] | None = None,
                 isolate: bool | None = None) -> None:
        self.config = config
        self.requests: list[RecordedRequest] = []
        self.jobs: dict[str, EmulatedJob] = {}
        self.started_jobs: list[str] = []
        self.stop_calls: list[str] = []
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._overrides: list[_Override] = []
        self._rng = random.Random(config.faults.seed)
        self._own_work_dir = config.work_dir is None
        self.work_dir = Path(config.work_dir or tempfile.mkdtemp(prefix="domino-emulator-"))
        self.runner = JobRunner(isolate=isolate)
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _RequestHandler)
        self._server.daemon_threads = True
        self._server.emulator = self  # type: ignore[attr-defined]
        scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.port = self._server.server_address[1]
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> DominoEmulator:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="domino-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.runner.shutdown()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(10)
            self._thread = None
        self._server.server_close()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> DominoEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"DominoEmulator({self.url!r}, projects={[p.owner + '/' + p.name for p in self.config.projects]})"

    # knobs and views for tests
    @property
    def project(self) -> ProjectSpec:
        return self.config.projects[0]

    def set_faults(self, **changes: Any) -> None:
        """Change fault injection on the fly (re-seeds the random draws)."""
        with self._lock:
            self.config.faults = self.config.faults.model_copy(update=changes)
            self._rng = random.Random(self.config.faults.seed)

    def override(self, method: str, path_regex: str, status: int, body: Any, times: int | None = None) -> None:
        """Answer matching requests with `status` and `body` (JSON, or `RawBody`) instead of the real route."""
        with self._lock:
            self._overrides.append(_Override(method, re.compile(path_regex), status, body, times))

    def new_commit(self, project: ProjectSpec | None = None) -> str:
        """Push a new commit to the project (and its git head, for a git project); returns it."""
        p = project or self.project
        with self._lock:
            sha = commit_sha(p.owner, p.name, len(p.commits) + 1)
            p.commits.append(sha)
            if p.git_head is not None:
                p.git_head = commit_sha(p.owner, p.name, "git", len(p.commits))
        return sha

    def calls(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, filtered by method and path prefix."""
        with self._lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and (path is None or r.path.startswith(path))]

    def job(self, job_id: str) -> EmulatedJob:
        return self.jobs[job_id]

    # request handling (called from the server's threads)
    def auth_kind(self, headers: Any) -> tuple[str, bool]:
        key = headers.get("X-Domino-Api-Key")
        if key is not None:
            expected = self.config.api_key
            return "api_key", expected is not None and key == expected.get_secret_value()
        authz = headers.get("Authorization")
        if authz is not None:
            token = authz[7:] if authz.startswith("Bearer ") else None
            return "bearer", token is not None and token in {t.get_secret_value() for t in self.config.tokens}
        return "none", self.config.trust_proxy

    def draw_fault(self, path: str) -> tuple[str | None, int]:
        faults = self.config.faults
        if faults.paths and not any(path.startswith(p) for p in faults.paths):
            return None, 0
        with self._lock:
            x, status = self._rng.random(), self._rng.choice((500, 502, 503, 504))
        if x < faults.error_rate:
            return "error", status
        x -= faults.error_rate
        if x < faults.reset_rate:
            return "reset", 0
        x -= faults.reset_rate
        if x < faults.lost_response_rate:
            return "lost", 0
        return None, 0

    def take_override(self, method: str, path: str) -> _Override | None:
        with self._lock:
            for o in self._overrides:
                if o.method == method and o.path.search(path) and (o.times is None or o.times > 0):
                    if o.times is not None:
                        o.times -= 1
                    return o
        return None

    def record(self, entry: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(entry)

    def dispatch(self, method: str, path: str, query: dict[str, str], body: Any, authorized: bool) -> tuple[int, Any]:
        for route_method, pattern, handler in _ROUTES:
            match = pattern.match(path)
            if match and route_method == method:
                if not authorized and path != "/version":   # /version is public (python-domino calls it first)
                    return 401, {"message": "Unauthorized: no valid credentials in the request"}
                try:
                    return 200, handler(self, match.groupdict(), query, body)
                except _ApiError as e:
                    return e.status, {"message": e.message}
        return 404, {"message": f"No route {method} {path}"}

    # helpers for the routes
    def project_by_id(self, project_id: Any) -> ProjectSpec:
        p = next((p for p in self.config.projects if p.id == project_id), None)
        if p is None:
            raise _ApiError(404, f"Project {project_id} not found")
        return p

    def job_of(self, job_id: Any) -> EmulatedJob:
        with self._lock:
            job = self.jobs.get(str(job_id))
        if job is None:
            raise _ApiError(404, f"Job {job_id} not found")
        return job


def _body(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise _ApiError(400, "The request body must be a JSON object")
    return body


def _revision(env: EnvironmentSpec, spec: Any) -> str:
    if spec in (None, "ActiveRevision"):
        return env.active
    if spec == "LatestRevision":
        return env.revisions[-1]
    if isinstance(spec, dict) and spec.get("revisionId") in env.revisions:
        return str(spec["revisionId"])
    raise _ApiError(400, f"Invalid environmentRevisionSpec {spec!r} for environment {env.id}")


def _tier_id(p: ProjectSpec, value: Any) -> str:
    if value is None:
        return p.default_tier.id
    if p.tier(str(value)) is None:
        raise _ApiError(400, f"Hardware tier {value} not found in project {p.owner}/{p.name}")
    return str(value)


def _environment(p: ProjectSpec, value: Any) -> EnvironmentSpec:
    env = p.environment(str(value if value is not None else p.default_environment_id))
    if env is None:
        raise _ApiError(400, f"Environment {value} is not usable in project {p.owner}/{p.name}")
    return env


def _commit(p: ProjectSpec, value: Any) -> str:
    if value is None:
        return p.commits[-1]
    if value not in p.commits:
        raise _ApiError(400, f"Commit {value} not found in project {p.owner}/{p.name}")
    return str(value)


# --------------------------------------------------------------------------------------------- routes


@route("GET", "/version")
def _version(emu: DominoEmulator, _: dict[str, str], __: dict[str, str], ___: Any) -> Any:
    return {"version": emu.config.version}


@route("GET", "/v4/gateway/projects/findProjectByOwnerAndName")
def _find_project(emu: DominoEmulator, _: dict[str, str], query: dict[str, str], __: Any) -> Any:
    owner, name = query.get("ownerName"), query.get("projectName")
    p = next((p for p in emu.config.projects if p.owner == owner and p.name == name), None)
    if p is None:
        raise _ApiError(404, f"Project {owner}/{name} not found")
    return {"id": p.id, "name": p.name, "ownerUsername": p.owner, "ownerId": _hexid(p.owner)}


@route("GET", "/v4/projects/(?P<pid>[^/]+)/useableEnvironments")
def _environments(emu: DominoEmulator, params: dict[str, str], _: dict[str, str], __: Any) -> Any:
    p = emu.project_by_id(params["pid"])
    envs = [{"id": e.id, "name": e.name, "visibility": "Global",
             "activeRevision": {"id": e.active}, "latestRevision": {"id": e.revisions[-1]}} for e in p.environments]
    return {"environments": envs, "currentlySelectedEnvironment": {"id": p.default_environment_id}}


@route("GET", "/v4/projects/(?P<pid>[^/]+)/hardwareTiers")
def _tiers(emu: DominoEmulator, params: dict[str, str], _: dict[str, str], __: Any) -> Any:
    p = emu.project_by_id(params["pid"])
    return [{"hardwareTier": {"id": t.id, "name": t.name, "isDefault": t.is_default,
                              "hwtResources": {"cores": t.cores, "memory": {"value": t.memory_gib, "unit": "GiB"}},
                              "centsPerMinute": 0.0}} for t in p.hardware_tiers]


@route("GET", "/v1/projects/(?P<owner>[^/]+)/(?P<name>[^/]+)/commits")
def _commits(emu: DominoEmulator, params: dict[str, str], _: dict[str, str], __: Any) -> Any:
    p = next((p for p in emu.config.projects if p.owner == params["owner"] and p.name == params["name"]), None)
    if p is None:
        raise _ApiError(404, "Project not found")
    return list(reversed(p.commits))


@route("POST", "/v4/jobs/(?P<pid>[^/]+)/resolveJobDefaults")
def _resolve_defaults(emu: DominoEmulator, params: dict[str, str], _: dict[str, str], body: Any) -> Any:
    """UNCONFIRMED in detail: required answer fields from Domino's generated v4 schema; a specific
    revision in the plugin's `SomeRevision` form; a git ref resolved to the head commit."""
    b, p = _body(body), emu.project_by_id(params["pid"])
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
    p = emu.project_by_id(b.get("projectId"))
    command = b.get("commandToRun")
    if not isinstance(command, str) or not command.strip():
        raise _ApiError(400, "commandToRun is required")
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
    job = EmulatedJob(id=job_id, number=next(emu._numbers), project_id=p.id, owner=p.owner, project_name=p.name,
                      command=command, title=b.get("title"), commit_id=commit, git_ref=ref, hardware_tier_id=tier,
                      environment_id=env.id, revision_id=revision,
                      started_by=emu.config.username, dir=emu.work_dir / "jobs" / job_id, project_dir=p.dir,
                      outcome=outcome)
    with emu._lock:
        emu.jobs[job_id] = job
        emu.started_jobs.append(job_id)
    run_env = {"DOMINO_API_HOST": emu.url, "DOMINO_PROJECT_OWNER": p.owner, "DOMINO_PROJECT_NAME": p.name,
               "DOMINO_PROJECT_ID": p.id, "DOMINO_RUN_ID": job_id, "DOMINO_RUN_NUMBER": str(job.number),
               "DOMINO_HARDWARE_TIER_ID": job.hardware_tier_id, "DOMINO_STARTING_USERNAME": emu.config.username}
    answer = job.to_json()      # as Domino answers a start: Queued, whatever the runner does next
    emu.runner.submit(job, queue_seconds=emu.config.faults.queue_seconds, env=run_env)
    return answer


@route("GET", "/v4/jobs/(?P<job_id>[^/]+)")
def _status(emu: DominoEmulator, params: dict[str, str], _: dict[str, str], __: Any) -> Any:
    return emu.job_of(params["job_id"]).to_json()


@route("GET", "/v4/jobs")
def _list(emu: DominoEmulator, _: dict[str, str], query: dict[str, str], __: Any) -> Any:
    p = emu.project_by_id(query.get("projectId"))
    size = int(query.get("page_size") or 3)      # python-domino documents 3 as Domino's default
    with emu._lock:
        jobs = sorted((j for j in emu.jobs.values() if j.project_id == p.id), key=lambda j: -j.number)
    return {"jobs": [j.to_json() for j in jobs[:size]], "totalCount": len(jobs)}


@route("POST", "/v4/jobs/stop")
def _stop(emu: DominoEmulator, _: dict[str, str], __: dict[str, str], body: Any) -> Any:
    b = _body(body)
    job = emu.job_of(b.get("jobId"))
    if b.get("projectId") != job.project_id:
        raise _ApiError(400, "jobId does not belong to projectId")
    with emu._lock:
        emu.stop_calls.append(job.id)
    job.stop_requested.set()
    return job.to_json()


@route("GET", "/v1/projects/(?P<owner>[^/]+)/(?P<name>[^/]+)/run/(?P<job_id>[^/]+)/stdout")
def _stdout(emu: DominoEmulator, params: dict[str, str], _: dict[str, str], __: Any) -> Any:
    job = emu.job_of(params["job_id"])
    if (job.owner, job.project_name) != (params["owner"], params["name"]):
        raise _ApiError(404, "Run not found in this project")
    return job.stdout_json()


# ---------------------------------------------------------------------------------------- HTTP layer


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"     # keep-alive, like a real gateway (so dropped connections matter)
    timeout = 10                      # idle keep-alive connections end, so their threads do too
    server_version = "DominoEmulator/1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: requests are recorded
        return

    def _serve(self, method: str) -> None:
        emu: DominoEmulator = self.server.emulator  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        kind, authorized = emu.auth_kind(self.headers)

        def record(status: int | None, body: Any, fault: str | None = None) -> None:
            emu.record(RecordedRequest(method, url.path, query, body, kind, status, fault))

        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            record(400, raw.decode(errors="replace"))
            self._send(400, {"message": "Malformed JSON in request body"})
            return
        fault, fault_status = emu.draw_fault(url.path)
        if fault == "reset":
            record(None, body, fault)
            self._drop()
            return
        if fault == "error":
            record(fault_status, body, fault)
            self._send(fault_status, {"message": "emulated server error"})
            return
        override = emu.take_override(method, url.path)
        if override is not None:
            record(override.status, body, "override")
            self._send(override.status, override.body)
            return
        status, answer = emu.dispatch(method, url.path, query, body, authorized)
        if fault == "lost":
            record(None, body, fault)
            self._drop()
            return
        record(status, body)
        self._send(status, answer)

    def _send(self, status: int, answer: Any) -> None:
        if isinstance(answer, RawBody):
            data, ctype = answer.text.encode(), answer.content_type
        else:
            data, ctype = json.dumps(answer).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        """Close with a TCP reset and no answer: what a crashed gateway or a cut network looks like."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass


# ----------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m providers.domino.emulator",
                                 description="A local Domino API emulator: try flows' domino provider offline.")
    ap.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port)")
    ap.add_argument("--project-dir", type=Path, required=True, help="the project folder jobs run in")
    ap.add_argument("--api-key", help="the API key clients must send (X-Domino-Api-Key)")
    ap.add_argument("--token", action="append", default=[], help="a bearer token clients may send (repeatable)")
    ap.add_argument("--trust-proxy", action="store_true", help="accept calls without credentials (API proxy mode)")
    ap.add_argument("--owner", default="flows-user")
    ap.add_argument("--project", default="demo")
    ap.add_argument("--queue-seconds", type=float, default=0.0)
    ap.add_argument("--error-rate", type=float, default=0.0)
    ap.add_argument("--reset-rate", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work-dir", type=Path, help="keep job folders here (default: a temporary folder)")
    args = ap.parse_args(argv)
    if not args.project_dir.is_dir():
        ap.error(f"--project-dir {args.project_dir} is not a folder")
    if not (args.api_key or args.token or args.trust_proxy):
        ap.error("give --api-key, --token or --trust-proxy")
    config = EmulatorConfig(
        projects=[demo_project(args.project_dir.resolve(), args.owner, args.project)],
        api_key=args.api_key, tokens=args.token, trust_proxy=args.trust_proxy, work_dir=args.work_dir,
        faults=Faults(queue_seconds=args.queue_seconds, error_rate=args.error_rate, reset_rate=args.reset_rate,
                      seed=args.seed))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with DominoEmulator(config, port=args.port) as emu:
        print(f"Domino emulator on {emu.url}", flush=True)
        print(f"  export DOMINO_API_HOST={emu.url} DOMINO_PROJECT_OWNER={args.owner} "
              f"DOMINO_PROJECT_NAME={args.project}" + (" DOMINO_USER_API_KEY=<your --api-key>" if args.api_key else ""),
              flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
