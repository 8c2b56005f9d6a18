"""Not a flow: job definitions shared by the team's flows, written against the plugin's oldest import path."""
import flytekit as fl
from domino.flyte.task import DominoJobConfig as JobConfig, DominoJobTask as Job
from flytekit.core.base_task import kwtypes
from flytekit.extras.tasks.shell import OutputLocation, ShellTask  # imported for another flow; unused here

log = fl.logger

load_a = Job("Load Data A", JobConfig(Command="python scripts/load-data-A.py /mnt/code/data/datasetA.csv"),
             outputs={"datasetA": fl.FlyteFile["csv"]}, environment_name="Domino Standard Environment Py3.11",
             hardware_tier_name="Small", use_latest=True)
load_b = Job(name="Load Data B", domino_job_config=JobConfig(Command="python scripts/load-data-B.py"),
             outputs=kwtypes(datasetB=fl.FlyteFile["csv"]), use_latest=True)
merge = Job(name="Merge", domino_job_config=JobConfig(Command="python scripts/merge.py"),
            inputs=kwtypes(a=fl.FlyteFile["csv"], b=fl.FlyteFile["csv"]),
            outputs=kwtypes(merged=fl.FlyteFile["csv"]), environment_name="Domino Standard Environment Py3.11")
