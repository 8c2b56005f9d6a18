"""A flow that imports a sub-workflow and a task from a module next to it."""
from flytekit import workflow

from helper_module import shared_sub, shout


@workflow
def uses_helper(text: str = "hi") -> str:
    once = shared_sub(text=text)
    return shout(text=once)["loud"]
