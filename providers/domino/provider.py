"""The Domino provider: each invalidated node becomes one Domino Job.

Inputs and outputs travel through the S3 blob store: the provider uploads what the job needs and a
manifest, then starts `python -m providers.domino.runtime --manifest <uri> -- <command>`; the in-job
runtime materialises `/workflow/inputs`, runs the command, uploads `/workflow/outputs`
(content-addressed) and prints one result line the provider reads from the job's log.
"""
from __future__ import annotations

import base64
import json
import os
import shlex
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from providers import pytask
from providers.base import InputValue, JobHandle, JobResult, JobSpec
from providers.code_files import CODE_MOUNT
from providers.domino.client import DominoClient
from providers.domino.models import GitRef, JobDefaultsRequest, StartJobRequest
from reconcile.digest import StatCache
from reconcile.errors import ProviderError
from reconcile.flytetypes import is_blob, is_dir
from reconcile.graph import Node
from reconcile.secrets import redact
from state.model import OutputRecord

RESULT_MARKER = "::flows-result::"
LOG_TAIL_LINES = 20


def encode_result(result: dict[str, Any]) -> str:
    """One log line carrying the runtime's result (base64 survives Domino's HTML-ish log rendering)."""
    return RESULT_MARKER + base64.b64encode(json.dumps(result).encode()).decode()


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


def _snapshots(value: Any) -> list[dict[str, Any]] | None:
    if not value:
        return None
    return [{"datasetId": s.get("DatasetId"), "snapshotVersion": s.get("SnapshotVersion")} for s in value]


