"""The StateStore in-process, on the local backend: serialisation (golden files), schema upgrades, journal
records, fencing, masking that keeps what recovery needs.

Golden files: tests/golden/. After a deliberate format change, regenerate them with
`FLOWS_UPDATE_GOLDEN=1 pytest tests/test_state_store.py` and say so in the README's changelog.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from vocab.errors import StateError
from state import journal
from state.backend import LockInfo, LockLostError
from state.fingerprint_text import STORED
from state.local import LocalBackend
from state.model import (STATE_VERSION, Approval, CacheEntry, GateWait, NodeRecord, OutputRecord, RunRecord, State,
                         parse_state)
from state.store import StateStore, masked_input_digest

GOLDEN = Path(__file__).parent / "golden"
FLOW = "wf"
AT = "2026-11-30T09:00:00.000+00:00"


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("FLOWS_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed: the stored format moved (see the module doc)"


def _node(address: str = "wf/prep", key: str = "k" * 64) -> NodeRecord:
    out = OutputRecord(type="FlyteFile[csv]", digest="d" * 64, size=12, uri="/blobs/dd/" + "d" * 64)
    return NodeRecord(address=address, task_name="prep", key=key, fingerprint={"task": {"name": "prep"}},
                      outputs={"clean": out}, run_id="r1", job_id="local-1-abc", started_at=AT, finished_at=AT,
                      attempts=1)


def _sample_state() -> State:
    node = _node()
    run = RunRecord(id="r1", flow=FLOW, flow_file="/p/flow.py", flow_digest="f" * 64, started_at=AT,
                    finished_at=AT, user="ann", host="box", pid=42, inputs={"data": "/p/data/in.csv"},
                    counts={"succeeded": 1, "awaiting": 1}, outcome="waiting",
                    approvals={"stage": Approval(by="ann", at=AT)},
                    waiting={"deploy": GateWait(address="wf/approve deploy", since=AT, timeout_seconds=3600)})
    entry = CacheEntry(key=node.key or "", task_name="prep", address=node.address, outputs=node.outputs,
                       run_id="r1", job_id=node.job_id, created_at=AT, fingerprint=node.fingerprint)
    return State(flow=FLOW, serial=3, lineage="00000000-0000-0000-0000-000000000001", fence=2,
                 nodes={node.address: node}, cache={entry.key: entry}, runs={run.id: run})


# -- formats ------------------------------------------------------------------------------------------
def test_golden_state_shape(tmp_path: Path) -> None:
    # (state_v1.json .. state_v3.json are what the earlier schemas wrote: read by the upgrade tests below)
    _golden(f"state_v{STATE_VERSION}.json", StateStore(LocalBackend(tmp_path), FLOW).serialise(_sample_state())
            .decode() + "\n")


def test_a_cache_entry_that_is_its_nodes_result_is_stored_once_and_read_back_whole(tmp_path: Path) -> None:
    """The stored document writes a node's outputs and fingerprint once: its cache entry refers to them. One that
    differs from its node (an earlier key of it) is written whole. Read back, the state is the one written, and
    the entry shares its node's objects (one copy in memory)."""
    state = _sample_state()
    node = state.nodes["wf/prep"]
    older = CacheEntry(key="o" * 64, task_name="prep", address=node.address, run_id="r0", created_at=AT,
                       outputs={"clean": OutputRecord(type="FlyteFile[csv]", digest="e" * 64, uri="/blobs/ee")},
                       fingerprint={"task": {"name": "prep", "command": "old"}})
    state.cache[older.key] = older
    state.cache["m" * 64] = state.cache[node.key or ""].model_copy()  # filed under a key not its own: kept as it is
    store = StateStore(LocalBackend(tmp_path), FLOW)
    stored = store.serialise(state)
    raw = json.loads(stored)
    assert raw["cache"][node.key or ""] == {"address": "wf/prep", "job_id": "local-1-abc", "created_at": AT,
                                            "from_node": True}
    assert raw["cache"][older.key] == json.loads(older.model_dump_json(context=STORED))
    assert raw["cache"]["m" * 64]["key"] == node.key and "from_node" not in raw["cache"]["m" * 64]
    assert len(stored) < len(state.to_json().encode())  # (`flows state show`: every entry whole)
    back = parse_state(stored, "s.json")
    assert back == state and back.model_dump() == state.model_dump()
    entry = back.cache[node.key or ""]
    assert entry.outputs is back.nodes["wf/prep"].outputs and entry.fingerprint is back.nodes["wf/prep"].fingerprint


