"""The Domino "AI training flow" template: load two data sets, merge, process, train.

Unmodified Domino Flows code: it runs on Domino with `pyflyte run --remote flow.py model_training ...`
and with `flows plan/apply flow.py model_training ...` on this machine.
"""
from typing import TypeVar

from flytekit import workflow
from flytekit.types.file import FlyteFile
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task

CSV = FlyteFile[TypeVar("csv")]


@workflow
def model_training(data_path_a: CSV, data_path_b: CSV, learning_rate: float = 0.1, epochs: int = 200) -> FlyteFile[TypeVar("json")]:
    load_a = run_domino_job_task(
        flyte_task_name="Load Data A",
        command="python /mnt/code/scripts/load_data.py A",
        inputs=[Input(name="data_path", type=CSV, value=data_path_a)],
        output_specs=[Output(name="datasetA", type=CSV)],
        environment_name="Domino Standard Environment Py3.11",
        hardware_tier_name="Small",
        use_project_defaults_for_omitted=True,
    )
    load_b = run_domino_job_task(
        flyte_task_name="Load Data B",
        command="python /mnt/code/scripts/load_data.py B",
        inputs=[Input(name="data_path", type=CSV, value=data_path_b)],
        output_specs=[Output(name="datasetB", type=CSV)],
        environment_name="Domino Standard Environment Py3.11",
        hardware_tier_name="Small",
        use_project_defaults_for_omitted=True,
    )
    merged = run_domino_job_task(
        flyte_task_name="Merge Data",
        command="python /mnt/code/scripts/merge_data.py",
        inputs=[Input(name="datasetA", type=CSV, value=load_a["datasetA"]),
                Input(name="datasetB", type=CSV, value=load_b["datasetB"])],
        output_specs=[Output(name="merged_data", type=CSV)],
        environment_name="Domino Standard Environment Py3.11",
        hardware_tier_name="Small",
        use_project_defaults_for_omitted=True,
    )
    processed = run_domino_job_task(
        flyte_task_name="Process Data",
        command="python /mnt/code/scripts/process_data.py",
        inputs=[Input(name="data_path", type=CSV, value=merged["merged_data"])],
        output_specs=[Output(name="processed_data", type=CSV)],
        environment_name="Domino Standard Environment Py3.11",
        hardware_tier_name="Small",
        use_project_defaults_for_omitted=True,
    )
    trained = run_domino_job_task(
        flyte_task_name="Train Model",
        command="python /mnt/code/scripts/train_model.py",
        inputs=[Input(name="processed_data", type=CSV, value=processed["processed_data"]),
                Input(name="learning_rate", type=float, value=learning_rate),
                Input(name="epochs", type=int, value=epochs)],
        output_specs=[Output(name="model", type=FlyteFile[TypeVar("json")]),
                      Output(name="accuracy", type=float)],
        environment_name="Domino Standard Environment Py3.11",
        hardware_tier_name="Medium",
        use_project_defaults_for_omitted=True,
    )
    return trained["model"]


if __name__ == "__main__":
    print("run me with: flows apply flow.py model_training --data_path_a data/a.csv --data_path_b data/b.csv")
