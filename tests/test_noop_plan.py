"""The no-op plan shortcut (reconcile/noop_plan.py): a `flows plan` that found nothing to do leaves a receipt; the
next identical plan is answered from it without loading the flow, and only while everything it rests on is
unchanged. Every case compares the answer with the full plan's (FLOWS_PLAN_SHORTCUT=0)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.fixtures.projects import CHAIN_FLOW, Result, flows, write_project
from tests.fixtures.s3 import FAKE_SECRET, S3Env, aws_env

INPUTS = ("--data", "data/in.csv")
# The chain flow, importing a helper module, noting each real load, and with a command naming a file that is
# not there yet (whether a word of a command names a file decides the node's code identity).
FLOW = CHAIN_FLOW.replace("CSV = FlyteFile", 'open("loads.log", "a").write("load\\n")\nCSV = FlyteFile').replace(
    'command="python scripts/report.py"', 'command=helpers.REPORT').replace(
    "from flytekit import workflow", "from flytekit import workflow\nimport helpers")
HELPERS = 'REPORT = "python scripts/report.py notes.txt"\n'


def plan(root: Path, *extra: str, env: dict[str, str] | None = None) -> Result:
    return flows("plan", "flow.py", "wf", *INPUTS, *extra, cwd=root, env=env)


def loads(root: Path) -> int:
    return len((root / "loads.log").read_text().splitlines())


def receipts(root: Path) -> list[Path]:
    return sorted((root / ".flows" / "plans").glob("*.json"))


def same_as_full_plan(root: Path) -> Result:
    """The plan as answered now (shortcut allowed), checked against the full plan of the same moment."""
    quick = plan(root)
    full = plan(root, env={"FLOWS_PLAN_SHORTCUT": "0"})
    assert (quick.code, quick.out, quick.err) == (full.code, full.out, full.err)
    return quick


def answered_by_receipt(root: Path) -> Result:
    """A plan that must come from the receipt: the flow is not loaded although its graph cache is gone."""
    shutil.rmtree(root / ".flows" / "graphs", ignore_errors=True)
    before = loads(root)
    r = plan(root)
    assert r.code == 0, r.text
    assert loads(root) == before, "the flow was loaded: the receipt was not used"
    return r


def not_answered_by_receipt(root: Path, *extra: str, env: dict[str, str] | None = None) -> Result:
    shutil.rmtree(root / ".flows" / "graphs", ignore_errors=True)
    before = loads(root)
    r = plan(root, *extra, env=env)
    assert loads(root) == before + 1, "the receipt was used"
    return r


@pytest.fixture
def noop(tmp_path: Path) -> Path:
    """Applied, then planned once (a full no-op plan, which leaves the receipt)."""
    root = write_project(tmp_path / "proj", FLOW, files={"helpers.py": HELPERS})
    r = flows("apply", "flow.py", "wf", *INPUTS, "--auto-approve", cwd=root)
    assert r.code == 0, r.text
    first = plan(root)
    assert first.code == 0 and "No changes." in first.out, first.text
    assert len(receipts(root)) == 1
    return root


def test_a_second_no_op_plan_is_answered_from_the_receipt_with_the_same_output(noop: Path) -> None:
    full = plan(noop, env={"FLOWS_PLAN_SHORTCUT": "0"})
    quick = answered_by_receipt(noop)
    assert (quick.out, quick.err) == (full.out, full.err)
    assert "No changes." in quick.out
    r = flows("plan", "flow.py", "wf", *INPUTS, "--detailed-exitcode", cwd=noop)  # its own receipt, then the shortcut
    r = flows("plan", "flow.py", "wf", *INPUTS, "--detailed-exitcode", cwd=noop)
    assert r.code == 0 and r.out == full.out, r.text


def test_an_edited_input_file_is_seen(noop: Path) -> None:
    (noop / "data" / "in.csv").write_text("1\n2\n\n4\n")
    r = same_as_full_plan(noop)
    assert "wf/prep  update" in r.out


def test_an_edited_code_file_is_seen(noop: Path) -> None:
    (noop / "scripts" / "report.py").write_text((noop / "scripts" / "report.py").read_text() + "\n# edited\n")
    assert "wf/report  update" in same_as_full_plan(noop).out


def test_a_file_appearing_where_a_command_names_one_is_seen(noop: Path) -> None:
    (noop / "notes.txt").write_text("now a project file the command uses")
    assert "wf/report  update" in same_as_full_plan(noop).out


def test_an_edited_flow_or_helper_module_is_seen(noop: Path) -> None:
    (noop / "helpers.py").write_text(HELPERS.replace("notes.txt", "other.txt"))
    assert "wf/report  update" in same_as_full_plan(noop).out
    (noop / "helpers.py").write_text(HELPERS)
    plan(noop)  # no-op again: a new receipt
    answered_by_receipt(noop)
    (noop / "flow.py").write_text((noop / "flow.py").read_text().replace('"python scripts/prep.py"',
                                                                           '"python scripts/prep.py --fast"'))
    assert "wf/prep  update" in same_as_full_plan(noop).out


def test_a_deleted_or_damaged_output_blob_is_seen(noop: Path) -> None:
    state = json.loads(next((noop / ".flows" / "state").glob("wf.json")).read_text())
    uri = state["nodes"]["wf/scale"]["outputs"]["scaled"]["uri"]
    blob = Path(uri)
    blob.chmod(0o644)
    blob.write_text("99\n")  # damaged: its bytes no longer hash to its name
    assert "wf/scale  run" in same_as_full_plan(noop).out
    blob.unlink()
    assert "wf/scale  run" in same_as_full_plan(noop).out


def test_a_changed_state_is_seen(noop: Path) -> None:
    r = flows("state", "rm", "wf/report", cwd=noop)
    assert r.code == 0, r.text
    r = same_as_full_plan(noop)
    assert "wf/report  create" in r.out or "wf/report  reuse" in r.out
    assert "state serial 2" in r.out


def test_configuration_environment_and_command_line_are_part_of_the_key(noop: Path) -> None:
    answered_by_receipt(noop)
    (noop / "flows.toml").write_text("[tool.flows]\n# a comment\n")
    not_answered_by_receipt(noop)  # (and it leaves a receipt for the new configuration)
    answered_by_receipt(noop)
    not_answered_by_receipt(noop, env={"FLOWS_PARALLELISM": "3"})
    not_answered_by_receipt(noop, "-v")  # another command line: its own receipt
    r = not_answered_by_receipt(noop, "--json")  # never answered from a receipt
    assert json.loads(r.out)["summary"]["reuse"] == 3


def test_a_journal_waiting_to_be_folded_is_seen(noop: Path) -> None:
    answered_by_receipt(noop)
    (noop / ".flows" / "state" / "wf.journal.jsonl").write_text("x\n")  # (a torn record: folded as nothing)
    not_answered_by_receipt(noop)


def test_an_edited_file_in_a_directory_input_is_seen(tmp_path: Path) -> None:
    flow = FLOW.replace("def wf(data: CSV, factor: int = 2) -> CSV:",
                        "def wf(data: CSV, folder: FlyteDirectory, factor: int = 2) -> CSV:").replace(
        'inputs=[Input(name="data", type=CSV, value=data)],',
        'inputs=[Input(name="data", type=CSV, value=data), Input(name="folder", type=FlyteDirectory, value=folder)],'
    ).replace("from flytekit.types.file import FlyteFile",
              "from flytekit.types.file import FlyteFile\nfrom flytekit.types.directory import FlyteDirectory")
    root = write_project(tmp_path / "proj", flow, files={"helpers.py": HELPERS, "conf/a.txt": "a"})
    args = ("--folder", "conf")
    assert flows("apply", "flow.py", "wf", *INPUTS, *args, "--auto-approve", cwd=root).code == 0
    assert "No changes." in plan(root, *args).out
    shutil.rmtree(root / ".flows" / "graphs")
    before = loads(root)
    assert "No changes." in plan(root, *args).out and loads(root) == before  # from the receipt
    (root / "conf" / "a.txt").write_text("b")
    quick, full = plan(root, *args), plan(root, *args, env={"FLOWS_PLAN_SHORTCUT": "0"})
    assert quick.out == full.out and "wf/prep  update" in quick.out
    (root / "conf" / "a.txt").write_text("a")
    plan(root, *args)
    (root / "conf" / "new.txt").write_text("new")
    assert "wf/prep  update" in plan(root, *args).out


def test_flows_own_code_is_part_of_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reconcile import noop_plan

    copy = tmp_path / "src"
    for pkg in ("reconcile", "providers", "state", "vocab"):
        shutil.copytree(noop_plan._ROOT / pkg, copy / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(noop_plan, "_ROOT", copy)
    before = noop_plan.code_version()
    assert noop_plan.code_version() == before
    (copy / "state" / "model.py").write_text((copy / "state" / "model.py").read_text() + "\n")
    assert noop_plan.code_version() != before


def test_a_damaged_receipt_is_ignored(noop: Path) -> None:
    [receipt] = receipts(noop)
    receipt.write_text("{not json")
    r = not_answered_by_receipt(noop)
    assert r.code == 0 and "No changes." in r.out
    data = json.loads(receipt.read_text())  # replaced by a good one
    data["files"] = {"/nonexistent/x": ["file", "0" * 64], **data["files"]}
    receipt.write_text(json.dumps(data))
    not_answered_by_receipt(noop)


def test_a_plan_with_changes_leaves_no_receipt(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj", FLOW, files={"helpers.py": HELPERS})
    r = plan(root)
    assert r.code == 0 and "3 to create" in r.out, r.text
    assert receipts(root) == []
    assert "3 to create" in plan(root).out
    assert loads(root) == 1  # the second plan's graph came from the graph cache


# -- state and blobs on S3 (moto's server) ---------------------------------------------------------------------

def test_on_s3_the_receipt_answers_and_sees_a_deleted_blob_and_a_changed_state(tmp_path: Path, s3: S3Env) -> None:
    root = write_project(tmp_path / "proj", FLOW, files={"helpers.py": HELPERS})
    (root / "flows.toml").write_text(s3.flows_toml())
    env = aws_env()
    r = flows("apply", "flow.py", "wf", *INPUTS, "--auto-approve", cwd=root, env=env)
    assert r.code == 0, r.text
    first = plan(root, env=env)
    assert first.code == 0 and "No changes." in first.out, first.text
    [receipt] = receipts(root)
    text = receipt.read_text()
    assert FAKE_SECRET not in text and env["AWS_ACCESS_KEY_ID"] not in text  # settings only, no credentials
    assert json.loads(text)["state"]["s3"]["bucket"] == s3.bucket

    assert answered_by_receipt(root).out == first.out
    state = json.loads(s3.client.get_object(Bucket=s3.bucket, Key="projects/demo/wf.json")["Body"].read())
    uri = state["nodes"]["wf/scale"]["outputs"]["scaled"]["uri"]
    s3.client.delete_object(Bucket=s3.bucket, Key=uri[len(f"s3://{s3.bucket}/"):])  # gone from the store
    r = not_answered_by_receipt(root, env=env)
    assert "wf/scale  run" in r.out, r.text

    r = flows("apply", "flow.py", "wf", *INPUTS, "--auto-approve", cwd=root, env=env)
    assert r.code == 0, r.text
    assert "No changes." in plan(root, env=env).out  # (a new receipt for the new state)
    answered_by_receipt(root)
    assert flows("state", "rm", "wf/report", cwd=root, env=env).code == 0
    r = not_answered_by_receipt(root, env=env)
    assert "wf/report  create" in r.out or "wf/report  reuse" in r.out, r.text


def test_a_no_op_plan_from_its_receipt_imports_neither_pydantic_nor_boto3(tmp_path: Path, s3: S3Env) -> None:
    """What makes it cheap (reported by Python itself, not timed): no models, no CLI framework, no transfer
    manager; only botocore for the S3 requests."""
    root = write_project(tmp_path / "proj", FLOW, files={"helpers.py": HELPERS})
    (root / "flows.toml").write_text(s3.flows_toml())
    env = aws_env()
    assert flows("apply", "flow.py", "wf", *INPUTS, "--auto-approve", cwd=root, env=env).code == 0
    assert "No changes." in plan(root, env=env).out
    r = plan(root, env={**env, "PYTHONPROFILEIMPORTTIME": "1"})  # (a real process: Python reports its imports)
    assert r.code == 0 and "No changes." in r.out, r.text
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.err.splitlines() if line.startswith("import time:")}
    assert "botocore.client" in imported and "reconcile.noop_plan" in imported  # (the report is there)
    heavy = {m for m in imported if m.split(".")[0] in ("pydantic", "boto3", "s3transfer", "typer", "rich")}
    assert not heavy, sorted(heavy)
