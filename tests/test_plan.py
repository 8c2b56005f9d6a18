"""`flows plan` against real files on disk; state records are written by real applies (the same code)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.fixtures.projects import flows, write_project

INPUTS = ("--data", "data/in.csv")


def plan_json(root: Path, *extra: str) -> dict:
    r = flows("plan", "flow.py", "wf", *INPUTS, *extra, "--json", cwd=root)
    assert r.code == 0, r.text
    return json.loads(r.out)


def actions(plan: dict) -> dict[str, str]:
    return {n["address"]: n["action"] for n in plan["nodes"]}


def reasons(plan: dict, address: str) -> list[str]:
    node = next(n for n in plan["nodes"] if n["address"] == address)
    return [r["message"] for r in node["reasons"]]


def apply_ok(root: Path, *extra: str) -> None:
    r = flows("apply", "flow.py", "wf", *INPUTS, *extra, "--auto-approve", cwd=root)
    assert r.code == 0, r.text


@pytest.fixture
def applied(tmp_path: Path) -> Path:
    root = write_project(tmp_path / "proj")
    apply_ok(root)
    return root


def test_first_plan_creates_everything(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj")
    plan = plan_json(root)
    # A node with no record is `create`, its key known after apply; `pending` is only for nodes with a record.
    assert actions(plan) == {"wf/prep": "create", "wf/scale": "create", "wf/report": "create"}
    assert plan["summary"]["create"] == 3 and plan["summary"]["pending"] == 0
    assert [n["key"] is None for n in plan["nodes"]] == [False, True, True]
    assert [n["pending_on"] for n in plan["nodes"]] == [[], ["wf/prep"], ["wf/scale"]]
    assert plan["state_serial"] is None
    r = flows("plan", "flow.py", "wf", *INPUTS, "--detailed-exitcode", cwd=root)
    assert r.code == 2, r.text
    assert "Plan: 3 to create, 0 to update, 0 to run, 0 pending, 0 reused, 0 to forget." in r.out
    assert re.search(r"^\+ wf/scale  create  \(known after apply\)\n +never run; waits for wf/prep \(key known after "
                     r"apply\)$", r.out, re.M), r.out
    assert not (root / ".flows" / "state").exists() or not list((root / ".flows" / "state").glob("*.json"))


def test_no_change_is_all_reuse_and_exit_zero(applied: Path) -> None:
    r = flows("plan", "flow.py", "wf", *INPUTS, "--detailed-exitcode", cwd=applied)
    assert r.code == 0, r.text
    assert "No changes." in r.out
    assert set(actions(plan_json(applied)).values()) == {"reuse"}


def test_editing_a_script_updates_only_its_node(applied: Path) -> None:
    script = applied / "scripts" / "scale.py"
    script.write_text(script.read_text().replace("int(r) * factor", "int(r) * factor + 1"))
    plan = plan_json(applied)
    assert actions(plan) == {"wf/prep": "reuse", "wf/scale": "update", "wf/report": "pending"}
    assert reasons(plan, "wf/scale") == ["code: scripts/scale.py changed"]
    assert any("waits for wf/scale" in m for m in reasons(plan, "wf/report"))


def test_changing_a_literal_input(applied: Path) -> None:
    plan = plan_json(applied, "--factor", "3")
    assert actions(plan)["wf/scale"] == "update"
    assert reasons(plan, "wf/scale") == ["input factor: 2 → 3"]
    assert actions(plan)["wf/prep"] == "reuse"


def test_changing_a_command(applied: Path) -> None:
    flow = applied / "flow.py"
    flow.write_text(flow.read_text().replace('command="python scripts/report.py"',
                                             'command="python scripts/report.py --verbose"'))
    plan = plan_json(applied)
    assert actions(plan)["wf/report"] == "update"
    assert reasons(plan, "wf/report") == ['command: "python scripts/report.py" → "python scripts/report.py --verbose"']


def test_cache_version_invalidates(applied: Path) -> None:
    flow = applied / "flow.py"
    flow.write_text(flow.read_text().replace('flyte_task_name="prep",', 'flyte_task_name="prep", cache_version="2",'))
    plan = plan_json(applied)
    assert actions(plan)["wf/prep"] == "update"
    assert reasons(plan, "wf/prep") == ['cache_version: "" → "2"']


def test_invalidating_and_non_invalidating_job_config_fields(applied: Path) -> None:
    flow = applied / "flow.py"
    original = flow.read_text()
    flow.write_text(original.replace('flyte_task_name="prep",', 'flyte_task_name="prep", hardware_tier_name="GPU",'
                                                                 ' job_title="Prep it", volume_size_gib=50,'))
    plan = plan_json(applied)
    assert actions(plan)["wf/prep"] == "reuse"
    prep = next(n for n in plan["nodes"] if n["address"] == "wf/prep")
    notes = [n["message"] for n in prep["notes"]]
    assert any(m.startswith('HardwareTierName: None → "GPU"') and "takes effect the next time it runs" in m
               for m in notes), notes
    assert {n["field"] for n in prep["notes"]} == {"HardwareTierName", "Title", "VolumeSizeGiB"}
    flow.write_text(original.replace('flyte_task_name="prep",', 'flyte_task_name="prep", environment_id="env-2",'))
    plan = plan_json(applied)
    assert actions(plan)["wf/prep"] == "update"
    assert reasons(plan, "wf/prep") == ['EnvironmentId: None → "env-2"']


def test_file_input_by_content_not_path(applied: Path) -> None:
    shutil.copy(applied / "data" / "in.csv", applied / "data" / "copy.csv")
    plan = plan_json(applied.joinpath(), "--data", "data/copy.csv")  # later --data wins
    assert actions(plan)["wf/prep"] == "reuse"
    (applied / "data" / "in.csv").write_text("1\n2\n\n4\n")
    plan = plan_json(applied)
    assert actions(plan)["wf/prep"] == "update"
    [message] = reasons(plan, "wf/prep")
    assert message.startswith("input data (file): digest ") and "→" in message


def test_cache_ignore_input_vars(tmp_path: Path) -> None:
    from tests.fixtures.projects import CHAIN_FLOW
    flow = CHAIN_FLOW.replace('flyte_task_name="scale",', 'flyte_task_name="scale", cache_ignore_input_vars=("factor",),')
    root = write_project(tmp_path / "p", flow=flow)
    apply_ok(root)
    plan = plan_json(root, "--factor", "5")
    assert actions(plan)["wf/scale"] == "reuse"


def test_cache_false_always_runs(tmp_path: Path) -> None:
    from tests.fixtures.projects import CHAIN_FLOW
    flow = CHAIN_FLOW.replace('flyte_task_name="report",', 'flyte_task_name="report", cache=False,')
    root = write_project(tmp_path / "p", flow=flow)
    apply_ok(root)
    plan = plan_json(root)
    assert actions(plan)["wf/report"] == "run"
    assert reasons(plan, "wf/report") == ["caching disabled (cache=False)"]


def test_target_and_replace(applied: Path) -> None:
    (applied / "scripts" / "prep.py").write_text((applied / "scripts" / "prep.py").read_text() + "\n# edited\n")
    plan = plan_json(applied, "--target", "wf/scale")
    assert actions(plan) == {"wf/prep": "update", "wf/scale": "pending"}
    plan = plan_json(applied, "--replace", "wf/report")
    assert actions(plan)["wf/report"] in ("pending",)  # upstream prep runs, so report waits
    (applied / "scripts" / "prep.py").write_text((applied / "scripts" / "prep.py").read_text().replace("\n# edited\n", ""))
    plan = plan_json(applied, "--replace", "wf/scale")
    assert actions(plan) == {"wf/prep": "reuse", "wf/scale": "run", "wf/report": "pending"}
    assert reasons(plan, "wf/scale") == ["replace requested"]
    r = flows("plan", "flow.py", "wf", *INPUTS, "--target", "wf/nope", cwd=applied)
    assert r.code == 1 and "no node 'wf/nope'" in r.err and "Traceback" not in r.text


def test_removed_node_is_forgotten(applied: Path) -> None:
    flow = applied / "flow.py"
    text = flow.read_text()
    start = text.index("    report = run_domino_job_task(")
    end = text.index("    return scale")
    flow.write_text(text[:start] + text[end:])
    plan = plan_json(applied)
    assert actions(plan)["wf/report"] == "forget"
    assert plan["summary"]["forget"] == 1


def test_reverting_is_a_cache_hit(applied: Path) -> None:
    apply_ok(applied, "--factor", "3")
    plan = plan_json(applied)  # back to factor 2
    assert actions(plan) == {"wf/prep": "reuse", "wf/scale": "reuse", "wf/report": "reuse"}
    assert any("cache hit" in m for m in reasons(plan, "wf/scale"))


def test_corrupt_and_future_state_are_clear_errors(applied: Path) -> None:
    state_file = applied / ".flows" / "state" / "wf.json"
    good = state_file.read_text()
    state_file.write_text("{ not json")
    r = flows("plan", "flow.py", "wf", *INPUTS, cwd=applied)
    assert r.code == 1 and "state is not valid JSON" in r.err and str(state_file) in r.err
    assert "Traceback" not in r.text
    assert state_file.read_text() == "{ not json"
    future = json.loads(good)
    future["version"] = 99
    state_file.write_text(json.dumps(future))
    r = flows("apply", "flow.py", "wf", *INPUTS, "--auto-approve", cwd=applied)
    assert r.code == 1 and "newer flows" in r.err and "Traceback" not in r.text
    assert json.loads(state_file.read_text())["version"] == 99
    broken = json.loads(good)
    broken["nodes"]["wf/prep"]["outputs"] = "nope"
    state_file.write_text(json.dumps(broken))
    r = flows("plan", "flow.py", "wf", *INPUTS, cwd=applied)
    assert r.code == 1 and "does not match the schema" in r.err and "nodes.wf/prep.outputs" in r.err


def test_saved_plan_applies_and_goes_stale(applied: Path) -> None:
    r = flows("plan", "flow.py", "wf", *INPUTS, "--factor", "4", "--out", "p.json", cwd=applied)
    assert r.code == 0, r.text
    r = flows("plan", "flow.py", "wf", *INPUTS, "--factor", "5", "--out", "p5.json", cwd=applied)
    assert r.code == 0, r.text
    serial_before = json.loads((applied / ".flows/state/wf.json").read_text())["serial"]
    r = flows("apply", "p.json", cwd=applied)
    assert r.code == 0, r.text
    r = flows("apply", "p5.json", cwd=applied)
    assert r.code == 1 and "saved plan is stale" in r.err, r.text
    assert json.loads((applied / ".flows/state/wf.json").read_text())["serial"] == serial_before + 1


def test_missing_and_unknown_inputs(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    r = flows("plan", "flow.py", "wf", cwd=root)
    assert r.code == 1 and "missing required input --data" in r.err
    r = flows("plan", "flow.py", "wf", *INPUTS, "--fator", "3", cwd=root)
    assert r.code == 1 and "unknown input 'fator'" in r.err and "did you mean 'factor'" in r.err
    r = flows("plan", "flow.py", "wf", "--data", "data/nope.csv", cwd=root)
    assert r.code == 1 and "no such file" in r.err
    r = flows("plan", "flow.py", "wf", *INPUTS, "--factor", "x", cwd=root)
    assert r.code == 1 and "--factor" in r.err and "Traceback" not in r.text
    (root / "inputs.json").write_text(json.dumps({"data": "data/in.csv", "factor": 3}))
    plan = json.loads(flows("plan", "flow.py", "wf", "--inputs", "inputs.json", "--json", cwd=root).out)
    assert plan["inputs"]["factor"] == 3


def test_plan_json_schema(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    plan = plan_json(root)
    assert plan["schema_version"] == 2
    assert {"flow", "flow_file", "flow_digest", "state_serial", "state_lineage", "nodes", "summary"} <= set(plan)
    node = plan["nodes"][0]
    assert {"address", "action", "reasons", "key", "previous_key", "pending_on", "notes"} <= set(node)
    assert len(node["key"]) == 40
