"""`flows validate` and `flows graph`: output, exit codes, clean errors, and no secret in any output.

Most cases run the real entry point (`reconcile.cli.main.run`, what the console script calls) in
process; a few run the installed `.venv/bin/flows` script itself.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

from reconcile import render_graph
from reconcile.cli.main import run
from reconcile.loader import load_flow

ROOT = Path(__file__).resolve().parent.parent
FLOWS = Path(__file__).parent / "flows"
AI = ROOT / "examples" / "ai_training" / "flow.py"
FLOWS_SCRIPT = Path(sys.executable).parent / "flows"


def flows(monkeypatch, capsys, *args: str, columns: int = 200) -> tuple[int, str, str]:
    """Run `flows ARGS` through the console-script entry point; return (exit code, stdout, stderr)."""
    monkeypatch.setenv("COLUMNS", str(columns))  # wide by default: assertions read whole lines
    monkeypatch.setattr(sys, "argv", ["flows", *args])
    code = 0
    try:
        run()
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_prints_nodes_bindings_outputs_and_exits_0(monkeypatch, capsys):
    code, out, err = flows(monkeypatch, capsys, "validate", str(AI))
    assert (code, err) == (0, "")
    assert "workflow model_training is valid" in out
    assert "in   datasetA: file[csv] ← Load Data A.datasetA" in out
    assert "in   learning_rate: float ← input learning_rate" in out
    assert "out  model: file[json]" in out
    assert re.search(r"data_path_a\s+│\s+file\[csv\]\s+│\s+\(required\)", out)
    assert re.search(r"learning_rate\s+│\s+float\s+│\s+0\.1", out)
    assert re.search(r"o0\s+│\s+file\[json\]\s+│\s+Train Model\.model", out)
    assert "model_training: 5 nodes, 4 input(s), 1 output(s), 0 artifact(s)" in out


def test_validate_shows_artifacts_and_names_the_workflow(monkeypatch, capsys):
    code, out, _ = flows(monkeypatch, capsys, "validate", str(FLOWS / "docs_define_artifacts.py"), "multiple_artifacts")
    assert code == 0
    assert re.search(r"My Data\s+│\s+DATA\s+│\s+data\.csv ← Prepare data\.processed_data", out)
    assert re.search(r"My Report\s+│\s+REPORT\s+│\s+report\.pdf ← Train model\.report", out)
    assert "Other workflows in this file: training_workflow" in out


def test_validate_json(monkeypatch, capsys):
    code, out, _ = flows(monkeypatch, capsys, "validate", str(FLOWS / "misc_patterns.py"), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["valid"] is True and data["workflow"] == "misc"
    by_address = {n["address"]: n for n in data["nodes"]}
    assert [n["address"] for n in data["nodes"]] == load_flow(FLOWS / "misc_patterns.py").order()
    assert by_address["misc/prepare"]["upstreams"] == ["misc/cleanup"]
    assert by_address["misc/total"]["bindings"]["b"] == {"kind": "node_output", "type": "int", "value": None,
                                                         "name": None, "node": "misc/prepare#2", "output": "rows",
                                                         "after": [], "path": [], "items": None, "keys": None}


def test_invalid_flow_exits_1_with_one_clean_line(monkeypatch, capsys, tmp_path):
    flow = tmp_path / "bad.py"
    flow.write_text(textwrap.dedent("""\
        from flytekit import workflow
        from flytekitplugins.domino.task import DominoJobConfig, DominoJobTask

        train = DominoJobTask(name="train", domino_job_config=DominoJobConfig(Command="python t.py"),
                              outputs={"model": str})

        @workflow
        def wf() -> str:
            return train()["modle"]
        """))
    for command in (["validate"], ["graph"], ["graph", "--format", "dot"]):
        code, out, err = flows(monkeypatch, capsys, *command, str(flow))
        assert code == 1 and out == ""
        assert err.strip() == f"Error: {flow}:9: node 'wf/train': has no output 'modle' (did you mean 'model'?)"


def test_invalid_flow_json_reports_the_error_as_json(monkeypatch, capsys, tmp_path):
    flow = tmp_path / "nowf.py"
    flow.write_text("X = 1\n")
    code, out, err = flows(monkeypatch, capsys, "validate", str(flow), "--json")
    assert code == 1
    assert json.loads(out) == {"valid": False, "error": {
        "message": "no @workflow found in this file", "file": str(flow), "line": None, "node": None, "field": None,
        "text": f"{flow}: no @workflow found in this file"}}
    assert "Traceback" not in err and "no @workflow found" in err


def test_several_workflows_need_a_name(monkeypatch, capsys):
    code, _, err = flows(monkeypatch, capsys, "graph", str(FLOWS / "returns.py"))
    assert code == 1
    assert "name one of: class_wf, functional_wf, no_return_wf, tuple_wf, whole_result_wf" in err
    code, out, _ = flows(monkeypatch, capsys, "graph", str(FLOWS / "returns.py"), "class_wf")
    # every input has a default, so the nodes carry their plan action (`+ split  (create)`)
    assert code == 0 and re.search(r"split  (\(\w+\)  )?→ train: str, test: str", out)


def test_graph_text_tree(monkeypatch, capsys):
    code, out, _ = flows(monkeypatch, capsys, "graph", str(AI))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"model_training  {AI}"
    tree = [re.sub(r"[│├└─ ]+", " ", line).strip() for line in lines[2:]]
    assert tree == [
        "Load Data A → datasetA: file[csv]",
        "↓ Merge Data (also needs this; drawn under Load Data B)",
        "Load Data B → datasetB: file[csv]",
        "Merge Data → merged_data: file[csv]",
        "Process Data → processed_data: file[csv]",
        "Train Model → model: file[json], accuracy: float",
        "outputs: o0 ← Train Model.model",
    ]
    # depth grows along the chain Load Data B -> Merge -> Process -> Train
    indents = [len(line) - len(line.lstrip("│├└─ ")) for line in lines[4:8]]
    assert indents == sorted(indents) and len(set(indents)) == 4


def test_graph_text_shows_ordering_only_edges(monkeypatch, capsys):
    code, out, _ = flows(monkeypatch, capsys, "graph", str(FLOWS / "access_patterns.py"))
    assert code == 0
    assert "last  → done: int\n" in out
    assert "unpacked  → score: float  (ordering only)\n" in out  # drawn under `last`, its `>>` upstream
    assert "↓ unpacked  (also needs this; drawn under last)" in out  # and referenced under `prep`


def test_graph_dot(monkeypatch, capsys):
    code, out, _ = flows(monkeypatch, capsys, "graph", str(AI), "--format", "dot")
    assert code == 0
    assert out.startswith('digraph "model_training" {') and out.rstrip().endswith("}")
    assert '"model_training/Load Data A" -> "model_training/Merge Data" [label="datasetA"];' in out
    assert '"model_training/Merge Data" -> "model_training/Process Data" [label="merged_data → data_path"];' in out
    assert '"input:data_path_a" -> "model_training/Load Data A" [label="data_path"];' in out
    assert '"model_training/Train Model" -> "output:o0" [label="model"];' in out
    assert out.count("{") == out.count("}") == 1


def test_graph_mermaid_with_ordering_edge(monkeypatch, capsys):
    code, out, _ = flows(monkeypatch, capsys, "graph", str(FLOWS / "misc_patterns.py"), "-f", "mermaid")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "flowchart LR"
    ids = {m.group(2): m.group(1) for m in map(re.compile(r'^  (n\d+)\["(.*)"\]$').match, lines) if m}
    assert set(ids) == {"prepare", "prepare#2", "prepare#3", "cleanup", "total"}
    assert f"  {ids['cleanup']} -.-> {ids['prepare']}" in lines
    assert f'  {ids["prepare#2"]} -->|"rows → b"| {ids["total"]}' in lines


def test_bad_format_is_a_usage_error(monkeypatch, capsys):
    code, out, err = flows(monkeypatch, capsys, "graph", str(AI), "--format", "svgz")
    assert (code, out) == (2, "")
    assert err == "Error: --format: 'svgz' is not one of text, dot, mermaid, svg, html\n"


# ---------------------------------------------------------------- actions (for plan colouring)

def test_renderers_mark_plan_actions():
    graph = load_flow(AI)
    actions = {"model_training/Load Data A": "reuse", "model_training/Train Model": "update"}
    console = Console(record=True, width=200, color_system=None)
    console.print(render_graph.tree(graph, actions))
    console.print(render_graph.report(graph, actions))
    text = console.export_text()
    assert "= Load Data A  (reuse)" in text and "~ Train Model  (update)" in text
    dot = render_graph.to_dot(graph, actions)
    assert '"model_training/Train Model" [label="Train Model\\n(update)", fillcolor="#fff3c4"];' in dot
    mermaid = render_graph.to_mermaid(graph, actions)
    assert "  classDef update fill:#fff3c4" in mermaid and "  class n4 update" in mermaid
    assert [n.get("action") for n in render_graph.as_json(graph, actions)["nodes"]] == [
        "reuse", None, None, None, "update"]


# ---------------------------------------------------------------- secrets

SECRET_FLOW = """\
import os
from flytekit import workflow
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task
from flytekitplugins.domino.task import DominoJobConfig, DominoJobTask

