"""The scheduler in-process (reconcile/apply.py): retries, keep-going, cancel, early cutoff, failing upstreams and
parallelism limits, with a scripted provider. Each case runs in milliseconds; the end-to-end tests keep the
subprocess paths honest."""
from __future__ import annotations

import threading

import pytest

from reconcile.apply import STOPPED, UPSTREAM_FAILED
from tests.fixtures.inprocess import Engine, RecordingReporter
from tests.fixtures.scripted import (DEADLINE, Crash, Fail, FlowBuilder, Hang, QueueingProvider, ScriptedProvider,
                                     Succeed)


def chain(flow: FlowBuilder) -> None:
    """a -> b -> c, each passing an int along."""
    flow.job("a", outputs={"n": "int"})
    flow.job("b", inputs={"n": flow.out("a", "n")}, outputs={"n": "int"})
    flow.job("c", inputs={"n": flow.out("b", "n")}, outputs={"n": "int"})


# -- retries ---------------------------------------------------------------------------------------------
def test_a_node_that_fails_twice_succeeds_on_its_third_attempt(flow, provider, engine):
    flow.job("a", outputs={"n": "int"}, retries=2)
    provider.script("wf/a", Fail("flaky 1"), Fail("flaky 2"), Succeed(n=7))
    applied = engine.apply()
    assert applied.result("a") == "succeeded"
    assert provider.attempts("wf/a") == [1, 2, 3]
    assert applied.state.nodes["wf/a"].attempts == 3
    assert applied.state.nodes["wf/a"].outputs["n"].value == 7
    assert [m for m in applied.reporter.messages("wf/a") if "retrying" in m] == [
        "attempt 1 failed: flaky 1; retrying", "attempt 2 failed: flaky 2; retrying"]
    assert applied.outcome == "succeeded"


def test_retries_run_out_and_the_node_fails_with_its_last_error(flow, provider, engine):
    flow.job("a", outputs={"n": "int"}, retries=1)
    provider.script("wf/a", Fail("first"), Fail("second"), Succeed())
    applied = engine.apply()
    assert provider.attempts("wf/a") == [1, 2]
    assert applied.result("a") == "failed"
    assert applied.state.nodes["wf/a"].status == "failed"
    assert applied.state.nodes["wf/a"].error == "second"
    assert applied.outcome == "failed"


def test_a_timed_out_attempt_is_retried_like_a_failure(flow, provider, engine):
    flow.job("a", outputs={"n": "int"}, retries=1)
    provider.script("wf/a", Fail("took too long", status="timed_out"), Succeed(n=1))
    applied = engine.apply()
    assert provider.attempts("wf/a") == [1, 2]
    assert applied.result("a") == "succeeded"


def test_a_provider_error_is_not_retried_and_fails_only_its_node(flow, provider, engine):
    flow.job("a", outputs={"n": "int"}, retries=3)
    flow.job("other", outputs={"n": "int"})
    provider.script("wf/a", Crash("no such hardware tier"))
    applied = engine.apply(keep_going=True)
    assert provider.attempts("wf/a") == [1]
    assert applied.result("a") == "failed"
    assert applied.detail("a") == "RuntimeError: no such hardware tier"
    assert applied.result("other") == "succeeded"


# -- a failing upstream, keep-going ----------------------------------------------------------------------
def test_a_failed_upstream_skips_everything_below_it(flow, provider, engine):
    chain(flow)
    provider.script("wf/a", Fail("boom"))
    applied = engine.apply()
    assert applied.result("a") == "failed"
    assert (applied.result("b"), applied.detail("b")) == ("skipped", UPSTREAM_FAILED)
    assert (applied.result("c"), applied.detail("c")) == ("skipped", UPSTREAM_FAILED)
    assert [a for a, _ in provider.calls] == ["wf/a"]
    assert applied.state.runs[applied.run_id].error == "wf/a: boom"
    # The failure is in the state, so the next plan says why a runs again.
    plan = engine.plan()
    change = engine.change(plan, "a")
    assert change.action == "run"
    assert change.reasons[0].message == "failed last time: boom"


def test_without_keep_going_nothing_new_starts_after_a_failure(flow, provider, engine):
    flow.job("a", outputs={"n": "int"})
    flow.job("independent", outputs={"n": "int"})
    flow.job("below", inputs={"n": flow.out("a", "n")}, outputs={"n": "int"})
    provider.script("wf/a", Fail("boom"))
    applied = engine.apply(parallelism=1)  # a runs first; independent waits for a worker
    assert (applied.result("independent"), applied.detail("independent")) == ("skipped", STOPPED)
    assert (applied.result("below"), applied.detail("below")) == ("skipped", UPSTREAM_FAILED)
    assert [a for a, _ in provider.calls] == ["wf/a"]


