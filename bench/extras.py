"""The size-independent rows: hashing throughput and the stat cache over a 1 GiB input, CLI
start-up, and loading a 10,000-node state."""
from __future__ import annotations

import hashlib
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import gen
from runner import Series, measure
from tools import PEER_BIN, REPO, flows_argv, flows_src

GIB = 1 << 30


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def make_big_file(path: Path, size: int = GIB) -> None:
    """Random bytes (incompressible, no dedup shortcuts), written once and reused by later runs."""
    if path.exists() and path.stat().st_size == size:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = 1 << 24
    with open(path, "wb") as f:
        for _ in range(size // chunk):
            f.write(os.urandom(chunk))


def hash_throughput(big: Path, runs: int) -> dict[str, Any]:
    """In-process GB/s of flows' file hasher vs hashlib md5 (DVC's), alternating, file in page cache."""
    from vocab.digest import file_digest

    def md5() -> None:
        with open(big, "rb") as f:
            hashlib.file_digest(f, "md5")

    flows_t: list[float] = []
    md5_t: list[float] = []
    for i in range(runs + 1):  # run 0 warms the page cache and is dropped
        a, b = _timed(lambda: file_digest(big)), _timed(md5)
        if i:
            flows_t.append(a)
            md5_t.append(b)
    size_gb = big.stat().st_size / 1e9
    f_gbps, m_gbps = size_gb / statistics.median(flows_t), size_gb / statistics.median(md5_t)
    return {"file_bytes": big.stat().st_size, "flows_s": flows_t, "md5_s": md5_t,
            "flows_gbps": f_gbps, "md5_gbps": m_gbps, "ratio": f_gbps / m_gbps}


BIG_FLOW = '''from typing import TypeVar

from flytekit import workflow
from flytekit.types.file import FlyteFile
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task

BIN = FlyteFile[TypeVar("bin")]


@workflow
def big(data: BIN) -> FlyteFile[TypeVar("txt")]:
    r = run_domino_job_task(flyte_task_name="checksum", command="cksum /workflow/inputs/data > /workflow/outputs/sum",
                            inputs=[Input(name="data", type=BIN, value=data)],
                            output_specs=[Output(name="sum", type=FlyteFile[TypeVar("txt")])])
    return r["sum"]
'''


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        os.link(src, dst)  # same bytes, no second GiB on disk


def stat_cache_plans(root: Path, big: Path, runs: int) -> dict[str, Any]:
    """First plan (digest read from disk) vs second plan (stat cache hit) over the unchanged 1 GiB input.

    Whole-process figures (what a user waits for) and the in-process digest step alone (what the
    stat cache saves); DVC's `dvc status` the same way for reference (its state db plays the role).
    """
    from vocab.digest import RACY_NS, StatCache

    out: dict[str, Any] = {}
    proj = root / "bigflow"
    _link(big, proj / "data" / "big.bin")
    # A link moves the file's ctime, and the stat cache does not remember a file changed less than
    # RACY_NS before it was read: let it age, as any input of a real project has.
    while time.time_ns() - os.stat(big).st_ctime_ns <= RACY_NS:
        time.sleep(0.1)
    (proj / "flows.toml").write_text("[tool.flows]\n")
    (proj / "flow.py").write_text(BIG_FLOW)
    exe, env = flows_argv()
    argv = [*exe, "plan", "flow.py", "big", "--data", "data/big.bin"]
    cache_file = proj / ".flows" / "statcache.json"
    first, second = Series(), Series()
    for i in range(runs + 1):
        if cache_file.exists():
            cache_file.unlink()
        a = measure(argv, proj, env, timeout=300)
        b = measure(argv, proj, env, timeout=300)
        if a.rc or b.rc:
            first.skipped = second.skipped = f"failed: {(a if a.rc else b).tail(2)}"
            break
        if i:
            first.samples.append(a)
            second.samples.append(b)
    out["flows_first_plan"], out["flows_second_plan"] = first, second

    # The digest step alone: a fresh cache reads the file; a loaded cache answers from stat().
    persisted = root / "statcache-probe.json"
    cold, warm = [], []
    for i in range(runs + 1):
        persisted.unlink(missing_ok=True)
        c = StatCache(persisted)
        t_cold = _timed(lambda: c.file(big))
        c.save()
        t_warm = _timed(lambda: StatCache(persisted).file(big))
        if i:
            cold.append(t_cold)
            warm.append(t_warm)
    out["digest_cold_s"], out["digest_warm_s"] = cold, warm
    out["dvc"] = _dvc_status_pair(root / "bigdvc", big, runs)
    return out


def _dvc_status_pair(proj: Path, big: Path, runs: int) -> dict[str, Series]:
    dvc = PEER_BIN / "dvc"
    first, second = Series(), Series()
    if not dvc.exists():
        first.skipped = second.skipped = "unavailable: bench/.venv has no dvc"
        return {"first": first, "second": second}
    env = gen.dvc_env()
    if not (proj / ".dvc").exists():
        _link(big, proj / "data" / "big.bin")
        (proj / "out").mkdir(exist_ok=True)
        (proj / "dvc.yaml").write_text('stages:\n  checksum:\n    cmd: cksum data/big.bin > out/sum\n'
                                       '    deps: [data/big.bin]\n    outs: [out/sum]\n')
        for cmd in (["git", "init", "-q"], [str(dvc), "init", "-q"],
                    [str(dvc), "config", "core.analytics", "false"],
                    [str(dvc), "config", "core.site_cache_dir", str(proj / ".dvc" / "site")],
                    [str(dvc), "repro", "-q"]):
            subprocess.run(cmd, cwd=proj, env=env, check=True, capture_output=True)
    site = proj / ".dvc" / "site"
    for i in range(runs + 1):
        subprocess.run(["rm", "-rf", str(site), str(proj / ".dvc" / "tmp")], check=True)
        a = measure([str(dvc), "status"], proj, env, timeout=300)
        b = measure([str(dvc), "status"], proj, env, timeout=300)
        if a.rc or b.rc:
            first.skipped = second.skipped = f"failed: {(a if a.rc else b).tail(2)}"
            break
        if i:
            first.samples.append(a)
            second.samples.append(b)
    return {"first": first, "second": second}


def startup(runs: int, cwd: Path) -> dict[str, Series]:
    """`--help` of each CLI, whole process, alternating; bare `python -c pass` as the floor."""
    exe, env = flows_argv()
    cmds = {"flows": ([*exe, "--help"], env),
            "dvc": ([str(PEER_BIN / "dvc"), "--help"], gen.dvc_env()),
            "snakemake": ([str(PEER_BIN / "snakemake"), "--help"], dict(os.environ)),
            "python": ([str(REPO / ".venv" / "bin" / "python"), "-c", "pass"], dict(os.environ))}
    res = {k: Series() for k in cmds}
    for i in range(runs + 1):
        for k, (argv, e) in cmds.items():
            if res[k].skipped:
                continue
            if not Path(argv[0]).exists():
                res[k].skipped = f"unavailable: {argv[0]} not found"
                continue
            s = measure(argv, cwd, e, timeout=60)
            if s.rc:
                res[k].skipped = f"failed: {s.tail(2)}"
            elif i:
                res[k].samples.append(s)
    return res


def plan_without_receipt(flows_tool: Any, runs: int) -> Series:
    """The no-op plan with its receipt turned off (FLOWS_PLAN_SHORTCUT=0): the traced graph still comes from
    its cache, the state is read and every node fingerprinted. What the receipt saves."""
    argv = flows_tool.plan_argv()
    env = {**flows_tool.env, "FLOWS_PLAN_SHORTCUT": "0"}
    res = Series()
    for i in range(runs + 1):
        s = measure(argv, flows_tool.cwd, env, timeout=600)
        if s.rc:
            res.skipped = f"failed: {s.tail(2)}"
            return res
        if i:
            res.samples.append(s)
    return res


def synthetic_state(n: int) -> Any:
    """A state of n succeeded nodes shaped like what `flows apply` records for the generated flow."""
    from state.model import CacheEntry, NodeRecord, OutputRecord, RunRecord, State

    nodes = gen.build_dag(n)
    st = State(flow=gen.FLOW_NAME, serial=7)
    run = RunRecord(id="run-0001", flow=gen.FLOW_NAME, flow_file="flow.py", outcome="succeeded",
                    counts={"succeeded": n})
    for node in nodes:
        addr = f"{gen.FLOW_NAME}/{node.name}"
        key = hashlib.blake2b(addr.encode(), digest_size=32).hexdigest()
        digest = hashlib.blake2b(key.encode(), digest_size=32).hexdigest()
        fp = {"task": {"name": node.name, "kind": "domino_job", "command": gen.flows_command(node),
                       "config": {"EnvironmentName": "Domino Standard Environment Py3.10",
                                  "use_latest": True},
                       "interface": {"inputs": {i: "file:txt" for i in gen.input_names(node)},
                                     "outputs": {"out": "file:txt"}},
                       "cache_version": ""},
              "code": {},
              "inputs": {i: {"type": "file:txt", "digest": digest} for i in gen.input_names(node)}}
        outs = {"out": OutputRecord(type="file:txt", digest=digest, size=24,
                                    uri=f".flows/blobs/{digest[:2]}/{digest}")}
        st.nodes[addr] = NodeRecord(address=addr, task_name=node.name, key=key, fingerprint=fp,
                                    display={"HardwareTierName": "Small"}, outputs=outs, run_id=run.id,
                                    job_id=f"local-{node.name}", started_at="2026-01-01T00:00:00.000+00:00",
                                    finished_at="2026-01-01T00:00:01.000+00:00", attempts=1)
        st.cache[key] = CacheEntry(key=key, task_name=node.name, address=addr, outputs=outs, run_id=run.id,
                                   fingerprint=fp)
        run.jobs[addr] = {"key": key, "job_id": f"local-{node.name}", "attempt": 1, "status": "succeeded"}
    st.runs[run.id] = run
    return st


LOAD_SCRIPT = """
import sys, time
from state.model import parse_state
text = open(sys.argv[1]).read()
t0 = time.perf_counter()
parse_state(text, sys.argv[1])
print(time.perf_counter() - t0)
"""


def _parse_times(path: Path, runs: int) -> list[float]:
    """parse_state timed inside a fresh process each time, as a CLI command meets it (a heap full of
    the harness's own objects would make every garbage-collector pass slower)."""
    env = dict(os.environ, PYTHONPATH=str(flows_src()))
    times = []
    for _ in range(runs + 1):
        r = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", LOAD_SCRIPT, str(path)], env=env,
                           capture_output=True, text=True, check=True)
        times.append(float(r.stdout.strip().splitlines()[-1]))
    return times[1:]


