"""What keeps a large apply's memory down (issue 18) without changing a byte of what is stored: records folded back
from the journal are the ones already held when equal, the state is serialised as bytes, the journal is read line by
line. Sizes are measured in bench/ (never here); these check the sharing itself and that the output is unchanged."""
from __future__ import annotations

import json
from pathlib import Path

from state.journal import NodeFinished, fold, parse_record
from state.local import LocalBackend
from state.model import CacheEntry, NodeRecord, OutputRecord, State
from state.store import StateStore
from vocab.masking import redact, redact_bytes, redact_obj, register_secret


def _finished(run_id: str = "r1", error: str | None = None) -> NodeFinished:
    fp = {"key_schema": 2, "task": {"name": "a", "command": "echo ü"}, "inputs": {"x": {"type": "int", "value": 1}}}
    out = {"o": OutputRecord(type="file[csv]", digest="d" * 64, size=3, uri="/blobs/dd")}
    node = NodeRecord(address="wf/a", task_name="a", key="k1", fingerprint=fp, outputs=out, run_id=run_id,
                      error=error)
    cache = CacheEntry(key="k1", task_name="a", address="wf/a", outputs=out, run_id=run_id, fingerprint=fp)
    return NodeFinished(run_id=run_id, node=node, cache=cache)


def _read_back(rec: NodeFinished, text: str | None = None) -> NodeFinished:
    return parse_record(text if text is not None else rec.model_dump_json(), "journal")  # type: ignore[return-value]


def test_folding_its_own_records_back_keeps_the_records_the_state_holds() -> None:
    rec = _finished()
    state = State(flow="wf", nodes={"wf/a": rec.node}, cache={"k1": rec.cache})  # type: ignore[dict-item]
    folded = fold(state, [_read_back(rec)], copy=False)
    assert folded.nodes["wf/a"] is rec.node
    assert folded.cache["k1"] is rec.cache


def test_a_record_read_back_different_from_the_one_held_wins_and_shares_one_fingerprint() -> None:
    held = _finished(error="token s3cr3t-Vq93-7f3e1a in the log")
    state = State(flow="wf", nodes={"wf/a": held.node}, cache={"k1": held.cache})  # type: ignore[dict-item]
    masked = held.model_dump_json().replace("s3cr3t-Vq93-7f3e1a", "***")  # as the journal stores it
    folded = fold(state, [_read_back(held, masked)], copy=False)
    assert folded.nodes["wf/a"] is not held.node
    assert folded.nodes["wf/a"].error == "token *** in the log"
    new = _finished()
    other = State(flow="wf")
    folded = fold(other, [_read_back(new)], copy=False)
    assert folded.cache["k1"].fingerprint is folded.nodes["wf/a"].fingerprint


def test_the_state_is_serialised_as_bytes_identical_to_its_json_text(tmp_path: Path) -> None:
    rec = _finished()
    state = State(flow="wf", nodes={"wf/a": rec.node}, cache={"k1": rec.cache})  # type: ignore[dict-item]
    stored = state.to_json_bytes()
    assert stored == b"".join(state.to_json_parts())
    assert json.loads(stored)["cache"]["k1"]["from_node"] is True  # (what it shares with its node: written once)
    store = StateStore(LocalBackend(tmp_path), "wf")
    assert store.serialise(state) == redact(stored.decode()).encode()


def test_masking_bytes_masks_what_masking_the_text_masks() -> None:
    secret = "sk-live-Q2w9-Zx81-aa7Hb3"
    register_secret(secret)
    text = json.dumps({"error": f"bad key {secret} é", "uri": "https://b/x?X-Amz-Signature=abc&y=1"},
                      ensure_ascii=False)
    assert redact_bytes(text.encode()) == redact(text).encode()
    assert secret not in redact_bytes(text.encode()).decode()
    plain = b'{"a": "nothing to mask"}'
    assert redact_bytes(plain) is plain


