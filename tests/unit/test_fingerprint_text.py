"""Fingerprints as stored text (state schema 5, journal version 3): a loaded state keeps each node's and cache
entry's fingerprint as its JSON text until something reads into it; every other form stays the nested object.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconcile.fingerprint import KEY_SCHEMA, cache_key, upgrade_keys
from reconcile.reasons import fingerprint_reasons
from state import journal
from state.fingerprint_text import Fingerprint
from state.local import LocalBackend
from state.model import STATE_VERSION, CacheEntry, NodeRecord, OutputRecord, State, parse_state
from state.store import StateStore
from vocab.errors import StateError

GOLDEN = Path(__file__).parent.parent / "golden"
FP = {"key_schema": KEY_SCHEMA, "task": {"name": "prep", "command": "python prep.py"}, "code": {},
      "inputs": {"raw": {"type": "file:csv", "digest": "a" * 64}}}


def _state(n: int = 3) -> State:
    nodes, cache = {}, {}
    for i in range(n):
        fp = json.loads(json.dumps(FP))
        fp["task"]["name"] = f"prep{i}"
        key = cache_key(fp)
        out = {"clean": OutputRecord(type="file:csv", digest="d" * 64, size=1, uri=f"/b/{i}")}
        nodes[f"wf/prep{i}"] = NodeRecord(address=f"wf/prep{i}", task_name=f"prep{i}", key=key, fingerprint=fp,
                                          outputs=out, run_id="r1")
        cache[key] = CacheEntry(key=key, task_name=f"prep{i}", address=f"wf/prep{i}", outputs=out, run_id="r1",
                                fingerprint=fp)
    return State(flow="wf", nodes=nodes, cache=cache)


def _stored(state: State, tmp_path: Path) -> bytes:
    return StateStore(LocalBackend(tmp_path), "wf").serialise(state)


def test_the_stored_document_holds_each_fingerprint_as_text_and_reads_back_equal(tmp_path: Path) -> None:
    state = _state()
    raw = json.loads(_stored(state, tmp_path))
    assert raw["version"] == STATE_VERSION == 5
    stored_fp = raw["nodes"]["wf/prep1"]["fingerprint"]
    assert isinstance(stored_fp, str) and json.loads(stored_fp)["task"]["name"] == "prep1"
    again = parse_state(_stored(state, tmp_path), "s.json")
    for address, rec in state.nodes.items():
        assert again.nodes[address] == rec  # the record compares equal, fingerprint and all
        assert dict(again.nodes[address].fingerprint) == rec.fingerprint
        assert cache_key(dict(again.nodes[address].fingerprint)) == rec.key  # the key its text stands for
    assert again.cache == state.cache


def test_a_loaded_state_parses_no_fingerprint_until_one_is_read(tmp_path: Path) -> None:
    loaded = parse_state(_stored(_state(), tmp_path), "s.json")
    assert upgrade_keys(loaded) == 0  # every fingerprint names its key schema: nothing to re-key
    fps = [rec.fingerprint for rec in loaded.nodes.values()] + [e.fingerprint for e in loaded.cache.values()]
    assert all(isinstance(fp, Fingerprint) for fp in fps)
    assert not any(fp._data is not None for fp in fps if isinstance(fp, Fingerprint))  # still text only
    first = loaded.nodes["wf/prep0"].fingerprint
    assert first["task"]["name"] == "prep0" and first.get("code") == {} and "inputs" in first


def test_a_state_of_schema_4_reads_as_is_and_is_written_as_schema_5(tmp_path: Path) -> None:
    state = parse_state((GOLDEN / "state_v4.json").read_bytes(), "old.json")
    assert state.version == STATE_VERSION and dict(state.nodes["wf/prep"].fingerprint) == {"task": {"name": "prep"}}
    raw = json.loads(_stored(state, tmp_path))
    assert raw["nodes"]["wf/prep"]["fingerprint"] == '{"task":{"name":"prep"}}'


def test_a_journal_record_of_journal_version_2_still_reads() -> None:
    rec = journal.parse_record((GOLDEN / "journal_node_finished_v2.json").read_text(), "j")
    assert isinstance(rec, journal.NodeFinished) and dict(rec.node.fingerprint) == {"task": {"name": "prep"}}


def test_a_journal_line_holds_the_fingerprint_as_text_and_reads_back_equal() -> None:
    node = NodeRecord(address="wf/prep", task_name="prep", key=cache_key(FP), fingerprint=FP)
    line = journal.dump_record(journal.NodeFinished(run_id="r1", node=node))
    assert isinstance(json.loads(line)["node"]["fingerprint"], str)
    back = journal.parse_record(line, "j")
    assert isinstance(back, journal.NodeFinished) and back.node == node


def test_every_other_form_shows_the_fingerprint_as_the_nested_object(tmp_path: Path) -> None:
    loaded = parse_state(_stored(_state(), tmp_path), "s.json")
    rec = loaded.nodes["wf/prep0"]
    assert rec.model_dump(mode="json")["fingerprint"]["task"]["name"] == "prep0"  # (`flows state show`)
    assert json.loads(loaded.to_json())["nodes"]["wf/prep0"]["fingerprint"]["task"]["name"] == "prep0"


def test_reasons_compare_a_stored_fingerprint_with_a_fresh_one(tmp_path: Path) -> None:
    loaded = parse_state(_stored(_state(), tmp_path), "s.json")
    fresh = json.loads(json.dumps(FP))
    fresh["task"]["name"] = "prep0"
    assert fingerprint_reasons(loaded.nodes["wf/prep0"].fingerprint, fresh) == []
    fresh["inputs"]["raw"]["digest"] = "b" * 64
    assert [r.field for r in fingerprint_reasons(loaded.nodes["wf/prep0"].fingerprint, fresh)] == ["input raw"]


@pytest.mark.parametrize("text", ["not json", "[1, 2]", "{broken"])
def test_a_fingerprint_that_is_no_json_object_text_is_refused_naming_the_field(tmp_path: Path, text: str) -> None:
    raw = json.loads(_stored(_state(), tmp_path))
    raw["nodes"]["wf/prep1"]["fingerprint"] = text
    with pytest.raises(StateError, match=r"nodes\.wf/prep1\.fingerprint") as e:
        parse_state(json.dumps(raw), "edited.json")
    assert e.value.file == "edited.json"


def test_a_fingerprint_text_broken_inside_fails_when_read_with_a_clear_error(tmp_path: Path) -> None:
    raw = json.loads(_stored(_state(), tmp_path))
    raw["nodes"]["wf/prep1"]["fingerprint"] = "{bad}"
    loaded = parse_state(json.dumps(raw), "edited.json")
    with pytest.raises(StateError, match="recorded fingerprint is not valid JSON"):
        loaded.nodes["wf/prep1"].fingerprint.get("task")


@pytest.mark.parametrize("text, truth", [("{}", False), ("{ }", False), ('{"a":1}', True)])
def test_a_stored_fingerprint_is_empty_exactly_when_its_object_is(text: str, truth: bool) -> None:
    fp = Fingerprint(text=text)
    assert bool(fp) is truth and fp._data is None  # (told without parsing it)
    assert bool(fp.data) is truth


def test_a_settled_fingerprint_keeps_only_its_text_and_stays_equal() -> None:
    fp = Fingerprint(json.loads(json.dumps(FP)))
    fp.settle()
    assert fp._data is None and fp._text is not None and fp.has_key_schema()
    assert fp == FP and dict(fp) == FP and cache_key(dict(fp)) == cache_key(FP)
