"""`flytekitplugins.domino.task`: DominoJobConfig, DominoJobTask and the small value classes."""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import enum
import functools
import inspect
from typing import Any, Callable, TypeVar

from reconcile import tracing
from reconcile.authoring.load_notes import check_keywords, warn
from vocab.errors import FlowLoadError
from vocab.flytetypes import UnsupportedType, type_name
from reconcile.graph import ArtifactFileRef, Node
from vocab.masking import register_secret


_C = TypeVar("_C", bound=type)


def strict_keywords(cls: _C) -> _C:
    """A dataclass whose unknown keyword is a load error naming it, with the closest field ("did you mean")."""
    init: Callable[..., None] = cls.__init__  # type: ignore[misc]
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    known_set = frozenset(known)

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if not known_set.issuperset(kwargs):  # (the caller's line is looked up only for the error)
            check_keywords(cls.__name__, kwargs, known, tracing.caller_source())
        init(self, *args, **kwargs)

    cls.__init__ = __init__  # type: ignore[misc]
    return cls


@strict_keywords
@dataclasses.dataclass
class GitRef:
    Type: str
    Value: str | None = None

    def __post_init__(self) -> None:
        # The API wants the plural "branches"; "branch" makes a Domino job die (research notes §3).
        if self.Type == "branch":
            self.Type = "branches"
        if self.Type == "tag":
            self.Type = "tags"

    def to_json(self) -> dict[str, Any]:
        return {"type": self.Type, "value": self.Value}


class EnvironmentRevisionType(str, enum.Enum):
    ActiveRevision = "ActiveRevision"
    LatestRevision = "LatestRevision"
    SomeRevision = "SomeRevision"
    RestrictedRevision = "RestrictedRevision"


@strict_keywords
@dataclasses.dataclass
class EnvironmentRevisionSpecification:
    EnvironmentRevisionType: EnvironmentRevisionType | str
    EnvironmentRevisionId: str | None = None

    def __post_init__(self) -> None:
        kind = self.EnvironmentRevisionType
        kind = kind.value if isinstance(kind, enum.Enum) else str(kind)
        if kind == "SomeRevision" and not self.EnvironmentRevisionId:
            raise ValueError("EnvironmentRevisionSpecification: SomeRevision needs EnvironmentRevisionId")

    def to_json(self) -> Any:
        """The API's form: the type's name, or for SomeRevision the plugin's typed object."""
        kind = self.EnvironmentRevisionType
        kind = kind.value if isinstance(kind, enum.Enum) else str(kind)
        if kind == "SomeRevision":
            return {"_type": "domino.environments.api.SomeRevision", "revisionId": self.EnvironmentRevisionId}
        return kind


class DatasetSnapshot:
    """Both spellings real flows use: `DatasetSnapshot(Id=, Version=)` and `(DatasetId=, SnapshotVersion=)`."""

    def __init__(self, DatasetId: str | None = None, SnapshotVersion: int | None = None,
                 DatasetName: str | None = None, *, Id: str | None = None, Version: int | None = None,
                 Name: str | None = None) -> None:
        self.DatasetId = DatasetId or Id
        self.SnapshotVersion = SnapshotVersion if SnapshotVersion is not None else Version
        self.DatasetName = DatasetName or Name

    def to_dict(self) -> dict[str, Any]:
        return {"DatasetId": self.DatasetId, "SnapshotVersion": self.SnapshotVersion,
                "DatasetName": self.DatasetName}

    def to_json(self) -> dict[str, Any]:
        return {"datasetId": self.DatasetId, "snapshotVersion": self.SnapshotVersion, "datasetName": self.DatasetName}


class NetAppVolumeSnapshot:
    def __init__(self, Id: str | None = None, Version: int | None = None, *, VolumeId: str | None = None,
                 SnapshotVersion: int | None = None, Name: str | None = None) -> None:
        self.Id = Id or VolumeId
        self.Version = Version if Version is not None else SnapshotVersion
        self.Name = Name

    def to_dict(self) -> dict[str, Any]:
        return {"Id": self.Id, "Version": self.Version, "Name": self.Name}


