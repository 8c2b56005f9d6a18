"""Ordering with >>, repeated calls, module-level tasks, env at import, inline tasks, the old import path."""
import os
from datetime import timedelta

from domino.flyte.task import DatasetSnapshot, DominoJobConfig, DominoJobTask, GitRef  # the older module path
from flytekit import WorkflowFailurePolicy, workflow

HARDWARE = os.environ.get("FLOWS_TEST_HARDWARE", "small-k8s")  # read at import, as real flows do
SNAPSHOTS = [DatasetSnapshot(Id="ds-1", Version=3), DatasetSnapshot(DatasetId="ds-2", SnapshotVersion=7)]

prepare = DominoJobTask(  # created once at module level, called several times
    name="prepare",
    domino_job_config=DominoJobConfig(Command="python prepare.py", HardwareTierId=HARDWARE,
                                      MainRepoGitRef=GitRef(Type="branch", Value="main"), DatasetSnapshots=SNAPSHOTS),
    inputs={"part": int}, outputs={"rows": int},
    cache=True, cache_version="2", retries=2, timeout=timedelta(minutes=30),
)
cleanup = DominoJobTask(name="cleanup", domino_job_config=DominoJobConfig(Command="python cleanup.py"))


@workflow(failure_policy=WorkflowFailurePolicy.FAIL_AFTER_EXECUTABLE_NODES_COMPLETE)
def misc(parts: int = 3) -> int:
    a = prepare(part=1)
    b = prepare(part=2)
    c = prepare(part=parts)
    cleanup() >> a  # ordering without data: cleanup runs first
    total = DominoJobTask(  # an inline definition called at once
        name="total", domino_job_config=DominoJobConfig(Command="python total.py"),
        inputs={"a": int, "b": int, "c": int}, outputs={"sum": int}, cache=False,
    )(a=a, b=b["rows"], c=c.rows)
    return total["sum"]


if __name__ == "__main__":
    raise SystemExit("the __main__ block must not run when flows loads this file")
