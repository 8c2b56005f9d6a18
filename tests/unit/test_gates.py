"""Approval gates in-process (`approve(value, "deploy", timeout)`): how they plan, where apply stops, how an
approval (in advance, at the prompt, or on recover) lets the run go on without re-running anything, and how a
waiting run times out."""
from __future__ import annotations

import datetime as dt

import pytest

from reconcile.gates import check_approvals
from state import journal
from state.model import Approval
from state.store import StateStore
from tests.fixtures.scripted import FlowBuilder, Hang, Succeed
from vocab.errors import InputError


def deploy_flow(flow: FlowBuilder, timeout: float | None = 3600) -> None:
    """train -> approve "deploy" -> ship; report runs beside them."""
    flow.job("train", outputs={"model": "str"})
    gated = flow.gate("deploy", flow.out("train", "model"), timeout_seconds=timeout)
    flow.job("ship", inputs={"model": gated}, outputs={"url": "str"})
    flow.job("report", outputs={"pages": "int"})


def test_a_gate_plans_as_approve_and_its_users_plan_as_if_it_were_not_there(flow, engine):
    deploy_flow(flow)
    engine.apply(approve=["deploy"])
    plan = engine.plan()
    assert engine.change(plan, "approve deploy").action == "reuse"
    flow.change("train", command="echo train v2")  # a new model: a new value to approve
    plan = engine.plan()
    gate = engine.change(plan, "approve deploy")
    assert (gate.action, gate.gate, gate.key) == ("approve", "deploy", None)  # its value is known after train runs
    assert "needs approval unless that value was approved before" in gate.reasons[0].message
    assert plan.summary["approve"] == 1 and plan.has_changes()
    assert engine.change(plan, "ship").action == "pending"  # waits for train's output, not for the gate's key


def test_apply_runs_what_does_not_depend_on_the_gate_then_ends_waiting(flow, provider, engine):
    deploy_flow(flow)
    applied = engine.apply()  # no --approve, nobody to ask (no terminal)
    assert applied.result("train") == "succeeded" and applied.result("report") == "succeeded"
    assert applied.result("approve deploy") == "awaiting"
    assert (applied.result("ship"), applied.detail("ship")) == ("blocked", "waits for approval of deploy")
    assert applied.outcome == "waiting"
    run = applied.state.runs[applied.run_id]
    assert list(run.waiting) == ["deploy"] and run.waiting["deploy"].address == "wf/approve deploy"
    assert run.waiting["deploy"].timeout_seconds == 3600 and run.approvals == {}
    assert "wf/approve deploy" not in applied.state.nodes  # nothing recorded for an unanswered gate
    assert "wf/ship" not in [a for a, _ in provider.calls]


def test_a_later_apply_with_approve_goes_on_without_re_running_anything(flow, provider, engine):
    deploy_flow(flow)
    engine.apply()
    plan = engine.plan()
    gate = engine.change(plan, "approve deploy")
    assert gate.action == "approve" and gate.key is not None  # train's output is known now
    assert gate.reasons[0].message.startswith("needs approval: never approved (flows apply ... --approve deploy")
    assert engine.change(plan, "ship").action == "create" and engine.change(plan, "ship").key is not None
    applied = engine.apply(approve=["deploy"], approver="ann")
    assert applied.outcome == "succeeded"
    assert [a for a, _ in provider.calls] == ["wf/train", "wf/report", "wf/ship"]  # train and report ran once
    run = applied.state.runs[applied.run_id]
    assert run.approvals["deploy"].by == "ann" and run.waiting == {}
    assert applied.state.nodes["wf/approve deploy"].status == "succeeded"
    again = engine.plan()
    assert not again.has_changes()
    assert again.node("wf/approve deploy").reasons[0].message.startswith(  # type: ignore[union-attr]
        f"approved by ann at {run.approvals['deploy'].at} (run {applied.run_id})")


def test_a_gate_does_not_change_the_keys_of_what_uses_its_value(flow, provider, engine):
    flow.job("train", outputs={"model": "str"})
    flow.job("ship", inputs={"model": flow.out("train", "model")}, outputs={"url": "str"})
    engine.apply()
    shipped = engine.read_state()[0].nodes["wf/ship"].key
    flow.nodes.pop("wf/ship")
    gated = flow.gate("deploy", flow.out("train", "model"))  # a gate added in front of an applied node
    flow.job("ship", inputs={"model": gated}, outputs={"url": "str"})
    plan = engine.plan()
    assert engine.change(plan, "ship").action == "reuse" and engine.change(plan, "ship").key == shipped
    assert engine.change(plan, "approve deploy").action == "approve"


