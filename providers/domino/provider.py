"""The Domino provider: each invalidated node becomes one Domino Job.

Inputs and outputs travel through the S3 blob store by presigned URLs (`providers.domino.staging`): the
job's command is a short Python bootstrap carrying one URL, the attempt's manifest, so a job needs only a
`python3` and network access to S3 (no credentials, nothing installed). The in-job runtime
(`providers.domino.runtime`, standard library only) checks the code, fills `/workflow/inputs`, runs the
node's command, uploads `/workflow/outputs` to per-attempt staging keys and prints one result line; the
provider verifies the staged outputs and stores them content-addressed.

Code identity is content, as locally: the digests of the files a command uses (or a @task's source),
never Domino's commit (every DFS job writes a new one). The job checks those files before running. Each
job's title ends with a tag (`[flows-<attempt marker>.<nonce>]`), which Domino keeps verbatim: recover finds
a job it started but never journaled by the attempt's marker, whatever Domino does to the command's quoting;
the nonce makes each start's tag (and its staging keys) its own, even when an attempt is started again.
"""
from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from providers.base import EndedCallback, InputValue, JobHandle, JobResult, JobSpec, NodeSpec, StatusCallback
from providers.domino.client import DominoClient
from providers.domino.models import GitRef, JobDefaultsRequest, StartJobRequest
from providers.domino.staging import Staging, attempt_marker, code_files_of
from providers.domino.watcher import JobWatcher
from vocab.canonical import canonical_json
from vocab.digest import TreeError
from vocab.errors import FlowLoadError, FlowsError, ProviderError
from vocab.flytetypes import is_blob, is_dir
from vocab.masking import redact

RESULT_MARKER = "::flows-result::"
LOG_TAIL_LINES = 20
START_IN_FLIGHT = 30.0  # seconds: Domino answers a start in a few; a request sent before a crash is served by then
FIND_JOBS = 200  # how far back the project's job list is searched for a start that was not journaled


def decode_result(log: str) -> dict[str, Any] | None:
    for line in reversed(log.splitlines()):
        idx = line.find(RESULT_MARKER)
        if idx >= 0:
            payload = line[idx + len(RESULT_MARKER):].strip()
            try:
                return json.loads(base64.b64decode(payload))
            except ValueError:
                return None
    return None


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    kept = [ln for ln in text.splitlines() if RESULT_MARKER not in ln]
    return "\n".join(kept[-lines:])


def _git_ref(value: Any) -> GitRef | None:
    if not value:
        return None
    if isinstance(value, dict):
        return GitRef(type=value.get("Type") or value.get("type") or "head", value=value.get("Value") or value.get("value"))
    return None


def _revision(value: Any) -> Any:
    """DominoJobConfig's EnvironmentRevisionSpec record -> the API's string or {revisionId} form."""
    if not value:
        return None
    if isinstance(value, dict):
        kind = value.get("EnvironmentRevisionType")
        rid = value.get("EnvironmentRevisionId")
        if kind == "SomeRevision" or rid:
            return {"_type": "domino.environments.api.SomeRevision", "revisionId": rid}
        return kind
    return value


def _revision_record(spec: Any) -> Any:
    """The API's revision back to the config's shape, for the fingerprint."""
    if isinstance(spec, dict):
        return {"EnvironmentRevisionType": "SomeRevision", "EnvironmentRevisionId": spec.get("revisionId")}
    return spec


def _tier(value: Any) -> dict[str, Any] | None:
    if value in (None, ""):
        return None
    return value if isinstance(value, dict) else {"value": value}


def cluster_properties(value: Any) -> dict[str, Any] | None:
    """DominoJobConfig's ComputeClusterProperties -> `computeClusterProperties` of POST /v4/jobs/start (names as
    python-domino sends them; the tiers wrapped as `{"value": id}`, storage as `{"value", "unit"}`)."""
    if not value:
        return None
    body = {"clusterType": value.get("ClusterType"), "computeEnvironmentId": value.get("ComputeEnvironmentId"),
            "computeEnvironmentRevisionSpec": _revision(value.get("ComputeEnvironmentRevisionSpec")),
            "masterHardwareTierId": _tier(value.get("MasterHardwareTierId")),
            "workerHardwareTierId": _tier(value.get("WorkerHardwareTierId") or value.get("WorkerHardareTierId")),
            "workerCount": value.get("WorkerCount"), "maxWorkerCount": value.get("MaxWorkerCount"),
            "workerStorage": ({"value": value["WorkerStorageGiB"], "unit": "GiB"}
                              if value.get("WorkerStorageGiB") is not None else None),
            "extraConfigs": value.get("ExtraConfigs")}
    return {k: v for k, v in body.items() if v not in (None, "", {})}


