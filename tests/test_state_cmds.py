"""`flows state / runs / cache` against the local backend, on states written by real applies."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from state.backend import LockInfo
from state.local import LocalBackend
from tests.fixtures.apply_kit import Project, make_project

FLOW = '''
@workflow
def wf(data: CSV, factor: int = 2) -> None:
    prep = run_domino_job_task(
        flyte_task_name="prep", command="python scripts/prep.py",
        inputs=[Input(name="data", type=CSV, value=data)],
        output_specs=[Output(name="clean", type=CSV)])
    run_domino_job_task(
        flyte_task_name="pack", command="python scripts/pack.py",
        inputs=[Input(name="clean", type=CSV, value=prep["clean"]), Input(name="factor", type=int, value=factor)],
        output_specs=[Output(name="bundle", type=FlyteDirectory)])
'''
SCRIPTS = {
    "prep": 'mark("start")\nwrite("clean", read("data").strip() + "\\n")\n',
    # A directory output: one file depends on the factor, the other never changes (shared between results).
    "pack": '''
        mark("start")
        os.makedirs("/workflow/outputs/bundle/sub")
        rows = read("clean").split()
        open("/workflow/outputs/bundle/a.txt", "w").write(" ".join(str(int(r) * int(read("factor"))) for r in rows))
        open("/workflow/outputs/bundle/sub/b.txt", "w").write("constant\\n")
    ''',
}
INPUTS = ("--data", "data/in.csv")


def project_at(root: Path) -> Project:
    p = make_project(root, FLOW, SCRIPTS, files={"data/in.csv": "1\n2\n3\n"})
    p.apply(*INPUTS)
    return p


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """Applied once; the tests using it only read."""
    return project_at(tmp_path_factory.mktemp("state") / "proj")


@pytest.fixture
def fresh(tmp_path: Path) -> Project:
    return project_at(tmp_path / "proj")


def as_json(p: Project, *args: str) -> Any:
    r = p.run(*args, "--json")
    assert r.code == 0, r.text
    return json.loads(r.out)


def fails(p: Project, *args: str) -> str:
    """Run a command that must fail cleanly and leave the state as it was; return its message."""
    before = p.state_file.read_bytes()
    r = p.run(*args)
    assert r.code == 1 and r.err.startswith("Error: ") and "Traceback" not in r.text, r.text
    assert p.state_file.read_bytes() == before
    return r.err


# ---- reading ------------------------------------------------------------------------------------------

def test_state_list_and_show(applied: Project) -> None:
    listed = as_json(applied, "state", "list")
    state = applied.state()
    assert listed["serial"] == state["serial"] == 1 and listed["lineage"] == state["lineage"]
    rows = {n["address"]: n for n in listed["nodes"]}
    assert set(rows) == {"wf/prep", "wf/pack"}
    assert rows["wf/pack"]["status"] == "succeeded" and rows["wf/pack"]["key"] == state["nodes"]["wf/pack"]["key"]
    assert rows["wf/pack"]["output_bytes"] == len("2 4 6") + len("constant\n")
    text = applied.run("state", "list")
    assert text.code == 0 and "wf/pack" in text.out and "serial 1" in text.out
    shown = as_json(applied, "state", "show", "wf/pack")
    assert shown["outputs"]["bundle"]["type"] == "dir" and shown["runs"] == list(state["runs"])
    assert shown["fingerprint"] == json.loads(state["nodes"]["wf/pack"]["fingerprint"])  # (stored as its text)
    assert "wf/pack" in applied.run("state", "show", "wf/pack").out
    assert "no node 'wf/pak' in the state (did you mean 'wf/pack'?)" in fails(applied, "state", "show", "wf/pak")


def test_runs_and_cache_list(applied: Project) -> None:
    [run] = as_json(applied, "runs", "list")
    assert run["outcome"] == "succeeded" and run["counts"] == {"succeeded": 2}
    assert set(as_json(applied, "runs", "show", run["id"])["jobs"]) == {"wf/prep", "wf/pack"}
    entries = as_json(applied, "cache", "list")
    assert {e["address"] for e in entries} == {"wf/prep", "wf/pack"} and all(e["run_id"] == run["id"] for e in entries)
    assert [e["address"] for e in as_json(applied, "cache", "list", "wf/pack")] == ["wf/pack"]
    assert "current" in applied.run("cache", "list").out


def test_commands_outside_a_project_with_state_fail_clearly(tmp_path: Path) -> None:
    p = make_project(tmp_path / "empty", FLOW, SCRIPTS)
    r = p.run("state", "list")
    assert r.code == 1 and "name the flow with --flow (no state found here)" in r.err and "Traceback" not in r.text
    r = p.run("state", "list", "--flow", "wf")
    assert r.code == 1 and "flow 'wf' has no state" in r.err


# ---- changing the state -------------------------------------------------------------------------------

def test_rm_makes_the_node_plan_as_create(fresh: Project) -> None:
    before = fresh.state()
    out = as_json(fresh, "state", "rm", "wf/pack")
    assert out == {"flow": "wf", "removed": ["wf/pack"], "evicted_keys": [before["nodes"]["wf/pack"]["key"]],
                   "serial": 2}
    assert fresh.actions(*INPUTS) == {"wf/prep": "reuse", "wf/pack": "create"}
    assert any(h["serial"] == 1 for h in as_json(fresh, "state", "history"))  # the backup
    assert "no node 'wf/nope' in the state of 'wf'" in fails(fresh, "state", "rm", "wf/nope")
    fresh.apply(*INPUTS)
    assert fresh.starts("pack") == 2 and fresh.starts("prep") == 1


def test_mv_after_renaming_a_task_reruns_nothing(fresh: Project) -> None:
    fresh.edit("flow.py", 'flyte_task_name="pack"', 'flyte_task_name="bundle"')
    assert fresh.actions(*INPUTS) == {"wf/prep": "reuse", "wf/bundle": "create", "wf/pack": "forget"}
    assert as_json(fresh, "state", "mv", "wf/pack", "wf/bundle") == \
        {"flow": "wf", "old": "wf/pack", "new": "wf/bundle", "serial": 2}
    assert fresh.actions(*INPUTS) == {"wf/prep": "reuse", "wf/bundle": "reuse"}
    fresh.apply(*INPUTS)
    assert fresh.starts("pack") == 1 and fresh.starts("prep") == 1
    assert "node 'wf/prep' already exists" in fails(fresh, "state", "mv", "wf/bundle", "wf/prep")


def test_pull_push_and_history(fresh: Project, tmp_path: Path) -> None:
    pulled = fresh.run("state", "pull")
    assert pulled.code == 0 and json.loads(pulled.out) == fresh.state()
    assert json.loads(fresh.run("state", "pull", "--json").out) == fresh.state()
    old = tmp_path / "serial1.json"
    old.write_text(pulled.out)
    fresh.apply(*INPUTS, "--factor", "3")  # serial 2
    history = as_json(fresh, "state", "history")
    assert history[0]["latest"] and history[0]["serial"] == 2
    [backup] = [h for h in history if h["serial"] == 1]
    assert json.loads(fresh.run("state", "pull", "--version", backup["version_id"]).out) == json.loads(pulled.out)
    assert "no version 'nope'" in fails(fresh, "state", "pull", "--version", "nope")

    err = fails(fresh, "state", "push", str(old))
    assert "refusing to push: serial 1 is older than the state's 2 (use --force)" in err
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**json.loads(pulled.out), "lineage": "another", "serial": 9}))
    assert "refusing to push: lineage another differs from the state's" in fails(fresh, "state", "push", str(other))
    missing = tmp_path / "missing.json"
    assert "no such file" in fails(fresh, "state", "push", str(missing))
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert "state is not valid JSON" in fails(fresh, "state", "push", str(broken))

    pushed = as_json(fresh, "state", "push", str(old), "--force")
    assert pushed["serial"] == 3 and pushed["lineage"] == fresh.state()["lineage"]
    assert fresh.state()["nodes"]["wf/pack"]["key"] == json.loads(pulled.out)["nodes"]["wf/pack"]["key"]
    assert fresh.actions(*INPUTS) == {"wf/prep": "reuse", "wf/pack": "reuse"}
    current = tmp_path / "current.json"
    current.write_text(fresh.run("state", "pull").out)
    assert as_json(fresh, "state", "push", str(current))["serial"] == 4  # same serial and lineage: accepted


def test_unlock(fresh: Project) -> None:
    backend = LocalBackend(fresh.root / ".flows" / "state")
    held = backend.lock("wf", LockInfo(operation="apply", run_id="r-gone"))  # a holder that never releases
    r = fresh.run("apply", "flow.py", "wf", *INPUTS, "--auto-approve")
    assert r.code == 1 and f"flows state unlock {held.id}" in r.err
    assert f"lock id wrong does not match the held lock {held.id}" in fails(fresh, "state", "unlock", "wrong")
    released = as_json(fresh, "state", "unlock", held.id)
    assert released["released"]["id"] == held.id and released["released"]["run_id"] == "r-gone"
    assert not fresh.lock_file.exists()
    assert "flow 'wf' is not locked" in fails(fresh, "state", "unlock", held.id)
    fresh.apply(*INPUTS)


# ---- the cache and its blobs --------------------------------------------------------------------------

def blob_files(p: Project) -> dict[str, Path]:
    return {f.name: f for f in (p.root / ".flows" / "blobs").glob("??/*")}


def digests_of(outputs: dict[str, Any], p: Project) -> set[str]:
    """The blobs an output set needs: each output's blob, and every file of a stored directory."""
    out = set()
    for o in outputs.values():
        out.add(o["digest"])
        if o["type"] == "dir":
            out |= {f["digest"] for f in json.loads(Path(o["uri"]).read_text())["files"].values()}
    return out