def test_recover_with_approve_finishes_the_waiting_run_under_its_own_id(flow, provider, engine):
    deploy_flow(flow)
    waiting = engine.apply()
    recovered = engine.apply(resume=waiting.run_id, approve=["deploy"], approver="bob")
    assert recovered.run_id == waiting.run_id and recovered.outcome == "recovered"
    assert [a for a, _ in provider.calls] == ["wf/train", "wf/report", "wf/ship"]
    run = recovered.state.runs[waiting.run_id]
    assert run.approvals["deploy"].by == "bob" and run.waiting == {}


def test_the_question_is_put_once_nothing_else_can_run_and_a_yes_goes_on(flow, provider, engine):
    deploy_flow(flow)
    asked = []

    def ask(q):
        left = q.seconds_left
        asked.append((q.name, q.addresses, sorted(a for a, _ in provider.calls), left is not None and 0 < left <= 3600))
        shown.extend(q.values)
        return "approved"
    shown: list[str] = []
    provider.script("wf/train", Succeed(model="m-42"))
    applied = engine.apply(ask=ask, approver="cy")
    assert asked == [("deploy", ["wf/approve deploy"], ["wf/report", "wf/train"], True)]
    assert shown == ["wf/train.model = 'm-42'"]  # the person sees what they approve
    assert applied.outcome == "succeeded" and applied.result("ship") == "succeeded"
    assert applied.state.runs[applied.run_id].approvals["deploy"].by == "cy"


def test_a_no_fails_the_gate_and_skips_what_depends_on_it(flow, provider, engine):
    deploy_flow(flow)
    applied = engine.apply(ask=lambda question: "refused", approver="cy")
    assert (applied.result("approve deploy"), applied.detail("approve deploy")) == ("failed", "approval refused by cy")
    assert applied.result("ship") == "skipped" and applied.outcome == "failed"
    plan = engine.plan()
    assert "approval refused by cy last time" in engine.change(plan, "approve deploy").reasons[0].message


def test_an_approval_is_durable_before_anything_depends_on_it(flow, provider, engine):
    deploy_flow(flow)
    provider.script("wf/ship", Hang())
    thread, box = engine.apply_in_thread(approve=["deploy"], approver="ann")
    provider.wait_for(lambda: "wf/ship" in provider.running, "ship to run")
    view = StateStore(engine.backend, "wf").view()  # what a reader (or recover after a kill) sees now
    (run,) = view.state.runs.values()
    assert run.approvals["deploy"].by == "ann"
    assert any(isinstance(r, journal.GateApproved) for r in view.journal)
    provider.release("wf/ship")
    thread.join(30)
    assert box["applied"].outcome == "succeeded"


def test_an_approval_recorded_in_the_run_is_used_by_recover(flow, provider, engine):
    deploy_flow(flow)
    provider.script("wf/ship", Hang(then=Succeed()))
    thread, box = engine.apply_in_thread(approve=["deploy"], approver="ann")
    provider.wait_for(lambda: "wf/ship" in provider.running, "ship to run")
    provider.release("wf/ship")
    thread.join(30)
    run_id = box["applied"].run_id

    def forget_ship(state):  # as if the apply died after the approval, before ship finished
        state.nodes.pop("wf/ship")
        state.cache = {k: e for k, e in state.cache.items() if e.address not in ("wf/ship", "wf/approve deploy")}
        state.runs[run_id].outcome = "interrupted"
    engine.change_state(forget_ship)
    provider.script("wf/ship", Succeed())
    recovered = engine.apply(resume=run_id)  # no --approve: the run's own approval stands
    assert recovered.outcome == "recovered" and recovered.result("ship") == "succeeded"
    assert recovered.state.runs[run_id].approvals["deploy"].by == "ann"


def test_a_waiting_run_whose_gate_timed_out_has_failed_and_recover_asks_again(flow, provider, engine):
    deploy_flow(flow, timeout=60)
    waiting = engine.apply()

    def two_minutes_ago(state):
        wait = state.runs[waiting.run_id].waiting["deploy"]
        wait.since = (dt.datetime.fromisoformat(wait.since) - dt.timedelta(minutes=2)).isoformat()
    engine.change_state(two_minutes_ago)
    run = engine.read_state()[0].runs[waiting.run_id]
    assert run.outcome == "failed" and run.waiting == {}
    assert "approval gate 'deploy' (wf/approve deploy) timed out: nobody approved it within 60s" in run.error
    again = engine.apply(resume=waiting.run_id)  # asked again, with a fresh timeout: still nobody answers
    fresh = again.state.runs[waiting.run_id]
    assert again.outcome == "waiting" and fresh.outcome == "waiting"
    assert dt.datetime.fromisoformat(fresh.waiting["deploy"].since) > dt.datetime.now(dt.timezone.utc) - dt.timedelta(
        seconds=30)