def state_load(n: int, runs: int, work: Path, real_state: Path | None = None) -> dict[str, Any]:
    """Median time of `parse_state` on a state of n nodes built with the project's own model, as a state file
    holds it (the stored form: `State.to_json_parts`)."""
    path = work / f"state-{n}.json"
    path.write_bytes(synthetic_state(n).to_json_bytes())
    times = _parse_times(path, runs)
    out: dict[str, Any] = {"nodes": n, "bytes": path.stat().st_size, "parse_s": times,
                           "median_s": statistics.median(times)}
    if real_state and real_state.is_file():
        rt = _parse_times(real_state, runs)
        out["real_state"] = {"path": str(real_state), "bytes": real_state.stat().st_size, "parse_s": rt,
                             "median_s": statistics.median(rt)}
    return out


def journal_cost(work: Path, appends: int = 200) -> dict[str, Any]:
    """Per-node durability: one fsynced journal record per finished node, with a 10-node and a
    10,000-node state beside it (O(1) means the two match), and the one state write per run that
    folds the journal (O(N), once)."""
    from state import journal
    from state.local import LocalBackend
    from state.model import NodeRecord
    from state.store import StateStore

    out: dict[str, Any] = {}
    for n in (10, 10_000):
        store = StateStore(LocalBackend(work / f"journal-{n}"), gen.FLOW_NAME)
        st = synthetic_state(n)
        with store.locked("bench") as lease:
            t_write = _timed(lambda: lease.commit(st))
            node = next(iter(st.nodes.values()))
            record = journal.NodeFinished(run_id="run-0002", node=NodeRecord.model_validate(node.model_dump()))
            times = [_timed(lambda: lease.append(record)) for _ in range(appends)]
        out[str(n)] = {"append_median_ms": statistics.median(times) * 1000, "state_write_s": t_write}
    return out
