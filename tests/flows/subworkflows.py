"""Sub-workflows three levels deep, one called twice."""
from flytekit import workflow
from flytekitplugins.domino.task import DominoJobConfig, DominoJobTask

add = DominoJobTask(name="add", domino_job_config=DominoJobConfig(Command="python add.py"),
                    inputs={"a": int, "b": int}, outputs={"sum": int})


@workflow
def leaf(x: int, y: int = 1) -> int:
    return add(a=x, b=y)["sum"]


@workflow
def middle(x: int) -> int:
    once = leaf(x=x)
    return leaf(x=once, y=x)  # the same sub-workflow twice


@workflow
def top(x: int = 3) -> int:
    inner = middle(x=x)
    return add(a=inner, b=x)["sum"]
