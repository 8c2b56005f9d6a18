"""A task returning a plain Python class, which Flyte would pickle: refused, saying why."""
from flytekit import task, workflow

class Model:
    pass

@task  # mark:bad
def fit(n: int) -> Model:
    return Model()

@workflow
def wf(n: int = 1) -> None:
    fit(n=n)
