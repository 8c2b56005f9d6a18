"""`>>` on whole sub-workflows, as release flows write it: set up, prepare (two outputs), then notify."""
from flytekit import workflow
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task


@workflow
def setup_env() -> None:
    run_domino_job_task(flyte_task_name="Mount", command="python mount.py", output_specs=[])


@workflow
def prepare(rows: int) -> tuple[int, int]:
    raw = run_domino_job_task(flyte_task_name="Extract", command="python extract.py",
                              inputs=[Input(name="rows", type=int, value=rows)],
                              output_specs=[Output(name="n", type=int)])
    clean = run_domino_job_task(flyte_task_name="Clean", command="python clean.py",
                                inputs=[Input(name="n", type=int, value=raw["n"])],
                                output_specs=[Output(name="n", type=int)])
    stats = run_domino_job_task(flyte_task_name="Stats", command="python stats.py",
                                inputs=[Input(name="n", type=int, value=raw["n"])],
                                output_specs=[Output(name="mean", type=int)])
    return clean["n"], stats["mean"]


@workflow
def release(rows: int = 10) -> int:
    prepared = prepare(rows=rows)
    setup_env() >> prepared  # the whole sub-workflow waits for the set-up
    notify = run_domino_job_task(flyte_task_name="Notify", command="python notify.py", output_specs=[])
    prepared >> notify  # notify waits for the whole of prepare (both its last nodes)
    return prepared[0]
