"""`trusted`: the engine's own records made without validation are the very records validation makes."""
from __future__ import annotations

from state import journal
from state.model import CacheEntry, NodeRecord, OutputRecord, trusted

VALUES = dict(address="wf/a", task_name="a", key="k" * 64, fingerprint={"command": "x"}, display={"x": 1},
              outputs={"o": OutputRecord(type="int", digest="d" * 64, size=1, uri="/b/dd", value=1)},
              status="succeeded", run_id="r1", job_id="local-1-x", attempts=1)


def test_a_trusted_record_equals_and_dumps_as_the_validated_one() -> None:
    made, validated = trusted(NodeRecord, **VALUES), NodeRecord(**VALUES)
    assert made == validated and made.model_dump_json() == validated.model_dump_json()
    assert made.model_fields_set == set(NodeRecord.model_fields)  # every field counts as set
    assert made.model_copy(update={"status": "failed"}).status == "failed" and made.status == "succeeded"
    finished = trusted(journal.NodeFinished, run_id="r1", node=made, cache=None)
    assert journal.dump_record(finished) == journal.dump_record(journal.NodeFinished(run_id="r1", node=validated))


def test_defaults_are_made_per_record_and_unknown_names_are_left_to_pydantic() -> None:
    first = trusted(CacheEntry, key="k", task_name="a", address="wf/a", outputs={})
    second = trusted(CacheEntry, key="k", task_name="a", address="wf/a", outputs={})
    assert first.fingerprint == {} and first.fingerprint is not second.fingerprint  # (a default is never shared)
    assert first.model_dump_json() == CacheEntry(**first.model_dump()).model_dump_json()
    odd = trusted(CacheEntry, key="k", task_name="a", address="wf/a", outputs={}, not_a_field=1)
    assert "not_a_field" not in odd.model_dump()  # (the model ignores extra names, as validation does)
