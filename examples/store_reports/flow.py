"""Weekly store report: check the sales file, summarise every region, combine the summaries, notify.

Plain Domino Flows code (`pyflyte run --remote flow.py weekly_report --sales data/sales.csv` on
Domino; `flows apply flow.py weekly_report --inputs inputs.json` here). It shows:
- `run_domino_job_task` for every task, with the outputs read as `res["x"]`, `res.x` and passed whole;
- the same task called once per region from a loop over a constant (nodes `Summarise Region`, `#2`, `#3`);
- `combined >> notify`: ordering without data;
- a DATA artifact from a task output and a REPORT artifact from the workflow's return type.
"""
from typing import NamedTuple, TypeVar

from flytekit import workflow
from flytekit.types.file import FlyteFile
from flytekitplugins.domino.artifact import DATA, REPORT, Artifact
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task

CSV = FlyteFile[TypeVar("csv")]
JSON = FlyteFile[TypeVar("json")]
REGIONS = ["north", "south", "west"]

Totals = Artifact("Weekly totals", DATA)
WeeklyReport = Artifact("Weekly report", REPORT)

# Every job of this project runs in the same environment on the smallest tier.
JOB_DEFAULTS = dict(environment_name="Domino Standard Environment Py3.10", hardware_tier_name="Small",
                    use_project_defaults_for_omitted=True)


@workflow
def weekly_report(sales: CSV, min_units: int = 1, currency: str = "EUR") -> NamedTuple(
        "WeeklyOutputs", report=WeeklyReport.File(name="weekly.md"), rejected=int):
    checked = run_domino_job_task(
        flyte_task_name="Validate Sales",
        command="python /mnt/code/scripts/validate_sales.py",
        inputs=[Input(name="sales", type=CSV, value=sales), Input(name="min_units", type=int, value=min_units)],
        output_specs=[Output(name="clean", type=CSV), Output(name="rejected", type=int)],
        **JOB_DEFAULTS,
    )
    summaries = {}
    for region in REGIONS:
        summaries[region] = run_domino_job_task(
            flyte_task_name="Summarise Region",
            command="python /mnt/code/scripts/summarise_region.py",
            inputs=[Input(name="sales", type=CSV, value=checked["clean"]), Input(name="region", type=str, value=region)],
            output_specs=[Output(name="summary", type=JSON)],
            cache_version="1",
            **JOB_DEFAULTS,
        )
    combined = run_domino_job_task(
        flyte_task_name="Combine",
        command="python /mnt/code/scripts/combine.py",
        inputs=[Input(name=region, type=JSON, value=summaries[region]) for region in REGIONS]  # passed whole
        + [Input(name="currency", type=str, value=currency)],
        output_specs=[Output(name="report", type=FlyteFile[TypeVar("md")]),
                      Output(name="totals", type=Totals.File(name="totals.csv"))],
        **JOB_DEFAULTS,
    )
    notify = run_domino_job_task(flyte_task_name="Notify", command="python /mnt/code/scripts/notify.py",
                                 cache=False, **JOB_DEFAULTS)
    combined >> notify
    return combined.report, checked.rejected


if __name__ == "__main__":
    print("run me with: flows apply flow.py weekly_report --inputs inputs.json")
