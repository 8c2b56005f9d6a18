"""In the spirit of the Domino docs page "Define Flow Artifacts": artifacts declared at module level,
.File(...) as task outputs and as the workflow's return type, and an export task.

Written for these tests (not copied): the same imports, names and shapes the page shows.
"""
from typing import NamedTuple, TypeVar

from flytekit import workflow
from flytekit.types.file import FlyteFile
from flytekitplugins.domino.task import DominoJobConfig, DominoJobTask
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task
from flytekitplugins.domino.artifact import Artifact, DATA, MODEL, REPORT
from flytekitplugins.domino.artifact import ExportArtifactToDatasetsSpec, run_launch_export_artifacts_task

# define the artifact name and type which may be REPORT, DATA or MODEL
DataArtifact = Artifact(name="My Data", type=DATA)
ModelArtifact = Artifact(name="My Model", type=MODEL)
ReportArtifact = Artifact(name="My Report", type=REPORT)


@workflow
def training_workflow(data_path: str) -> ModelArtifact.File(name="model.pt"):
    data_prep_job = DominoJobTask(
        name="Prepare data",
        domino_job_config=DominoJobConfig(Command="python /mnt/code/scripts/prep-data.py"),
        inputs={"data_path": str},
        outputs={"processed_data": DataArtifact.File(name="data.csv")},
        use_latest=True,
    )
    data_prep_results = data_prep_job(data_path=data_path)

    training_job = DominoJobTask(
        name="Train model",
        domino_job_config=DominoJobConfig(Command="python /mnt/code/scripts/train-model.py"),
        inputs={"processed_data": FlyteFile[TypeVar("csv")], "epochs": int, "batch_size": int},
        outputs={"model": FlyteFile[TypeVar("pt")]},
        use_latest=True,
    )
    training_results = training_job(processed_data=data_prep_results["processed_data"], epochs=10, batch_size=32)

    return training_results["model"]


@workflow
def multiple_artifacts(data_path: str) -> NamedTuple(
        "final_outputs", model=ModelArtifact.File(name="model.pt"), report=ReportArtifact.File(name="report.pdf")):
    prep = run_domino_job_task(
        flyte_task_name="Prepare data",
        command="python /mnt/code/scripts/prep-data.py",
        inputs=[Input(name="data_path", type=str, value=data_path)],
        output_specs=[Output(name="processed_data", type=DataArtifact.File(name="data.csv"))],
        use_project_defaults_for_omitted=True,
    )
    train = run_domino_job_task(
        flyte_task_name="Train model",
        command="python /mnt/code/scripts/train-model.py",
        inputs=[Input(name="processed_data", type=FlyteFile[TypeVar("csv")], value=prep["processed_data"])],
        output_specs=[Output(name="model", type=FlyteFile[TypeVar("pt")]),
                      Output(name="report", type=FlyteFile[TypeVar("pdf")])],
        use_project_defaults_for_omitted=True,
    )
    run_launch_export_artifacts_task(
        spec_list=[ExportArtifactToDatasetsSpec(artifact=DataArtifact, dataset_id="6630a1b2c3d4e5f6a7b8c9d3")],
        environment_name="Domino Standard Environment Py3.10",
        hardware_tier_id="small-k8s",
        use_project_defaults_for_omitted=True,
    )
    return train["model"], train["report"]