class DominoProvider:
    name = "domino"
    max_parallel: int | None = None

    def __init__(self, client: DominoClient, blobs: Any, *, runtime_python: str = "python",
                 blobs_settings: dict[str, Any] | None = None) -> None:
        if not str(getattr(blobs, "url", "")).startswith("s3://"):
            raise ProviderError("the Domino provider moves inputs and outputs through S3: set "
                                "[tool.flows.blobs] url = \"s3://bucket/prefix/\"")
        self.client = client
        self.blobs = blobs
        self.runtime_python = runtime_python
        self.blobs_settings = blobs_settings or {}
        self.warnings: list[str] = []
        self._resolved: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: Any, blobs: Any) -> "DominoProvider":
        from providers.domino.transport import RetryPolicy
        extra = cfg.provider.model_extra or {}
        kwargs: dict[str, Any] = {"poll_interval": float(extra.get("poll_interval", 2.0)),
                                  "max_poll_interval": float(extra.get("max_poll_interval", 30.0))}
        if "retries" in extra or "retry_backoff" in extra:
            kwargs["policy"] = RetryPolicy(retries=int(extra.get("retries", 6)),
                                           backoff=float(extra.get("retry_backoff", 0.5)))
        client = DominoClient.from_env(**kwargs)
        settings = {"region": cfg.blobs.region, "endpoint_url": cfg.blobs.endpoint_url}
        return cls(client, blobs, runtime_python=str(extra.get("runtime_python", "python")),
                   blobs_settings={k: v for k, v in settings.items() if v})

    # -- plan time ---------------------------------------------------------------------------
    def resolve_config(self, node: Node) -> dict[str, Any]:
        """Names -> ids, and the project defaults (commit, environment revision, ...) when the node asks for
        them or omits the commit: what the job will really run with goes into the fingerprint."""
        if node.kind == "export_artifacts":
            return dict(node.job_config)
        cache_id = json.dumps([node.job_config, node.resolve_defaults], sort_keys=True, default=str)
        with self._lock:
            if cache_id in self._resolved:
                return dict(self._resolved[cache_id])
        cfg = dict(node.job_config)
        if cfg.get("EnvironmentName") and not cfg.get("EnvironmentId"):
            cfg["EnvironmentId"] = self.client.resolve_environment_id(cfg["EnvironmentName"])
        if cfg.get("HardwareTierName") and not cfg.get("HardwareTierId"):
            cfg["HardwareTierId"] = self.client.resolve_hardware_tier_id(cfg["HardwareTierName"])
        pinned_commit = cfg.get("CommitId") or (cfg.get("MainRepoGitRef") or {}).get("Type") == "commitId"
        if node.resolve_defaults or not pinned_commit:
            resolved = self.client.resolve_job_defaults(JobDefaultsRequest(
                commit_id=cfg.get("CommitId"), main_repo_git_ref=_git_ref(cfg.get("MainRepoGitRef")),
                hardware_tier_id=cfg.get("HardwareTierId"), environment_id=cfg.get("EnvironmentId"),
                environment_revision_spec=_revision(cfg.get("EnvironmentRevisionSpec")),
                dataset_snapshots=_snapshots(cfg.get("DatasetSnapshots")),
                external_volume_mount_ids=cfg.get("ExternalVolumeMountIds"),
                volume_size_gib=cfg.get("VolumeSizeGiB")))
            cfg["CommitId"] = resolved.commit_id
            if resolved.main_repo_git_ref is not None:
                cfg["MainRepoGitRef"] = {"Type": resolved.main_repo_git_ref.type,
                                         "Value": resolved.main_repo_git_ref.value}
            if node.resolve_defaults:
                cfg.setdefault("EnvironmentId", resolved.environment_id)
                cfg.setdefault("HardwareTierId", resolved.hardware_tier_id.value)
                cfg.setdefault("EnvironmentRevisionSpec", _revision_record(resolved.environment_revision_spec))
                cfg.setdefault("VolumeSizeGiB", resolved.volume_size_gib)
                if resolved.dataset_snapshots and not cfg.get("DatasetSnapshots"):
                    cfg["DatasetSnapshots"] = [{"DatasetId": s.get("datasetId"), "SnapshotVersion": s.get("snapshotVersion")}
                                               for s in resolved.dataset_snapshots]
                if resolved.external_volume_mount_ids and not cfg.get("ExternalVolumeMountIds"):
                    cfg["ExternalVolumeMountIds"] = list(resolved.external_volume_mount_ids)
        cfg["ProjectId"] = self.client.project_id()
        with self._lock:
            self._resolved[cache_id] = cfg
        return dict(cfg)

    def code_identity(self, node: Node, project_root: Path, digests: StatCache) -> dict[str, str]:
        cfg = self.resolve_config(node)
        ref = cfg.get("MainRepoGitRef") or {}
        code = {"commit": str(cfg.get("CommitId") or "")}
        if ref.get("Type") == "commitId" and ref.get("Value"):
            code["git"] = str(ref["Value"])
        return code

    # -- run time ----------------------------------------------------------------------------
    def _upload_input(self, value: InputValue) -> InputValue:
        if not is_blob(value.type) or not value.uri or value.uri.startswith("s3://"):
            return value
        path = Path(value.uri)
        stored = self.blobs.put_dir(path) if is_dir(value.type) else self.blobs.put_file(path, value.digest)
        return value.model_copy(update={"uri": stored.uri, "digest": stored.digest})

    def _job_command(self, job: JobSpec) -> str:
        """The node's command; a `@task` function runs as the local provider runs it, by `providers.pytask`,
        importing the flow file from the project at the job's commit (`/mnt/code`)."""
        if job.kind != "python":
            return job.command
        if not job.python:
            raise ProviderError("python task without a function reference", node=job.address)
        rel = Path(os.path.relpath(job.python["file"], job.project_root))
        if rel.parts and rel.parts[0] == "..":
            raise ProviderError(f"the @task is defined in {job.python['file']}, outside the project "
                                f"{job.project_root}: a Domino job sees only the project (at /mnt/code), so it "
                                "cannot import it; move the module into the project", node=job.address)
        return pytask.command(self.runtime_python, job, f"{CODE_MOUNT}/{rel.as_posix()}")

    def start(self, job: JobSpec) -> JobHandle:
        if job.kind == "export_artifacts":
            raise ProviderError("artifact exports are not run by the Domino provider yet (Domino's export task is "
                                "not public); run them on Domino with pyflyte", node=job.address)
        inputs = {name: self._upload_input(v).model_dump() for name, v in job.inputs.items()}
        nonce = uuid.uuid4().hex
        manifest = {"run_id": job.run_id, "address": job.address, "attempt": job.attempt, "nonce": nonce,
                    "inputs": inputs, "outputs": job.outputs, "blobs_url": self.blobs.url,
                    "blobs": self.blobs_settings, "kind": job.kind, "export_specs": job.export_specs}
        stored = self.blobs.put_bytes(json.dumps(manifest, sort_keys=True).encode())
        endpoint = self.blobs_settings.get("endpoint_url")
        command = (f"{self.runtime_python} -m providers.domino.runtime --manifest {shlex.quote(stored.uri)} "
                   + (f"--endpoint-url {shlex.quote(endpoint)} " if endpoint else "")
                   + f"-- {shlex.quote(self._job_command(job))}")
        cfg = dict(job.job_config)
        request = StartJobRequest(
            command_to_run=command, title=f"flows: {job.address}"[:200], commit_id=cfg.get("CommitId"),
            main_repo_git_ref=_git_ref(cfg.get("MainRepoGitRef")),
            override_hardware_tier_id=cfg.get("HardwareTierId"), environment_id=cfg.get("EnvironmentId"),
            environment_revision_spec=_revision(cfg.get("EnvironmentRevisionSpec")),
            external_volume_mounts=cfg.get("ExternalVolumeMountIds"),
            override_volume_size_gib=cfg.get("VolumeSizeGiB"))
        started = self.client.start_job(request)
        return JobHandle(provider=self.name, job_id=started.id, data={"manifest": stored.uri})

    def wait(self, handle: JobHandle, job: JobSpec, cancel: threading.Event) -> JobResult:
        deadline = None if job.timeout_seconds is None else time.monotonic() + job.timeout_seconds
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            status = self.client.wait_for_job(handle.job_id, timeout=remaining, cancel=cancel,
                                              on_status=lambda j: handle.data.__setitem__("status", j.status))
            if status.is_completed:
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
        if not status.succeeded:
            return JobResult(status="failed", error=f"Domino job {handle.job_id} {status.status}",
                             log_tail=redact(_tail(log)))
        result = decode_result(log)
        if result is None:
            return JobResult(status="failed", error=f"Domino job {handle.job_id} succeeded but left no flows result "
                                                    "(is this package installed in the job's environment?)",
                             log_tail=redact(_tail(log)))
        if result.get("error"):
            return JobResult(status="failed", error=redact(str(result["error"])), log_tail=redact(_tail(log)))
        outputs = {k: OutputRecord.model_validate(v) for k, v in result.get("outputs", {}).items()}
        return JobResult(status="succeeded", outputs=outputs, warnings=list(result.get("warnings", [])),
                         log_tail=redact(_tail(log)))

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
            self.client.job_status(job_id)
        except ProviderError:
            return None
        return JobHandle(provider=self.name, job_id=job_id)

    def logs(self, job_id: str) -> str:
        return redact(self.client.job_stdout(job_id))
