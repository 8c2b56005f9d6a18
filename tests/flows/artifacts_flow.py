"""Artifacts: declared by keyword and positionally, .File as task and workflow output types, exports."""
from typing import NamedTuple, TypeVar

from flytekit import task, workflow
from flytekit.types.file import FlyteFile
from flytekitplugins.domino.artifact import (DATA, MODEL, REPORT, Artifact, ExportArtifactToDatasetsSpec,
                                             ExportArtifactToNetAppVolumesSpec, run_launch_export_artifacts_task)
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task

DataArtifact = Artifact(name="Clean Data", type=DATA)
ModelArtifact = Artifact("Model", MODEL)        # positional
ReportArtifact = Artifact("Report", type=REPORT)


@task
def summarize(model: FlyteFile) -> ReportArtifact.File(name="summary.md"):  # @task return type
    return FlyteFile("summary.md")


@workflow
def with_artifacts(raw: FlyteFile[TypeVar("csv")]) -> NamedTuple("Out", model=ModelArtifact.File(name="model.json"),
                                                                  summary=FlyteFile):
    prep = run_domino_job_task(
        flyte_task_name="Prepare", command="python prep.py",
        inputs=[Input(name="raw", type=FlyteFile[TypeVar("csv")], value=raw)],
        output_specs=[Output(name="train", type=DataArtifact.File(name="train.csv")),
                      Output(name="test", type=DataArtifact.File(name="test.csv"))],
    )
    fit = run_domino_job_task(
        flyte_task_name="Fit", command="python fit.py",
        inputs=[Input(name="train", type=FlyteFile[TypeVar("csv")], value=prep["train"])],
        output_specs=[Output(name="model", type=FlyteFile[TypeVar("json")])],
    )
    summary = summarize(model=fit["model"])
    run_launch_export_artifacts_task(
        spec_list=[ExportArtifactToDatasetsSpec(artifact=DataArtifact, dataset_id="dataset-123"),
                   ExportArtifactToNetAppVolumesSpec(artifact=ReportArtifact, netapp_volume_id="vol-7",
                                                     target_relative_path="reports")],
        environment_name="Domino Standard Environment", hardware_tier_id="small-k8s",
        use_project_defaults_for_omitted=True,
    )
    return fit["model"], summary
