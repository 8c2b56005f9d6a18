"""The real `flows` CLI with state and blobs on S3 (moto's server over HTTP on 127.0.0.1)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path


from state.model import parse_state
from tests.fixtures.projects import FLOWS, flows, write_project
from tests.fixtures.s3 import FAKE_SECRET, S3Env, aws_env

INPUTS = ("--data", "data/in.csv")


def _s3_project(root: Path, s3env: S3Env) -> Path:
    write_project(root)
    (root / "flows.toml").write_text(s3env.flows_toml())
    return root


def _state(s3env: S3Env) -> dict:
    body = s3env.client.get_object(Bucket=s3env.bucket, Key="projects/demo/wf.json")["Body"].read()
    parse_state(body, "s3")  # valid against the schema
    return json.loads(body)


def run(root: Path, *args: str) -> object:
    return flows(*args, cwd=root, env=aws_env())


def test_plan_apply_plan_cycle_and_state_commands_on_s3(tmp_path: Path, s3: S3Env) -> None:
    root = _s3_project(tmp_path / "p", s3)
    r = run(root, "apply", "flow.py", "wf", *INPUTS, "--auto-approve")
    assert r.code == 0, r.text
    assert not (root / ".flows" / "state").exists()  # the state lives in the bucket, not here
    state = _state(s3)
    assert state["serial"] == 1 and set(state["nodes"]) == {"wf/prep", "wf/scale", "wf/report"}
    assert any(k.startswith("blobs/") for k in s3.keys())
    r = run(root, "plan", "flow.py", "wf", *INPUTS, "--detailed-exitcode")
    assert r.code == 0 and "No changes." in r.out, r.text

    r = run(root, "state", "list", "--json")
    assert r.code == 0 and {n["address"] for n in json.loads(r.out)["nodes"]} == set(state["nodes"])
    r = run(root, "state", "rm", "wf/report")
    assert r.code == 0, r.text
    plan = json.loads(run(root, "plan", "flow.py", "wf", *INPUTS, "--json").out)
    report = next(n for n in plan["nodes"] if n["address"] == "wf/report")
    assert report["action"] == "create"  # forgotten: it runs again next time
    r = run(root, "state", "history", "--json")
    versions = json.loads(r.out)
    assert r.code == 0 and len(versions) >= 2 and versions[0]["latest"]
    older = next(v for v in versions if v["serial"] == 1)
    r = run(root, "state", "pull", "--version", older["version_id"])
    assert r.code == 0 and "wf/report" in json.loads(r.out)["nodes"]
    (tmp_path / "old.json").write_text(r.out)
    r = run(root, "state", "push", str(tmp_path / "old.json"))
    assert r.code == 1 and "older" in r.err
    r = run(root, "state", "push", str(tmp_path / "old.json"), "--force")
    assert r.code == 0, r.text
    assert "wf/report" in _state(s3)["nodes"]
    for text in (r.text, json.dumps(_state(s3))):
        assert FAKE_SECRET not in text


def test_cache_gc_on_s3_deletes_only_unreferenced_blobs(tmp_path: Path, s3: S3Env) -> None:
    root = _s3_project(tmp_path / "p", s3)
    assert run(root, "apply", "flow.py", "wf", *INPUTS, "--auto-approve").code == 0
    assert run(root, "apply", "flow.py", "wf", *INPUTS, "--factor", "3", "--auto-approve").code == 0
    before = set(s3.keys("blobs/"))
    stray = s3.blobs().put_bytes(b"nobody references me")
    r = run(root, "cache", "gc")
    assert r.code == 0, r.text
    after = set(s3.keys("blobs/"))
    assert after == before  # both runs' outputs are still referenced by the cache index
    assert not any(stray.digest in k for k in after)
    r = run(root, "cache", "gc", "--keep-last", "1")
    assert r.code == 0, r.text
    assert set(s3.keys("blobs/")) < before  # factor=2's scale/report outputs went with their entries
    r = run(root, "plan", "flow.py", "wf", *INPUTS, "--factor", "3", "--detailed-exitcode")
    assert r.code == 0, r.text  # what the state points at survived


def test_eight_concurrent_applies_exactly_one_runs(tmp_path: Path, s3: S3Env) -> None:
    root = _s3_project(tmp_path / "p", s3)
    env = {**os.environ, **aws_env(), "COLUMNS": "200"}
    procs = [subprocess.Popen([FLOWS, "apply", "flow.py", "wf", *INPUTS, "--auto-approve"], cwd=root, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    winners = [r for r in results if r[0] == 0]
    losers = [r for r in results if r[0] != 0]
    assert len(winners) >= 1
    for code, out, err in losers:
        assert code == 1 and "state is locked" in err and "Traceback" not in err, err
    # Whoever won, the final state is valid and every node ran exactly once in total.
    state = _state(s3)
    runs = [r for r in state["runs"].values() if r["outcome"] == "succeeded"]
    executed = sum(r["counts"].get("succeeded", 0) for r in runs)
    assert executed == 3, state["runs"]
    assert state["serial"] == len(state["runs"])
