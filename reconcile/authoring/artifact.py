"""`flytekitplugins.domino.artifact`: Artifact(name, type).File(name=...) as output types, and exports."""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from reconcile import tracing
from reconcile.authoring.domino_task import strict_keywords
from reconcile.authoring.load_notes import strict_call
from vocab.errors import FlowLoadError
from vocab.flytetypes import FlyteFile
from reconcile.graph import Binding, Node

DATA = "DATA"
MODEL = "MODEL"
REPORT = "REPORT"
ARTIFACT_TYPES = (DATA, MODEL, REPORT)


class Artifact:
    def __init__(self, name: str, type: Any = DATA) -> None:
        kind = getattr(type, "value", type)
        kind = str(getattr(kind, "name", kind)).upper()
        if kind not in ARTIFACT_TYPES:
            src = tracing.caller_source()
            raise FlowLoadError(f"artifact '{name}': type must be DATA, MODEL or REPORT, not {type!r}",
                                file=src.file if src else None, line=src.line if src else None)
        self.name = name
        self.type = kind

    def File(self, name: str, type: str | None = None) -> type:
        """A file type that is also part of this artifact; the format comes from the extension."""
        fmt = type or os.path.splitext(name)[1].lstrip(".")
        base = FlyteFile[fmt] if fmt else FlyteFile
        return builtins_type(f"{self.name}:{name}", (base,), {
            "__flows_artifact__": (self.name, self.type, name),
            "__flows_type__": f"file[{fmt}]" if fmt else "file",
        })

    def __repr__(self) -> str:
        return f"Artifact({self.name!r}, {self.type})"


builtins_type = type


@strict_keywords
@dataclasses.dataclass
class ExportArtifactToDatasetsSpec:
    artifact: Artifact
    dataset_id: str


@strict_keywords
@dataclasses.dataclass
class ExportArtifactToNetAppVolumesSpec:
    artifact: Artifact
    netapp_volume_id: str
    target_relative_path: str | None = None


ExportArtifactToNetappVolumesSpec = ExportArtifactToNetAppVolumesSpec  # the spelling of older plugin versions


@strict_keywords
@dataclasses.dataclass
class ExportArtifactFilesToBundleSpec:
    """Attach artifact files (`Artifact(...).File(name=...)` types) to governance bundles, by bundle name."""
    files: list[Any]
    bundles: list[str]


def _spec_records(spec: Any, i: int, where: dict[str, Any], node: str) -> list[dict[str, Any]]:
    """One export record per (artifact, target): what the provider exports, and what the fingerprint holds."""
    kind = type(spec).__name__
    if isinstance(spec, ExportArtifactFilesToBundleSpec):
        by_artifact: dict[str, list[str]] = {}
        for f in spec.files or []:
            ref = getattr(f, "__flows_artifact__", None)
            if ref is None:
                raise FlowLoadError(f"export spec #{i + 1}: files must be artifact files "
                                    f"(Artifact(...).File(name=...)), not {f!r}", **where, node=node)
            by_artifact.setdefault(ref[0], []).append(ref[2])
        bundles = [spec.bundles] if isinstance(spec.bundles, str) else list(spec.bundles or [])
        if not bundles or not by_artifact:
            raise FlowLoadError(f"export spec #{i + 1}: {kind} needs files and bundles", **where, node=node)
        return [{"kind": kind, "artifact": art, "bundle_id": bundle, "files": files}
                for bundle in bundles for art, files in by_artifact.items()]
    art = getattr(spec, "artifact", None)
    if not isinstance(art, Artifact):
        raise FlowLoadError(f"export spec #{i + 1} has no artifact", **where, node=node)
    target = {k: v for k, v in dataclasses.asdict(spec).items() if k != "artifact" and v is not None}
    return [{"kind": kind, "artifact": art.name, **target}]


@strict_call()
def run_launch_export_artifacts_task(spec_list: list[Any], environment_name: str | None = None,
                                     hardware_tier_name: str | None = None, hardware_tier_id: str | None = None,
                                     use_project_defaults_for_omitted: bool = True) -> Any:
    """A node of its own: exports the files of the named artifacts once they exist."""
    trace = tracing.current()
    src = tracing.caller_source()
    where: dict[str, Any] = dict(file=src.file if src else None, line=src.line if src else None)
    if trace is None:
        raise FlowLoadError("run_launch_export_artifacts_task is called outside a @workflow", **where)
    config = {"EnvironmentName": environment_name, "HardwareTierName": hardware_tier_name,
              "HardwareTierId": hardware_tier_id}
    node = Node(address=trace.address_for("export artifacts"), task_name="export artifacts",
                kind="export_artifacts", source=src, resolve_defaults=use_project_defaults_for_omitted,
                job_config={k: v for k, v in config.items() if v})
    values: dict[str, Any] = {}
    for i, spec in enumerate(spec_list):
        for record in _spec_records(spec, i, where, node.address):
            known = trace.artifacts.get(record["artifact"])
            if known is None or not known.files:
                raise FlowLoadError(f"artifact '{record['artifact']}' has no files produced before this export",
                                    **where, node=node.address)
            wanted = record.get("files")
            missing = [f for f in wanted or [] if f not in {k.file_name for k in known.files}]
            if missing:
                raise FlowLoadError(f"artifact '{record['artifact']}' has no file {', '.join(map(repr, missing))} "
                                    "produced before this export", **where, node=node.address)
            for field in ("dataset_id", "netapp_volume_id", "bundle_id", "target_relative_path"):
                reason = tracing.unsafe_path_part(record[field], nested=field == "target_relative_path") \
                    if record.get(field) is not None else None
                if reason:
                    raise FlowLoadError(f"export spec #{i + 1}: {field} {str(record[field])[:60]!r} {reason}",
                                        **where, node=node.address)
            node.export_specs.append(record)
            for f in known.files:
                if wanted is not None and f.file_name not in wanted:
                    continue
                input_name = f"{record['artifact']}.{f.file_name}".replace(" ", "_").replace("/", "_")
                producer = trace.nodes[f.node]
                node.inputs[input_name] = producer.outputs[f.output]
                values[input_name] = tracing.Promise(Binding(kind="node_output", type=producer.outputs[f.output],
                                                             node=f.node, output=f.output))
    return trace.add_node(node, values)
