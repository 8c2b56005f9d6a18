"""Cache keys: stable across machines and environments, versioned, pinned by golden values."""
from __future__ import annotations

from typing import Any

import pytest

from reconcile.fingerprint import cache_key, fingerprint
from reconcile.graph import Node


def key_of(node: Node, code: dict[str, str] | None = None, inputs: dict[str, Any] | None = None) -> str:
    fp, _ = fingerprint(node, node.job_config, code or {}, inputs or {})
    return cache_key(fp)


TRAIN = Node(address="wf/train", task_name="train", kind="domino_job",
             command="python scripts/train.py --bucket team-data --epochs 3",
             job_config={"Title": "Train", "EnvironmentId": "env-team-data", "HardwareTierId": "small"},
             inputs={"data": "file[csv]", "lr": "float"}, outputs={"model": "file"})


def test_the_environment_does_not_change_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: masking ran inside the fingerprint, so a secret-looking variable that happened to equal a word of
    the command (or of the config) changed the key: two people sharing one state got different keys."""
    monkeypatch.delenv("DATA_BUCKET_KEY", raising=False)
    before = key_of(TRAIN)
    monkeypatch.setenv("DATA_BUCKET_KEY", "team-data")
    assert key_of(TRAIN) == before
    # A value that does look like a secret (so it is masked wherever text leaves the process) changes no key either.
    node = Node(address="wf/fetch", task_name="fetch", kind="domino_job",
                command="python fetch.py --bucket-key Bk9x7Qm2Lr4t", job_config={"Title": "Fetch"})
    before = key_of(node)
    monkeypatch.setenv("DATA_BUCKET_KEY", "Bk9x7Qm2Lr4t")
    from vocab.masking import redact
    assert redact(node.command) == "python fetch.py --bucket-key ***"  # masked where it is shown...
    assert key_of(node) == before  # ...never inside the key


# ---- golden keys: a change here changes every user's keys; bump KEY_SCHEMA and say so in the README changelog --

GOLDEN_KEYS = {
    "command": (TRAIN, {"scripts/train.py": "a" * 64},
                {"data": {"type": "file[csv]", "digest": "b" * 64}, "lr": {"type": "float", "value": 0.1}}),
    "python": (Node(address="wf/add", task_name="add", kind="python", inputs={"a": "int"}, outputs={"o0": "int"},
                    python={"file": "/p/flow.py", "module": "flow", "qualname": "add"}, cache_version="2"),
               {"flow.py::add": "c" * 64}, {"a": {"type": "int", "value": 1}}),
    "no inputs": (Node(address="wf/hello", task_name="hello", kind="domino_job", command="echo hi"), {}, {}),
}


def test_golden_keys() -> None:
    keys = {name: key_of(node, code, inputs) for name, (node, code, inputs) in GOLDEN_KEYS.items()}
    assert keys == {
        "command": "1bac54fb4daba7914cf1d6776a26a46779a60ab7",
        "python": "281f8a2a87289ee173c37aa5643c504daf4a0985",
        "no inputs": "9e17d4b535fe61b3ab7f876569d719e6bd07df12",
    }


def test_display_fields_do_not_change_a_key() -> None:
    retitled = TRAIN.model_copy(update={"job_config": {**TRAIN.job_config, "Title": "Another", "HardwareTierId": "big"}})
    assert key_of(retitled) == key_of(TRAIN)


def test_a_key_carries_its_schema() -> None:
    from reconcile.fingerprint import KEY_SCHEMA
    fp, _ = fingerprint(TRAIN, TRAIN.job_config, {}, {})
    assert fp["key_schema"] == KEY_SCHEMA == 2


def test_a_state_of_the_previous_key_schema_is_rekeyed_from_its_fingerprints() -> None:
    from reconcile.fingerprint import upgrade_keys
    from state.model import CacheEntry, NodeRecord, State

    fp, _ = fingerprint(TRAIN, TRAIN.job_config, {}, {})
    old_fp = {k: v for k, v in fp.items() if k != "key_schema"}  # what flows 0.1 recorded
    old_key = cache_key(old_fp)
    state = State(flow="wf")
    state.cache[old_key] = CacheEntry(key=old_key, task_name="train", address="wf/train", outputs={}, fingerprint=old_fp)
    state.nodes["wf/train"] = NodeRecord(address="wf/train", task_name="train", key=old_key, fingerprint=old_fp,
                                         status="succeeded")
    assert upgrade_keys(state) == 2
    assert list(state.cache) == [key_of(TRAIN)] and state.nodes["wf/train"].key == key_of(TRAIN)
    assert upgrade_keys(state) == 0  # once


def test_reasons_never_show_a_secret_cut_short(monkeypatch: pytest.MonkeyPatch) -> None:
    from reconcile.reasons import fingerprint_reasons
    secret = "s3cr3t-" + "x" * 80
    monkeypatch.setenv("SERVICE_TOKEN", secret)
    before, _ = fingerprint(TRAIN, TRAIN.job_config, {}, {})
    after, _ = fingerprint(TRAIN.model_copy(update={"command": f"python scripts/train.py --token {secret}"}),
                           TRAIN.job_config, {}, {})
    text = repr([r.model_dump() for r in fingerprint_reasons(before, after)])
    assert "command" in text and "s3cr3t" not in text