@pytest.mark.parametrize("edit, why", [
    (lambda raw: raw["nodes"].pop("wf/prep"), "which is not in the state"),
    (lambda raw: raw["nodes"]["wf/prep"].update(key="z" * 64), "which has another key"),
])
def test_a_stored_cache_entry_whose_node_is_gone_or_changed_is_one_clear_error(tmp_path: Path, edit: Any,
                                                                               why: str) -> None:
    """A hand-edited document (`flows state push`) whose entry refers to a node that is not its own."""
    raw = json.loads(StateStore(LocalBackend(tmp_path), FLOW).serialise(_sample_state()))
    edit(raw)
    with pytest.raises(StateError, match=f"cache entry k{{12}}: it is that of node 'wf/prep', {why}") as e:
        parse_state(json.dumps(raw).encode(), "edited.json")
    assert e.value.file == "edited.json"


def test_a_state_of_schema_3_reads_as_is() -> None:
    """Version 3 wrote every cache entry whole: read as is (the fast path), its version moved to the current."""
    state = parse_state((GOLDEN / "state_v3.json").read_bytes(), "old.json")
    assert state.version == STATE_VERSION and state.serial == 3
    entry = next(iter(state.cache.values()))
    assert entry.outputs == state.nodes[entry.address].outputs and entry.run_id == "r1"
    assert state.runs["r1"].approvals["stage"].by == "ann"


def test_golden_journal_record_shape() -> None:
    rec = journal.NodeFinished(run_id="r1", node=_node(), fence=2)
    _golden(f"journal_node_finished_v{journal.JOURNAL_VERSION}.json",
            json.dumps(json.loads(journal.dump_record(rec)), indent=1) + "\n")
    approved = journal.GateApproved(run_id="r1", name="deploy", approval=Approval(by="ann", at=AT), fence=2)
    _golden(f"journal_gate_approved_v{journal.JOURNAL_VERSION}.json",
            json.dumps(json.loads(journal.dump_record(approved)), indent=1) + "\n")


def test_a_journal_record_of_journal_version_1_still_reads() -> None:
    rec = journal.parse_record((GOLDEN / "journal_node_finished_v1.json").read_text(), "j")
    assert isinstance(rec, journal.NodeFinished) and rec.node.address == "wf/prep" and rec.fence == 2


@pytest.mark.parametrize("old_version", [1, 2])
def test_a_state_written_by_an_earlier_schema_is_read_and_upgraded(tmp_path: Path, old_version: int) -> None:
    old = (GOLDEN / f"state_v{old_version}.json").read_bytes()  # as an earlier flows wrote it
    state = parse_state(old, "old.json")
    assert state.version == STATE_VERSION and state.serial == 3
    assert state.fence == (0 if old_version == 1 else 2)
    assert set(state.nodes) == {"wf/prep"}
    assert all(r.approvals == {} and r.waiting == {} for r in state.runs.values())  # no gate ever waited
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / f"{FLOW}.json").write_bytes(old)
    store = StateStore(LocalBackend(tmp_path / "state"), FLOW)
    with store.locked("upgrade") as lease:
        lease.commit(lease.state)
    raw = json.loads((tmp_path / "state" / f"{FLOW}.json").read_text())
    assert raw["version"] == STATE_VERSION and raw["serial"] == 4
    assert raw["runs"]["r1"]["approvals"] == {} and raw["runs"]["r1"]["waiting"] == {}


