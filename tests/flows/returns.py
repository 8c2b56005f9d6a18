"""NamedTuple (functional and class style), Tuple and missing return annotations, for @task and @workflow."""
from typing import NamedTuple, Tuple

from flytekit import task, workflow

Stats = NamedTuple("Stats", [("mean", float), ("count", int)])


class Split(NamedTuple):
    train: str
    test: str


@task
def split(text: str) -> Split:
    return Split(text[:1], text[1:])


@task
def stats(values: str) -> Stats:
    return Stats(1.0, len(values))


@task
def pair(a: str, b: str) -> Tuple[int, str]:
    return len(a), b


@task
def side_effect(n: int):
    print(n)


@task
def no_annotations(x, y=2):
    return x


@workflow
def functional_wf(text: str = "abc") -> NamedTuple("Outputs", [("mean", float), ("size", int)]):
    s = stats(values=text)
    return s.mean, s["count"]


@workflow
def class_wf(text: str = "abc") -> Split:
    parts = split(text=text)
    return parts.train, parts.test


@workflow
def tuple_wf(a: str, b: str) -> Tuple[int, str]:
    n, s = pair(a=a, b=b)
    side_effect(n=n)
    no_annotations(x=s)
    return n, s


@workflow
def whole_result_wf(text: str = "abc") -> Split:
    return split(text=text)  # a multi-output result returned whole


@workflow
def no_return_wf(n: int = 1):
    side_effect(n=n)
