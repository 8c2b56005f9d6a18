"""pydantic models of the Domino REST API: the answers we read and the requests we send.

Field names follow python-domino and Domino's v4 Jobs API exactly (camelCase on the wire, snake_case
here). Answers ignore unknown fields, so a newer Domino that adds fields keeps working; a missing
required field is reported by `parse_answer` as one clear error naming the endpoint and the field.
"""
from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import (BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_serializer,
                      field_validator)
from pydantic.alias_generators import to_camel

from vocab.errors import ProviderError

T = TypeVar("T")


class Answer(BaseModel):
    """Base of everything Domino sends back."""

    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True)


class Request(BaseModel):
    """Base of everything we send: serialized with Domino's names, `None` fields left out."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    def body(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# --------------------------------------------------------------------------------------------- answers

class VersionInfo(Answer):
    version: str


class ProjectInfo(Answer):
    """`GET /v4/gateway/projects/findProjectByOwnerAndName`: python-domino reads only `id`."""

    id: str
    name: str | None = None
    owner_username: str | None = None


class Environment(Answer):
    id: str
    name: str = ""


class UseableEnvironments(Answer):
    """`GET /v4/projects/{projectId}/useableEnvironments`."""

    environments: list[Environment]


class HardwareTier(Answer):
    id: str
    name: str
    is_default: bool = False


class HardwareTierEntry(Answer):
    """One item of the bare list `GET /v4/projects/{projectId}/hardwareTiers` returns."""

    hardware_tier: HardwareTier


HARDWARE_TIER_LIST: TypeAdapter[list[HardwareTierEntry]] = TypeAdapter(list[HardwareTierEntry])


class IdValue(Answer):
    """Domino wraps some ids as `{"value": id}` (hardware tiers in resolveJobDefaults and clusters)."""

    value: str


GitRefType = Literal["head", "branches", "tags", "commitId"]
# Domino needs the plural names; `branch` is accepted at start but the job then dies with
# "IllegalStateException: Unknown reference type" (research notes, ES), so we fix it up front.
_GIT_REF_ALIASES = {"branch": "branches", "tag": "tags", "commit": "commitId", "commitid": "commitId"}


class GitRef(Request):
    """`mainRepoGitRef`: `{"type": head|branches|tags|commitId, "value": ...}`."""

    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True)
    type: GitRefType
    value: str | None = None

    @field_validator("type", mode="before")
    @classmethod
    def _plural(cls, v: Any) -> Any:
        return _GIT_REF_ALIASES.get(v.lower(), v) if isinstance(v, str) else v


RevisionSpec = str | dict[str, Any]   # "ActiveRevision" | "LatestRevision" | {"revisionId": ...}


class ResolvedJobProperties(Answer):
    """`POST /v4/jobs/{projectId}/resolveJobDefaults` (schema: Domino's v4 `ResolvedJobProperties`).

    The required set is the generated v4 schema's; the exact shape of a resolved
    `environmentRevisionSpec` is UNCONFIRMED (the plugin serializes a specific revision as
    `{"_type": "domino.environments.api.SomeRevision", "revisionId": id}`), so both forms are read.
    """

    commit_id: str
    hardware_tier_id: IdValue
    dataset_snapshots: list[dict[str, Any]]
    net_app_volume_snapshots: list[dict[str, Any]] = Field(default_factory=list)
    environment_id: str
    environment_revision_spec: RevisionSpec
    external_volume_mount_ids: list[str]
    net_app_volume_ids: list[str] = Field(default_factory=list)
    volume_size_gib: float = Field(alias="volumeSizeGiB")
    main_repo_git_ref: GitRef | None = None
    compute_cluster_properties: dict[str, Any] | None = None

    @property
    def environment_revision_id(self) -> str | None:
        spec = self.environment_revision_spec
        return str(spec["revisionId"]) if isinstance(spec, dict) and spec.get("revisionId") else None

    def start_request(self, command: str, title: str | None = None) -> StartJobRequest:
        """The `/v4/jobs/start` body that runs `command` with exactly these resolved properties."""
        return StartJobRequest(
            command_to_run=command, title=title, commit_id=self.commit_id,
            main_repo_git_ref=self.main_repo_git_ref, override_hardware_tier_id=self.hardware_tier_id.value,
            environment_id=self.environment_id, environment_revision_spec=self.environment_revision_spec,
            external_volume_mounts=self.external_volume_mount_ids, override_volume_size_gib=self.volume_size_gib,
            compute_cluster_properties=self.compute_cluster_properties)


class JobStatuses(Answer):
    is_completed: bool
    execution_status: str
    is_archived: bool = False
    is_scheduled: bool = False


class StageTime(Answer):
    """Epoch milliseconds."""

    submission_time: int | None = None
    run_start_time: int | None = None
    completed_time: int | None = None


class CommitDetails(Answer):
    input_commit_id: str | None = None
    output_commit_id: str | None = None


class Job(Answer):
    """The v4 job object (`POST /v4/jobs/start`, `GET /v4/jobs/{jobId}`)."""

    id: str
    statuses: JobStatuses
    number: int | None = None
    project_id: str | None = None
    title: str | None = None
    job_run_command: str | None = None
    stage_time: StageTime | None = None
    commit_details: CommitDetails | None = None

    @property
    def status(self) -> str:
        return self.statuses.execution_status

    @property
    def is_completed(self) -> bool:
        return self.statuses.is_completed

    @property
    def succeeded(self) -> bool:
        return self.statuses.is_completed and self.statuses.execution_status == "Succeeded"


class JobSummary(Answer):
    """An item of `GET /v4/jobs?projectId=...` (lenient: only what start de-duplication and the job watcher
    need; `statuses` when the answer carries them)."""

    id: str
    title: str | None = None
    job_run_command: str | None = None
    stage_time: StageTime | None = None
    statuses: JobStatuses | None = None

    def as_job(self) -> Job | None:
        """The job as `GET /v4/jobs/{jobId}` would give it, when the list said its status."""
        if self.statuses is None:
            return None
        return Job(id=self.id, statuses=self.statuses, title=self.title, job_run_command=self.job_run_command,
                   stage_time=self.stage_time)


class JobList(Answer):
    jobs: list[JobSummary]


class RunStdout(Answer):
    """`GET /v1/projects/{owner}/{project}/run/{jobId}/stdout`: HTML-ish text."""

    stdout: str = ""
    setup: str | None = None


# -------------------------------------------------------------------------------------------- requests

class StartJobRequest(Request):
    """`POST /v4/jobs/start` without `projectId` (the client adds it)."""

    command_to_run: str
    title: str | None = None
    commit_id: str | None = None
    main_repo_git_ref: GitRef | None = None
    override_hardware_tier_id: str | None = None
    environment_id: str | None = None
    environment_revision_spec: RevisionSpec | None = None
    external_volume_mounts: list[str] | None = None
    override_volume_size_gib: float | None = Field(default=None, alias="overrideVolumeSizeGiB")
    compute_cluster_properties: dict[str, Any] | None = None
    net_app_volume_ids: list[str] | None = None


class JobDefaultsRequest(Request):
    """`POST /v4/jobs/{projectId}/resolveJobDefaults`: every field optional; what is left out is
    filled from the project's defaults (latest commit, default tier and environment, ...)."""

    commit_id: str | None = None
    main_repo_git_ref: GitRef | None = None
    hardware_tier_id: str | None = None
    environment_id: str | None = None
    environment_revision_spec: RevisionSpec | None = None
    dataset_snapshots: list[dict[str, Any]] | None = None     # [{"datasetId", "snapshotVersion"}]
    net_app_volume_snapshots: list[dict[str, Any]] | None = None
    external_volume_mount_ids: list[str] | None = None
    net_app_volume_ids: list[str] | None = None
    volume_size_gib: float | None = Field(default=None, alias="volumeSizeGiB")
    compute_cluster_properties: dict[str, Any] | None = None

    @field_serializer("hardware_tier_id")
    def _wrap_tier(self, v: str | None) -> dict[str, str] | None:
        return {"value": v} if v is not None else None


# ----------------------------------------------------------------------------------------------- parse

def parse_answer(model: type[T] | TypeAdapter[T], data: Any, endpoint: str) -> T:
    """Validate Domino's answer; a missing or mistyped field is one error quoting the endpoint."""
    try:
        if isinstance(model, TypeAdapter):
            return model.validate_python(data)
        return model.model_validate(data)  # type: ignore[attr-defined, no-any-return]
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the body"
        problem = "lacks" if first["type"] == "missing" else "has an unexpected value for"
        raise ProviderError(f"Domino's answer to {endpoint} {problem} '{where}' ({e.error_count()} problem(s); "
                            f"is this a supported Domino version?)") from None
