"""The planner in-process (reconcile/plan.py, reconcile/fingerprint.py): every action with its reasons, against
an in-memory state, without running a job."""
from __future__ import annotations

import pytest

from reconcile.fingerprint import cache_key, split_config
from vocab.errors import FlowsError


def two(flow) -> None:
    flow.job("a", outputs={"n": "int"}, job_config={"Title": "A", "HardwareTierId": "small"})
    flow.job("b", inputs={"n": flow.out("a", "n"), "k": 3}, outputs={"n": "int"})


def actions(engine, plan) -> dict[str, str]:
    return {c.address.split("/", 1)[1]: c.action for c in plan.nodes}


def test_a_first_plan_creates_every_node_the_later_ones_keyed_after_apply(flow, engine):
    two(flow)
    plan = engine.plan()
    assert actions(engine, plan) == {"a": "create", "b": "create"}  # no record: create, never pending
    a, b = engine.change(plan, "a"), engine.change(plan, "b")
    assert [r.message for r in a.reasons] == ["never run"]
    assert a.key is not None and b.key is None
    assert b.pending_on == ["wf/a"]
    assert b.reasons[0].message == "never run; waits for wf/a (key known after apply)"
    assert plan.summary["create"] == 2 and plan.summary["pending"] == 0
    assert plan.state_serial is None


def test_after_an_apply_everything_is_reused_without_reasons(flow, engine):
    two(flow)
    engine.apply()
    plan = engine.plan()
    assert actions(engine, plan) == {"a": "reuse", "b": "reuse"}
    assert all(c.reasons == [] for c in plan.nodes)
    assert not plan.has_changes()
    assert plan.state_serial is not None


def test_a_changed_command_is_an_update_that_says_what_changed(flow, engine):
    two(flow)
    engine.apply()
    flow.change("b", command="echo b --fast")
    plan = engine.plan()
    assert actions(engine, plan) == {"a": "reuse", "b": "update"}
    reason = engine.change(plan, "b").reasons[0]
    assert (reason.old, reason.new) == ("echo b", "echo b --fast")
    assert "command" in reason.field


def test_a_changed_literal_input_is_an_update_naming_the_input(flow, engine):
    two(flow)
    engine.apply()
    flow.change("b", bindings={**flow.nodes["wf/b"].bindings,
                               "k": flow.nodes["wf/b"].bindings["k"].model_copy(update={"value": 4})})
    reasons = engine.change(engine.plan(), "b").reasons
    assert [r.message for r in reasons] == ["input k: 3 → 4"]


def test_display_fields_do_not_invalidate_and_are_noted(flow, engine):
    two(flow)
    engine.apply()
    flow.change("a", job_config={"Title": "A renamed", "HardwareTierId": "large"})
    change = engine.change(engine.plan(), "a")
    assert change.action == "reuse"
    assert {n.field for n in change.notes} == {"Title", "HardwareTierId"}


def test_cache_false_runs_every_time(flow, engine):
    flow.job("a", outputs={"n": "int"}, cache=False)
    engine.apply()
    change = engine.change(engine.plan(), "a")
    assert change.action == "run"
    assert change.reasons[0].message == "caching disabled (cache=False)"


def test_replace_runs_a_node_whose_key_is_known(flow, engine):
    two(flow)
    engine.apply()
    plan = engine.plan(replace=["wf/a"])
    assert actions(engine, plan) == {"a": "run", "b": "pending"}
    assert engine.change(plan, "a").reasons[0].message == "replace requested"


def test_a_missing_output_blob_runs_the_node_again(flow, engine, provider):
    flow.job("a", outputs={"model": "file[pkl]"})
    engine.apply()
    record = engine.read_state()[0].nodes["wf/a"]
    engine.blobs.missing.add(record.outputs["model"].uri)
    change = engine.change(engine.plan(), "a")
    assert change.action == "run"
    assert change.reasons[0].message.startswith("outputs missing from the blob store")


def test_going_back_to_an_earlier_definition_is_a_cache_hit(flow, engine, provider):
    flow.job("a", outputs={"n": "int"})
    first = engine.apply()
    flow.change("a", command="echo a v2")
    engine.apply()
    flow.change("a", command="echo a")
    change = engine.change(engine.plan(), "a")
    assert change.action == "reuse"
    assert change.reused_from_run == first.run_id
    assert change.reasons[0].message.startswith(f"cache hit: same key as the result of run {first.run_id}")


def test_a_node_gone_from_the_flow_is_forgotten(flow, engine):
    two(flow)
    engine.apply()
    del flow.nodes["wf/b"]
    plan = engine.plan()
    assert actions(engine, plan) == {"a": "reuse", "b": "forget"}
    applied = engine.apply(plan)
    assert "wf/b" not in applied.state.nodes
    assert len(applied.state.cache) == 2  # its cache entries stay: adding it back is free


def test_targets_plan_only_the_target_and_its_ancestors(flow, engine):
    two(flow)
    flow.job("c", outputs={"n": "int"})
    plan = engine.plan(targets=["wf/b"])
    assert actions(engine, plan) == {"a": "create", "b": "create"}


def test_an_unknown_target_is_a_clear_error_with_a_hint(flow, engine):
    two(flow)
    with pytest.raises(FlowsError, match=r"no node 'wf/bb' in workflow 'wf' \(did you mean 'wf/b'\?\)"):
        engine.plan(targets=["wf/bb"])


