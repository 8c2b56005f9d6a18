"""Every example under examples/ loads, names only scripts it has, and its jobs really run in DAG order.

The run here is deliberately simple (no state, no cache): each node's command runs as a Domino job
would see it, with its inputs in `$FLOWS_INPUTS_DIR/<name>` and its outputs collected from
`$FLOWS_OUTPUTS_DIR/<name>`, so a mismatch between a flow and its scripts fails this test.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vocab.flytetypes import is_blob
from reconcile.graph import FlowGraph
from reconcile.inputs import read_inputs_file, resolve_inputs
from reconcile.loader import load_flow

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(p.parent for p in EXAMPLES_DIR.glob("*/flow.py"))
# Examples without an inputs.json (the lead's ai_training) get their inputs here.
INPUTS: dict[str, dict[str, Any]] = {"ai_training": {"data_path_a": "data/a.csv", "data_path_b": "data/b.csv"}}


def example_inputs(example: Path) -> dict[str, Any]:
    if (example / "inputs.json").exists():
        return read_inputs_file(str(example / "inputs.json"))
    return INPUTS[example.name]


def script_paths(graph: FlowGraph, example: Path) -> list[Path]:
    paths = []
    for node in graph.nodes.values():
        for token in node.command.split():
            if token.endswith(".py"):
                paths.append(example / token.removeprefix("/mnt/code/"))
    return paths


def write_value(dest: Path, t: str, value: Any) -> None:
    """A value as a Domino job finds it: a file's content, or the value's text (bools as Go prints them)."""
    if is_blob(t):
        shutil.copy(value, dest)
    elif isinstance(value, bool):
        dest.write_text("true" if value else "false")
    else:
        dest.write_text(str(value))


def run_flow(example: Path, work: Path) -> tuple[dict[str, Path], dict[tuple[str, str], Path]]:
    """Run every node's command in order; return the flow outputs' files and every node output's file."""
    graph = load_flow(example / "flow.py")
    values = resolve_inputs(graph, {}, example_inputs(example), cwd=example)
    produced: dict[tuple[str, str], Path] = {}
    for i, (address, node) in enumerate(graph.nodes.items()):
        job = work / f"job{i}"
        (job / "inputs").mkdir(parents=True)
        (job / "outputs").mkdir()
        for name, b in node.bindings.items():
            dest = job / "inputs" / name
            if b.kind == "node_output":
                shutil.copy(produced[(b.node, b.output)], dest)  # type: ignore[index]
            else:
                write_value(dest, b.type, values[b.name] if b.kind == "flow_input" else b.value)
        command = node.command.replace("/mnt/code", str(example))
        env = {**os.environ, "FLOWS_INPUTS_DIR": str(job / "inputs"), "FLOWS_OUTPUTS_DIR": str(job / "outputs"),
               "PYTHONDONTWRITEBYTECODE": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        done = subprocess.run(["bash", "-c", command], cwd=example, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, f"{address}: {done.stderr}"
        for name in node.outputs:
            path = job / "outputs" / name
            assert path.exists(), f"{address} did not write output {name}"
            produced[(address, name)] = path
    return {name: produced[(b.node, b.output)] for name, b in graph.outputs.items()}, produced  # type: ignore[misc]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_loads_and_names_only_existing_scripts(example):
    graph = load_flow(example / "flow.py")  # each example has one top-level workflow
    assert graph.nodes and graph.project_root == str(example)
    assert (example / "flows.toml").exists()
    assert all(p.exists() for p in script_paths(graph, example)), script_paths(graph, example)
    resolve_inputs(graph, {}, example_inputs(example), cwd=example)  # every input file exists


def test_examples_together_cover_the_patterns_the_issue_asks_for():
    graphs = {e.name: load_flow(e / "flow.py") for e in EXAMPLES}
    assert len(graphs) >= 3
    artifact_types = {a.type for g in graphs.values() for a in g.artifacts.values()}
    assert artifact_types == {"DATA", "MODEL", "REPORT"}
    churn = graphs["churn_model"]
    assert "churn_training/prepare_features/Split" in churn.nodes  # a sub-workflow
    assert list(churn.outputs) == ["model", "report", "accuracy"]  # a NamedTuple return
    stores = graphs["store_reports"]
    assert {"Summarise Region", "Summarise Region#2", "Summarise Region#3"} <= {a.split("/")[-1] for a in stores.nodes}
    assert stores.nodes["weekly_report/Notify"].after == ["weekly_report/Combine"]


def test_churn_model_runs(tmp_path):
    outputs, _ = run_flow(EXAMPLES_DIR / "churn_model", tmp_path)
    model = json.loads(outputs["model"].read_text())
    assert len(model["weights"]) == len(model["features"]) == 5
    accuracy = float(outputs["accuracy"].read_text())
    assert 0.7 <= accuracy <= 1.0
    assert outputs["report"].read_text().startswith("# Churn model report")


def test_store_reports_runs(tmp_path):
    outputs, produced = run_flow(EXAMPLES_DIR / "store_reports", tmp_path)
    assert outputs["rejected"].read_text() == "3"  # the three broken rows in data/sales.csv
    report = outputs["report"].read_text()
    assert report.startswith("# Weekly store report")
    assert [line.split("|")[1].strip() for line in report.splitlines()[4:]] == ["north", "south", "west"]
    with open(produced[("weekly_report/Combine", "totals")], newline="") as f:
        totals = list(csv.DictReader(f))
    assert [r["region"] for r in totals] == ["north", "south", "west"] and all(float(r["revenue"]) > 0 for r in totals)


def test_ai_training_runs(tmp_path):
    outputs, _ = run_flow(EXAMPLES_DIR / "ai_training", tmp_path)
    assert json.loads(outputs["o0"].read_text())["weights"]
