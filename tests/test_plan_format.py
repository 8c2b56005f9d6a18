"""The plan's JSON (`flows plan --json`, saved plans) is a public format: a golden file pins its shape."""
from __future__ import annotations

import json
import os
from pathlib import Path

from reconcile.plan_model import PLAN_SCHEMA_VERSION, READABLE_PLAN_VERSIONS, NodeChange, Plan, Reason

GOLDEN = Path(__file__).parent / "golden" / f"plan_v{PLAN_SCHEMA_VERSION}.json"
GOLDEN_V1 = Path(__file__).parent / "golden" / "plan_v1.json"  # as flows wrote plans before approval gates


def sample_plan() -> Plan:
    """One node of each kind of change, with every field set that a real plan sets."""
    return Plan(
        flow="wf", flow_file="/p/flow.py", flow_digest="f" * 64, inputs={"data": "/p/data/in.csv", "lr": 0.1},
        state_serial=3, state_lineage="00000000-0000-4000-8000-000000000000", backend="s3", provider="domino",
        created_at="2026-11-30T09:00:00.000+00:00", targets=["wf/train"], replace=[],
        nodes=[
            NodeChange(address="wf/prep", task_name="prep", action="reuse", key="a" * 40, previous_key="a" * 40,
                       reused_from_run="r20261129-090000-abcd", fingerprint={"key_schema": 2, "task": {}, "code": {},
                                                                            "inputs": {}}),
            NodeChange(address="wf/train", task_name="train", action="update", key="b" * 40, previous_key="c" * 40,
                       reasons=[Reason(field="input lr", message="input lr: 0.01 → 0.1", old=0.01, new=0.1)],
                       notes=[Reason(field="Title", message="Title: a → b (takes effect the next time it runs)",
                                     old="a", new="b")]),
            NodeChange(address="wf/report", task_name="report", action="create", pending_on=["wf/train"],
                       reasons=[Reason(field="node", message="never run; waits for wf/train")]),
            NodeChange(address="wf/approve deploy", task_name="approve deploy", action="approve", gate="deploy",
                       key="d" * 40, reasons=[Reason(field="approval", message="needs approval: never approved "
                                                     "(flows apply ... --approve deploy)")]),
        ],
        summary={"create": 1, "update": 1, "run": 0, "pending": 0, "approve": 1, "reuse": 1, "forget": 0},
    )


def test_the_plan_json_keeps_its_shape() -> None:
    text = sample_plan().model_dump_json(indent=1) + "\n"
    if os.environ.get("FLOWS_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "the plan JSON changed: bump PLAN_SCHEMA_VERSION and update the README"
    assert json.loads(text)["schema_version"] == PLAN_SCHEMA_VERSION


def test_a_saved_plan_reads_back_as_the_same_plan() -> None:
    plan = sample_plan()
    assert Plan.model_validate_json(GOLDEN.read_text()) == plan


def test_a_plan_saved_before_approval_gates_reads_as_a_plan_without_gates() -> None:
    old = json.loads(GOLDEN_V1.read_text())
    assert old["schema_version"] == 1 and 1 in READABLE_PLAN_VERSIONS
    plan = Plan.model_validate(old)
    assert [n.gate for n in plan.nodes] == [None, None, None] and "approve" not in plan.summary
