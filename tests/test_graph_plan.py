"""`flows graph` coloured by the plan: the examples are applied for real (local provider), then changed, and the
dot / mermaid / svg / html / text pictures are checked structurally against the flow and `flows plan --json`.

Expected nodes and edges come from the loaded FlowGraph, expected actions from the plan the `plan` command
prints: the picture must say exactly what `flows plan` says.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconcile.loader import load_flow
from reconcile.render_graph import FILLS
from tests.fixtures.projects import CHAIN_FLOW, flows, write_project
from tests.fixtures.tools import require_tool

ROOT = Path(__file__).resolve().parent.parent
SVG_NS = {"svg": "http://www.w3.org/2000/svg"}


@dataclass
class Changed:
    """An example project, applied, then changed so its next plan has several different actions."""

    name: str
    root: Path
    workflow: str
    inputs: list[str]
    expected: dict[str, str]  # short node name -> action after the change

    def graph(self, *args: str) -> tuple[int, str, str]:
        r = flows("graph", "flow.py", self.workflow, *self.inputs, *args, cwd=self.root)
        return r.code, r.out, r.err

    def plan_actions(self) -> dict[str, str]:
        r = flows("plan", "flow.py", self.workflow, *self.inputs, "--json", cwd=self.root)
        assert r.code == 0, r.text
        return {n["address"]: n["action"] for n in json.loads(r.out)["nodes"]}


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


# name -> (workflow, inputs, change to make after the first apply, expected actions by short name)
EXAMPLES = {
    "ai_training": ("model_training", ["--data_path_a", "data/a.csv", "--data_path_b", "data/b.csv"],
                    lambda root, args: _append(root / "scripts/process_data.py", "\n# changed\n"),
                    {"Load Data A": "reuse", "Load Data B": "reuse", "Merge Data": "reuse",
                     "Process Data": "update", "Train Model": "pending"}),
    "churn_model": ("churn_training", ["--inputs", "inputs.json"],
                    lambda root, args: _append(root / "scripts/split_data.py", "\n# changed\n"),
                    {"prepare_features/Join Events": "reuse", "prepare_features/Split": "update",
                     "Train": "pending", "Evaluate": "pending"}),
    "store_reports": ("weekly_report", ["--inputs", "inputs.json"],
                      lambda root, args: args.extend(["--currency", "USD"]),
                      {"Validate Sales": "reuse", "Summarise Region": "reuse", "Summarise Region#2": "reuse",
                       "Summarise Region#3": "reuse", "Combine": "update", "Notify": "run"}),
}


@pytest.fixture(scope="module", params=sorted(EXAMPLES))
def changed(request, tmp_path_factory) -> Changed:
    name = request.param
    workflow, inputs, change, expected = EXAMPLES[name]
    root = tmp_path_factory.mktemp(name) / name
    shutil.copytree(ROOT / "examples" / name, root, ignore=shutil.ignore_patterns(".flows", "__pycache__"))
    done = flows("apply", "flow.py", workflow, *inputs, "--auto-approve", cwd=root)
    assert done.code == 0, done.text
    args = list(inputs)
    change(root, args)
    return Changed(name, root, workflow, args, {f"{workflow}/{k}": v for k, v in expected.items()})


@pytest.fixture(scope="module")
def dot_exe() -> str:
    return require_tool("dot", "graphviz")


# ---------------------------------------------------------------- DOT, read back by Graphviz itself

def dot_structure(dot_exe: str, dot_text: str) -> tuple[dict[str, dict], set[tuple[str, str]]]:
    """Nodes (name -> attributes) and edges (tail, head) of a DOT text, as parsed by the real `dot`."""
    done = subprocess.run([dot_exe, "-Tjson0"], input=dot_text, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    objects = [o for o in data.get("objects", []) if "nodes" not in o]  # leave out clusters
    by_id = {o["_gvid"]: o for o in objects}
    nodes = {o["name"]: o for o in objects}
    edges = {(by_id[e["tail"]]["name"], by_id[e["head"]]["name"]) for e in data.get("edges", [])}
    return nodes, edges


def expected_edges(root: Path, workflow: str) -> set[tuple[str, str]]:
    graph = load_flow(root / "flow.py", workflow)
    edges = set()
    for address, node in graph.nodes.items():
        for b in node.bindings.values():
            if b.kind == "flow_input":
                edges.add(("input:" + b.name, address))
            elif b.kind == "node_output":
                edges.add((b.node, address))
        edges |= {(up, address) for up in node.after}
    edges |= {(b.node, "output:" + name) for name, b in graph.outputs.items() if b.kind == "node_output"}
    return edges


def test_dot_nodes_edges_and_colours_follow_the_plan(changed, dot_exe):
    actions = changed.plan_actions()
    assert actions == changed.expected  # the change produced the mix of actions we mean to draw
    code, out, err = changed.graph("--format", "dot")
    assert code == 0, err
    nodes, edges = dot_structure(dot_exe, out)
    graph = load_flow(changed.root / "flow.py", changed.workflow)
    assert set(nodes) == set(graph.nodes) | {f"input:{n}" for n in graph.inputs} | {f"output:{n}" for n in graph.outputs}
    assert edges == expected_edges(changed.root, changed.workflow)
    for address, action in actions.items():
        assert nodes[address]["fillcolor"] == FILLS[action], address
        assert nodes[address]["label"].endswith(f"({action})")
    assert len({FILLS[a] for a in actions.values()}) == len(set(actions.values()))  # one colour per action


def parse_mermaid(text: str) -> tuple[dict[str, str], set[tuple[str, str]], dict[str, str], dict[str, str]]:
    """(id -> label, edges between ids, id -> class, class -> fill) of our Mermaid flowchart."""
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    labels, edges, classes, fills = {}, set(), {}, {}
    for line in lines[1:]:
        if m := re.fullmatch(r'  (\w+)\(?\["(.*)"\]\)?', line):
            labels[m.group(1)] = m.group(2)
        elif m := re.fullmatch(r'  (\w+) (?:-->|-\.->)(?:\|"[^"]*"\|)? (\w+)', line):
            edges.add((m.group(1), m.group(2)))
        elif m := re.fullmatch(r"  classDef (\w+) fill:(#[0-9a-f]{6})", line):
            fills[m.group(1)] = m.group(2)
        elif m := re.fullmatch(r"  class (\w+) (\w+)", line):
            classes[m.group(1)] = m.group(2)
        else:
            pytest.fail(f"unexpected Mermaid line: {line!r}")
    return labels, edges, classes, fills


def test_mermaid_nodes_edges_and_classes_follow_the_plan(changed):
    actions = changed.plan_actions()
    code, out, err = changed.graph("--format", "mermaid")
    assert code == 0, err
    labels, edges, classes, fills = parse_mermaid(out)
    graph = load_flow(changed.root / "flow.py", changed.workflow)
    prefix = changed.workflow + "/"
    ids = {}
    for address in graph.nodes:
        [ids[address]] = [i for i, label in labels.items() if label == address[len(prefix):] and i.startswith("n")]
    for name, fi in graph.inputs.items():
        [ids["input:" + name]] = [i for i, label in labels.items() if label == f"{name}: {fi.type}"]
    drawn = {(a, b) for a, b in edges if not b.startswith("o")}  # flow outputs: checked by the dot test
    assert drawn == {(ids[a], ids[b]) for a, b in expected_edges(changed.root, changed.workflow)
                     if not b.startswith("output:")}
    assert {ids[a]: act for a, act in actions.items()} == classes
    assert fills == {a: FILLS[a] for a in set(actions.values())}


def test_text_tree_marks_each_node_with_its_action(changed):
    code, out, err = changed.graph()
    assert code == 0, err
    prefix = changed.workflow + "/"
    symbols = {"create": "+", "update": "~", "run": "!", "pending": "?", "reuse": "=", "forget": "-"}
    for address, action in changed.expected.items():
        assert f"{symbols[action]} {address[len(prefix):]}  ({action})" in out, address
    assert re.search(r"^Plan: \d+ to create, \d+ to update", out, re.M)


def test_svg_from_real_dot_keeps_every_node_and_its_colour(changed, dot_exe, tmp_path):
    target = tmp_path / "flow.svg"
    code, out, err = changed.graph("--format", "svg", "-o", str(target))
    assert code == 0 and out == "", err
    tree = ET.parse(target)
    fills = {}
    for g in tree.getroot().iterfind(".//svg:g[@class='node']", SVG_NS):
        title = g.find("svg:title", SVG_NS).text
        shape = g.find("svg:path", SVG_NS)
        if shape is None:
            shape = g.find("svg:polygon", SVG_NS)
        if shape is None:
            shape = g.find("svg:ellipse", SVG_NS)
        fills[title] = shape.get("fill")
    for address, action in changed.expected.items():
        assert fills[address] == FILLS[action], address
    # the picture carries its own key of the actions it uses: a coloured cell per action, outside the nodes
    symbols = {"update": "~", "run": "!", "pending": "?", "reuse": "="}
    texts = {t.text.replace("\xa0", " ").strip() for t in tree.getroot().iterfind(".//svg:text", SVG_NS) if t.text}
    key = {t.split(" ", 1)[1] for t in texts if t[:2] in {f"{s} " for s in symbols.values()}}
    assert key == set(changed.expected.values())
    cells = {poly.get("fill") for poly in tree.getroot().iterfind("svg:g/svg:polygon", SVG_NS)}
    assert {FILLS[a] for a in key} <= cells


# ---------------------------------------------------------------- html (the page itself; the browser test clicks it)

def page_data(html_text: str) -> dict:
    m = re.search(r'<script type="application/json" id="flow-data">(.*?)</script>', html_text, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1))


def test_html_is_one_offline_page_with_every_nodes_details(changed, dot_exe, tmp_path):
    target = tmp_path / "flow.html"
    code, _, err = changed.graph("--format", "html", "-o", str(target))
    assert code == 0, err
    text = target.read_text()
    # self-contained: no external script, style, image or font; the only URLs are SVG's XML namespaces
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", text)
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", text))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, urls
    assert "<svg" in text and text.count("<svg") == 1
    data = page_data(text)["nodes"]
    plan = json.loads(flows("plan", "flow.py", changed.workflow, *changed.inputs, "--json", cwd=changed.root).out)
    for change in plan["nodes"]:
        node = data[change["address"]]
        assert node["action"] == change["action"]
        assert node["key"] == change["key"]
        assert node["reasons"] == [r["message"] for r in change["reasons"]]
        # applied before the change: every node has a last run with a job id and its outputs' digests
        assert node["last_run"]["status"] == "succeeded" and node["job_id"]
        assert all(o.get("digest") for o in node["outputs"])
    updated = next(a for a, act in changed.expected.items() if act == "update")
    assert data[updated]["reasons"] and data[updated]["previous_key"] != data[updated]["key"]
    ran = [n for n in data.values() if n.get("kind") == "node" and n["last_run"]["reused_from"] is None]
    assert any(n["log_tail"] for n in ran) or changed.name == "store_reports"  # store_reports' jobs print nothing


# ---------------------------------------------------------------- without inputs, forget, bad input, no Graphviz

def test_without_inputs_the_plain_graph_is_drawn_and_says_why(changed, dot_exe):
    r = flows("graph", "flow.py", changed.workflow, "-f", "dot", cwd=changed.root)
    assert r.code == 0
    assert "Note: no plan actions: the flow's inputs are not given" in " ".join(r.err.split())
    nodes, _ = dot_structure(dot_exe, r.out)
    assert all(n["fillcolor"] == "#ffffff" for a, n in nodes.items() if a in changed.expected)


def test_forgotten_and_new_nodes(tmp_path, dot_exe):
    root = write_project(tmp_path / "p")
    assert flows("apply", "flow.py", "--data", "data/in.csv", "--auto-approve", cwd=root).code == 0
    # `report` leaves the flow, `audit` joins it
    (root / "flow.py").write_text(CHAIN_FLOW.replace('flyte_task_name="report"', 'flyte_task_name="audit"'))
    args = ("flow.py", "--data", "data/in.csv")
    r = flows("graph", *args, "-f", "dot", cwd=root)
    assert r.code == 0, r.err
    nodes, edges = dot_structure(dot_exe, r.out)
    assert nodes["wf/report"]["fillcolor"] == FILLS["forget"] and "dashed" in nodes["wf/report"]["style"]
    assert not any("wf/report" in e for e in edges)  # gone from the flow: drawn apart
    assert nodes["wf/audit"]["fillcolor"] == FILLS["create"]
    labels, _, classes, _ = parse_mermaid(flows("graph", *args, "-f", "mermaid", cwd=root).out)
    assert {labels[i]: c for i, c in classes.items()} == {"prep": "reuse", "scale": "reuse", "audit": "create",
                                                          "report": "forget"}
    text = flows("graph", *args, cwd=root).out
    assert "- report  (forget)" in text and "+ audit  (create)" in text


@pytest.mark.parametrize("bad, message", [
    (["--factor", "two"], "factor"),
    (["--nope", "1"], "nope"),
    (["--inputs", "missing.json"], "missing.json"),
])
def test_bad_inputs_are_one_clear_error(tmp_path, bad, message):
    root = write_project(tmp_path / "p")
    r = flows("graph", "flow.py", "--data", "data/in.csv", *bad, cwd=root)
    assert r.code != 0 and r.out == ""
    assert r.err.startswith("Error: ") and message in r.err and "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) == 1


def test_output_file_and_bad_format(tmp_path):
    root = write_project(tmp_path / "p")
    r = flows("graph", "flow.py", "-f", "mermaid", "-o", "g.mmd", cwd=root)
    assert r.code == 0 and (root / "g.mmd").read_text().startswith("flowchart LR")
    r = flows("graph", "flow.py", "-f", "png", cwd=root)
    assert r.code == 2 and "'png' is not one of text, dot, mermaid, svg, html" in r.err
    r = flows("graph", "flow.py", "-f", "dot", "-o", str(tmp_path / "no" / "such" / "dir" / "g.dot"), cwd=root)
    assert r.code == 2 and r.err.splitlines()[-1].startswith("Error: --out: cannot write") and "Traceback" not in r.err


def test_without_graphviz_svg_and_html_say_how_to_install_it(tmp_path):
    root = write_project(tmp_path / "p")
    bare = {"PATH": str(Path(sys.executable).parent)}  # the venv's bin only: no /usr/bin, so no `dot`
    if shutil.which("dot", path=bare["PATH"]):
        pytest.skip("dot is inside the venv")
    for fmt in ("svg", "html"):
        r = flows("graph", "flow.py", "-f", fmt, "-o", "x." + fmt, cwd=root, env=bare)
        assert r.code == 1 and "apt-get install graphviz" in r.err and "Traceback" not in r.err, r.text
        assert not (root / ("x." + fmt)).exists()
    for fmt in ("text", "dot", "mermaid"):
        r = flows("graph", "flow.py", "-f", fmt, cwd=root, env=bare)
        assert r.code == 0 and r.out, (fmt, r.text)


def test_secrets_never_reach_the_svg_or_the_page(tmp_path, dot_exe):
    from tests.test_cli_graph import SECRET_FLOW, SECRETS
    flow = tmp_path / "secretive.py"
    flow.write_text(SECRET_FLOW)
    env = {"HF_TOKEN": SECRETS[0], "WAREHOUSE_DB_PASSWORD": SECRETS[1]}
    for fmt in ("svg", "html"):
        target = tmp_path / f"g.{fmt}"
        r = flows("graph", str(flow), "secretive", "-f", fmt, "-o", str(target), cwd=tmp_path, env=env)
        assert r.code == 0, r.text
        text = target.read_text()
        assert not any(s in text or s in r.text for s in SECRETS), fmt
        assert "***" in text
    # every input has a default, so the page was planned: its data went through the plan and still masks
    data = page_data((tmp_path / "g.html").read_text())["nodes"]
    assert sorted(n["action"] for n in data.values() if n["kind"] == "node") == ["create", "create"]
