"""`flytekitplugins.domino.artifact`: Artifact(name, type).File(name=...) as output types, and exports."""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from reconcile import tracing
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


@dataclasses.dataclass
class ExportArtifactToDatasetsSpec:
    artifact: Artifact
    dataset_id: str


@dataclasses.dataclass
class ExportArtifactToNetAppVolumesSpec:
    artifact: Artifact
    netapp_volume_id: str
    target_relative_path: str | None = None


@dataclasses.dataclass
class ExportArtifactFilesToBundleSpec:
    artifact: Artifact
    bundle_id: str | None = None
    extra: dict[str, Any] | None = None


def run_launch_export_artifacts_task(spec_list: list[Any], environment_name: str | None = None,
                                     hardware_tier_id: str | None = None,
                                     use_project_defaults_for_omitted: bool = True, **_: Any) -> Any:
    """A node of its own: exports the files of the named artifacts once they exist."""
    trace = tracing.current()
    src = tracing.caller_source()
    where = dict(file=src.file if src else None, line=src.line if src else None)
    if trace is None:
        raise FlowLoadError("run_launch_export_artifacts_task is called outside a @workflow", **where)
    node = Node(address=trace.address_for("export artifacts"), task_name="export artifacts",
                kind="export_artifacts", source=src, resolve_defaults=use_project_defaults_for_omitted,
                job_config={k: v for k, v in {"EnvironmentName": environment_name,
                                              "HardwareTierId": hardware_tier_id}.items() if v})
    values: dict[str, Any] = {}
    for i, spec in enumerate(spec_list):
        art = getattr(spec, "artifact", None)
        if not isinstance(art, Artifact):
            raise FlowLoadError(f"export spec #{i + 1} has no artifact", **where, node=node.address)
        known = trace.artifacts.get(art.name)
        if known is None or not known.files:
            raise FlowLoadError(f"artifact '{art.name}' has no files produced before this export", **where,
                                node=node.address)
        target = {k: v for k, v in dataclasses.asdict(spec).items() if k != "artifact"}
        for field in ("dataset_id", "netapp_volume_id", "bundle_id", "target_relative_path"):
            reason = tracing.unsafe_path_part(target[field], nested=field == "target_relative_path") \
                if target.get(field) is not None else None
            if reason:
                raise FlowLoadError(f"export spec #{i + 1}: {field} {str(target[field])[:60]!r} {reason}", **where,
                                    node=node.address)
        node.export_specs.append({"kind": type(spec).__name__, "artifact": art.name, **target})
        for f in known.files:
            input_name = f"{art.name}.{f.file_name}".replace(" ", "_").replace("/", "_")
            producer = trace.nodes[f.node]
            node.inputs[input_name] = producer.outputs[f.output]
            values[input_name] = tracing.Promise(Binding(kind="node_output", type=producer.outputs[f.output],
                                                         node=f.node, output=f.output))
    return trace.add_node(node, values)