# -- a provider that holds starts ahead of its free slots (StartQueue: the local launcher) ---------------------
def three_hanging(flow: FlowBuilder, provider: ScriptedProvider, then: object) -> None:
    for name in ("x", "y", "z"):
        flow.job(name, outputs={"n": "int"})
        provider.script(f"wf/{name}", Hang(then=then))


def test_after_a_failure_the_starts_waiting_in_the_provider_never_start(flow, tmp_path):
    provider = QueueingProvider(ahead=2)
    three_hanging(flow, provider, Fail("boom"))
    engine = Engine(tmp_path, flow, provider)
    thread, box = engine.apply_in_thread(parallelism=1)
    # one job runs; the two other starts wait inside the provider (taken ahead of the one slot)
    provider.wait_for(lambda: len(provider.running) == 1 and len(provider.waiting) == 2, "one running, two waiting")
    [first] = provider.running
    provider.release(first)  # it fails; the head of the line starts as it ends (as the launcher does)
    provider.wait_for(lambda: provider.held, "the apply to hold the provider's starts")
    provider.wait_for(lambda: len(provider.running) == 1 and first not in provider.running, "the next job")
    [second] = provider.running
    provider.release(second)
    thread.join(DEADLINE)
    applied = box["applied"]
    [third] = {"wf/x", "wf/y", "wf/z"} - {first, second}
    assert provider.held == [STOPPED]
    assert third not in [a for a, _ in provider.calls]  # its start was held back: it never ran
    assert (applied.result(third.split("/")[1]), applied.detail(third.split("/")[1])) == ("skipped", STOPPED)
    assert third not in applied.state.nodes  # nothing recorded for a node that never started
    assert applied.result(first.split("/")[1]) == "failed"


def test_a_ctrl_c_holds_the_starts_waiting_in_the_provider(flow, tmp_path):
    provider = QueueingProvider(ahead=2, stops_on_cancel=False)  # the running job ends only when released
    three_hanging(flow, provider, Succeed())
    engine = Engine(tmp_path, flow, provider)
    cancel = threading.Event()
    thread, box = engine.apply_in_thread(parallelism=1, cancel=cancel)
    provider.wait_for(lambda: len(provider.running) == 1 and len(provider.waiting) == 2, "one running, two waiting")
    [running] = provider.running
    cancel.set()
    provider.wait_for(lambda: provider.held and not provider.waiting, "the waiting starts to be refused")
    provider.release(running)  # its end frees the slot: nothing takes it
    thread.join(DEADLINE)
    applied = box["applied"]
    assert provider.held == ["not started: apply interrupted"]
    assert [a for a, _ in provider.calls] == [running]
    for other in {"wf/x", "wf/y", "wf/z"} - {running}:
        name = other.split("/")[1]
        assert (applied.result(name), applied.detail(name)) == ("skipped", "not started: apply interrupted")
    assert applied.outcome == "interrupted"


def test_a_retry_the_stopping_apply_holds_back_leaves_the_node_failed(flow, tmp_path):
    provider = QueueingProvider(ahead=1)
    flow.job("a", outputs={"n": "int"}, retries=1)
    flow.job("b", outputs={"n": "int"})
    provider.script("wf/a", Hang(then=Fail("first")), Succeed())
    provider.script("wf/b", Hang(then=Fail("b broke")))
    engine = Engine(tmp_path, flow, provider)
    thread, box = engine.apply_in_thread(parallelism=2)
    provider.wait_for(lambda: provider.running == {"wf/a", "wf/b"}, "a and b running")
    provider.release("wf/b")  # b fails: the apply stops, and holds every start not begun
    provider.wait_for(lambda: provider.held, "the hold")
    provider.release("wf/a")  # a's first attempt fails; its retry would be a new start
    thread.join(DEADLINE)
    applied = box["applied"]
    assert provider.attempts("wf/a") == [1]
    assert applied.result("a") == "failed" and applied.state.nodes["wf/a"].error == "first"
    assert "attempt 2 not started: " + STOPPED in applied.reporter.messages("wf/a")