# Settings a flow may give that POST /v4/jobs/start cannot take: refused at plan time, never dropped.
UNSENDABLE = {
    "DatasetSnapshots": "POST /v4/jobs/start has no dataset-snapshot field (Domino mounts the project's datasets); "
                        "remove it, or run this flow with pyflyte",
}
# Settings that only matter to Domino Flows' own agent, or that flows itself handles.
NOT_JOB_SETTINGS = {"OwnerName", "ProjectName", "Username", "EnvironmentName", "HardwareTierName", "ProjectId"}
SENT = {"Title", "CommitId", "MainRepoGitRef", "HardwareTierId", "EnvironmentId", "EnvironmentRevisionSpec",
        "VolumeSizeGiB", "ExternalVolumeMountIds", "ComputeClusterProperties", "NetAppVolumeSnapshots"}
TITLE_LIMIT = 200


_TAG = re.compile(r"\[(flows-[0-9a-f]{16}\.[0-9a-f]{8})\]$")


def job_title(cfg: dict[str, Any], address: str, tag: str) -> str:
    """The flow's Title (or `flows: <node>`), ending with the start's tag, which Domino keeps verbatim."""
    tail = f" [{tag}]"
    base = str(cfg.get("Title") or f"flows: {address}")
    return base[:TITLE_LIMIT - len(tail)] + tail


def _netapp_volume_ids(value: Any, address: str) -> list[str] | None:
    if not value:
        return None
    ids = []
    for snap in value:
        if snap.get("Version") not in (None, "", 0):
            raise FlowLoadError("a NetApp volume snapshot version cannot be sent to Domino's job start (it takes "
                                "volume ids only); leave Version out to mount the volume", node=address,
                                field="NetAppVolumeSnapshots")
        ids.append(str(snap.get("Id")))
    return ids