def test_cache_rm_and_gc_delete_only_unreferenced_blobs(fresh: Project, tmp_path: Path) -> None:
    first = fresh.state()["nodes"]["wf/pack"]
    fresh.apply(*INPUTS, "--factor", "3")
    report = as_json(fresh, "cache", "gc")
    states = report.pop("states")
    assert len(states) == 1 and states[0].endswith(str(fresh.root.resolve() / ".flows" / "state"))
    assert report.pop("unreadable") == {}
    assert report == {"flow": "wf", "dry_run": False, "evicted": [], "unreferenced": [], "deleted": 0,
                      "kept": len(blob_files(fresh))}
    current = fresh.state()["nodes"]["wf/pack"]
    evicted = as_json(fresh, "cache", "rm", first["key"][:8])
    assert evicted["evicted"] == [first["key"]]
    only_old = digests_of(first["outputs"], fresh) - digests_of(current["outputs"], fresh)
    assert len(only_old) == 2  # the old a.txt and the old manifest; sub/b.txt is shared with the current result
    dry = as_json(fresh, "cache", "gc", "--dry-run")
    assert set(dry["unreferenced"]) == only_old and dry["deleted"] == 0
    assert only_old <= set(blob_files(fresh))
    gc = as_json(fresh, "cache", "gc")
    assert gc["deleted"] == 2 and set(blob_files(fresh)) & only_old == set()
    r = fresh.run("outputs", "wf/pack", "--dest", str(tmp_path / "out"))  # the current directory is whole
    assert r.code == 0, r.text
    assert (tmp_path / "out" / "bundle" / "a.txt").read_text() == "3 6 9"
    assert (tmp_path / "out" / "bundle" / "sub" / "b.txt").read_text() == "constant\n"
    assert fresh.actions(*INPUTS) == {"wf/prep": "reuse", "wf/pack": "update"}  # factor 2's result is gone
    assert "no cache entry for 'wf/nope'" in fails(fresh, "cache", "rm", "wf/nope")


def test_cache_gc_keep_last(fresh: Project) -> None:
    fresh.apply(*INPUTS, "--factor", "3")
    fresh.apply(*INPUTS, "--factor", "4")
    state = fresh.state()
    packs = sorted((e for e in state["cache"].values() if e["address"] == "wf/pack"), key=lambda e: e["created_at"])
    assert len(packs) == 3
    dry = as_json(fresh, "cache", "gc", "--keep-last", "2", "--dry-run")
    assert dry["evicted"] == [packs[0]["key"]] and dry["deleted"] == 0
    assert len(fresh.state()["cache"]) == 4  # a dry run changes nothing
    gc = as_json(fresh, "cache", "gc", "--keep-last", "1")
    assert sorted(gc["evicted"]) == sorted(e["key"] for e in packs[:2])
    assert gc["deleted"] == 4  # two results of two blobs each (manifest, a.txt); sub/b.txt is shared
    cache = fresh.state()["cache"]
    assert {e["address"] for e in cache.values()} == {"wf/prep", "wf/pack"} and len(cache) == 2
    assert fresh.actions(*INPUTS, "--factor", "4") == {"wf/prep": "reuse", "wf/pack": "reuse"}