def test_keep_going_runs_the_independent_nodes(flow, provider, engine):
    flow.job("a", outputs={"n": "int"})
    flow.job("independent", outputs={"n": "int"})
    flow.job("below", inputs={"n": flow.out("a", "n")}, outputs={"n": "int"})
    provider.script("wf/a", Fail("boom"))
    applied = engine.apply(parallelism=1, keep_going=True)
    assert applied.result("independent") == "succeeded"
    assert (applied.result("below"), applied.detail("below")) == ("skipped", UPSTREAM_FAILED)
    assert applied.state.nodes["wf/independent"].status == "succeeded"
    assert applied.outcome == "failed"


# -- cancel ----------------------------------------------------------------------------------------------
def test_cancel_stops_the_running_job_and_starts_nothing_more(flow, provider, engine):
    flow.job("a", outputs={"n": "int"})
    flow.job("b", inputs={"n": flow.out("a", "n")}, outputs={"n": "int"})
    flow.job("later", outputs={"n": "int"}, after=["a"])
    provider.script("wf/a", Hang())
    cancel = threading.Event()
    thread, box = engine.apply_in_thread(cancel=cancel)
    provider.wait_for(lambda: "wf/a" in provider.running, "a to be running")
    provider.cancel(cancel)
    thread.join(30)
    assert not thread.is_alive() and "error" not in box, box.get("error")
    applied = box["applied"]
    assert applied.result("a") == "cancelled"
    assert applied.result("b") == "skipped" and applied.result("later") == "skipped"
    assert [a for a, _ in provider.calls] == ["wf/a"]
    assert applied.outcome == "interrupted"
    assert applied.state.nodes["wf/a"].status == "cancelled"
    assert "wf/b" not in applied.state.nodes
    assert engine.change(engine.plan(), "a").reasons[0].message == "cancelled last time"


def test_a_cancel_before_a_retry_does_not_start_it(flow, provider, engine):
    flow.job("a", outputs={"n": "int"}, retries=3)
    provider.script("wf/a", Fail("first"), Succeed())
    cancel = threading.Event()

    class CancelOnFirstFailure(RecordingReporter):
        def event(self, outcome, message):
            super().event(outcome, message)
            if message.startswith("attempt 1 failed"):  # Ctrl-C while attempt 1's failure is reported
                cancel.set()

    applied = engine.apply(cancel=cancel, reporter=CancelOnFirstFailure())
    assert provider.attempts("wf/a") == [1]
    assert applied.result("a") == "cancelled"
    assert applied.outcome == "interrupted"


# -- early cutoff ----------------------------------------------------------------------------------------
def test_a_rerun_with_identical_outputs_does_not_invalidate_its_dependents(flow, provider, engine):
    chain(flow)
    provider.script("wf/a", Succeed(n=1))
    engine.apply()
    flow.change("a", command="echo a --verbose")  # a changes, its result does not
    plan = engine.plan()
    assert engine.change(plan, "a").action == "update"
    assert engine.change(plan, "b").action == "pending"
    assert engine.change(plan, "c").action == "pending"
    provider.calls.clear()
    applied = engine.apply(plan)
    assert [a for a, _ in provider.calls] == ["wf/a"]
    assert applied.result("b") == "reused" and applied.result("c") == "reused"
    assert applied.detail("b") == "early cutoff: inputs unchanged, cache hit"
    assert engine.plan().has_changes() is False


def test_a_rerun_with_new_outputs_runs_its_dependents(flow, provider, engine):
    chain(flow)
    provider.script("wf/a", Succeed(n=1))
    engine.apply()
    flow.change("a", command="echo a --verbose")
    provider.script("wf/a", Succeed(n=2))
    provider.script("wf/b", Succeed(n=20))
    provider.calls.clear()
    applied = engine.apply()
    assert [a for a, _ in provider.calls] == ["wf/a", "wf/b", "wf/c"]
    assert applied.result("b") == "succeeded"
    assert applied.state.nodes["wf/b"].fingerprint["inputs"]["n"] == {"type": "int", "value": 2}


def test_early_cutoff_stops_at_the_first_node_whose_outputs_are_unchanged(flow, provider, engine):
    chain(flow)
    provider.script("wf/a", Succeed(n=1))
    provider.script("wf/b", Succeed(n=10))
    engine.apply()
    flow.change("a", command="echo a --verbose")
    provider.script("wf/a", Succeed(n=2))      # a's result changes: b runs ...
    provider.calls.clear()
    applied = engine.apply()                   # ... and gives the same n: c is cut off
    assert [a for a, _ in provider.calls] == ["wf/a", "wf/b"]
    assert applied.result("c") == "reused"


