"""flows: a Terraform-style desired-state reconciler for Domino Flows.

The authoring API is importable from here for new flows; unmodified Domino flow files that import
`flytekit` / `flytekitplugins.domino` get the same objects while `flows` loads them.
"""
import importlib
from typing import Any

from vocab.version import VERSION

# Where each public name lives; imported on first use so `flows --help` does not pay for pydantic.
_EXPORTS = {
    "reconcile.authoring.artifact": ["DATA", "MODEL", "REPORT", "Artifact", "ExportArtifactFilesToBundleSpec",
                                     "ExportArtifactToDatasetsSpec", "ExportArtifactToNetAppVolumesSpec",
                                     "run_launch_export_artifacts_task"],
    "reconcile.authoring.domino_task": ["ClusterProperties", "DatasetSnapshot", "DominoJobConfig", "DominoJobTask",
                                        "EnvironmentRevisionSpecification", "EnvironmentRevisionType", "GitRef",
                                        "NetAppVolumeSnapshot"],
    "reconcile.authoring.helpers": ["Input", "Output", "run_domino_job_task"],
    "reconcile.authoring.workflow": ["WorkflowFailurePolicy", "approve", "task", "workflow"],
    "vocab.flytetypes": ["CSVFile", "FlyteDirectory", "FlyteFile", "PDFFile"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'reconcile' has no attribute {name!r}")


__version__ = VERSION

__all__ = [
    "DATA", "MODEL", "REPORT", "Artifact", "ExportArtifactFilesToBundleSpec", "ExportArtifactToDatasetsSpec",
    "ExportArtifactToNetAppVolumesSpec", "run_launch_export_artifacts_task", "ClusterProperties",
    "DatasetSnapshot", "DominoJobConfig", "DominoJobTask", "EnvironmentRevisionSpecification",
    "EnvironmentRevisionType", "GitRef", "NetAppVolumeSnapshot", "Input", "Output", "run_domino_job_task",
    "WorkflowFailurePolicy", "approve", "task", "workflow", "CSVFile", "FlyteDirectory", "FlyteFile", "PDFFile",
]
