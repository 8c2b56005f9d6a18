"""Three workflows in one file, the plugin's old import path, aliases (written for these tests).

pyflyte run --remote flow.py both
"""
import flytekit as fl

from jobs import load_a, load_b, merge


@fl.workflow
def only_a() -> fl.FlyteFile["csv"]:
    return load_a()["datasetA"]


@fl.workflow
def only_b() -> fl.FlyteFile["csv"]:
    return load_b()["datasetB"]


@fl.workflow
def both() -> fl.FlyteFile["csv"]:
    return merge(a=only_a(), b=only_b())["merged"]