def test_a_journal_record_of_the_previous_schema_is_read_and_a_newer_one_refused() -> None:
    old = {"type": "node_started", "run_id": "r1", "address": "wf/a", "key": "k", "job_id": "j", "attempt": 1,
           "at": AT}  # as flows 0.1.0 wrote it: no `v`, no fence
    rec = journal.parse_record(json.dumps(old), "j")
    assert isinstance(rec, journal.NodeStarted) and rec.fence is None and rec.job_id == "j"
    with pytest.raises(StateError, match="newer flows"):
        journal.parse_record({**old, "v": journal.JOURNAL_VERSION + 1}, "j")
    with pytest.raises(StateError, match="does not match the schema"):
        journal.parse_record({"type": "node_finished", "run_id": "r1"}, "j")


# -- the store ------------------------------------------------------------------------------------------
def _store(tmp_path: Path, lease_seconds: float = 30.0) -> StateStore:
    return StateStore(LocalBackend(tmp_path / "state", lease_seconds=lease_seconds), FLOW, lease_seconds)


def test_leftover_journal_is_folded_once_under_the_lock_and_the_dead_run_is_interrupted(tmp_path: Path) -> None:
    store = _store(tmp_path)
    lease = store.lock("apply", run_id="r1")
    lease.append(journal.RunStarted(run=RunRecord(id="r1", flow=FLOW)))
    lease.append(journal.NodeFinished(run_id="r1", node=_node()))
    view = store.view()  # a reader while the apply lives: the run is running
    assert view.state.runs["r1"].outcome == "running" and "wf/prep" in view.state.nodes
    store.backend.unlock(FLOW, lease.info.id)  # the holder dies (its lock is gone)
    assert store.view().state.runs["r1"].outcome == "interrupted"
    with store.locked("state rm") as next_lease:
        assert next_lease.state.serial == 1 and next_lease.state.runs["r1"].outcome == "interrupted"
    assert store.records() == [] and store.read()[0].runs["r1"].outcome == "interrupted"  # type: ignore[union-attr]


def test_a_holder_that_lost_its_lock_can_never_write(tmp_path: Path) -> None:
    store = _store(tmp_path, lease_seconds=0.2)
    first = store.lock("apply", run_id="r1")
    first.append(journal.RunStarted(run=RunRecord(id="r1", flow=FLOW)))
    second = store.lock("apply", run_id="r2", timeout=10, break_expired=True)  # waits out the lease
    assert second.generation == first.generation + 1
    assert not first.holds()
    stale = State(flow=FLOW, nodes={"wf/prep": _node()})
    with pytest.raises(LockLostError, match="lost the state lock"):
        first.commit(stale)
    first.append(journal.NodeFinished(run_id="r1", node=_node(), cache=CacheEntry(
        key="k" * 64, task_name="prep", address="wf/prep", outputs={})))  # a result journaled after the loss
    final = second.finish()
    assert "wf/prep" not in final.nodes, "a node record of the fenced-out holder reached the state"
    assert "k" * 64 in final.cache  # its finished result is kept where it cannot mislead
    assert final.fence == second.generation and final.runs["r1"].outcome == "interrupted"
    second.release()


class _PausedBeforeClearing(LocalBackend):
    """The local backend, with the first holder paused (as by `kill -STOP`) between writing its state and clearing
    the journal: before that clear runs, `meanwhile` does what another process did during the pause."""

    meanwhile: Any = None

    def journal_clear(self, flow: str, *args: Any, **kw: Any) -> None:
        if self.meanwhile is not None:
            then, self.meanwhile = self.meanwhile, None
            then()
        super().journal_clear(flow, *args, **kw)


def test_a_holder_paused_after_its_write_never_clears_the_next_holders_journal(tmp_path: Path) -> None:
    """Issue 15 (item 7), the pause trial of seed 20261123: an apply paused just after its final state write, taken
    over, then resumed, must not delete the journal of the run that took over (its only durable record)."""
    backend = _PausedBeforeClearing(tmp_path / "state", lease_seconds=0.2)
    store = StateStore(backend, FLOW, lease_seconds=0.2)
    first = store.lock("apply", run_id="r1")
    first.append(journal.RunStarted(run=RunRecord(id="r1", flow=FLOW)))
    first.append(journal.NodeFinished(run_id="r1", node=_node()))
    taken: list[Any] = []

    def take_over() -> None:
        second = store.lock("apply", run_id="r2", timeout=10, break_expired=True)  # waits out the lease
        second.append(journal.RunStarted(run=RunRecord(id="r2", flow=FLOW)))
        taken.append(second)

    backend.meanwhile = take_over
    written = first.finish()  # writes the state (its lock still held), then is "paused" before clearing
    assert written.runs["r1"].outcome != "interrupted" and taken
    second = taken[0]
    assert [type(r).__name__ for r in store.records()] == ["RunStarted"], \
        "the resumed holder deleted the journal of the run that took its lock over"
    final = second.finish()
    assert "r2" in final.runs and final.fence == second.generation
    second.release()


