"""Each workflow misuses approve once, as a person might."""
from datetime import timedelta

from flytekit import approve, workflow
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task


def job(name, outputs, **inputs):
    return run_domino_job_task(flyte_task_name=name, command=f"python {name}.py",
                               inputs=[Input(name=k, type=int, value=v) for k, v in inputs.items()],
                               output_specs=[Output(name=o, type=int) for o in outputs])


@workflow
def gates_a_flow_input(n: int = 1) -> int:
    return approve(n, "ok", timeout=timedelta(hours=1))  # mark:bad


@workflow
def gates_two_outputs(n: int = 1) -> None:
    approve(job("two", ["a", "b"], n=n), "ok", timeout=timedelta(hours=1))  # mark:bad


@workflow
def gates_nothing(n: int = 1) -> None:
    approve(job("none", [], n=n), "ok", timeout=timedelta(hours=1))  # mark:bad


@workflow
def same_name_twice(n: int = 1) -> None:
    approve(job("one", ["a"], n=n), "ok", timeout=timedelta(hours=1))
    approve(job("other", ["a"], n=n), "ok", timeout=timedelta(hours=1))  # mark:bad


@workflow
def bad_timeout(n: int = 1) -> None:
    approve(job("one", ["a"], n=n), "ok", timeout="1h")  # mark:bad


@workflow
def no_timeout(n: int = 1) -> None:
    approve(job("one", ["a"], n=n), "ok")  # mark:bad


@workflow
def typo_keyword(n: int = 1) -> None:
    approve(job("one", ["a"], n=n), "ok", timout=timedelta(hours=1))  # mark:bad