# -- parallelism -----------------------------------------------------------------------------------------
def fan(flow: FlowBuilder, width: int) -> list[str]:
    return [flow.job(f"n{i}", outputs={"n": "int"}) for i in range(width)]


def run_held(engine: Engine, provider: ScriptedProvider, nodes: list[str], limit: int, **kw) -> None:
    """Every job waits in the provider until the test releases it. Release them one at a time, each time once
    `limit` jobs (or all that are left) are running, and check that never more than `limit` ran at once."""
    provider.hold_all = True
    thread, box = engine.apply_in_thread(**kw)
    left = len(nodes)
    while left:
        expect = min(limit, left)
        provider.wait_for(lambda: len(provider.running) >= expect, f"{expect} jobs running at once")
        assert provider.peak <= limit, f"{provider.peak} jobs ran at once (limit {limit})"
        with provider.cond:
            victim = sorted(provider.running)[0]
        provider.release(victim)
        provider.wait_for(lambda: victim not in provider.running, f"{victim} to finish")
        left -= 1
    thread.join(30)
    assert "error" not in box, box.get("error")
    assert provider.peak == limit
    assert all(box["applied"].result(a) == "succeeded" for a in nodes)


def test_never_more_jobs_at_once_than_parallelism(flow, provider, engine):
    nodes = fan(flow, 6)
    run_held(engine, provider, nodes, limit=2, parallelism=2)


def test_the_providers_own_limit_caps_parallelism(flow, engine):
    nodes = fan(flow, 5)
    engine.provider._max_parallel = 3
    run_held(engine, engine.provider, nodes, limit=3, parallelism=8)


class SlowCollector(ScriptedProvider):
    """Its jobs end at once, but collecting the outputs of `slow` takes until the test releases `slow:collect`."""

    slow = "wf/n0"

    def wait(self, handle, job, cancel, on_status=None, on_ended=None):
        result = super().wait(handle, job, cancel, on_status, on_ended)  # (tells on_ended: the job is over)
        if job.address == self.slow:
            with self.cond:
                self.running.add("collecting")
                self.cond.notify_all()
            self._hold(f"{self.slow}:collect", cancel)
            with self.cond:
                self.running.discard("collecting")
        return result


def test_the_next_job_starts_while_the_last_ones_outputs_are_collected(flow, tmp_path):
    nodes = fan(flow, 2)
    provider = SlowCollector()
    engine = Engine(tmp_path, flow, provider)
    thread, box = engine.apply_in_thread(parallelism=1)
    provider.wait_for(lambda: "collecting" in provider.running, "n0's outputs being collected")
    # one job slot: n1's job runs while n0 (whose job has ended) still collects its outputs
    provider.wait_for(lambda: ("wf/n1", 1) in provider.calls and "wf/n1" not in provider.running, "n1 to run")
    assert "collecting" in provider.running
    provider.release(f"{SlowCollector.slow}:collect")
    thread.join(30)
    assert all(box["applied"].result(a) == "succeeded" for a in nodes)


def test_a_retry_waits_for_a_slot_again(flow, provider, engine):
    nodes = [flow.job("n0", outputs={"n": "int"}, retries=1), *(flow.job(f"n{i}", outputs={"n": "int"})
                                                                 for i in (1, 2))]
    provider.script("wf/n0", Fail("flaky"), Succeed(n=1))
    provider.hold_all = True
    thread, box = engine.apply_in_thread(parallelism=1)
    for _ in range(4):  # n0's two attempts, n1, n2: one job at a time, whatever order
        provider.wait_for(lambda: len(provider.running) == 1, "a job running")
        assert provider.peak == 1, f"{provider.peak} jobs ran at once (limit 1)"
        with provider.cond:
            victim, started = next(iter(provider.running)), len(provider.calls)
        provider.release(victim)
        # (n0's retry may be running again under the same name by the time we look: a start counts as its end)
        provider.wait_for(lambda: victim not in provider.running or len(provider.calls) > started, f"{victim} to end")
    thread.join(30)
    assert provider.attempts("wf/n0") == [1, 2] and provider.peak == 1
    assert all(box["applied"].result(a) == "succeeded" for a in nodes)