TOKEN = os.environ["HF_TOKEN"]
DB = os.environ["WAREHOUSE_DB_PASSWORD"]

fetch = DominoJobTask(
    name="fetch",
    domino_job_config=DominoJobConfig(Command=f"python fetch.py --token {TOKEN}", ApiKey="domino-api-key-5f3a9c1e",
                                      Title=f"fetch with {DB}"),
    inputs={"password": str}, outputs={"rows": int},
)


@workflow
def secretive(conn: str = "postgres://etl:" + DB + "@db/x") -> int:
    rows = fetch(password=DB)
    return run_domino_job_task(flyte_task_name="count " + TOKEN, command="python count.py",
                               inputs=[Input(name="rows", type=int, value=rows)],
                               output_specs=[Output(name="n", type=int)])["n"]


@workflow
def leaky() -> int:
    raise RuntimeError("could not connect with " + DB)
"""
SECRETS = ("hf_abcdefghijklmnop0123456789", "s3cr3t-warehouse-pass", "domino-api-key-5f3a9c1e")


@pytest.fixture
def secret_flow(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRETS[0])
    monkeypatch.setenv("WAREHOUSE_DB_PASSWORD", SECRETS[1])
    path = tmp_path / "secretive.py"
    path.write_text(SECRET_FLOW)
    return path


@pytest.mark.parametrize("args", [["validate"], ["validate", "--json"], ["graph"], ["graph", "-f", "dot"],
                                  ["graph", "-f", "mermaid"]])
def test_secrets_never_reach_the_output(monkeypatch, capsys, secret_flow, args):
    code, out, err = flows(monkeypatch, capsys, *args, str(secret_flow), "secretive")
    assert code == 0, err
    for secret in SECRETS:
        assert secret not in out + err
    assert "***" in out  # the values are there, masked


def test_secrets_never_reach_error_messages(monkeypatch, capsys, secret_flow):
    for args in (["validate"], ["validate", "--json"], ["graph"]):
        code, out, err = flows(monkeypatch, capsys, *args, str(secret_flow), "leaky")
        assert code == 1
        assert SECRETS[1] not in out + err
        assert "RuntimeError: could not connect with ***" in err


def test_secrets_are_masked_even_where_rich_would_wrap(monkeypatch, capsys, secret_flow):
    monkeypatch.setenv("HF_TOKEN", "hf_" + "q" * 150)  # longer than the terminal is wide
    for command in ("validate", "graph"):
        code, out, _ = flows(monkeypatch, capsys, command, str(secret_flow), "secretive", columns=40)
        assert code == 0 and "qqqqqqqqqq" not in out and "***" in out


# ---------------------------------------------------------------- the installed console script

def script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FLOWS_SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


@pytest.mark.skipif(not FLOWS_SCRIPT.exists(), reason="the console script is installed by `make test`")
def test_console_script_end_to_end(tmp_path):
    ok = script("validate", str(AI))
    assert ok.returncode == 0 and "is valid" in ok.stdout
    broken = tmp_path / "broken.py"
    broken.write_text("from flytekit import workflow\nimport json\njson.loads('{')\n")
    bad = script("graph", str(broken))
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith(f"Error: {broken}:3: failed to load: JSONDecodeError: Expecting property name")
    assert "Traceback" not in bad.stderr and len(bad.stderr.splitlines()) == 1
    helped = script("graph", "--help")
    assert helped.returncode == 0 and "FLOW_FILE" in helped.stdout and "text|dot|mermaid" in helped.stdout


@pytest.mark.skipif(not FLOWS_SCRIPT.exists(), reason="the console script is installed by `make test`")
def test_console_script_masks_secrets(secret_flow):
    env = {"HF_TOKEN": SECRETS[0], "WAREHOUSE_DB_PASSWORD": SECRETS[1]}
    for args in (["validate", "--json"], ["graph", "-f", "dot"]):
        done = script(*args, str(secret_flow), "secretive", env=env)
        assert done.returncode == 0 and not any(s in done.stdout + done.stderr for s in SECRETS)


def test_json_stays_valid_when_a_secret_env_value_is_a_json_word(monkeypatch, capsys):
    monkeypatch.setenv("USE_KEY_VAULT", "true")  # a "secret" by name whose value is also a JSON literal
    code, out, _ = flows(monkeypatch, capsys, "validate", str(FLOWS / "inputs_kinds.py"), "kinds", "--json")
    assert code == 0
    assert json.loads(out)["inputs"]["flag"]["default"] is True