@strict_keywords
@dataclasses.dataclass
class ClusterProperties:
    ClusterType: str
    ComputeEnvironmentId: str
    WorkerHardareTierId: Any = None  # [sic]: the plugin's own spelling
    WorkerCount: int | None = None
    WorkerStorageGiB: float | None = None
    MaxWorkerCount: int | None = None
    ComputeEnvironmentRevisionSpec: Any = None
    MasterHardwareTierId: Any = None
    ExtraConfigs: dict[str, str] | None = None
    WorkerHardwareTierId: Any = None

    def is_resolved(self) -> bool:
        kind = getattr(self.ClusterType, "value", self.ClusterType)
        return bool(self.ComputeEnvironmentRevisionSpec and (self.MasterHardwareTierId or kind == "MPI"))

    def to_json(self) -> dict[str, Any]:
        def tier(v: Any) -> Any:
            return {"value": v} if v else None
        return {
            "clusterType": getattr(self.ClusterType, "value", self.ClusterType),
            "computeEnvironmentId": self.ComputeEnvironmentId,
            "computeEnvironmentRevisionSpec": _json(self.ComputeEnvironmentRevisionSpec),
            "masterHardwareTierId": tier(self.MasterHardwareTierId),
            "workerCount": self.WorkerCount, "maxWorkerCount": self.MaxWorkerCount,
            "workerHardwareTierId": tier(self.WorkerHardwareTierId or self.WorkerHardareTierId),
            "workerStorage": {"value": self.WorkerStorageGiB, "unit": "GiB"} if self.WorkerStorageGiB else None,
            "extraConfigs": self.ExtraConfigs,
        }


def _json(v: Any) -> Any:
    return v.to_json() if hasattr(v, "to_json") else v


# The job properties Domino resolves from the project's defaults, as the plugin names them.
RESOLVABLE = ("commitId", "hardwareTierId", "environmentId", "environmentRevisionSpec", "computeClusterProperties",
              "volumeSizeGiB", "datasetSnapshots", "externalVolumeMountIds")