def test_a_job_is_prepared_while_it_waits_for_its_slot(flow, provider, engine):
    fan(flow, 2)
    provider.hold_all = True
    thread, box = engine.apply_in_thread(parallelism=1)
    provider.wait_for(lambda: len(provider.running) == 1, "the first job running")
    with provider.cond:
        first = next(iter(provider.running))
    second = "wf/n1" if first == "wf/n0" else "wf/n0"
    provider.wait_for(lambda: (second, 1) in provider.prepared, "the second job prepared")
    assert (second, 1) not in provider.calls  # prepared, not started: the one slot is taken
    provider.release(first)
    provider.wait_for(lambda: second in provider.running, "the second job running")
    provider.release(second)
    thread.join(30)
    assert "error" not in box, box.get("error")


@pytest.mark.parametrize("parallelism", [1, 3])
def test_a_node_starts_only_after_all_its_upstreams_succeeded(flow, provider, engine, parallelism):
    flow.job("a", outputs={"n": "int"})
    flow.job("b", outputs={"n": "int"})
    flow.job("join", inputs={"x": flow.out("a", "n"), "y": flow.out("b", "n")}, outputs={"n": "int"})
    provider.script("wf/a", Hang(then=Succeed(n=1)))
    thread, box = engine.apply_in_thread(parallelism=parallelism)
    provider.wait_for(lambda: "wf/a" in provider.running, "a running")
    if parallelism > 1:
        provider.wait_for(lambda: ("wf/b", 1) in provider.calls and "wf/b" not in provider.running, "b done")
    assert ("wf/join", 1) not in provider.calls
    provider.release("wf/a")
    thread.join(30)
    assert box["applied"].result("join") == "succeeded"
    assert provider.calls[-1] == ("wf/join", 1)


# -- provider capabilities -------------------------------------------------------------------------------
def journal_kinds(engine: Engine, address: str) -> list[tuple[str, bool]]:
    return [(r["type"], durable) for r, durable in engine.backend.appended if r.get("address") == address
            or r.get("node", {}).get("address") == address]


def test_a_job_that_outlives_the_process_is_journaled_durably_before_and_after_its_start(flow, engine):
    flow.job("a", outputs={"n": "int"})
    engine.provider._outlives = True
    engine.apply()
    assert journal_kinds(engine, "wf/a") == [("node_starting", True), ("node_started", True),
                                            ("node_finished", True)]


def test_a_job_that_dies_with_the_process_needs_no_intent_and_no_forced_start(flow, engine):
    flow.job("a", outputs={"n": "int"})
    engine.apply()
    assert journal_kinds(engine, "wf/a") == [("node_started", False), ("node_finished", True)]


def test_what_the_provider_says_of_a_running_job_reaches_its_outcome(flow, provider, engine):
    flow.job("a", outputs={"n": "int"})
    provider.script("wf/a", Hang(then=Succeed(n=1)))
    provider.statuses["wf/a"] = ["Queued", "Running"]
    reporter = RecordingReporter()
    thread, box = engine.apply_in_thread(reporter=reporter)
    provider.wait_for(lambda: "wf/a" in provider.running, "a running")
    assert reporter.outcomes["wf/a"].status == "Running"
    provider.release("wf/a")
    thread.join(30)
    assert box["applied"].result("a") == "succeeded"


# -- what reaches the state ------------------------------------------------------------------------------
def test_every_result_is_in_the_state_with_its_run_and_the_serial_moves(flow, provider, engine):
    chain(flow)
    first = engine.apply()
    assert first.state.serial == 1
    assert first.state.runs[first.run_id].counts == {"succeeded": 3}
    assert {a: r.status for a, r in first.state.nodes.items()} == {f"wf/{t}": "succeeded" for t in "abc"}
    assert all(first.state.cache[r.key].run_id == first.run_id for r in first.state.nodes.values())
    assert engine.backend.journal_read("wf") == []  # folded into the state and cleared
    flow.change("c", command="echo c2")
    second = engine.apply()
    assert second.state.serial == 2
    assert second.state.runs[second.run_id].counts == {"reused": 2, "succeeded": 1}


def test_a_revert_points_the_state_back_at_the_older_result_without_running_it(flow, provider, engine):
    flow.job("a", outputs={"n": "int"})
    first = engine.apply()
    flow.change("a", command="echo a v2")
    engine.apply()
    flow.change("a", command="echo a")
    provider.calls.clear()
    applied = engine.apply()
    assert provider.calls == []
    assert applied.result("a") == "reused"
    record = applied.state.nodes["wf/a"]
    assert record.key == first.state.nodes["wf/a"].key
    assert record.reused_from == first.run_id
    assert engine.plan().has_changes() is False