def _local_head(project_root: Path, files: list[str]) -> str | None:
    """The checkout's HEAD commit when the code files are committed there unchanged and HEAD is on a remote
    branch (so Domino can check it out); None otherwise, and then the job runs the project's head."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(project_root), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    head = git("rev-parse", "--verify", "HEAD")
    if not head or not files:
        return None
    if git("status", "--porcelain", "--", *files) != "" or not git("branch", "-r", "--contains", head):
        return None
    return head


class DominoProvider:
    name = "domino"
    max_parallel: int | None = None
    jobs_outlive_the_process = True  # a Domino Job runs on whatever happens to the apply that started it
    resolves_remotely = True  # resolve_config asks Domino: no no-op receipt; distinct configs resolved in parallel
    # A start in flight when its apply died is still served: recover waits this long after the journaled intent
    # before it concludes the start never reached Domino (a second job would run the same node twice).
    start_in_flight_seconds = START_IN_FLIGHT

    def __init__(self, client: DominoClient, blobs: Any, *, runtime_python: str | None = None,
                 blobs_settings: dict[str, Any] | None = None) -> None:
        if not blobs.url.startswith("s3://"):
            raise ProviderError("the Domino provider moves inputs and outputs through S3: set "
                                "[tool.flows.blobs] url = \"s3://bucket/prefix/\"")
        self.client = client
        self.blobs = blobs
        self.staging = Staging(blobs)
        # The Pythons the bootstrap tries in the job, in order (`runtime_python` first when configured).
        self.pythons = ([runtime_python] if runtime_python else []) + ["python3", "python"]
        self.blobs_settings = blobs_settings or {}
        self.warnings: list[str] = []
        self._resolved: dict[str, dict[str, Any]] = {}
        self._git_based = False
        self._lock = threading.Lock()
        # One poller for every job this apply waits on (providers/domino/watcher.py).
        self.watcher = JobWatcher(client, client.poll_interval, client.max_poll_interval)
        self._clearing = ThreadPoolExecutor(2, thread_name_prefix="domino-staging-clear")

    @classmethod
    def from_config(cls, cfg: Any, blobs: Any) -> "DominoProvider":
        from providers.domino.transport import RetryPolicy
        extra = cfg.provider.model_extra or {}
        kwargs: dict[str, Any] = {"poll_interval": float(extra.get("poll_interval", 1.0)),
                                  "max_poll_interval": float(extra.get("max_poll_interval", 30.0))}
        if "retries" in extra or "retry_backoff" in extra:
            kwargs["policy"] = RetryPolicy(retries=int(extra.get("retries", 6)),
                                           backoff=float(extra.get("retry_backoff", 0.5)))
        client = DominoClient.from_env(**kwargs)
        settings = {"region": cfg.blobs.region, "endpoint_url": cfg.blobs.endpoint_url}
        python = extra.get("runtime_python")
        return cls(client, blobs, runtime_python=str(python) if python else None,
                   blobs_settings={k: v for k, v in settings.items() if v})

    # -- plan time ---------------------------------------------------------------------------
    def resolve_config(self, node: NodeSpec) -> dict[str, Any]:
        """Names -> ids, and the project's defaults (environment, revision, tier, volume size) when the node
        asks for them: what the job will really run with goes into the fingerprint. The project's commit
        does not (it is not the code's identity: `code_identity` is); a CommitId or MainRepoGitRef written
        in the flow stays. A setting Domino's job start cannot take is an error naming node and field."""
        if node.kind == "export_artifacts":
            return dict(node.job_config)
        cache_id = canonical_json([node.job_config, node.resolve_defaults])
        with self._lock:
            if cache_id in self._resolved:
                return dict(self._resolved[cache_id])
        cfg = dict(node.job_config)
        for field, why in UNSENDABLE.items():
            if cfg.get(field):
                raise FlowLoadError(f"{field} cannot reach Domino: {why}", node=node.address, field=field)
        unknown = sorted(set(cfg) - SENT - NOT_JOB_SETTINGS - set(UNSENDABLE))
        if unknown:
            raise FlowLoadError(f"{unknown[0]} is not a setting flows can send to Domino's job start",
                                node=node.address, field=unknown[0])
        _netapp_volume_ids(cfg.get("NetAppVolumeSnapshots"), node.address)
        env_name = cfg.get("EnvironmentName") if not cfg.get("EnvironmentId") else None
        tier_name = cfg.get("HardwareTierName") if not cfg.get("HardwareTierId") else None
        if env_name and tier_name:  # two independent lists (after the project's id): one round trip, not two
            self.client.project_id()
            with ThreadPoolExecutor(2) as pool:
                env_id = pool.submit(self.client.resolve_environment_id, env_name)
                tier_id = pool.submit(self.client.resolve_hardware_tier_id, tier_name)
                cfg["EnvironmentId"], cfg["HardwareTierId"] = env_id.result(), tier_id.result()
        elif env_name:
            cfg["EnvironmentId"] = self.client.resolve_environment_id(env_name)
        elif tier_name:
            cfg["HardwareTierId"] = self.client.resolve_hardware_tier_id(tier_name)
        resolved = self.client.resolve_job_defaults(JobDefaultsRequest(
            commit_id=cfg.get("CommitId"), main_repo_git_ref=_git_ref(cfg.get("MainRepoGitRef")),
            hardware_tier_id=cfg.get("HardwareTierId"), environment_id=cfg.get("EnvironmentId"),
            environment_revision_spec=_revision(cfg.get("EnvironmentRevisionSpec")),
            external_volume_mount_ids=cfg.get("ExternalVolumeMountIds"),
            volume_size_gib=cfg.get("VolumeSizeGiB")))
        with self._lock:
            self._git_based = self._git_based or resolved.main_repo_git_ref is not None
        if node.resolve_defaults:
            cfg.setdefault("EnvironmentId", resolved.environment_id)
            cfg.setdefault("HardwareTierId", resolved.hardware_tier_id.value)
            cfg.setdefault("EnvironmentRevisionSpec", _revision_record(resolved.environment_revision_spec))
            cfg.setdefault("VolumeSizeGiB", resolved.volume_size_gib)
            if resolved.external_volume_mount_ids and not cfg.get("ExternalVolumeMountIds"):
                cfg["ExternalVolumeMountIds"] = list(resolved.external_volume_mount_ids)
        cfg["ProjectId"] = self.client.project_id()
        with self._lock:
            self._resolved[cache_id] = cfg
        return dict(cfg)

    # -- run time ----------------------------------------------------------------------------
    def _upload_input(self, name: str, value: InputValue, address: str) -> InputValue:
        if not is_blob(value.type) or not value.uri or value.uri.startswith("s3://"):
            return value
        path = Path(value.uri)
        try:
            stored = self.blobs.put_dir(path) if is_dir(value.type) else self.blobs.put_file(path, value.digest)
        except TreeError as e:  # the directory changed since the plan digested it under the same rule
            raise ProviderError(redact(f"input '{name}': {path / e.rel} {e.reason}"), node=address) from None
        return value.model_copy(update={"uri": stored.uri, "digest": stored.digest})

    def _check_task(self, job: JobSpec) -> None:
        if job.kind != "python":
            return
        if not job.python:
            raise ProviderError("python task without a function reference", node=job.address)
        rel = Path(os.path.relpath(job.python["file"], job.project_root))
        if rel.parts and rel.parts[0] == "..":
            raise ProviderError(f"the @task is defined in {job.python['file']}, outside the project "
                                f"{job.project_root}: a Domino job sees only the project (in its working "
                                "directory), so it cannot import it; move the module into the project",
                                node=job.address)

    def _pinned_ref(self, cfg: dict[str, Any], job: JobSpec) -> GitRef | None:
        """The flow's MainRepoGitRef, else (git-based project) this checkout's HEAD when it holds the code."""
        written = _git_ref(cfg.get("MainRepoGitRef"))
        if written is not None or cfg.get("CommitId") or not self._git_based:
            return written
        head = _local_head(Path(job.project_root), code_files_of(job))
        return GitRef(type="commitId", value=head) if head else None

    def prepare(self, job: JobSpec) -> None:
        """Nothing to do early: the inputs are staged by the start itself (its manifest names them)."""

    def start(self, job: JobSpec) -> JobHandle:
        if job.kind == "export_artifacts":
            raise ProviderError("artifact exports are not run by the Domino provider yet (Domino's export task is "
                                "not public); run them on Domino with pyflyte", node=job.address)
        self._check_task(job)
        inputs = {name: self._upload_input(name, v, job.address) for name, v in job.inputs.items()}
        tag = f"{attempt_marker(job.run_id, job.address, job.attempt)}.{secrets.token_hex(4)}"
        env = {"FLOWS_RUN_ID": job.run_id, "FLOWS_NODE": job.address, "DOMINO_IS_WORKFLOW_JOB": "true"}
        command = self.staging.prepare(job, inputs, tag, self.pythons, env)
        cfg = dict(job.job_config)
        request = StartJobRequest(
            command_to_run=command, title=job_title(cfg, job.address, tag), commit_id=cfg.get("CommitId"),
            main_repo_git_ref=self._pinned_ref(cfg, job),
            override_hardware_tier_id=cfg.get("HardwareTierId"), environment_id=cfg.get("EnvironmentId"),
            environment_revision_spec=_revision(cfg.get("EnvironmentRevisionSpec")),
            external_volume_mounts=cfg.get("ExternalVolumeMountIds") or None,
            net_app_volume_ids=_netapp_volume_ids(cfg.get("NetAppVolumeSnapshots"), job.address),
            override_volume_size_gib=cfg.get("VolumeSizeGiB"),
            compute_cluster_properties=cluster_properties(cfg.get("ComputeClusterProperties")))
        try:
            started = self.client.start_job(request)
        except Exception:
            self.staging.clear(tag)  # no job: nothing will read the manifest
            raise
        return JobHandle(provider=self.name, job_id=started.id, data={"tag": tag})

    def find_started(self, run_id: str, address: str, attempt: int) -> str | None:
        """The job started for (run, node, attempt) whose id was never journaled: found by the attempt's marker
        in its title (the newest such job). None when that start never reached Domino."""
        marker = attempt_marker(run_id, address, attempt)
        for job in self.client.list_jobs(page_size=FIND_JOBS):  # newest first
            found = _TAG.search(job.title or "")
            if found and found.group(1).startswith(marker + "."):
                return str(job.id)
        return None

    def _tag(self, handle: JobHandle) -> str | None:
        """The start's tag: known to the process that started the job, else read back from its title."""
        if not handle.data.get("tag"):
            found = _TAG.search(self.client.job_status(handle.job_id).title or "")
            handle.data["tag"] = found.group(1) if found else None
        return handle.data.get("tag")

    def wait(self, handle: JobHandle, job: JobSpec, cancel: threading.Event,
             on_status: StatusCallback | None = None, on_ended: EndedCallback | None = None) -> JobResult:
        tag = self._tag(handle)
        if tag is None:
            return JobResult(status="failed", error=f"Domino job {handle.job_id} was not started by flows (no "
                                                    "[flows-…] tag in its title)")
        try:
            return self._wait(handle, job, cancel, tag, on_status, on_ended)
        finally:
            # Off the critical path: the node's record and its readers' starts need not wait for a LIST and a
            # DELETE (the executor's threads are joined before the process exits).
            self._clearing.submit(self._clear_staging, tag, job.address)

    def close(self) -> None:
        """Wait for the staging clears still going (at exit they are waited for anyway)."""
        self._clearing.shutdown(wait=True)

    def _clear_staging(self, tag: str, address: str) -> None:
        try:
            self.staging.clear(tag)
        except Exception as e:  # noqa: BLE001 - left-over staging keys are garbage, never a failed node
            self.warnings.append(f"{address}: {e.message if isinstance(e, FlowsError) else e}")

    def _wait(self, handle: JobHandle, job: JobSpec, cancel: threading.Event, tag: str,
              on_status: StatusCallback | None, on_ended: EndedCallback | None) -> JobResult:
        deadline = None if job.timeout_seconds is None else time.monotonic() + job.timeout_seconds
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            status = self.watcher.wait(handle.job_id, timeout=remaining, cancel=cancel,
                                       on_status=(lambda j: on_status(j.status)) if on_status else None)
            if status.is_completed:
                if on_ended is not None:
                    on_ended()  # the run is over on Domino: the next job may start while its log and outputs come
                break
            if cancel.is_set():
                self.stop(handle)
                return JobResult(status="cancelled", error=f"cancelled; stopped Domino job {handle.job_id}")
            if deadline is not None and time.monotonic() >= deadline:
                self.stop(handle)
                return JobResult(status="timed_out", error=f"timed out after {job.timeout_seconds:g}s; "
                                                           f"stopped Domino job {handle.job_id}")
        log = self._log(handle.job_id)
        self._write_local_log(job, log)
        result = decode_result(log)
        if result is not None and result.get("error"):
            return JobResult(status="failed", error=redact(str(result["error"])), log_tail=redact(_tail(log)))
        if not status.succeeded:
            return JobResult(status="failed", error=f"Domino job {handle.job_id} {status.status}",
                             log_tail=redact(_tail(log)))
        if result is None:
            return JobResult(status="failed", error=f"Domino job {handle.job_id} succeeded but left no flows result "
                                                    "(see its log)", log_tail=redact(_tail(log)))
        scratch = Path(tempfile.mkdtemp(prefix="flows-collect-"))
        try:
            outputs, warnings = self.staging.collect(job, tag, result, scratch)
        except ProviderError as e:
            return JobResult(status="failed", error=redact(e.message), log_tail=redact(_tail(log)))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return JobResult(status="succeeded", outputs=outputs,
                         warnings=list(result.get("warnings", [])) + warnings, log_tail=redact(_tail(log)))

    def _log(self, job_id: str) -> str:
        try:
            return self.client.job_stdout(job_id)
        except ProviderError as e:
            return f"(log unavailable: {e})"

    def _write_local_log(self, job: JobSpec, log: str) -> None:
        if job.log_path:
            path = Path(job.log_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(redact(log))

    def stop(self, handle: JobHandle) -> None:
        self.client.stop_job(handle.job_id)

    def attach(self, job_id: str, job: JobSpec) -> JobHandle | None:
        try:
            status = self.client.job_status(job_id)
        except ProviderError:
            return None
        found = _TAG.search(status.title or "")
        return JobHandle(provider=self.name, job_id=job_id, data={"tag": found.group(1) if found else None})

    def job_status(self, job_id: str) -> str:
        try:
            return str(self.client.job_status(job_id).status)
        except FlowsError as e:
            return f"unknown: {e.message}"

    def logs(self, job_id: str) -> str:
        return redact(self.client.job_stdout(job_id))
