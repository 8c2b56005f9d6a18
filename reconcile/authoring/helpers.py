"""`flytekitplugins.domino.helpers`: Input, Output and run_domino_job_task."""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from reconcile import tracing
from reconcile.authoring.domino_task import DatasetSnapshot, DominoJobConfig, DominoJobTask, GitRef
from reconcile.authoring.domino_task import EnvironmentRevisionSpecification, EnvironmentRevisionType
from reconcile.authoring.domino_task import strict_keywords
from reconcile.authoring.load_notes import strict_call, warn
from vocab.errors import FlowLoadError
from vocab.flytetypes import UnsupportedType, type_name


@strict_keywords
@dataclasses.dataclass
class Input:
    name: str
    type: Any
    value: Any = None


@strict_keywords
@dataclasses.dataclass
class Output:
    name: str
    type: Any


def _refuse_duplicates(task: str, field: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            src = tracing.caller_source()
            what = "input" if field == "inputs" else "output"
            raise FlowLoadError(f"{what} '{name}' is declared twice", file=src.file if src else None,
                                line=src.line if src else None, node=task, field=field)
        seen.add(name)


def _refuse_non_specs(task: str, field: str, items: Any, kind: type) -> None:
    """`inputs=[1, 2]` would fail later as "'int' object has no attribute 'name'": say what is expected."""
    if items is None:
        return
    example = "Input(name=..., type=..., value=...)" if kind is Input else "Output(name=..., type=...)"

    def refuse(message: str) -> FlowLoadError:  # (the caller's line is looked up only for the error)
        src = tracing.caller_source()
        return FlowLoadError(message[:300], file=src.file if src else None, line=src.line if src else None,
                             node=task, field=field)

    if not isinstance(items, (list, tuple)):
        raise refuse(f"expected a list of {example}, got {items!r}")
    for i, item in enumerate(items):
        if not isinstance(item, kind):
            raise refuse(f"item {i + 1} is {item!r}, not an {example}")
        if not isinstance(item.name, str):  # type: ignore[attr-defined]
            raise refuse(f"item {i + 1} has the name {item.name!r}, not a string")  # type: ignore[attr-defined]


def _same_type_key(tp: Any) -> Any:
    try:
        return type_name(tp), getattr(tp, "__flows_artifact__", None)
    except UnsupportedType:
        return tp


def _dedupe_outputs(task: str, outputs: list[Output]) -> list[Output]:
    """One output written twice, identically, is what Domino takes (a warning); with two types it is an error."""
    kept: dict[str, Output] = {}
    for o in outputs:
        first = kept.get(o.name)
        if first is None:
            kept[o.name] = o
            continue
        src = tracing.caller_source()
        a, b = _same_type_key(first.type), _same_type_key(o.type)
        if a != b:
            both = f"{a[0]} and {b[0]}" if isinstance(a, tuple) and isinstance(b, tuple) and a[0] != b[0] else \
                "two artifact files" if isinstance(a, tuple) and isinstance(b, tuple) else "two types"
            raise FlowLoadError(f"output '{o.name}' is declared twice, with different types ({both})",
                                field="output_specs",
                                file=src.file if src else None, line=src.line if src else None, node=task)
        warn(f"task '{task}': output '{o.name}' is declared twice in output_specs (the same type; one is kept)", src)
    return list(kept.values())


@strict_call()
def run_domino_job_task(
    flyte_task_name: str,
    command: str,
    job_title: str | None = None,
    inputs: list[Input] | None = None,
    output_specs: list[Output] | None = None,
    environment_name: str | None = None,
    environment_id: str | None = None,
    environment_revision_id: str | None = None,
    hardware_tier_name: str | None = None,
    hardware_tier_id: str | None = None,
    main_git_repo_ref: GitRef | None = None,
    dfs_repo_commit_id: str | None = None,
    dataset_snapshots: list[DatasetSnapshot] | None = None,
    netapp_volume_snapshots: list[Any] | None = None,
    external_data_volumes: list[Any] | None = None,
    volume_size_gib: float | None = None,
    use_project_defaults_for_omitted: bool = False,
    cache: Any = None,
    cache_version: str = "",
    cache_ignore_input_vars: tuple[str, ...] | list[str] = (),
    retries: int = 0,
    timeout: Any = dt.timedelta(hours=3),
    use_latest_git_ref: bool = False,
) -> Any:
    """Define a DominoJobTask and call it with the given inputs, in one step (as the Domino helper does)."""
    for field, items, kind in (("inputs", inputs, Input), ("output_specs", output_specs, Output)):
        _refuse_non_specs(flyte_task_name, field, items, kind)
    # Building the interface dicts below would silently keep only the last of two same-named entries.
    _refuse_duplicates(flyte_task_name, "inputs", [i.name for i in inputs or []])
    outputs = _dedupe_outputs(flyte_task_name, list(output_specs or []))
    revision = None
    if environment_revision_id:
        revision = EnvironmentRevisionSpecification(EnvironmentRevisionType.SomeRevision, environment_revision_id)
    volumes = [getattr(v, "Id", None) or getattr(v, "id", None) or v for v in (external_data_volumes or [])]
    config = DominoJobConfig(
        Command=command, Title=job_title, CommitId=dfs_repo_commit_id, MainRepoGitRef=main_git_repo_ref,
        HardwareTierId=hardware_tier_id, HardwareTierName=hardware_tier_name, EnvironmentId=environment_id,
        EnvironmentName=environment_name, EnvironmentRevisionSpec=revision, VolumeSizeGiB=volume_size_gib,
        DatasetSnapshots=list(dataset_snapshots or []) or None,
        NetAppVolumeSnapshots=list(netapp_volume_snapshots or []) or None,
        ExternalVolumeMountIds=[str(v) for v in volumes] or None,
    )
    task = DominoJobTask(
        name=flyte_task_name, domino_job_config=config,
        inputs={i.name: i.type for i in inputs or []},
        outputs={o.name: o.type for o in outputs},
        use_latest=use_project_defaults_for_omitted, use_latest_git_ref=use_latest_git_ref, cache=cache, cache_version=cache_version,
        cache_ignore_input_vars=cache_ignore_input_vars, retries=retries, timeout=timeout,
    )
    return task(**{i.name: i.value for i in inputs or []})