# -- jobs an interrupted run left running (recover) --------------------------------------------------------
def test_a_job_still_running_for_the_same_key_is_waited_for_not_started_again(flow, provider, engine):
    flow.job("a", outputs={"n": "int"})
    key = engine.change(engine.plan(), "a").key
    provider.alive.add("old-1")
    applied = engine.apply(attach={"wf/a": {"job_id": "old-1", "key": key}})
    assert provider.calls == []  # never started
    assert applied.result("a") == "succeeded"
    assert applied.state.nodes["wf/a"].job_id == "old-1"
    assert "re-attached to running job old-1" in applied.reporter.messages("wf/a")


def test_a_job_left_running_for_an_older_definition_is_stopped_and_the_node_runs(flow, provider, engine):
    flow.job("a", outputs={"n": "int"})
    provider.alive.add("old-1")
    applied = engine.apply(attach={"wf/a": {"job_id": "old-1", "key": "an-older-key"}})
    assert provider.stopped == ["old-1"]
    assert provider.attempts("wf/a") == [1]
    assert applied.result("a") == "succeeded"


def test_a_job_left_running_for_a_node_that_is_a_cache_hit_now_is_stopped(flow, provider, engine):
    flow.job("a", outputs={"n": "int"})
    engine.apply()
    provider.alive.add("old-1")
    provider.calls.clear()
    applied = engine.apply(attach={"wf/a": {"job_id": "old-1", "key": "whatever"}})
    assert provider.calls == []
    assert provider.stopped == ["old-1"]
    assert any("stopped job old-1" in m for m in applied.reporter.messages("wf/a"))


def test_a_job_that_ended_while_nobody_watched_is_started_again(flow, provider, engine):
    flow.job("a", outputs={"n": "int"})
    key = engine.change(engine.plan(), "a").key
    applied = engine.apply(attach={"wf/a": {"job_id": "gone-1", "key": key}})  # not in provider.alive
    assert provider.attached == ["gone-1"]
    assert provider.attempts("wf/a") == [1]
    assert applied.result("a") == "succeeded"


def test_a_job_cancelled_outside_the_apply_skips_its_dependents_and_fails_the_run(flow, provider, engine):
    chain(flow)
    provider.script("wf/a", Fail("stopped in the Domino UI", status="cancelled"))
    applied = engine.apply()
    assert applied.result("a") == "cancelled"
    assert (applied.result("b"), applied.detail("b")) == ("skipped", "skipped: upstream cancelled")
    assert applied.outcome == "failed"  # nobody interrupted this apply


def test_a_targeted_apply_runs_only_the_target_and_what_it_needs(flow, provider, engine):
    chain(flow)
    flow.job("elsewhere", outputs={"n": "int"})
    applied = engine.apply(engine.plan(targets=["wf/b"]))
    assert sorted(a for a, _ in provider.calls) == ["wf/a", "wf/b"]
    assert set(applied.state.nodes) == {"wf/a", "wf/b"}
    assert applied.outcome == "succeeded"


def test_a_node_without_a_record_keyed_after_apply_is_still_reused_on_a_cache_hit(flow, provider, engine):
    """`create` with its key known only after apply (no record: e.g. `flows state rm`): once its upstream has
    run, its key is computed and a cache hit is reused, exactly as for a `pending` node."""
    chain(flow)
    provider.script("wf/a", Succeed(n=1))
    engine.apply()
    engine.change_state(lambda state: state.nodes.pop("wf/b"))  # its cache entry stays (as `flows state rm`)
    flow.change("a", command="echo a --verbose")  # a runs again, with the same result
    plan = engine.plan()
    assert engine.change(plan, "b").action == "create" and engine.change(plan, "b").key is None
    provider.calls.clear()
    applied = engine.apply(plan)
    assert [a for a, _ in provider.calls] == ["wf/a"]
    assert applied.result("b") == "reused" and applied.detail("b") == "early cutoff: inputs unchanged, cache hit"


def test_a_cancel_seen_only_by_polling_still_ends_a_hanging_job(flow, provider, engine):
    flow.job("a", outputs={"n": "int"})
    provider.script("wf/a", Hang())
    cancel = threading.Event()
    thread, box = engine.apply_in_thread(cancel=cancel)
    provider.wait_for(lambda: "wf/a" in provider.running, "a to be running")
    cancel.set()  # as the Ctrl-C handler does: nobody notifies the provider
    thread.join(30)
    assert box["applied"].result("a") == "cancelled"
