"""A new flow written against `reconcile` directly (no flytekit import paths)."""
from typing import NamedTuple

from reconcile import (DATA, Artifact, DominoJobConfig, DominoJobTask, FlyteFile, Input, Output,
                       run_domino_job_task, workflow)

Raw = Artifact("Raw", DATA)

fetch = DominoJobTask(name="fetch", domino_job_config=DominoJobConfig(Command="python fetch.py"),
                      inputs={"url": str}, outputs={"page": Raw.File(name="page.html")})


@workflow
def native(url: str = "https://example.com") -> NamedTuple("Out", size=int):
    page = fetch(url=url)
    measured = run_domino_job_task(flyte_task_name="measure", command="python measure.py",
                                   inputs=[Input(name="page", type=FlyteFile, value=page)],
                                   output_specs=[Output(name="size", type=int)])
    return measured["size"]
