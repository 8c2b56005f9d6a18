"""Approval gates, as real flow files write them (`approve(value, "deploy", timeout=timedelta(hours=1))`, also
imported as `flytekit.core.gate.approve` under another name, or called as `fk.approve`): what they load into,
and each misuse as one line naming the file and line."""
from __future__ import annotations

from pathlib import Path

import pytest

from reconcile.graph import FlowGraph
from reconcile.loader import load_flow
from vocab.errors import FlowLoadError

FLOWS = Path(__file__).parent / "flows" / "gated"


def load(name: str, workflow: str | None = None) -> FlowGraph:
    return load_flow(FLOWS / name, workflow)


def marked_lines(name: str, marker: str) -> list[int]:
    return [i for i, line in enumerate((FLOWS / name).read_text().splitlines(), 1) if marker in line]


def test_approve_is_a_gate_node_that_passes_its_value_through():
    g = load("flow.py", "release")
    gate = g.nodes["release/approve deploy"]
    assert (gate.kind, gate.gate, gate.timeout_seconds) == ("gate", "deploy", 3600)
    assert gate.source is not None and gate.source.line == marked_lines("flow.py", "# mark:gate")[0]
    value = gate.bindings["value"]
    assert (value.kind, value.node, value.output, value.type) == ("node_output", "release/Evaluate", "report", "str")
    assert gate.outputs == {}
    deploy = g.nodes["release/Deploy"]
    report = deploy.bindings["report"]  # the value itself, from Evaluate, available once the gate is approved
    assert (report.node, report.output, report.after) == ("release/Evaluate", "report", ["release/approve deploy"])
    assert "release/approve deploy" in deploy.upstreams()
    assert "release/approve deploy" not in deploy.data_upstreams()
    assert deploy.bindings["model"].after == []  # the model itself did not pass the gate


def test_aliases_and_chained_gates_load_and_order():
    g = load("flow.py", "release")
    score_gate = g.nodes["release/approve publish score"]  # fk.approve(..., timeout positionally)
    assert score_gate.timeout_seconds == 1800 and score_gate.bindings["value"].node == "release/Train"
    final = g.nodes["release/approve final check"]  # a helper's `approve as human_check`, on an approved value
    assert final.timeout_seconds == 4 * 3600
    assert final.bindings["value"].after == ["release/approve publish score"]
    assert "release/approve publish score" in final.upstreams()
    publish = g.nodes["release/Publish"].bindings["score"]
    assert (publish.node, publish.after) == ("release/Train", ["release/approve publish score",
                                                               "release/approve final check"])
    order = g.order()
    assert order.index("release/approve final check") < order.index("release/Publish") < order.index("release/Deploy")


@pytest.mark.parametrize("workflow, message", [
    ("gates_a_flow_input", "approve 'ok': the value to approve is a workflow input"),
    ("gates_two_outputs", "approve 'ok': 'gates_two_outputs/two' has 2 outputs; approve one of them"),
    ("gates_nothing", "approve 'ok': 'gates_nothing/none' returns nothing"),
    ("same_name_twice", "approve: two gates named 'ok' in one workflow (line "),
    ("bad_timeout", "approve 'ok': timeout must be a timedelta (e.g. timedelta(hours=1)), got '1h'"),
    ("no_timeout", "approve() missing 1 required positional argument: 'timeout'"),
    ("typo_keyword", "approve has no keyword 'timout' (did you mean 'timeout'?)"),
])
def test_each_misuse_of_approve_is_one_line_naming_file_and_line(workflow, message):
    with pytest.raises(FlowLoadError) as info:
        load("bad_gates.py", workflow)
    e = info.value
    line = marked_lines("bad_gates.py", "# mark:bad")[
        ["gates_a_flow_input", "gates_two_outputs", "gates_nothing", "same_name_twice", "bad_timeout", "no_timeout",
         "typo_keyword"].index(workflow)]
    assert (e.file, e.line) == (str(FLOWS / "bad_gates.py"), line), str(e)
    assert message in e.message and "\n" not in str(e)
