"""What `flows cache gc` may delete (issue 15, item 5): only blobs it can prove nobody references.

Two projects, each with its own state key (`projects/<p>/{flow}.json`) and one shared blob prefix: the
layout the README suggests for a team.
"""
from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures.projects import flows, write_project
from tests.fixtures.s3 import S3Env, aws_env

INPUTS = ("--data", "data/in.csv")


def _project(root: Path, s3env: S3Env, name: str, data: str) -> Path:
    write_project(root, files={"data/in.csv": data})
    (root / "flows.toml").write_text(s3env.flows_toml(name))
    return root


def run(root: Path, *args: str) -> object:
    return flows(*args, cwd=root, env=aws_env())


def test_gc_in_one_project_keeps_the_blobs_of_another_sharing_the_store(tmp_path: Path, s3: S3Env) -> None:
    a = _project(tmp_path / "a", s3, "alpha", "1\n2\n")
    b = _project(tmp_path / "b", s3, "beta", "7\n8\n9\n")
    for root in (a, b):
        r = run(root, "apply", "flow.py", "wf", *INPUTS, "--auto-approve")
        assert r.code == 0, r.text
    before = set(s3.keys("blobs/"))
    stray = s3.blobs().put_bytes(b"nobody references me")

    r = run(a, "cache", "gc", "--dry-run", "--json")
    assert r.code == 0, r.text
    shown = json.loads(r.out)
    assert shown["unreferenced"] == [stray.digest], shown  # beta's outputs are not up for deletion
    assert set(s3.keys("blobs/")) >= before | {k for k in s3.keys("blobs/") if stray.digest in k}

    r = run(a, "cache", "gc")
    assert r.code == 0, r.text
    assert set(s3.keys("blobs/")) == before, "gc deleted too much or too little"
    r = run(b, "plan", "flow.py", "wf", *INPUTS, "--detailed-exitcode")
    assert r.code == 0, f"the other project lost its outputs:\n{r.text}"
    r = run(a, "plan", "flow.py", "wf", *INPUTS, "--detailed-exitcode")
    assert r.code == 0, r.text


def test_gc_deletes_nothing_while_a_state_sharing_the_store_cannot_be_read(tmp_path: Path, s3: S3Env) -> None:
    a = _project(tmp_path / "a", s3, "alpha", "1\n2\n")
    r = run(a, "apply", "flow.py", "wf", *INPUTS, "--auto-approve")
    assert r.code == 0, r.text
    # A teammate keeps a local state on their laptop and the outputs in this bucket: their flows registered it.
    bob = {"type": "local", "host": "laptop-of-bob", "path": "/home/bob/churn/.flows/state"}
    s3.client.put_object(Bucket=s3.bucket, Key="blobs/users/bob.json", Body=json.dumps(bob).encode())
    stray = s3.blobs().put_bytes(b"maybe bob's")
    before = set(s3.keys("blobs/"))
    r = run(a, "cache", "gc", "--json")
    assert r.code == 0, r.text
    shown = json.loads(r.out)
    assert shown["dry_run"] is True and shown["deleted"] == 0
    assert shown["unreferenced"] == [stray.digest]  # what would go, shown
    assert list(shown["unreadable"]) == ["laptop-of-bob:/home/bob/churn/.flows/state"]
    assert set(s3.keys("blobs/")) == before, "gc deleted blobs a state it could not read may use"
    r = run(a, "cache", "gc")
    assert r.code == 0 and "Cannot read the state at laptop-of-bob" in r.out and "would delete 1" in r.out, r.text
