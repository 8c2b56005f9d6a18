"""`DominoClient`: the few Domino REST calls the reconciler needs, over `Transport`.

Routes and field names are python-domino's (`domino/routes.py`, `domino/domino.py`). Settings come
from the usual Domino variables, so inside a workspace no configuration is needed.
"""
from __future__ import annotations

import html
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

from providers.domino.auth import ENV_PROXY, DominoAuth, ProxyAuth, auth_from_env
from providers.domino.models import (HARDWARE_TIER_LIST, Environment, HardwareTier, Job, JobDefaultsRequest,
                                     JobList, JobSummary, ProjectInfo, ResolvedJobProperties, RunStdout,
                                     StartJobRequest, UseableEnvironments, VersionInfo, parse_answer)
from providers.domino.transport import DominoCallError, RetryPolicy, Transport, clean_host, log
from vocab.errors import ProviderError

_FALSE = {"false", "f", "n", "no", "0"}     # python-domino's spellings of DOMINO_VERIFY_CERTIFICATE=false
_MARKUP = re.compile(r"</?(pre|span)\b[^>]*>")
# A job found by its title counts as ours only if submitted after we first tried (minus clock skew).
_DEDUPE_SKEW_MS = 120_000


class DominoSettings(BaseModel):
    host: str
    owner: str | None = None
    project: str | None = None
    project_id: str | None = None
    verify: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DominoSettings:
        env = os.environ if env is None else env
        host = env.get("DOMINO_API_HOST") or ""
        if not host and env.get(ENV_PROXY):     # a run with only the proxy: it is the API too
            host = ProxyAuth(env[ENV_PROXY], source=ENV_PROXY).proxy
        if not host:
            raise ProviderError("DOMINO_API_HOST is not set (the URL of your Domino, e.g. https://domino.example.com)")
        owner, name, pid = (env.get(k) or None for k in ("DOMINO_PROJECT_OWNER", "DOMINO_PROJECT_NAME",
                                                         "DOMINO_PROJECT_ID"))
        if not pid and not (owner and name):
            raise ProviderError("no Domino project: set DOMINO_PROJECT_OWNER and DOMINO_PROJECT_NAME "
                                "(or DOMINO_PROJECT_ID)")
        verify = (env.get("DOMINO_VERIFY_CERTIFICATE") or "true").strip().lower() not in _FALSE
        return cls(host=clean_host(host), owner=owner, project=name, project_id=pid, verify=verify)

    @property
    def project_label(self) -> str:
        return f"{self.owner}/{self.project}" if self.owner and self.project else f"id {self.project_id}"


