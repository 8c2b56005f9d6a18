"""Constructs that used to be refused although they are static, now loaded, planned and run with the local
provider, in flows shaped like real ones: enums (Flyte's string enums), ... Each runs through the real CLI."""
from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures.projects import flows, write_project

ENUM_FLOW = '''
from enum import Enum

from flytekit import task, workflow
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task


class Region(Enum):
    EU = "eu"
    US = "us"


@task
def rows_for(region: Region, n: int) -> int:
    assert isinstance(region, Region), type(region)  # the function gets the member, as under flytekit
    return n * (2 if region is Region.EU else 3)


@task
def home_region() -> Region:
    return Region.US


@workflow
def regional(region: Region = Region.EU, n: int = 5) -> int:
    first = rows_for(region=region, n=n)
    second = rows_for(region=home_region(), n=first)
    run_domino_job_task(
        flyte_task_name="Label", command="python scripts/label.py",
        inputs=[Input(name="region", type=Region, value=region)],
        output_specs=[Output(name="label", type=str)])
    return second
'''

LABEL = '''
region = open("/workflow/inputs/region").read()
open("/workflow/outputs/label", "w").write(region.upper())
'''


def test_an_enum_is_a_string_enum_from_the_command_line_to_the_task(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", ENUM_FLOW, {"scripts/label.py": LABEL})
    plan = json.loads(flows("plan", "flow.py", "regional", "--json", cwd=root).out)
    assert plan["inputs"] == {"region": "eu", "n": 5}
    assert plan["nodes"][0]["fingerprint"]["task"]["interface"]["inputs"]["region"] == "enum[eu|us]"
    r = flows("apply", "flow.py", "regional", "--region", "us", "--auto-approve", cwd=root)
    assert r.code == 0, r.text
    assert "o0 = 45" in r.out  # 5 * 3 (US), then 15 * 3 (home region US)
    label = flows("outputs", "regional/Label", "--json", cwd=root)
    assert json.loads(label.out)["label"]["value"] == "US"
    again = flows("plan", "flow.py", "regional", "--region", "us", cwd=root)
    assert "No changes." in again.out
    bad = flows("plan", "flow.py", "regional", "--region", "asia", cwd=root)
    assert bad.code == 1 and "--region" in bad.err and "eu, us" in bad.err and "Traceback" not in bad.err
    assert len(bad.err.strip().splitlines()) == 1


def test_an_enum_whose_values_are_not_strings_is_one_line_naming_the_file(tmp_path: Path) -> None:
    flow = ENUM_FLOW.replace('EU = "eu"', "EU = 1").replace('US = "us"', "US = 2")
    root = write_project(tmp_path / "p", flow, {"scripts/label.py": LABEL})
    r = flows("validate", "flow.py", "regional", cwd=root)
    assert r.code == 1 and "Flyte needs string values (got 1)" in r.err and "flow.py" in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1


DATACLASS_FLOW = '''
from dataclasses import dataclass

from flytekit import task, workflow
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task


@dataclass
class TrainConfig:
    epochs: int
    learning_rate: float


@dataclass
class Metrics:
    accuracy: float
    label: str


@task
def evaluate(epochs: int) -> Metrics:
    return Metrics(accuracy=0.5 + epochs / 100, label=f"e{epochs}")


@task
def gate_on(accuracy: float, label: str) -> str:
    return f"{label}:{accuracy:.2f}"


@workflow
def tuned(config: TrainConfig = TrainConfig(epochs=3, learning_rate=0.1)) -> str:
    train = run_domino_job_task(
        flyte_task_name="Train", command="python scripts/train.py",
        inputs=[Input(name="epochs", type=int, value=config.epochs),
                Input(name="lr", type=float, value=config.learning_rate)],
        output_specs=[Output(name="metrics", type=Metrics)])
    metrics = evaluate(epochs=config.epochs)
    return gate_on(accuracy=train["metrics"].accuracy, label=metrics.label)
'''

TRAIN = '''
import json
epochs = int(open("/workflow/inputs/epochs").read())
lr = float(open("/workflow/inputs/lr").read())
json.dump({"accuracy": round(epochs * lr, 3), "label": "train"}, open("/workflow/outputs/metrics", "w"))
'''


def test_attribute_access_into_dataclass_values_binds_the_field(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", DATACLASS_FLOW, {"scripts/train.py": TRAIN})
    r = flows("apply", "flow.py", "tuned", "--auto-approve", cwd=root)
    assert r.code == 0, r.text
    assert "o0 = 'e3:0.30'" in r.out  # label from evaluate(...).label, accuracy from Train's metrics.accuracy
    r = flows("apply", "flow.py", "tuned", "--config", '{"epochs": 3, "learning_rate": 0.2}', "--auto-approve",
              cwd=root)
    assert r.code == 0 and "o0 = 'e3:0.60'" in r.out, r.text
    plan = json.loads(flows("plan", "flow.py", "tuned", "--config", '{"epochs": 3, "learning_rate": 0.2}', "--json",
                            cwd=root).out)
    assert {n["action"] for n in plan["nodes"]} == {"reuse"}
    gate_on = next(n for n in plan["nodes"] if n["address"] == "tuned/gate_on")
    assert gate_on["fingerprint"]["inputs"]["accuracy"] == {"type": "float", "value": 0.6}  # the field's value


def test_a_field_a_dataclass_does_not_have_is_one_line_with_a_did_you_mean(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", DATACLASS_FLOW.replace("metrics.label)", "metrics.lable)"),
                         {"scripts/train.py": TRAIN})
    r = flows("validate", "flow.py", "tuned", cwd=root)
    assert r.code == 1 and "has no field 'lable' (did you mean 'label'?)" in r.err, r.err
    line = next(i for i, t in enumerate((root / "flow.py").read_text().splitlines(), 1) if "metrics.lable" in t)
    assert f"flow.py:{line}:" in r.err and len(r.err.strip().splitlines()) == 1