@strict_keywords
@dataclasses.dataclass
class DominoJobConfig:
    Command: str = ""
    Title: str | None = None
    CommitId: str | None = None
    MainRepoGitRef: GitRef | None = None
    HardwareTierId: str | None = None
    EnvironmentId: str | None = None
    EnvironmentRevisionSpec: Any = None
    VolumeSizeGiB: float | None = None
    DatasetSnapshots: list[Any] | None = None
    ExternalVolumeMountIds: list[str] | None = None
    ComputeClusterProperties: ClusterProperties | None = None
    OwnerName: str | None = None
    ProjectName: str | None = None
    ApiKey: str | None = None
    Username: str | None = None  # the oldest plugin's name for OwnerName
    # Not in the dataclass of the plugin, but what run_domino_job_task passes by name:
    EnvironmentName: str | None = None
    HardwareTierName: str | None = None
    NetAppVolumeSnapshots: list[Any] | None = None

    def __post_init__(self) -> None:
        if self.ApiKey:
            register_secret(self.ApiKey)
        self.resolution_wanted = False  # resolve_job_properties() was called: resolve at plan time

    # The plugin's resolution API. The plugin asks Domino while the file is registered; flows asks the
    # configured provider when it plans, so these answer for the fields as written in the file.
    def unresolved_fields(self) -> list[str]:
        """The plugin's names of the job properties this config leaves to the project's defaults."""
        missing = {
            "commitId": not self.CommitId, "hardwareTierId": not self.HardwareTierId,
            "environmentId": not self.EnvironmentId, "environmentRevisionSpec": not self.EnvironmentRevisionSpec,
            "computeClusterProperties": bool(self.ComputeClusterProperties
                                             and not self.ComputeClusterProperties.is_resolved()),
            "volumeSizeGiB": not self.VolumeSizeGiB, "datasetSnapshots": not self.DatasetSnapshots,
            "externalVolumeMountIds": self.ExternalVolumeMountIds is None,
        }
        return [name for name in RESOLVABLE if missing[name]]

    def is_resolved(self) -> bool:
        return not self.unresolved_fields()

    def resolve_job_properties(self) -> None:
        """Ask for the project's defaults for every omitted property: the provider resolves them at plan time
        (Domino's resolveJobDefaults; the local provider has no project defaults), and the plan shows them."""
        if not self.is_resolved():
            self.resolution_wanted = True

    def to_json(self) -> dict[str, Any]:
        """The plugin's camelCase job config (the API key as written: keep it out of logs)."""
        return {
            "ownerName": self.OwnerName or self.Username, "projectName": self.ProjectName, "apiKey": self.ApiKey,
            "command": self.Command, "commitId": self.CommitId,
            "hardwareTierId": {"value": self.HardwareTierId} if self.HardwareTierId else None,
            "environmentId": self.EnvironmentId, "environmentRevisionSpec": _json(self.EnvironmentRevisionSpec),
            "datasetSnapshots": [_json(d) for d in self.DatasetSnapshots or []],
            "externalVolumeMountIds": self.ExternalVolumeMountIds, "volumeSizeGiB": self.VolumeSizeGiB,
            "title": self.Title, "mainRepoGitRef": _json(self.MainRepoGitRef),
            "computeClusterProperties": _json(self.ComputeClusterProperties),
            "inputInterfaceBase64": None, "inputOutputInterfaceBase64": None,
        }

    def to_record(self) -> dict[str, Any]:
        """Every field but the API key, as plain JSON (PascalCase, None dropped)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("ApiKey", "Command"):
                continue
            v = _plain(getattr(self, f.name))
            if v not in (None, [], {}):
                out["OwnerName" if f.name == "Username" else f.name] = v
        return out


def _plain(v: Any) -> Any:
    if v is None or type(v) in (str, int, float, bool):  # most fields: nothing to convert
        return v
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, (DatasetSnapshot, NetAppVolumeSnapshot)):
        return {k: x for k, x in v.to_dict().items() if x is not None}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        d = {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if "WorkerHardareTierId" in d:  # fold the misspelling into the right name
            d["WorkerHardwareTierId"] = d.pop("WorkerHardareTierId") or d.get("WorkerHardwareTierId")
        return {k: x for k, x in d.items() if x is not None}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def interface_of(spec: dict[str, Any] | None, what: str, task: str) -> tuple[dict[str, str], dict[str, ArtifactFileRef]]:
    """`{"name": type}` -> canonical types, plus which outputs are artifact files."""
    types: dict[str, str] = {}
    artifacts: dict[str, ArtifactFileRef] = {}
    for name, tp in (spec or {}).items():
        try:
            types[name] = type_name(tp)
        except UnsupportedType as e:
            src = tracing.caller_source()
            raise FlowLoadError(str(e), file=src.file if src else None, line=src.line if src else None,
                                node=task, field=f"{what} '{name}'") from None
        ref = getattr(tp, "__flows_artifact__", None)
        if ref is not None:
            artifacts[name] = ArtifactFileRef(artifact=ref[0], artifact_type=ref[1], file_name=ref[2])
    return types, artifacts


def timeout_seconds(timeout: Any) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, dt.timedelta):
        return timeout.total_seconds()
    return float(timeout)


class DominoJobTask:
    """A task that runs one shell command as a Domino Job (or a local process)."""

    def __init__(self, name: str, domino_job_config: DominoJobConfig | None = None, use_latest: bool = False,
                 inputs: dict[str, Any] | None = None, outputs: dict[str, Any] | None = None,
                 log_level: int = 20, cache: Any = None, cache_serialize: bool = False,
                 cache_version: str = "", cache_ignore_input_vars: tuple[str, ...] | list[str] = (),
                 retries: int = 0, timeout: Any = dt.timedelta(hours=3), *,
                 environment_name: str | None = None, hardware_tier_name: str | None = None,
                 use_latest_git_ref: bool = False, **kwargs: Any) -> None:
        self.source = tracing.caller_source()
        # `task_config=` is the plugin's older name of the config; any other keyword is a mistake.
        if kwargs:
            explicit = [p for p in inspect.signature(DominoJobTask.__init__).parameters if p not in ("self", "kwargs")]
            check_keywords("DominoJobTask", kwargs, [*explicit, "task_config"], self.source, node=name)
        if domino_job_config is None:
            domino_job_config = kwargs.pop("task_config", None) or DominoJobConfig()
        self.name = name
        self.config = with_job_settings(domino_job_config, self.source, name, environment_name=environment_name,
                                        hardware_tier_name=hardware_tier_name, use_latest_git_ref=use_latest_git_ref)
        self.use_latest = bool(use_latest)
        self.inputs, _ = interface_of(inputs, "input", name)
        self.outputs, self.output_artifacts = interface_of(outputs, "output", name)
        self.cache, self.cache_version = _cache_settings(cache, cache_version)
        self.cache_ignore_input_vars = list(cache_ignore_input_vars or ())
        self.retries = int(retries or 0)
        self.timeout = timeout_seconds(timeout)
        unknown = [n for n in self.cache_ignore_input_vars if n not in self.inputs]
        if unknown:
            src = self.source
            raise FlowLoadError(f"cache_ignore_input_vars names unknown input(s): {', '.join(unknown)}",
                                file=src.file if src else None, line=src.line if src else None, node=name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        trace = tracing.current()
        src = tracing.caller_source()
        if trace is None:
            raise FlowLoadError(f"task '{self.name}' is called outside a @workflow (it only runs inside a flow)",
                                file=src.file if src else None, line=src.line if src else None)
        if args:
            raise FlowLoadError(f"task '{self.name}' takes keyword arguments only (got {len(args)} positional)",
                                file=src.file if src else None, line=src.line if src else None)
        address = trace.address_for(self.name)
        command = self.config.Command
        if not isinstance(command, str) or not command.strip():
            raise FlowLoadError(f"the job config has no Command (a shell command string is needed, got {command!r})",
                                file=src.file if src else None, line=src.line if src else None, node=address,
                                field="Command")
        node = Node(address=address, task_name=self.name, kind="domino_job",
                    command=command, job_config=self.config.to_record(),
                    inputs=dict(self.inputs), outputs=dict(self.outputs), cache=self.cache,
                    cache_version=self.cache_version, cache_ignore_input_vars=list(self.cache_ignore_input_vars),
                    retries=self.retries, timeout_seconds=self.timeout,
                    resolve_defaults=self.use_latest or self.config.resolution_wanted,
                    output_artifacts=dict(self.output_artifacts), source=src)
        return trace.add_node(node, kwargs)


def with_job_settings(config: DominoJobConfig, src: Any, task: str, *, environment_name: str | None = None,
                      hardware_tier_name: str | None = None, use_latest_git_ref: bool = False) -> DominoJobConfig:
    """The config with the task's by-name settings: `environment_name=`, `hardware_tier_name=` (resolved to ids by
    the provider when it plans) and `use_latest_git_ref=True` (the main repo's head, resolved when planned).

    A copy: one config object is often shared by several tasks.
    """
    if not (environment_name or hardware_tier_name or use_latest_git_ref):
        return config
    out = copy.copy(config)
    if environment_name:
        if config.EnvironmentId:
            warn(f"task '{task}': environment_name='{environment_name}' is not used: the config's "
                 f"EnvironmentId '{config.EnvironmentId}' chooses the environment", src)
        out.EnvironmentName = environment_name
    if hardware_tier_name:
        if config.HardwareTierId:
            warn(f"task '{task}': hardware_tier_name='{hardware_tier_name}' is not used: the config's "
                 f"HardwareTierId '{config.HardwareTierId}' chooses the hardware tier", src)
        out.HardwareTierName = hardware_tier_name
    if use_latest_git_ref:
        ref = config.MainRepoGitRef
        if ref is not None and ref.Type != "head":  # CommitId is the DFS commit: no conflict with the git ref
            pinned = f"{ref.Type} {ref.Value}" if ref.Value else ref.Type
            raise FlowLoadError(f"use_latest_git_ref=True asks for the main repo's latest commit, but the git ref "
                                f"({pinned}) chooses another; keep one of them", file=getattr(src, "file", None), line=getattr(src, "line", None),
                                node=task)
        out.MainRepoGitRef = GitRef(Type="head")
    return out


def _cache_settings(cache: Any, cache_version: str) -> tuple[bool, str]:
    """`cache=` may be a bool or a flytekit `Cache(version=...)` object."""
    if isinstance(cache, bool) or cache is None:
        # The reconciler caches by default (DESIGN decision 9): only an explicit False disables it.
        return cache is not False, str(cache_version or "")
    version = getattr(cache, "version", None) or cache_version or ""
    return True, str(version)
