"""Imports every unsupported flytekit name; only workflows that use one fail."""
from flytekit import Resources, conditional, dynamic, eager, map_task, task, workflow


@task(requests=Resources(cpu="1"))  # an unlisted flytekit name, used outside a workflow
def square(x: int) -> int:
    return x * x


@dynamic
def fan_out(n: int) -> int:
    return n


@eager
async def eager_flow(n: int) -> int:
    return n


@workflow
def plain(n: int = 2) -> int:
    return square(x=n)[0]


@workflow
def uses_dynamic(n: int = 2) -> int:
    return fan_out(n=n)  # mark:used


@workflow
def uses_eager(n: int = 2) -> int:
    return eager_flow(n=n)  # mark:used


@workflow
def uses_map_task(n: int = 2) -> int:
    map_task(square)(x=[n, n])  # mark:used
    return n


@workflow
def uses_conditional(n: int = 2) -> int:
    return conditional("big").if_(n > 1).then(square(x=n)).else_().then(square(x=1))  # mark:used

