"""The least Python a job needs in flows's design, measured against the floor: how far a leaner hot path could take
the local-apply row, and so what the rest of flows's per-job code costs.

    .venv/bin/python bench/lean_apply.py --sizes 1000 --runs 4
    .venv/bin/python bench/lean_apply.py --sizes 1000 --runs 6 --flows --ladder   # and flows apply, split in its phases

A stand-in apply of the bench DAG that does, per job, what flows's local provider does at the least: a node's
fingerprint and key (canonical JSON, BLAKE3), a reused job folder, its inputs copied in, a log file, the start
through flows's own resident launcher (`providers.sandbox.Launcher`: the same namespaces, mounts and start queue),
the start journaled and listed in a job index, the output checked, hashed and linked into a content store, the
result journaled and synced, two progress lines; four worker threads and the launcher's queue, as flows runs
parallelism 2. It has none of flows's checks, records, messages or recovery: it is a measure, not an engine. Its
own process's CPU is reported per job (the jobs and the launcher are its children). Each round runs it and the floor
(`xargs -P2` waves), the order alternating; the stand-in runs in this process, so Python's start-up and imports are
not in its wall time (flows's are: ~0.75 s on the fourteenth round's machine).

`--flows` also runs `flows apply` in every round (the three in rotating order) and splits its wall time by its own
run timeline (`timeline.json`: when each node's job started and when its record was made): the start-up (process
start to the first job's start), the run (to the last node's record) and the tail (to the process's exit). Then
the bound it gives: flows's start-up and tail around the stand-in's run, over the floor of the same round — the
ratio flows would reach with a per-job path as lean as the stand-in's and its start and end as they are.

`--ladder` adds two rungs to every round: the same jobs started through the same launcher by four threads with a log
file each and nothing else (what starting jobs this way costs at all), and the stand-in without its fsyncs (what one
synced result line a job costs).
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, os.environ.get("FLOWS_BENCH_SRC") or str(BENCH.parent))  # (the flows source measured)

import gen  # noqa: E402
from blake3 import blake3  # noqa: E402
from providers import jobenv, sandbox  # noqa: E402
from tools import Floor, Flows, _rm  # noqa: E402


def digest_of(data: bytes) -> str:
    return blake3(data).hexdigest()


def job_env(project: Path) -> dict[str, str]:
    """The environment flows's jobs start from (and the floor's jobs have): made by flows's own functions, as
    `LocalProvider` makes it for the launcher. (Until the sixteenth round the stand-in gave its jobs three variables:
    no LANG, so no locale loaded by each of a job's programs, ~0.9 ms of the job's CPU here, and a short PATH:
    ~0.7 s faster at 1,000 jobs.)"""
    project_env = {"PYTHONUNBUFFERED": "1", **jobenv.project_variables(project)}
    return sandbox.job_env(Path(sandbox.WORKFLOW), project, project_env, True)


def _job_variables(node: gen.Node) -> dict[str, str]:
    """The job's own variables, as flows sends them with each start."""
    return jobenv.job_variables(run_id="bench", address=node.name, attempt=1, working_dir=sandbox.CODE)


def launcher_only(project: Path, nodes: list[gen.Node]) -> None:
    """The ladder's first rung: the same jobs, in the same order, started through the same launcher by four threads,
    with a log file each and nothing else (no key, no journal, no store: each thread's folder holds every input a
    job may read, written once)."""
    work = project / ".lean"
    (work / "logs").mkdir(parents=True)
    launcher = sandbox.Launcher()
    env = job_env(project)
    source = (project / "data" / "src0.csv").read_bytes()
    todo: queue.SimpleQueue[gen.Node | None] = queue.SimpleQueue()
    failed: list[str] = []

    def worker(k: int) -> None:
        folder = work / f"jobs{k}"
        (folder / "inputs").mkdir(parents=True)
        (folder / "outputs").mkdir()
        for name in ("a", "b"):
            (folder / "inputs" / name).write_bytes(source)
        while (node := todo.get()) is not None:
            log = str(work / "logs" / f"{node.name}.log")
            job = launcher.spawn(gen.flows_command(node), cwd=project, workflow_dir=folder, log_path=Path(log), env=env,
                                 hide=[work], log_fd=sandbox.open_log(log), running=2,
                                 env_changes=_job_variables(node))
            if job.wait() != 0:
                failed.append(node.name)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for node in nodes:
        todo.put(node)
    _finish(threads, todo)
    launcher.close()
    if failed:
        raise RuntimeError(f"{len(failed)} jobs failed, {failed[0]} first")


def _finish(threads: list[threading.Thread], todo: "queue.SimpleQueue[gen.Node | None]") -> None:
    """Each worker told to stop once the queue is drained, and waited for."""
    for _ in threads:
        todo.put(None)
    for t in threads:
        t.join()


