"""run_domino_job_task with every keyword of the Domino docs."""
from datetime import timedelta
from typing import TypeVar

from flytekit import workflow
from flytekit.types.file import FlyteFile
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task
from flytekitplugins.domino.task import DatasetSnapshot, GitRef, NetAppVolumeSnapshot


@workflow
def every_kwarg(data: FlyteFile[TypeVar("csv")], seed: int = 7) -> FlyteFile[TypeVar("json")]:
    res = run_domino_job_task(
        flyte_task_name="Train",
        command="python train.py --seed 7",
        job_title="Training job",
        inputs=[Input(name="data", type=FlyteFile[TypeVar("csv")], value=data), Input(name="seed", type=int, value=seed)],
        output_specs=[Output(name="model", type=FlyteFile[TypeVar("json")])],
        environment_name="Domino Standard Environment",
        environment_id="env-123",
        environment_revision_id="rev-9",
        hardware_tier_name="Medium",
        hardware_tier_id="medium-k8s",
        main_git_repo_ref=GitRef(Type="commitId", Value="abc123"),
        dfs_repo_commit_id="dfs-42",
        dataset_snapshots=[DatasetSnapshot(Id="ds-1", Version=1)],
        netapp_volume_snapshots=[NetAppVolumeSnapshot(Id="vol-1", Version=2)],
        external_data_volumes=["edv-1"],
        volume_size_gib=20,
        use_project_defaults_for_omitted=True,
        cache=True,
        cache_version="1.0",
        cache_ignore_input_vars=["seed"],
        retries=3,
        timeout=timedelta(hours=1),
    )
    return res["model"]
