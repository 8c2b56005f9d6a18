"""The least Python a job needs in flows's design, measured against the floor: how far a leaner hot path could take
the local-apply row, and so what the rest of flows's per-job code costs.

    .venv/bin/python bench/lean_apply.py --sizes 1000 --runs 4

A stand-in apply of the bench DAG that does, per job, what flows's local provider does at the least: a node's
fingerprint and key (canonical JSON, BLAKE3), a reused job folder, its inputs copied in, a log file, the start
through flows's own resident launcher (`providers.sandbox.Launcher`: the same namespaces, mounts and start queue),
the start journaled and listed in a job index, the output checked, hashed and linked into a content store, the
result journaled and synced, two progress lines; four worker threads and the launcher's queue, as flows runs
parallelism 2. It has none of flows's checks, records, messages or recovery: it is a measure, not an engine. Its
own process's CPU is reported per job (the jobs and the launcher are its children). Each round runs it and the floor
(`xargs -P2` waves), the order alternating; the stand-in runs in this process, so Python's start-up and imports are
not in its wall time (flows's are: ~0.75 s on the fourteenth round's machine).
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
from providers import sandbox  # noqa: E402
from tools import Floor, _rm  # noqa: E402


def digest_of(data: bytes) -> str:
    return blake3(data).hexdigest()


def lean_apply(project: Path, nodes: list[gen.Node], out: Callable[[str], object]) -> None:
    """One apply of `nodes` in `project`, its files under `project/.lean`; `out` takes the progress lines."""
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
    env = {"PATH": os.environ["PATH"], "HOME": "/tmp", "PYTHONUNBUFFERED": "1"}
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
                             log_fd=sandbox.open_log(log), running=2)
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
    for _ in threads:
        todo.put(None)
    for t in threads:
        t.join()
    launcher.close()
    os.close(journal)
    os.close(index)
    if failed:
        raise failed[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000")
    ap.add_argument("--runs", type=int, default=4)
    a = ap.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    log = open(os.devnull, "w")  # (the progress lines: written, as flows writes them, not shown)
    with tempfile.TemporaryDirectory(prefix="flows-lean-") as tmp:
        for n in (int(s) for s in a.sizes.split(",")):
            projects = gen.generate(n, Path(tmp) / f"n{n}", None)
            floor = Floor(projects)
            ratios: list[float] = []
            cpus: list[float] = []
            lean_walls: list[float] = []
            floor_walls: list[float] = []
            for i in range(a.runs + 1):  # a warm-up round, then `runs`
                floor.reset()  # (the last run's files set aside, as every bench tool's: tools._rm says why)
                _rm(floor.trash, projects.flows / ".lean")
                floor_first = i % 2 == 1  # (the order alternates round by round)
                floor_wall = _floor_wall(floor) if floor_first else 0.0
                before = resource.getrusage(resource.RUSAGE_SELF)
                t = time.perf_counter()
                lean_apply(projects.flows, projects.nodes, log.write)
                wall = time.perf_counter() - t
                after = resource.getrusage(resource.RUSAGE_SELF)
                if not floor_first:
                    floor_wall = _floor_wall(floor)
                cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
                print(f"N={n:,} round {i}{' (warm-up)' if i == 0 else ''}: lean {wall:.2f} s (its own CPU "
                      f"{cpu / n * 1000:.2f} ms a job) | floor {floor_wall:.2f} s | {wall / floor_wall:.2f}×",
                      flush=True)
                if i:
                    ratios.append(wall / floor_wall)
                    cpus.append(cpu / n * 1000)
                    lean_walls.append(wall)
                    floor_walls.append(floor_wall)
            print(f"N={n:,}: lean {statistics.median(lean_walls):.2f} s vs floor "
                  f"{statistics.median(floor_walls):.2f} s, {statistics.median(ratios):.2f}× (median of the rounds' "
                  f"own ratios); its own CPU {statistics.median(cpus):.2f} ms a job", flush=True)


def _floor_wall(floor: Floor) -> float:
    sample = floor.run(floor.apply_argv())
    if sample.rc != 0:
        raise RuntimeError(f"the floor failed: {sample.tail()}")
    return sample.wall

if __name__ == "__main__":
    main()