def test_force_unlock_fences_the_old_holder(tmp_path: Path) -> None:
    store = _store(tmp_path)
    first = store.lock("apply")
    store.force_unlock(first.info.id)
    later = store.lock("apply")  # an ordinary acquisition after the force unlock
    with pytest.raises(LockLostError):
        first.commit(State(flow=FLOW))
    later.commit(later.state)
    later.release()


def test_a_live_lease_is_never_broken_even_if_its_pid_is_unknown_here(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "state")
    ghost = LockInfo(pid=2 ** 22 - 7, pid_ns="pid:[1]")  # another PID namespace: the pid says nothing here
    backend._ensure_root()
    backend._path(FLOW, ".lock").write_text(backend._lease(ghost).model_dump_json())
    assert not ghost.holder_gone()
    with pytest.raises(StateError, match="locked"):
        StateStore(backend, FLOW).lock("apply", break_expired=True)
    same_ns = LockInfo(pid=ghost.pid)  # this boot and namespace, and no such process: provably gone
    assert same_ns.holder_gone()


def test_masked_inputs_keep_a_digest_and_never_the_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_TOKEN", "tok-4f9a-very-secret")
    store = _store(tmp_path)
    run = RunRecord(id="r1", flow=FLOW, inputs={"tok": "tok-4f9a-very-secret", "n": 3})
    with store.locked("apply") as lease:
        lease.append(journal.RunStarted(run=run))
        lease.finish()
    text = (tmp_path / "state" / f"{FLOW}.json").read_text()
    assert "tok-4f9a-very-secret" not in text
    stored = store.read()[0].runs["r1"]  # type: ignore[union-attr]
    assert stored.inputs == {"tok": "***", "n": 3} and set(stored.masked_inputs) == {"tok"}
    assert stored.masked_inputs["tok"] == masked_input_digest("r1", "tok", "tok-4f9a-very-secret")
    assert stored.masked_inputs["tok"] != masked_input_digest("r1", "tok", "***")


def test_a_secret_that_json_escapes_is_masked_in_the_stored_state_and_the_journal(tmp_path: Path) -> None:
    """A secret with a quote and a backslash shows in JSON text only escaped (and twice escaped inside a
    fingerprint's stored text): masked in every form, in the state document and in a journal line alike."""
    from vocab.masking import register_secret
    odd = 'pa"ss\\w0rd-Zq81x-é'
    register_secret(odd)
    forms = {odd, json.dumps(odd)[1:-1], json.dumps(odd, ensure_ascii=False)[1:-1],
             json.dumps(json.dumps(odd, ensure_ascii=False)[1:-1], ensure_ascii=False)[1:-1]}
    node = NodeRecord(address="wf/a", task_name="a", error=f"failed: {odd}",
                      fingerprint={"key_schema": 2, "inputs": {"pw": {"type": "str", "value": odd}}})
    store = StateStore(LocalBackend(tmp_path), FLOW)
    document = store.serialise(State(flow=FLOW, nodes={"wf/a": node})).decode()
    line = store.record_bytes(journal.NodeFinished(run_id="r1", node=node)).decode()
    for text in (document, line):
        assert not [form for form in forms if form in text]
        assert "***" in text
    parsed = parse_state(document, "s.json").nodes["wf/a"]  # still a valid document, the value masked
    assert parsed.error == "failed: ***" and "***" in parsed.fingerprint["inputs"]["pw"]["value"]
