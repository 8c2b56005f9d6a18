"""flows: a Terraform-style desired-state reconciler for Domino Flows.

The authoring API is importable from here for new flows; unmodified Domino flow files that import
`flytekit` / `flytekitplugins.domino` get the same objects while `flows` loads them.
"""
from reconcile.authoring.artifact import (
    DATA, MODEL, REPORT, Artifact, ExportArtifactFilesToBundleSpec, ExportArtifactToDatasetsSpec,
    ExportArtifactToNetAppVolumesSpec, run_launch_export_artifacts_task,
)
from reconcile.authoring.domino_task import (
    ClusterProperties, DatasetSnapshot, DominoJobConfig, DominoJobTask, EnvironmentRevisionSpecification,
    EnvironmentRevisionType, GitRef, NetAppVolumeSnapshot,
)
from reconcile.authoring.helpers import Input, Output, run_domino_job_task
from reconcile.authoring.workflow import WorkflowFailurePolicy, task, workflow
from reconcile.flytetypes import CSVFile, FlyteDirectory, FlyteFile, PDFFile

__version__ = "0.1.0"

__all__ = [
    "DATA", "MODEL", "REPORT", "Artifact", "ExportArtifactFilesToBundleSpec", "ExportArtifactToDatasetsSpec",
    "ExportArtifactToNetAppVolumesSpec", "run_launch_export_artifacts_task", "ClusterProperties",
    "DatasetSnapshot", "DominoJobConfig", "DominoJobTask", "EnvironmentRevisionSpecification",
    "EnvironmentRevisionType", "GitRef", "NetAppVolumeSnapshot", "Input", "Output", "run_domino_job_task",
    "WorkflowFailurePolicy", "task", "workflow", "CSVFile", "FlyteDirectory", "FlyteFile", "PDFFile",
]