def test_a_waiting_run_within_its_timeout_keeps_waiting():
    from state.model import GateWait, RunRecord, State
    from state.store import settle_timed_out_gates
    state = State(flow="wf", runs={"r": RunRecord(id="r", flow="wf", outcome="waiting", waiting={
        "deploy": GateWait(address="wf/approve deploy", since="2026-11-30T12:00:00+00:00", timeout_seconds=3600)})})
    assert not settle_timed_out_gates(state, dt.datetime(2026, 11, 30, 12, 59, tzinfo=dt.timezone.utc))
    assert state.runs["r"].outcome == "waiting"
    assert settle_timed_out_gates(state, dt.datetime(2026, 11, 30, 13, 0, 1, tzinfo=dt.timezone.utc))
    assert state.runs["r"].outcome == "failed"


def test_a_value_approved_before_is_not_asked_again(flow, provider, engine):
    deploy_flow(flow)
    provider.script("wf/train", Succeed(model="v1"), Succeed(model="v1"))
    engine.apply(approve=["deploy"])
    applied = engine.apply(plan=engine.plan(replace=["wf/train"]))  # train runs again and makes the same bytes
    assert applied.result("approve deploy") == "reused" and applied.outcome == "succeeded"


def test_an_unknown_approve_name_is_an_error_with_a_did_you_mean(flow):
    deploy_flow(flow)
    assert check_approvals(flow.graph(), ["deploy", "deploy"]) == ["deploy"]
    with pytest.raises(InputError) as info:
        check_approvals(flow.graph(), ["deplyo"])
    assert info.value.message == "workflow 'wf' has no approval gate 'deplyo' (did you mean 'deploy'?)"
    assert Approval(by="x").at  # (an approval carries its time)


# -- the question at a terminal (reconcile/cli/approval.py), with a pipe for the keyboard -------------------
def _asker(answer: str | None, seconds_left: float | None = None):
    import io
    import os

    from rich.console import Console

    from reconcile.cli.approval import terminal_asker
    from reconcile.gates import GateQuestion
    read_end, write_end = os.pipe()
    if answer is not None:
        os.write(write_end, answer.encode())
        os.close(write_end)  # (an unanswered question with a timeout: the pipe stays open and silent)
    out = io.StringIO()
    stream = os.fdopen(read_end)
    ask = terminal_asker(Console(file=out, width=200), "ann", stream=stream)
    got = ask(GateQuestion(name="deploy", addresses=["wf/approve deploy"], values=["wf/train.model = 'm-1'"],
                           seconds_left=seconds_left))
    stream.close()
    if answer is None:
        os.close(write_end)
    return got, out.getvalue()


@pytest.mark.parametrize("typed, answer", [("y\n", "approved"), ("YES\n", "approved"), ("n\n", "refused"),
                                            ("\n", "refused"), ("", "unanswered")])
def test_the_terminal_question_shows_the_value_and_reads_the_answer(typed, answer):
    got, shown = _asker(typed)
    assert got == answer
    assert "⏸ approve deploy" in shown and "value: wf/train.model = 'm-1'" in shown
    assert "Approve 'deploy' as ann? [y/N]" in shown


def test_the_terminal_question_times_out_with_the_gate():
    got, shown = _asker(None, seconds_left=0.05)  # poll: the gate's own (tiny) timeout is what is waited
    assert got == "timed out" and "(times out in 0.05s)" in shown


def test_ctrl_c_ends_the_terminal_question_unanswered():
    import io
    import os
    import threading

    from rich.console import Console

    from reconcile.cli.approval import terminal_asker
    from reconcile.gates import GateQuestion
    read_end, write_end = os.pipe()  # nobody types
    cancel = threading.Event()
    cancel.set()  # Ctrl-C while the question waits
    with os.fdopen(read_end) as stream:
        ask = terminal_asker(Console(file=io.StringIO()), "ann", stream=stream, cancel=cancel)
        assert ask(GateQuestion(name="deploy", addresses=["wf/approve deploy"], values=[], seconds_left=None)) == \
            "unanswered"
    os.close(write_end)