COLLECTION_FLOW = '''
from typing import Dict, List

from flytekit import task, workflow
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task


@task
def count_rows(region: str, base: int) -> int:
    return base + len(region)


@task
def weigh(counts: Dict[str, int]) -> float:
    return counts["eu"] / (counts["eu"] + counts["us"])


@workflow
def regions(base: int = 10) -> float:
    eu = count_rows(region="eu", base=base)
    us = count_rows(region="usa", base=base)
    total = run_domino_job_task(
        flyte_task_name="Total", command="python scripts/total.py",
        inputs=[Input(name="counts", type=List[int], value=[eu, us, 1])],  # flow values and a literal in one list
        output_specs=[Output(name="total", type=int)])
    return weigh(counts={"eu": eu, "us": us})
'''

TOTAL = '''
import json
counts = json.load(open("/workflow/inputs/counts"))
open("/workflow/outputs/total", "w").write(str(sum(counts)))
'''


def test_flow_values_inside_a_list_or_dict_literal_are_bound_element_by_element(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", COLLECTION_FLOW, {"scripts/total.py": TOTAL})
    r = flows("apply", "flow.py", "regions", "--auto-approve", cwd=root)
    assert r.code == 0, r.text
    assert "o0 = 0.48" in r.out  # 12 / (12 + 13)
    total = json.loads(flows("outputs", "regions/Total", "--json", cwd=root).out)
    assert total["total"]["value"] == 12 + 13 + 1
    plan = json.loads(flows("plan", "flow.py", "regions", "--base", "20", "--json", cwd=root).out)
    by = {n["address"]: n for n in plan["nodes"]}
    assert by["regions/Total"]["action"] == "pending" and by["regions/Total"]["pending_on"] == [
        "regions/count_rows", "regions/count_rows#2"]
    assert flows("apply", "flow.py", "regions", "--base", "20", "--auto-approve", cwd=root).code == 0
    back = json.loads(flows("plan", "flow.py", "regions", "--json", cwd=root).out)  # back to base 10: all cached
    entry = next(n for n in back["nodes"] if n["address"] == "regions/Total")["fingerprint"]["inputs"]["counts"]
    assert entry == {"type": "list[int]", "value": [12, 13, 1]} and {n["action"] for n in back["nodes"]} == {"reuse"}
    dot = flows("graph", "flow.py", "regions", "--format", "dot", cwd=root).out
    assert '"regions/count_rows#2" -> "regions/Total"' in dot  # one edge per element


def test_a_list_of_files_from_several_nodes_is_one_line_saying_why(tmp_path: Path) -> None:
    flow = COLLECTION_FLOW.replace("type=List[int], value=[eu, us, 1]", "type=List[FlyteFile], value=[eu, us]")
    flow = flow.replace("from flytekit import task, workflow", "from flytekit import task, workflow\n"
                        "from flytekit.types.file import FlyteFile")
    root = write_project(tmp_path / "p", flow, {"scripts/total.py": TOTAL})
    r = flows("validate", "flow.py", "regions", cwd=root)
    assert r.code == 1 and "a list[file] input made of files from several nodes" in r.err, r.err
    assert "flow.py:" in r.err and len(r.err.strip().splitlines()) == 1


def test_a_class_flyte_would_pickle_is_one_line_saying_why() -> None:
    from reconcile.loader import load_flow
    from vocab.errors import FlowLoadError
    flow = Path(__file__).parent / "flows" / "pickled_class.py"
    line = next(i for i, t in enumerate(flow.read_text().splitlines(), 1) if "# mark:bad" in t)
    try:
        load_flow(flow, "wf")
    except FlowLoadError as e:
        assert (e.file, e.line) == (str(flow), line)
        assert e.message.endswith("type Model is not supported as a flow value (Flyte would pickle it, and a pickle "
                                  "cannot key a cache: use a dataclass, an Enum, or a file)"), e.message
    else:
        raise AssertionError("a pickled class loaded")
