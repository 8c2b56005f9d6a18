"""`flows artifacts list|show` and `flows lineage`, after real applies with the local provider.

Expected digests are computed here from the bytes on disk (BLAKE3), expected jobs and runs from the state,
so the lineage printed by the CLI is checked against what really ran.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from reconcile.lineage import flow_inputs_of
from reconcile.workspace import Workspace
from tests.fixtures.projects import flows, write_project

ROOT = Path(__file__).resolve().parent.parent

# Three artifacts, one of each type; "Run report" gathers files from two different tasks.
FLOW = '''
from typing import TypeVar
from flytekit import workflow
from flytekit.types.file import FlyteFile
from flytekitplugins.domino.artifact import DATA, MODEL, REPORT, Artifact
from flytekitplugins.domino.task import DominoJobConfig, DominoJobTask

CSV = FlyteFile[TypeVar("csv")]
Clean = Artifact("Clean data", DATA)
Model = Artifact("My Model", MODEL)
Report = Artifact("Run report", REPORT)

prep = DominoJobTask(
    name="prep", domino_job_config=DominoJobConfig(Command="python scripts/prep.py"),
    inputs={"data": CSV, "note": str},
    outputs={"clean": Clean.File(name="clean.csv"), "stats": Report.File(name="stats.txt")})
train = DominoJobTask(
    name="train", domino_job_config=DominoJobConfig(Command="python scripts/train.py"),
    inputs={"clean": CSV, "factor": int},
    outputs={"model": Model.File(name="model.json"), "notes": Report.File(name="notes.txt")})


@workflow
def wf(data: CSV, factor: int = 2, note: str = "weekly") -> FlyteFile:
    cleaned = prep(data=data, note=note)
    trained = train(clean=cleaned["clean"], factor=factor)
    return trained["model"]
'''

PREP = '''
import os
inp, out = os.environ["FLOWS_INPUTS_DIR"], os.environ["FLOWS_OUTPUTS_DIR"]
rows = [r for r in open(os.path.join(inp, "data")).read().split() if r]
open(os.path.join(out, "clean"), "w").write("\\n".join(rows) + "\\n")
open(os.path.join(out, "stats"), "w").write(f"{len(rows)} rows\\n")
print("prep: cleaned", len(rows), "rows")
'''

TRAIN = '''
import json, os
inp, out = os.environ["FLOWS_INPUTS_DIR"], os.environ["FLOWS_OUTPUTS_DIR"]
factor = int(open(os.path.join(inp, "factor")).read())
rows = [int(r) for r in open(os.path.join(inp, "clean")).read().split()]
open(os.path.join(out, "model"), "w").write(json.dumps({"weight": sum(rows) * factor}))
open(os.path.join(out, "notes"), "w").write(f"trained with factor {factor}\\n")
'''


def digest(path: Path) -> str:
    return blake3(path.read_bytes()).hexdigest()


def run(root: Path, *args: str, env: dict[str, str] | None = None, ok: bool = True) -> Any:
    r = flows(*args, cwd=root, env=env)
    if ok:
        assert r.code == 0, r.text
    return r


def as_json(root: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return json.loads(run(root, *args, "--json", env=env).out)


def applied(root: Path) -> Path:
    write_project(root, FLOW, {"scripts/prep.py": PREP, "scripts/train.py": TRAIN})
    run(root, "apply", "flow.py", "--data", "data/in.csv", "--auto-approve")
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """Applied once for the tests that only read (they must not change it)."""
    return applied(tmp_path_factory.mktemp("artifacts") / "p")


@pytest.fixture
def own_project(tmp_path) -> Path:
    """Applied for one test that changes the project."""
    return applied(tmp_path / "p")


def state(root: Path) -> Any:
    return Workspace(root).read_state("wf").state


# ---------------------------------------------------------------- flows artifacts list

def test_list_shows_the_three_types_with_files_from_several_tasks(project):
    st = state(project)
    [run_id] = st.runs
    listed = {a["name"]: a for a in as_json(project, "artifacts", "list")["artifacts"]}
    assert {n: a["type"] for n, a in listed.items()} == {"Clean data": "DATA", "My Model": "MODEL",
                                                         "Run report": "REPORT"}
    files = {f["file_name"]: f for f in listed["Run report"]["files"]}
    assert {n: f["node"] for n, f in files.items()} == {"stats.txt": "wf/prep", "notes.txt": "wf/train"}
    for f in (f for a in listed.values() for f in a["files"]):
        out = st.nodes[f["node"]].outputs[f["output"]]
        assert (f["digest"], f["size"], f["run_id"]) == (out.digest, out.size, run_id)
        assert f["job_id"] == st.nodes[f["node"]].job_id and f["job_id"]
        assert f["size"] == Path(out.uri).stat().st_size  # the blob really is that big
    text = run(project, "artifacts", "list").out
    for word in ("Clean data", "My Model", "Run report", "DATA", "MODEL", "REPORT", "stats.txt", "notes.txt",
                 "model.json", run_id[:9]):
        assert word in text


# ---------------------------------------------------------------- flows artifacts show

def test_show_copies_the_files_and_traces_the_model_back_to_the_flow_inputs(project, tmp_path):
    st = state(project)
    dest = tmp_path / "out"
    shown = as_json(project, "artifacts", "show", "My Model", "--dest", str(dest))
    assert (shown["name"], shown["type"]) == ("My Model", "MODEL")
    [f] = shown["files"]
    copied = dest / "model.json"
    assert f["copied_to"] == str(copied) and json.loads(copied.read_text()) == {"weight": 12}  # (1+2+3) * 2
    assert f["digest"] == digest(copied)

    tree = f["lineage"]
    assert (tree["address"], tree["output"], tree["job_id"]) == ("wf/train", "model", st.nodes["wf/train"].job_id)
    inputs = {i["name"]: i for i in tree["inputs"]}
    assert inputs["factor"]["value"] == 2 and inputs["factor"]["from"] == {"kind": "flow_input", "name": "factor",
                                                                           "value": 2}
    clean = inputs["clean"]
    assert clean["digest"] == st.nodes["wf/prep"].outputs["clean"].digest
    prep = clean["from"]
    assert (prep["address"], prep["output"], prep["job_id"]) == ("wf/prep", "clean", st.nodes["wf/prep"].job_id)
    data = {i["name"]: i for i in prep["inputs"]}["data"]
    assert data["digest"] == digest(project / "data" / "in.csv")  # the bytes the flow was given
    assert data["from"]["kind"] == "flow_input" and data["from"]["name"] == "data"
    assert flow_inputs_of(tree) == {"data", "factor", "note"}

    text = run(project, "artifacts", "show", "my model").out  # names match case-insensitively
    assert "model.json" in text and "← wf/prep.clean" in text and "← flow input data" in text
    assert st.nodes["wf/train"].job_id in text and st.nodes["wf/prep"].job_id in text


def test_an_artifact_of_two_tasks_copies_both_files(project, tmp_path):
    shown = as_json(project, "artifacts", "show", "Run report", "--dest", str(tmp_path / "r"))
    assert {f["file_name"]: f["lineage"]["address"] for f in shown["files"]} == {"stats.txt": "wf/prep",
                                                                                "notes.txt": "wf/train"}
    assert (tmp_path / "r" / "stats.txt").read_text() == "3 rows\n"
    assert (tmp_path / "r" / "notes.txt").read_text() == "trained with factor 2\n"


# ---------------------------------------------------------------- flows lineage

def test_lineage_by_address_or_digest_needs_no_flow_file(own_project):
    project = own_project
    expected = as_json(project, "artifacts", "show", "My Model")["files"][0]["lineage"]
    (project / "flow.py").unlink()  # everything below reads the state only
    by_address = as_json(project, "lineage", "wf/train", "--output", "model")
    assert by_address["outputs"]["model"] == expected
    by_digest = as_json(project, "lineage", expected["digest"][:10])
    assert by_digest["outputs"] == {"model": expected}
    both = as_json(project, "lineage", "wf/train")["outputs"]
    assert set(both) == {"model", "notes"}
    text = run(project, "lineage", expected["digest"][:10]).out
    assert text.startswith("wf/train.model") and "← wf/prep.clean" in text and "← flow input factor = 2" in text
    listed = run(project, "artifacts", "list").out
    assert all(f in listed for f in ("prep.clean", "prep.stats", "train.model", "train.notes"))


def test_an_older_result_keeps_its_own_lineage(own_project):
    project = own_project
    old = state(project).nodes["wf/train"].outputs["model"].digest
    run(project, "apply", "flow.py", "--data", "data/in.csv", "--factor", "3", "--auto-approve")
    assert state(project).nodes["wf/train"].outputs["model"].digest != old
    tree = as_json(project, "lineage", old[:12])["outputs"]["model"]
    assert tree["current"] is False  # found in the cache index, not the node's current record
    assert {i["name"]: i.get("value") for i in tree["inputs"]}["factor"] == 2
    assert "an earlier result, kept in the cache index" in run(project, "lineage", old[:12]).out


def test_the_churn_example_model_back_to_its_flow_inputs(tmp_path):
    root = tmp_path / "churn"
    shutil.copytree(ROOT / "examples" / "churn_model", root, ignore=shutil.ignore_patterns(".flows", "__pycache__"))
    run(root, "apply", "flow.py", "churn_training", "--inputs", "inputs.json", "--auto-approve")
    listed = {a["name"]: a for a in as_json(root, "artifacts", "list")["artifacts"]}
    assert {n: a["type"] for n, a in listed.items()} == {"Churn features": "DATA", "Churn model": "MODEL",
                                                         "Churn report": "REPORT"}
    assert [f["file_name"] for f in listed["Churn features"]["files"]] == ["train.csv", "test.csv"]
    [model] = as_json(root, "artifacts", "show", "Churn model")["files"]
    assert flow_inputs_of(model["lineage"]) == {"customers", "events", "test_fraction", "seed", "epochs",
                                                "learning_rate"}
    text = run(root, "lineage", "churn_training/Evaluate", "--output", "report").out
    assert "← churn_training/Train.model" in text and "← flow input customers" in text


# ---------------------------------------------------------------- errors and secrets

@pytest.mark.parametrize("args, message", [
    (["artifacts", "show", "My Modle"], "no artifact 'My Modle' in the last apply (did you mean 'My Model'?)"),
    (["lineage", "wf/trian"], "no node or output digest 'wf/trian' in the state (did you mean 'wf/train'?)"),
    (["lineage", "abcdef0123"], "no output with digest 'abcdef0123' in the state"),
    (["lineage", "wf/train", "--output", "weights"], "no output 'weights'"),
    (["artifacts", "list", "--flow", "other"], "no state for flow 'other' here (flows: wf)"),
])
def test_bad_names_are_one_clear_error(project, args, message):
    r = run(project, *args, ok=False)
    assert r.code == 1 and r.out == "" and "Traceback" not in r.err
    assert r.err.startswith("Error: ") and message in r.err and len(r.err.strip().splitlines()) == 1


def test_no_state_yet_is_a_clear_error(tmp_path):
    root = write_project(tmp_path / "fresh")
    for args in (["artifacts", "list"], ["lineage", "wf/prep"]):
        r = run(root, *args, ok=False)
        assert r.code == 1 and "no state found" in r.err and "run `flows apply` first" in r.err


def test_a_secret_flow_input_never_reaches_the_output(tmp_path):
    secret = "s3cr3t-n0te-value-42"
    env = {"NOTE_TOKEN": secret}
    root = write_project(tmp_path / "p", FLOW, {"scripts/prep.py": PREP, "scripts/train.py": TRAIN})
    run(root, "apply", "flow.py", "--data", "data/in.csv", "--note", secret, "--auto-approve", env=env)
    for args in (["lineage", "wf/train"], ["lineage", "wf/train", "--json"], ["artifacts", "show", "Run report"],
                 ["artifacts", "show", "Run report", "--json"], ["artifacts", "list", "--json"]):
        r = run(root, *args, env=env)
        assert secret not in r.text, args
    assert "***" in run(root, "lineage", "wf/prep", env=env).out
