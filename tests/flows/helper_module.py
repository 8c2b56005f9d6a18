"""Not a flow: a module flows import from their own folder (its flytekit imports must be shimmed too)."""
from flytekit import workflow
from flytekitplugins.domino.task import DominoJobConfig, DominoJobTask

shout = DominoJobTask(name="shout", domino_job_config=DominoJobConfig(Command="python shout.py"),
                      inputs={"text": str}, outputs={"loud": str})


@workflow
def shared_sub(text: str) -> str:
    return shout(text=text)["loud"]
