"""Train, evaluate, and deploy only after a person approved the evaluation (the Domino "gate a deployment" shape)."""
from datetime import timedelta

import flytekit as fk
from flytekit import approve, workflow
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task
from flytekit.types.file import FlyteFile

from release_helpers import reviewed


@workflow
def release(data: FlyteFile, epochs: int = 3) -> str:
    train = run_domino_job_task(
        flyte_task_name="Train", command="python scripts/train.py",
        inputs=[Input(name="data", type=FlyteFile, value=data), Input(name="epochs", type=int, value=epochs)],
        output_specs=[Output(name="model", type=FlyteFile), Output(name="score", type=float)],
        use_project_defaults_for_omitted=True)
    evaluate = run_domino_job_task(
        flyte_task_name="Evaluate", command="python scripts/evaluate.py",
        inputs=[Input(name="model", type=FlyteFile, value=train["model"])],
        output_specs=[Output(name="report", type=str)], use_project_defaults_for_omitted=True)
    report = approve(evaluate["report"], "deploy", timeout=timedelta(hours=1))  # mark:gate
    deploy = run_domino_job_task(
        flyte_task_name="Deploy", command="python scripts/deploy.py",
        inputs=[Input(name="model", type=FlyteFile, value=train["model"]), Input(name="report", type=str, value=report)],
        output_specs=[Output(name="url", type=str)], use_project_defaults_for_omitted=True)
    score = fk.approve(train["score"], "publish score", fk_timeout())  # the module's own name, positionally
    publish = run_domino_job_task(
        flyte_task_name="Publish", command="python scripts/publish.py",
        inputs=[Input(name="score", type=float, value=reviewed(score, "final check"))],
        output_specs=[Output(name="done", type=str)], use_project_defaults_for_omitted=True)
    publish >> deploy
    return deploy["url"]


def fk_timeout() -> timedelta:
    return timedelta(minutes=30)
