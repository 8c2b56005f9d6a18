"""While a flow file loads, the flytekit / Domino plugin import paths resolve to our implementations.

Flows must be traced by us even when the real flytekit is installed, so the real modules are
shadowed for the duration of the load and restored afterwards.
"""
from __future__ import annotations

import contextlib
import sys
import types
from typing import Any, Iterator

from vocab import flytetypes
from reconcile.authoring import artifact, domino_task, helpers, workflow


def _module(name: str, attrs: dict[str, Any], unknown_is_unsupported: bool = False) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    mod.__path__ = []  # a package, so submodules resolve through sys.modules
    if unknown_is_unsupported:
        def __getattr__(item: str) -> Any:
            if item.startswith("__"):
                raise AttributeError(item)
            return workflow.Unsupported(f"{name}.{item}")
        mod.__getattr__ = __getattr__  # type: ignore[attr-defined]
    return mod


def _public(module: types.ModuleType) -> dict[str, Any]:
    return {k: v for k, v in vars(module).items() if not k.startswith("_")}


def shim_modules() -> dict[str, types.ModuleType]:
    file_types = {k: getattr(flytetypes, k) for k in (
        "FlyteFile", "CSVFile", "PDFFile", "PNGImageFile", "JPEGImageFile", "HTMLPage", "JSONFile",
        "PythonPickledFile")}
    dir_types = {"FlyteDirectory": flytetypes.FlyteDirectory}
    flyte = {
        "workflow": workflow.workflow, "task": workflow.task, "WorkflowFailurePolicy": workflow.WorkflowFailurePolicy,
        "dynamic": workflow.dynamic, "eager": workflow.eager, "map_task": workflow.map_task,
        "conditional": workflow.conditional, "approve": workflow.approve,
        "FlyteFile": flytetypes.FlyteFile, "FlyteDirectory": flytetypes.FlyteDirectory,
    }
    task_names = {k: getattr(domino_task, k) for k in (
        "DominoJobConfig", "DominoJobTask", "GitRef", "EnvironmentRevisionSpecification",
        "EnvironmentRevisionType", "DatasetSnapshot", "NetAppVolumeSnapshot", "ClusterProperties")}
    helper_names = {"Input": helpers.Input, "Output": helpers.Output,
                    "run_domino_job_task": helpers.run_domino_job_task, **task_names}
    artifact_names = {k: getattr(artifact, k) for k in (
        "Artifact", "DATA", "MODEL", "REPORT", "ExportArtifactToDatasetsSpec", "ExportArtifactToNetAppVolumesSpec",
        "ExportArtifactFilesToBundleSpec", "run_launch_export_artifacts_task")}
    mods = {
        "flytekit": _module("flytekit", flyte, unknown_is_unsupported=True),
        "flytekit.types": _module("flytekit.types", {}),
        "flytekit.types.file": _module("flytekit.types.file", file_types),
        "flytekit.types.directory": _module("flytekit.types.directory", dir_types),
        "flytekit.core": _module("flytekit.core", {}, unknown_is_unsupported=True),
        "flytekit.core.workflow": _module("flytekit.core.workflow", {
            "WorkflowFailurePolicy": workflow.WorkflowFailurePolicy, "workflow": workflow.workflow},
            unknown_is_unsupported=True),
        "flytekitplugins": _module("flytekitplugins", {}),
        "flytekitplugins.domino": _module("flytekitplugins.domino", {}),
        "flytekitplugins.domino.task": _module("flytekitplugins.domino.task", task_names),
        "flytekitplugins.domino.helpers": _module("flytekitplugins.domino.helpers", helper_names),
        "flytekitplugins.domino.artifact": _module("flytekitplugins.domino.artifact", artifact_names),
        "domino": _module("domino", {}),
        "domino.flyte": _module("domino.flyte", {}),
        "domino.flyte.task": _module("domino.flyte.task", task_names),
    }
    # Parent packages expose their children as attributes (`import flytekit.types.file as f`).
    for name, mod in mods.items():
        parent, _, child = name.rpartition(".")
        if parent in mods:
            setattr(mods[parent], child, mod)
    return mods


@contextlib.contextmanager
def shimmed() -> Iterator[None]:
    mods = shim_modules()
    saved = {name: sys.modules.get(name) for name in mods}
    sys.modules.update(mods)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