class DominoClient:
    """One Domino project's jobs API. Thread-safe for concurrent calls (requests' pool)."""

    def __init__(self, settings: DominoSettings, auth: DominoAuth, *, policy: RetryPolicy | None = None,
                 poll_interval: float = 2.0, max_poll_interval: float = 30.0, start_attempts: int = 4) -> None:
        self.settings = settings
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.start_attempts = start_attempts
        if not settings.verify:
            log.warning("DOMINO_VERIFY_CERTIFICATE=false: TLS certificates of %s are not checked", settings.host)
        self.http = Transport(settings.host, auth, verify=settings.verify, policy=policy)
        self._lock = threading.Lock()
        self._lists: dict[str, list[Any]] = {}
        self._list_locks: dict[str, threading.Lock] = {}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> DominoClient:
        return cls(DominoSettings.from_env(env), auth_from_env(env), **kwargs)

    def __repr__(self) -> str:
        return f"DominoClient({self.settings.host!r}, project={self.settings.project_label!r}, auth={self.http.auth!r})"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> DominoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------------- the project

    def version(self) -> str:
        return parse_answer(VersionInfo, self.http.call("GET", "/version", "GET /version"), "GET /version").version

    def project_id(self) -> str:
        with self._lock:
            return self._project_id

    @cached_property
    def _project_id(self) -> str:
        s = self.settings
        if s.project_id:
            return s.project_id
        endpoint = "GET /v4/gateway/projects/findProjectByOwnerAndName"
        unknown = (f"unknown Domino project {s.owner}/{s.project} (check DOMINO_PROJECT_OWNER and "
                   f"DOMINO_PROJECT_NAME, and that these credentials can see it)")
        data = self.http.call("GET", "/v4/gateway/projects/findProjectByOwnerAndName", endpoint,
                              params={"ownerName": s.owner or "", "projectName": s.project or ""}, not_found=unknown)
        if not isinstance(data, dict) or not data.get("id"):   # python-domino: no `id` means not found
            raise ProviderError(unknown)
        return parse_answer(ProjectInfo, data, endpoint).id

    def environments(self) -> list[Environment]:
        endpoint = "GET /v4/projects/{projectId}/useableEnvironments"
        data = self.http.call("GET", f"/v4/projects/{self._q(self.project_id())}/useableEnvironments", endpoint)
        return parse_answer(UseableEnvironments, data, endpoint).environments

    def hardware_tiers(self) -> list[HardwareTier]:
        endpoint = "GET /v4/projects/{projectId}/hardwareTiers"
        data = self.http.call("GET", f"/v4/projects/{self._q(self.project_id())}/hardwareTiers", endpoint)
        return [entry.hardware_tier for entry in parse_answer(HARDWARE_TIER_LIST, data, endpoint)]

    def resolve_environment_id(self, name: str) -> str:
        envs = self._listed("environments", self.environments)
        return _one_by_name("environment", name, [(e.id, e.name) for e in envs], self.settings.project_label)

    def resolve_hardware_tier_id(self, name: str) -> str:
        tiers = self._listed("tiers", self.hardware_tiers)
        return _one_by_name("hardware tier", name, [(t.id, t.name) for t in tiers], self.settings.project_label)

    def _listed(self, what: str, fetch: Callable[[], list[Any]]) -> list[Any]:
        """The project's environments / hardware tiers, asked once per client (one command): a flow names the
        same few in every node."""
        with self._lock:
            lock = self._list_locks.setdefault(what, threading.Lock())
        with lock:  # concurrent planners wait for the one request instead of each sending it
            if what not in self._lists:
                self._lists[what] = fetch()
            return self._lists[what]

    def resolve_job_defaults(self, request: JobDefaultsRequest | None = None) -> ResolvedJobProperties:
        """What a job would really run with: omitted properties filled from the project's defaults
        (latest commit, default hardware tier and environment, active revision, ...). Starts nothing."""
        endpoint = "POST /v4/jobs/{projectId}/resolveJobDefaults"
        body = (request or JobDefaultsRequest()).body()
        data = self.http.call("POST", f"/v4/jobs/{self._q(self.project_id())}/resolveJobDefaults", endpoint, json=body)
        return parse_answer(ResolvedJobProperties, data, endpoint)

    # ---------------------------------------------------------------------------------------- jobs

    def start_job(self, request: StartJobRequest) -> Job:
        """Start one job. If Domino's answer is lost (dropped connection, 500/502/504) the job may exist
        anyway: look for it by title and command before trying again, so a flaky network never starts
        the same job twice. Give the job a title unique to this attempt (Domino keeps titles verbatim, but
        stores the command in its own quoting, so the command cannot be compared)."""
        endpoint = "POST /v4/jobs/start"
        body = {"projectId": self.project_id(), **request.body()}
        first_try_ms = int(time.time() * 1000)
        for attempt in range(1, self.start_attempts + 1):
            try:
                data = self.http.call("POST", "/v4/jobs/start", endpoint, json=body)
                return parse_answer(Job, data, endpoint)
            except DominoCallError as e:
                if not e.maybe_done:
                    raise
                found = self._find_started(request, first_try_ms)
                if found is not None:
                    log.info("job start answer lost; found the started job %s", found)
                    return self.job_status(found)
                if attempt == self.start_attempts:
                    raise
                log.info("job start failed (%s); no job was created, trying again", e)
        raise AssertionError("unreachable")

    def _find_started(self, request: StartJobRequest, since_ms: int) -> str | None:
        for job in self.list_jobs():
            submitted = job.stage_time.submission_time if job.stage_time else None
            if job.title == request.title and (submitted is None or submitted >= since_ms - _DEDUPE_SKEW_MS):
                return job.id
        return None

    def list_jobs(self, page_size: int = 50) -> list[JobSummary]:
        """The project's most recent jobs, newest first (python-domino's `jobs_list` query)."""
        endpoint = "GET /v4/jobs"
        params = {"projectId": self.project_id(), "order_by": "number", "sort_by": "desc",
                  "page_size": str(page_size), "page_no": "1", "show_archived": "false", "status": "all"}
        return parse_answer(JobList, self.http.call("GET", "/v4/jobs", endpoint, params=params), endpoint).jobs

    def job_status(self, job_id: str) -> Job:
        endpoint = "GET /v4/jobs/{jobId}"
        data = self.http.call("GET", f"/v4/jobs/{self._q(job_id)}", endpoint,
                              not_found=f"Domino has no job {job_id}")
        return parse_answer(Job, data, endpoint)

    def stop_job(self, job_id: str, commit_results: bool = False) -> None:
        """Ask Domino to stop a job (a no-op for a finished one). Results are not committed to the
        project by default: flows keeps its outputs in its own blob store."""
        body = {"projectId": self.project_id(), "jobId": job_id, "commitResults": commit_results}
        self.http.call("POST", "/v4/jobs/stop", "POST /v4/jobs/stop", json=body,
                       not_found=f"Domino has no job {job_id} to stop")

    def job_stdout(self, job_id: str, include_setup: bool = False) -> str:
        """The job's stdout as plain text (the v1 route works for v4 job ids; needs owner and name)."""
        s = self.settings
        if not (s.owner and s.project):
            raise ProviderError("fetching job logs needs DOMINO_PROJECT_OWNER and DOMINO_PROJECT_NAME")
        endpoint = "GET /v1/projects/{owner}/{project}/run/{jobId}/stdout"
        path = f"/v1/projects/{self._q(s.owner)}/{self._q(s.project)}/run/{self._q(job_id)}/stdout"
        answer = parse_answer(RunStdout, self.http.call("GET", path, endpoint,
                                                        not_found=f"Domino has no logs for job {job_id}"), endpoint)
        parts = [answer.setup or ""] if include_setup and answer.setup else []
        parts.append(answer.stdout)
        return "\n".join(_plain_log(p) for p in parts)

    def wait_for_job(self, job_id: str, *, timeout: float | None = None, cancel: threading.Event | None = None,
                     on_status: Callable[[Job], None] | None = None) -> Job:
        """Poll until the job completes, `timeout` seconds pass or `cancel` is set; returns the last
        status seen (check `.is_completed`). Polls back off from `poll_interval` to `max_poll_interval`."""
        pause = cancel or threading.Event()
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = self.poll_interval
        while True:
            job = self.job_status(job_id)
            if on_status is not None:
                on_status(job)
            if job.is_completed:
                return job
            wait = interval if deadline is None else min(interval, deadline - time.monotonic())
            if wait <= 0 or pause.wait(wait):
                return job
            interval = min(interval * 1.5, self.max_poll_interval)

    @staticmethod
    def _q(part: str) -> str:
        return quote(part, safe="")


def _one_by_name(kind: str, name: str, items: list[tuple[str, str]], project: str) -> str:
    matches = [item_id for item_id, item_name in items if item_name == name]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ProviderError(f"{kind} name '{name}' is ambiguous in Domino project {project} "
                            f"({len(matches)} match; give its id instead)")
    known = ", ".join(sorted(n for _, n in items)) or "none"
    raise ProviderError(f"unknown {kind} '{name}' in Domino project {project} (available: {known})")


def _plain_log(text: str) -> str:
    """Domino wraps logs in <pre>/<span> markup (python-domino strips the same tags)."""
    return html.unescape(_MARKUP.sub("", text))
