"""Sub-workflows without inputs or outputs, positional run_domino_job_task, returning an output-less result."""
from flytekit import workflow
from flytekitplugins.domino.helpers import run_domino_job_task


@workflow
def inner():
    run_domino_job_task("Echo inner", "echo inner", use_project_defaults_for_omitted=True)


@workflow
def outer():
    run_domino_job_task("Echo outer", "echo outer")
    inner()
    inner()


@workflow
def root():
    outer()
    return run_domino_job_task("Echo last", "echo last")