def test_the_journal_is_read_up_to_a_torn_last_record(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    assert list(backend.journal_read("wf")) == []
    backend.journal_append("wf", b'{"n": 1}')
    backend.journal_append("wf", b'{"n": 2}')
    with (tmp_path / "wf.journal.jsonl").open("ab") as f:
        f.write(b'{"n": 3, "tor')  # a crash mid-write
    assert [json.loads(r) for r in backend.journal_read("wf")] == [{"n": 1}, {"n": 2}]


def test_after_an_apply_a_record_and_its_cache_entry_share_one_fingerprint_and_one_outputs_dict(flow, engine):
    flow.job("a", outputs={"n": "int"})
    flow.job("b", inputs={"n": flow.out("a", "n")}, outputs={"n": "int"})
    state = engine.apply().state
    for rec in state.nodes.values():
        entry = state.cache[rec.key]  # type: ignore[index]
        assert entry.fingerprint is rec.fingerprint
        assert entry.outputs is rec.outputs


def test_one_keyer_shares_a_nodes_fixed_fingerprint_part_between_its_fingerprints(flow, engine):
    from reconcile.plan import NodeKeyer
    flow.job("a", outputs={"n": "int"})
    flow.job("b", inputs={"n": flow.out("a", "n")}, outputs={"n": "int"})
    graph = flow.graph()
    keyer = NodeKeyer(graph, {}, engine.provider, engine.digests)
    pending, _ = keyer.fingerprint(graph.nodes["wf/b"], lambda a: None)  # as planned: a's output not known yet
    known, _ = keyer.fingerprint(graph.nodes["wf/b"], lambda a: {"n": _int_output()})  # as applied
    assert pending["inputs"] != known["inputs"]
    assert known["task"] is pending["task"] and known["code"] is pending["code"]


def test_nodes_with_equal_static_parts_share_one_object_and_keep_the_keys_they_had(flow, engine):
    """Equal configs, interfaces and code identities of different nodes are one object (a 10,000-node apply held
    ~9 MB of copies); a part that is equal only by Python's `==` (`1` vs `True`) is not shared, and every key is
    the key of the node's own, unshared parts."""
    from reconcile.fingerprint import cache_key, fingerprint
    from reconcile.plan import NodeKeyer
    flow.job("a", outputs={"n": "int"}, job_config={"hardwareTierId": "small", "retries_hint": 1})
    flow.job("b", outputs={"n": "int"}, job_config={"hardwareTierId": "small", "retries_hint": 1})
    flow.job("c", outputs={"n": "int"}, job_config={"hardwareTierId": "small", "retries_hint": True})
    graph = flow.graph()
    keyer = NodeKeyer(graph, {}, engine.provider, engine.digests)
    fps = {t: keyer.fingerprint(graph.nodes[f"wf/{t}"], lambda a: None)[0] for t in "abc"}
    assert fps["a"]["task"]["config"] is fps["b"]["task"]["config"]
    assert fps["a"]["task"]["interface"] is fps["b"]["task"]["interface"] is fps["c"]["task"]["interface"]
    assert fps["c"]["task"]["config"] is not fps["a"]["task"]["config"]
    assert fps["c"]["task"]["config"]["retries_hint"] is True
    for t in "abc":
        node = graph.nodes[f"wf/{t}"]
        alone = fingerprint(node, engine.provider.resolve_config(node), {}, {})[0]  # no keyer: nothing shared
        assert cache_key(fps[t]) == cache_key(alone)
    assert cache_key(fps["a"]) != cache_key(fps["c"])


def _int_output() -> OutputRecord:
    return OutputRecord(type="int", digest="e" * 64, size=1, uri="/blobs/ee", value=1)


def test_a_timeline_written_node_by_node_is_the_whole_document_masked_a_node_per_line() -> None:
    from reconcile.run_timeline import _json_parts
    secret = "sk-live-T7m2-Pq40-zz9Kc1"
    register_secret(secret)
    head = {"version": 1, "run_id": "r1", "flow": "wf"}
    nodes = {"wf/a": {"detail": f"failed with {secret}", "reasons": ["é \"quoted\"\n"], "upstreams": []},
             "wf/b é": {"detail": "", "reasons": [], "log": None, "nested": {"x": [1, {"y": 2.5}]}}}
    for items in (nodes, {}):
        text = b"".join(_json_parts(head, "nodes", iter(items.items()))).decode()
        assert json.loads(text) == redact_obj({**head, "nodes": items})
        assert secret not in text and ("é" in text) == bool(items)  # masked; UTF-8 as it is, not \u escapes
        assert len(text.splitlines()) == (len(items) + 2 if items else 1)  # the head, a line per node, the end


def test_the_state_in_pieces_is_the_state_as_one_document() -> None:
    from state.model import parse_state
    golden = Path(__file__).parent.parent / "golden" / "state_v3.json"
    for state in (parse_state(golden.read_bytes(), str(golden)), State(flow="wf")):
        assert b"".join(state.to_json_parts()) == state.to_json_bytes()


def test_a_state_written_in_pieces_reads_back_with_its_etag_and_keeps_the_previous_version(tmp_path: Path) -> None:
    from state.local_layout import etag_of
    backend = LocalBackend(tmp_path)
    first = backend.write_parts("wf", [b'{"serial": 1,', b' "a": 1}'], None, serial=1, lineage="l")
    assert backend.read_bytes("wf") == (b'{"serial": 1, "a": 1}', first)
    assert first == etag_of(b'{"serial": 1, "a": 1}')
    assert backend.write_parts("wf", [b"{}"], "not-the-etag", serial=2, lineage="l") is None
    second = backend.write_parts("wf", [b'{"serial": 2', b"}"], first, serial=2, lineage="l")
    assert backend.read_bytes("wf") == (b'{"serial": 2}', second)
    assert (tmp_path / "wf.json.bak").read_bytes() == b'{"serial": 1, "a": 1}'
    assert [e.size for e in backend.history("wf")][-1] == len(b'{"serial": 1, "a": 1}')


def test_the_end_of_an_apply_skips_unparsed_the_start_record_of_a_run_it_already_holds(tmp_path: Path) -> None:
    from state.journal import NodeStarted, RunStarted
    from state.model import RunRecord
    store = StateStore(LocalBackend(tmp_path), "wf")
    for record in (RunStarted(run=RunRecord(id="r1", flow="wf"), fence=2), RunStarted(run=RunRecord(id="r2", flow="wf")),
                   NodeStarted(run_id="r1", address="wf/a", fence=2)):
        store.backend.journal_append("wf", store.record_bytes(record))
    assert [type(r).__name__ for r in store.iter_records()] == ["RunStarted", "RunStarted", "NodeStarted"]
    kept = list(store.iter_records(known_runs={"r1"}))
    assert [(type(r).__name__, getattr(r, "run", None) and r.run.id) for r in kept] == [  # type: ignore[union-attr]
        ("RunStarted", "r2"), ("NodeStarted", None)]


def test_json_masked_is_the_text_of_the_masked_object_whatever_json_escapes_around_a_secret() -> None:
    from vocab.masking import json_masked
    plain = "sk-live-T7m2-Pq40-zz9Kc1"
    odd = 'pa"ss\\w0rd\n-é-Zq81'  # a secret whose JSON form differs from its text: a quote, a backslash, a newline
    register_secret(plain)
    register_secret(odd)
    url = "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA1&X-Amz-Signature=abc123"
    cases = [{"detail": f"failed with {plain}", "n": 1}, {"a": [{"b": f"x{odd}y"}]}, {f"key {plain}": None},
             [url, 2.5, True], f"'{odd}'", {"clean": "nothing secret here", "é": ["ü"]}]
    for obj in cases:
        text = json_masked(obj)
        assert text == json.dumps(redact_obj(obj), ensure_ascii=False)
        assert plain not in text and json.dumps(odd)[1:-1] not in text and "abc123" not in text
    assert json_masked(cases[-1]) == json.dumps(cases[-1], ensure_ascii=False)  # nothing to mask: unchanged