def lean_apply(project: Path, nodes: list[gen.Node], out: Callable[[str], object], sync: bool = True) -> None:
    """One apply of `nodes` in `project`, its files under `project/.lean`; `out` takes the progress lines. `sync`:
    each result line is synced (fsync), as flows's are."""
    work = project / ".lean"
    (work / "jobs").mkdir(parents=True)
    (work / "store").mkdir()
    (work / "logs").mkdir()
    launcher = sandbox.Launcher()
    journal = os.open(work / "journal.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    index = os.open(work / "index.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    journal_lock, folders_lock = threading.Lock(), threading.Lock()
    outputs: dict[str, str] = {}
    digests: dict[str, str] = {}
    free_folders: list[str] = []
    env = job_env(project)
    made = [0]

    def folder() -> str:
        with folders_lock:
            if free_folders:
                return free_folders.pop()
            made[0] += 1
            path = str(work / "jobs" / str(made[0]))
        os.mkdir(path)
        os.mkdir(path + "/inputs")
        os.mkdir(path + "/outputs")
        return path

    def run(node: gen.Node) -> None:
        names = gen.input_names(node)
        command = gen.flows_command(node)
        fingerprint = {"key_schema": 2, "task": node.name, "command": command, "config": {"hardware_tier": "small"},
                       "inputs": {i: {"type": "file[txt]", "digest": digests.get(d, "source")}
                                  for i, d in zip(names, node.deps or ("source",))}}
        key = digest_of(json.dumps(fingerprint, sort_keys=True, separators=(",", ":")).encode())
        path = folder()
        sources = [str(project / f"data/src{node.source}.csv")] if node.source is not None else \
            [outputs[d] for d in node.deps]
        for name, source in zip(names, sources):
            os.stat(source)  # (flows checks a stored input against its stat cache first)
            src = os.open(source, os.O_RDONLY)
            dst = os.open(f"{path}/inputs/{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.copy_file_range(src, dst, os.fstat(src).st_size)
            os.close(src)
            os.close(dst)
        log = str(work / "logs" / f"{node.name}.log")
        job = launcher.spawn(command, cwd=project, workflow_dir=Path(path), log_path=Path(log), env=env, hide=[work],
                             log_fd=sandbox.open_log(log), running=2,
                             env_changes=_job_variables(node))
        with journal_lock:
            os.write(journal, (json.dumps({"type": "node_started", "address": node.name, "key": key,
                                           "job_id": job.pid, "attempt": 1}) + "\n").encode())
        os.write(index, (json.dumps({"job": f"local-{job.pid}", "log": log, "pid": job.pid, "folder": path})
                         + "\n").encode())
        out(f"bench/{node.name}: started local-{job.pid}\n")
        if job.wait() != 0:
            raise RuntimeError(f"{node.name} failed")
        output = f"{path}/outputs/out"
        os.lstat(path + "/outputs")  # (not replaced by a link)
        fd = os.open(output, os.O_RDONLY)
        digest = digest_of(os.read(fd, 1 << 20))
        os.close(fd)
        blob = str(work / "store" / digest)
        try:
            os.link(output, blob)
        except FileExistsError:
            pass
        os.stat(blob)  # (the store's stat cache notes it)
        os.unlink(output)
        for name in names:
            os.unlink(f"{path}/inputs/{name}")
        with folders_lock:
            free_folders.append(path)
        line = json.dumps({"type": "node_finished", "address": node.name, "key": key, "fingerprint": fingerprint,
                           "outputs": {"out": {"uri": blob, "digest": digest}}, "job_id": job.pid,
                           "finished_at": time.time()}) + "\n"
        with journal_lock:
            os.write(journal, line.encode())
            if sync:
                os.fsync(journal)
        digests[node.name] = digest
        outputs[node.name] = blob
        out(f"bench/{node.name}: succeeded\n")

    todo: queue.SimpleQueue[gen.Node | None] = queue.SimpleQueue()
    done: queue.SimpleQueue[str] = queue.SimpleQueue()
    failed: list[BaseException] = []

    def worker() -> None:
        while (node := todo.get()) is not None:
            try:
                run(node)
            except BaseException as e:  # noqa: BLE001 - said once the walk ends
                failed.append(e)
            done.put(node.name)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    waiting = {n.name: len(n.deps) for n in nodes}
    downstream: dict[str, list[gen.Node]] = {}
    for n in nodes:
        for d in n.deps:
            downstream.setdefault(d, []).append(n)
        if not n.deps:
            todo.put(n)
    for _ in nodes:
        for n in downstream.get(done.get(), []):
            waiting[n.name] -= 1
            if waiting[n.name] == 0:
                todo.put(n)
    _finish(threads, todo)
    launcher.close()
    os.close(journal)
    os.close(index)
    if failed:
        raise failed[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000")
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--flows", action="store_true", help="also flows apply, split into start-up, run and tail")
    ap.add_argument("--ladder", action="store_true",
                    help="also the jobs started through the launcher alone, and the stand-in without its fsyncs")
    a = ap.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    log = open(os.devnull, "w")  # (the progress lines: written, as flows writes them, not shown)
    with tempfile.TemporaryDirectory(prefix="flows-lean-") as tmp:
        for n in (int(s) for s in a.sizes.split(",")):
            projects = gen.generate(n, Path(tmp) / f"n{n}", None)
            floor = Floor(projects)
            flows = Flows(projects) if a.flows else None
            rounds: list[dict[str, float]] = []
            for i in range(a.runs + 1):  # a warm-up round, then `runs`
                floor.reset()  # (the last run's files set aside, as every bench tool's: tools._rm says why)
                got: dict[str, float] = {}
                steps = ["floor", "lean"] + (["flows"] if flows is not None else []) + \
                    (["launcher", "unsynced"] if a.ladder else [])
                for step in steps[i % len(steps):] + steps[:i % len(steps)]:  # (the order rotates round by round)
                    if step == "floor":
                        got["floor"] = _floor_wall(floor)
                    elif step == "lean":
                        _rm(floor.trash, projects.flows / ".lean")  # (each step that writes it starts without it)
                        before = resource.getrusage(resource.RUSAGE_SELF)
                        t = time.perf_counter()
                        lean_apply(projects.flows, projects.nodes, log.write)
                        got["lean"] = time.perf_counter() - t
                        after = resource.getrusage(resource.RUSAGE_SELF)
                        got["cpu"] = ((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)) / n
                    elif step in ("launcher", "unsynced"):
                        _rm(floor.trash, projects.flows / ".lean")
                        t = time.perf_counter()
                        if step == "launcher":
                            launcher_only(projects.flows, projects.nodes)
                        else:
                            lean_apply(projects.flows, projects.nodes, log.write, sync=False)
                        got[step] = time.perf_counter() - t
                    else:
                        assert flows is not None
                        flows.reset()
                        sample = flows.run(flows.apply_argv())
                        if sample.rc != 0 or sample.phases is None:
                            raise RuntimeError(f"flows apply failed: {sample.tail()}")
                        got.update(flows=sample.wall, **sample.phases)
                line = (f"N={n:,} round {i}{' (warm-up)' if i == 0 else ''}: lean {got['lean']:.2f} s (its own CPU "
                        f"{got['cpu'] * 1000:.2f} ms a job) | floor {got['floor']:.2f} s | "
                        f"{got['lean'] / got['floor']:.2f}×")
                if flows is not None:
                    got["bound"] = got["start"] + got["lean"] + got["tail"]
                    line += (f" | flows {got['flows']:.2f} s (start-up {got['start']:.2f}, run {got['run']:.2f}, "
                             f"tail {got['tail']:.2f}) {got['flows'] / got['floor']:.2f}×, its run alone "
                             f"{got['run'] / got['floor']:.2f}× | bound {got['bound'] / got['floor']:.2f}×")
                if a.ladder:
                    line += (f" | launcher alone {got['launcher'] / got['floor']:.2f}×, stand-in unsynced "
                             f"{got['unsynced'] / got['floor']:.2f}×")
                print(line, flush=True)
                if i:
                    rounds.append(got)
            _summary(n, rounds, flows is not None, a.ladder)


def _summary(n: int, rounds: list[dict[str, float]], with_flows: bool, ladder: bool) -> None:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    def ratio(key: str) -> str:  # (the median of each round's own ratio: the machine's speed moves between rounds)
        values = [r[key] / r["floor"] for r in rounds]
        return f"{statistics.median(values):.2f}× ({min(values):.2f}–{max(values):.2f})"

    print(f"N={n:,}: lean {med('lean'):.2f} s vs floor {med('floor'):.2f} s, {ratio('lean')} (median of the rounds' "
          f"own ratios); its own CPU {med('cpu') * 1000:.2f} ms a job", flush=True)
    if with_flows:
        print(f"N={n:,}: flows {med('flows'):.2f} s, {ratio('flows')}: start-up {med('start'):.2f} s, run "
              f"{med('run'):.2f} s ({ratio('run')} alone), tail {med('tail'):.2f} s | flows's start-up and tail around "
              f"the stand-in's run: {ratio('bound')}", flush=True)
    if ladder:
        print(f"N={n:,}: the jobs through the launcher alone {med('launcher'):.2f} s, {ratio('launcher')}; the stand-in "
              f"without its fsyncs {med('unsynced'):.2f} s, {ratio('unsynced')}", flush=True)


def _floor_wall(floor: Floor) -> float:
    sample = floor.run(floor.apply_argv())
    if sample.rc != 0:
        raise RuntimeError(f"the floor failed: {sample.tail()}")
    return sample.wall

if __name__ == "__main__":
    main()
