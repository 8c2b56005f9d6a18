"""While a flow file loads, the flytekit / Domino plugin import paths resolve to our implementations.

Flows must be traced by us even when the real flytekit (or python-domino) is installed, so the real
modules are hidden for the duration of the load and restored afterwards. Any other module of
flytekit or python-domino imports too (`flytekit.loggers`, `flytekit.core.promise`, `domino`):
helpers import them at load time and use them at run time. Their names are placeholders that
only fail when the traced workflow uses them (`workflow.Unsupported`).
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import sys
import types
from collections import OrderedDict
from typing import Any, Iterator, Sequence

from vocab import flytetypes
from reconcile.authoring import artifact, domino_task, helpers, workflow

# Packages whose every import is answered while a flow loads (the real ones never are).
SHIMMED_ROOTS = ("flytekit", "flytekitplugins", "domino")
# Of those, packages whose unknown modules are placeholders (the Domino plugin's modules are all known).
PLACEHOLDER_ROOTS = ("flytekit", "domino")


def _module(name: str, attrs: dict[str, Any], unknown_is_unsupported: bool = False) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    mod.__path__ = []  # a package, so submodules resolve through sys.modules
    if unknown_is_unsupported:
        def __getattr__(item: str) -> Any:
            if item.startswith("__"):
                raise AttributeError(item)
            return workflow.Unsupported(f"{name}.{item}")
        mod.__getattr__ = __getattr__  # type: ignore[attr-defined,method-assign]
    return mod


def kwtypes(**kwargs: Any) -> "OrderedDict[str, Any]":
    """flytekit's `kwtypes(a=int, b=str)`: an interface dict."""
    return OrderedDict(kwargs)


def _loggers() -> dict[str, Any]:
    # Real loggers: logging from a flow or helper at load time works, as it does under pyflyte.
    return {"logger": logging.getLogger("flytekit"), "developer_logger": logging.getLogger("developer"),
            "user_space_logger": logging.getLogger("user_space")}


def shim_modules() -> dict[str, types.ModuleType]:
    file_types = {k: getattr(flytetypes, k) for k in ("FlyteFile", *flytetypes.NAMED_FILE_TYPES)}
    dir_types = {"FlyteDirectory": flytetypes.FlyteDirectory}
    flyte = {
        "workflow": workflow.workflow, "task": workflow.task, "WorkflowFailurePolicy": workflow.WorkflowFailurePolicy,
        "dynamic": workflow.dynamic, "eager": workflow.eager, "map_task": workflow.map_task,
        "conditional": workflow.conditional, "approve": workflow.approve, "kwtypes": kwtypes,
        "FlyteFile": flytetypes.FlyteFile, "FlyteDirectory": flytetypes.FlyteDirectory,
        "logger": _loggers()["logger"],
    }
    task_names = {k: getattr(domino_task, k) for k in (
        "DominoJobConfig", "DominoJobTask", "GitRef", "EnvironmentRevisionSpecification",
        "EnvironmentRevisionType", "DatasetSnapshot", "NetAppVolumeSnapshot", "ClusterProperties")}
    helper_names = {"Input": helpers.Input, "Output": helpers.Output,
                    "run_domino_job_task": helpers.run_domino_job_task, **task_names}
    artifact_names = {k: getattr(artifact, k) for k in (
        "Artifact", "DATA", "MODEL", "REPORT", "ExportArtifactToDatasetsSpec", "ExportArtifactToNetAppVolumesSpec",
        "ExportArtifactToNetappVolumesSpec", "ExportArtifactFilesToBundleSpec", "run_launch_export_artifacts_task")}
    wf_names = {"WorkflowFailurePolicy": workflow.WorkflowFailurePolicy, "workflow": workflow.workflow}
    mods = {
        "flytekit": _module("flytekit", flyte, unknown_is_unsupported=True),
        "flytekit.loggers": _module("flytekit.loggers", _loggers(), unknown_is_unsupported=True),
        "flytekit.types": _module("flytekit.types", {}, unknown_is_unsupported=True),
        "flytekit.types.file": _module("flytekit.types.file", file_types, unknown_is_unsupported=True),
        "flytekit.types.directory": _module("flytekit.types.directory", dir_types, unknown_is_unsupported=True),
        "flytekit.core": _module("flytekit.core", {}, unknown_is_unsupported=True),
        "flytekit.core.workflow": _module("flytekit.core.workflow", wf_names, unknown_is_unsupported=True),
        "flytekit.core.task": _module("flytekit.core.task", {"task": workflow.task}, unknown_is_unsupported=True),
        "flytekit.core.base_task": _module("flytekit.core.base_task", {"kwtypes": kwtypes},
                                           unknown_is_unsupported=True),
        "flytekit.core.gate": _module("flytekit.core.gate", {"approve": workflow.approve},
                                      unknown_is_unsupported=True),
        "flytekitplugins": _module("flytekitplugins", {}),
        "flytekitplugins.domino": _module("flytekitplugins.domino", {}),
        "flytekitplugins.domino.task": _module("flytekitplugins.domino.task", task_names),
        "flytekitplugins.domino.helpers": _module("flytekitplugins.domino.helpers", helper_names),
        "flytekitplugins.domino.artifact": _module("flytekitplugins.domino.artifact", artifact_names),
        "flytekitplugins.domino.file": _module("flytekitplugins.domino.file", {"DominoFile": flytetypes.DominoFile}),
        # python-domino (`from domino import Domino` in a helper) and the plugin's oldest import path.
        "domino": _module("domino", {}, unknown_is_unsupported=True),
        "domino.flyte": _module("domino.flyte", {}),
        "domino.flyte.task": _module("domino.flyte.task", task_names),
    }
    # Parent packages expose their children as attributes (`import flytekit.types.file as f`).
    for name, mod in mods.items():
        parent, _, child = name.rpartition(".")
        if parent in mods:
            setattr(mods[parent], child, mod)
    return mods


class _Placeholders(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Any other module of flytekit or python-domino: importable, every name in it a placeholder."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> Any:
        if fullname.partition(".")[0] not in PLACEHOLDER_ROOTS:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: Any) -> types.ModuleType:
        return _module(spec.name, {}, unknown_is_unsupported=True)

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def _shimmed_name(name: str) -> bool:
    return name.partition(".")[0] in SHIMMED_ROOTS


@contextlib.contextmanager
def shimmed() -> Iterator[None]:
    saved = {name: mod for name, mod in sys.modules.items() if _shimmed_name(name)}
    for name in saved:  # the real flytekit / python-domino, when imported, are out of sight
        del sys.modules[name]
    sys.modules.update(shim_modules())
    finder = _Placeholders()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if _shimmed_name(n)]:
            del sys.modules[name]
        sys.modules.update(saved)