def test_an_unchanged_failed_node_runs_again_with_its_error_as_the_reason(flow, engine, provider):
    from tests.fixtures.scripted import Fail
    two(flow)
    provider.script("wf/a", Fail("disk full"))
    engine.apply()
    plan = engine.plan()
    assert actions(engine, plan) == {"a": "run", "b": "create"}  # b was skipped: it has no record
    assert engine.change(plan, "a").reasons[0].message == "failed last time: disk full"


# -- the fingerprint ---------------------------------------------------------------------------------------
def test_display_fields_are_left_out_of_the_key():
    keyed, display = split_config({"Title": "t", "HardwareTierId": "big", "EnvironmentId": "e1",
                                   "ComputeClusterProperties": {"ClusterType": "Spark", "WorkerCount": 4}})
    assert keyed == {"EnvironmentId": "e1", "ComputeClusterProperties": {"ClusterType": "Spark"}}
    assert display == {"Title": "t", "HardwareTierId": "big", "ComputeClusterProperties": {"WorkerCount": 4}}


def test_the_key_ignores_key_order_and_changes_with_any_value():
    assert cache_key({"a": 1, "b": [1, 2]}) == cache_key({"b": [1, 2], "a": 1})
    assert cache_key({"a": 1, "b": [1, 2]}) != cache_key({"a": 1, "b": [2, 1]})
    assert len(cache_key({})) == 40


def test_an_upstream_enters_the_key_by_its_output_not_its_key(flow, engine, provider):
    from tests.fixtures.scripted import Succeed
    two(flow)
    provider.script("wf/a", Succeed(n=5))
    applied = engine.apply()
    fp = applied.state.nodes["wf/b"].fingerprint
    assert fp["inputs"]["n"] == {"type": "int", "value": 5}
    assert applied.state.nodes["wf/a"].key not in str(fp)


def test_an_ignored_input_does_not_change_the_key(flow, engine):
    flow.job("a", inputs={"seed": 1, "k": 2}, outputs={"n": "int"}, cache_ignore_input_vars=["seed"])
    engine.apply()
    flow.change("a", bindings={**flow.nodes["wf/a"].bindings,
                               "seed": flow.nodes["wf/a"].bindings["seed"].model_copy(update={"value": 99})})
    assert engine.change(engine.plan(), "a").action == "reuse"
    flow.change("a", bindings={**flow.nodes["wf/a"].bindings,
                               "k": flow.nodes["wf/a"].bindings["k"].model_copy(update={"value": 3})})
    assert engine.change(engine.plan(), "a").action == "update"


# -- file inputs: by content ---------------------------------------------------------------------------------
def test_a_file_input_is_keyed_by_its_content_not_its_path(flow, engine, tmp_path):
    from tests.fixtures.scripted import Typed
    (tmp_path / "a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "copy.csv").write_text("x,y\n1,2\n")
    flow.job("load", inputs={"data": Typed("file[csv]", "a.csv")}, outputs={"n": "int"})
    engine.apply()
    flow.change("load", bindings={"data": flow.nodes["wf/load"].bindings["data"].model_copy(
        update={"value": "copy.csv"})})
    assert engine.change(engine.plan(), "load").action == "reuse"  # same bytes elsewhere
    (tmp_path / "copy.csv").write_text("x,y\n1,3\n")
    change = engine.change(engine.plan(), "load")
    assert change.action == "update"
    assert change.reasons[0].message.startswith("input data (file")


def test_a_missing_input_file_is_a_clear_error_naming_node_and_input(flow, engine):
    from tests.fixtures.scripted import Typed
    from vocab.errors import InputError
    flow.job("load", inputs={"data": Typed("file[csv]", "nope.csv")}, outputs={"n": "int"})
    with pytest.raises(InputError, match=r"wf/load: input data: no such file or directory: .*nope\.csv"):
        engine.plan()


def test_a_remote_config_shared_by_every_node_is_resolved_ahead(flow, engine, provider, monkeypatch):
    """A provider that resolves configs remotely (Domino: round trips) is asked for every distinct config in
    `resolve_ahead`, which runs beside the blob-presence check; one config shared by all the nodes (the common
    case) was left to the first node's planning, so its round trips came after that check instead of beside it."""
    from reconcile.plan import NodeKeyer

    asked: list[str] = []

    def resolve(node):
        asked.append(node.address)
        return dict(node.job_config)

    monkeypatch.setattr(type(provider), "resolves_remotely", property(lambda self: True))
    monkeypatch.setattr(provider, "resolve_config", resolve)
    for name in ("a", "b", "c"):
        flow.job(name, job_config={"HardwareTierName": "small"})
    graph = flow.graph()
    NodeKeyer(graph, {}, provider, engine.digests).resolve_ahead(list(graph.nodes.values()))
    assert len(asked) == 1
    asked.clear()
    flow.job("d", job_config={"HardwareTierName": "large"})
    graph = flow.graph()
    NodeKeyer(graph, {}, provider, engine.digests).resolve_ahead(list(graph.nodes.values()))
    assert sorted(asked) == ["wf/a", "wf/d"]  # one node per distinct config
