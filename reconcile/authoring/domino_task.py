"""`flytekitplugins.domino.task`: DominoJobConfig, DominoJobTask and the small value classes."""
from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from typing import Any

from reconcile import tracing
from vocab.errors import FlowLoadError
from vocab.flytetypes import UnsupportedType, type_name
from reconcile.graph import ArtifactFileRef, Node
from vocab.masking import register_secret


@dataclasses.dataclass
class GitRef:
    Type: str = "head"
    Value: str | None = None

    def __post_init__(self) -> None:
        # The API wants the plural "branches"; "branch" makes a Domino job die (research notes §3).
        if self.Type == "branch":
            self.Type = "branches"
        if self.Type == "tag":
            self.Type = "tags"


class EnvironmentRevisionType(enum.Enum):
    ActiveRevision = "ActiveRevision"
    LatestRevision = "LatestRevision"
    SomeRevision = "SomeRevision"
    RestrictedRevision = "RestrictedRevision"


@dataclasses.dataclass
class EnvironmentRevisionSpecification:
    EnvironmentRevisionType: EnvironmentRevisionType | str = EnvironmentRevisionType.ActiveRevision
    EnvironmentRevisionId: str | None = None

    def __post_init__(self) -> None:
        kind = self.EnvironmentRevisionType
        kind = kind.value if isinstance(kind, enum.Enum) else str(kind)
        if kind == "SomeRevision" and not self.EnvironmentRevisionId:
            raise ValueError("EnvironmentRevisionSpecification: SomeRevision needs EnvironmentRevisionId")


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


class NetAppVolumeSnapshot:
    def __init__(self, Id: str | None = None, Version: int | None = None, *, VolumeId: str | None = None,
                 SnapshotVersion: int | None = None, Name: str | None = None) -> None:
        self.Id = Id or VolumeId
        self.Version = Version if Version is not None else SnapshotVersion
        self.Name = Name

    def to_dict(self) -> dict[str, Any]:
        return {"Id": self.Id, "Version": self.Version, "Name": self.Name}


@dataclasses.dataclass
class ClusterProperties:
    ClusterType: str = ""
    ComputeEnvironmentId: str = ""
    WorkerHardareTierId: Any = None  # [sic]: the plugin's own spelling
    WorkerCount: int | None = None
    WorkerStorageGiB: float | None = None
    MaxWorkerCount: int | None = None
    ComputeEnvironmentRevisionSpec: Any = None
    MasterHardwareTierId: Any = None
    ExtraConfigs: dict[str, str] | None = None
    WorkerHardwareTierId: Any = None


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
                 retries: int = 0, timeout: Any = dt.timedelta(hours=3), **kwargs: Any) -> None:
        if domino_job_config is None:
            domino_job_config = kwargs.pop("task_config", None) or DominoJobConfig()
        self.name = name
        self.config = domino_job_config
        self.use_latest = use_latest or bool(kwargs.pop("use_project_defaults_for_omitted", False))
        self.inputs, _ = interface_of(inputs, "input", name)
        self.outputs, self.output_artifacts = interface_of(outputs, "output", name)
        self.cache, self.cache_version = _cache_settings(cache, cache_version)
        self.cache_ignore_input_vars = list(cache_ignore_input_vars or ())
        self.retries = int(retries or 0)
        self.timeout = timeout_seconds(timeout)
        self.source = tracing.caller_source()
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
                    retries=self.retries, timeout_seconds=self.timeout, resolve_defaults=self.use_latest,
                    output_artifacts=dict(self.output_artifacts), source=src)
        return trace.add_node(node, kwargs)


def _cache_settings(cache: Any, cache_version: str) -> tuple[bool, str]:
    """`cache=` may be a bool or a flytekit `Cache(version=...)` object."""
    if isinstance(cache, bool) or cache is None:
        # The reconciler caches by default (DESIGN decision 9): only an explicit False disables it.
        return cache is not False, str(cache_version or "")
    version = getattr(cache, "version", None) or cache_version or ""
    return True, str(version)
