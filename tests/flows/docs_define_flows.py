"""In the spirit of the Domino docs page "Define flows": both task styles, the full job config, a NamedTuple return.

Written for these tests (not copied): the same imports, names and shapes the page shows.
"""
from flytekit import workflow
from flytekit.types.file import FlyteFile
from typing import TypeVar, NamedTuple
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task
from flytekitplugins.domino.task import DominoJobConfig, DominoJobTask, GitRef, EnvironmentRevisionSpecification, EnvironmentRevisionType, DatasetSnapshot
from flytekitplugins.domino.artifact import Artifact, DATA, MODEL, REPORT


@workflow
def training_workflow(data_path: str) -> NamedTuple("final_outputs", model=FlyteFile[TypeVar("pt")]):
    data_prep_results = run_domino_job_task(
        flyte_task_name="Prepare data",
        command="python /mnt/code/scripts/prep-data.py",
        inputs=[Input(name="data_path", type=str, value=data_path)],
        output_specs=[Output(name="processed_data", type=FlyteFile[TypeVar("csv")])],
        use_project_defaults_for_omitted=True,
    )

    training_results = run_domino_job_task(
        flyte_task_name="Train model",
        command="python /mnt/code/scripts/train-model.py",
        inputs=[
            Input(name="processed_data", type=FlyteFile[TypeVar("csv")], value=data_prep_results["processed_data"]),
            Input(name="epochs", type=int, value=10),
            Input(name="batch_size", type=int, value=32),
        ],
        output_specs=[Output(name="model", type=FlyteFile[TypeVar("pt")])],
        use_project_defaults_for_omitted=True,
    )

    return training_results["model"]


@workflow
def training_workflow_tasks(data_path: str) -> NamedTuple("final_outputs", model=FlyteFile[TypeVar("pt")]):
    data_prep_job_config = DominoJobConfig(Command="python /mnt/code/scripts/prep-data.py")
    data_prep_job = DominoJobTask(
        name="Prepare data",
        domino_job_config=data_prep_job_config,
        inputs={"data_path": str},
        outputs={"processed_data": FlyteFile[TypeVar("csv")]},
        use_latest=True,
    )
    data_prep_results = data_prep_job(data_path=data_path)

    training_job_config = DominoJobConfig(
        OwnerName="jane_doe",
        ProjectName="flows-demo",
        ApiKey="docs-api-key-0123456789",
        Command="python /mnt/code/scripts/train-model.py",
        MainRepoGitRef=GitRef(Type="head"),
        HardwareTierId="small-k8s",
        EnvironmentId="6630a1b2c3d4e5f6a7b8c9d0",
        EnvironmentRevisionSpec=EnvironmentRevisionSpecification(
            EnvironmentRevisionType=EnvironmentRevisionType.SomeRevision,
            EnvironmentRevisionId="6630a1b2c3d4e5f6a7b8c9d1",
        ),
        DatasetSnapshots=[DatasetSnapshot(Id="6630a1b2c3d4e5f6a7b8c9d2", Version=1)],
        ExternalVolumeMountIds=[],
        VolumeSizeGiB=10,
    )
    training_job = DominoJobTask(
        name="Train model",
        domino_job_config=training_job_config,
        inputs={"processed_data": FlyteFile[TypeVar("csv")], "epochs": int, "batch_size": int},
        outputs={"model": FlyteFile[TypeVar("pt")]},
        use_latest=False,
    )
    training_results = training_job(processed_data=data_prep_results["processed_data"], epochs=10, batch_size=32)

    return training_results["model"]
