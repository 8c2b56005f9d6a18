"""Where every core-second of the local-apply row goes: `flows apply` and the floor (`xargs -P2` waves), each
sampled machine-wide by `perf record -a` (the CPU clock, every process, the kernel and the idle cores), and
each sample given to the tool's own process (flows: its main thread and its other threads), its job starter (the
launcher / xargs), the jobs (everything they start), the idle cores, or the rest of the machine.

    .venv/bin/python bench/cpu_account.py --sizes 1000 --runs 2

Needs Linux `perf` and the right to sample every process (root, or `kernel.perf_event_paranoid` ≤ 0); says
so and exits 2 otherwise. Not part of `make bench` (which needs neither). Prints one table per size, the
median of `runs` alternating runs per tool (after a warm-up round), and what 1.5× the floor's wall would leave
flows's own process; writes every run's figures to bench/results-account.json (`--out`).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent

HZ = 1000
_FORK = re.compile(r"PERF_RECORD_FORK\((\d+):\d+\):\((\d+):\d+\)")
_SAMPLE = re.compile(r"^\s*.+?\s+(\d+)/(\d+)\s+([\d.]+):\s*$")  # command pid/tid time:
CATEGORIES = ("own: main thread", "own: other threads", "starter", "jobs", "idle", "idle before the first job",
              "idle among the jobs", "idle after the last job", "rest of the machine")


def perf_problem() -> str | None:
    if shutil.which("perf") is None:
        return "needs Linux perf (not found on PATH)"
    try:
        paranoid = int(Path("/proc/sys/kernel/perf_event_paranoid").read_text())
    except (OSError, ValueError):
        paranoid = 2
    if os.geteuid() != 0 and paranoid > 0:
        return f"needs root or kernel.perf_event_paranoid <= 0 to sample every process (it is {paranoid})"
    return None


def sampled(cwd: Path, env: dict[str, str], argv: list[str], work: Path) -> tuple[float, Counter[str]]:
    """Run argv under `perf record -a`; (wall seconds, core-seconds per category)."""
    data, pid_file = work / "perf.data", work / "pid"
    # The shell writes its pid and becomes the tool (exec): the tool's process is the one with that pid.
    shell = 'echo $$ > "$0"; exec "$@"'
    subprocess.run(["perf", "record", "-q", "-a", "-e", "cpu-clock", "-F", str(HZ), "-o", str(data), "--",
                    "sh", "-c", shell, str(pid_file), *argv], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    text = subprocess.run(["perf", "script", "-i", str(data), "--show-task-events", "-F", "comm,pid,tid,time"],
                          capture_output=True, text=True, check=True).stdout
    return account(text, int(pid_file.read_text()), HZ)


def account(text: str, root: int, hz: int) -> tuple[float, Counter[str]]:
    """(first to last sample in seconds, core-seconds per category) of `perf script --show-task-events -F
    comm,pid,tid,time` output, `root` being the measured tool's pid and `hz` the sampling rate."""
    parent: dict[int, int] = {}
    samples: list[tuple[int, int, float]] = []  # (pid, tid, time)
    for line in text.splitlines():
        if "PERF_RECORD_" in line:
            m = _FORK.search(line)
            if m and m.group(1) != m.group(2):  # (a new thread forks with its process's own pid)
                parent[int(m.group(1))] = int(m.group(2))
            continue
        m = _SAMPLE.match(line)
        if m:
            samples.append((int(m.group(1)), int(m.group(2)), float(m.group(3))))
    top: dict[int, int | None] = {}  # pid -> the root's child it descends from (None: not the root's)

    def under_root(pid: int) -> int | None:
        if pid not in top:
            chain: list[int] = []
            p = pid
            while p in parent and p != root and len(chain) < 64:
                chain.append(p)
                p = parent[p]
            top[pid] = chain[-1] if p == root and chain else None
        return top[pid]

    # The run: from the tool's first sample to the last of the tool or anything it started.
    ours = [at for pid, _, at in samples if pid == root or (pid != 0 and under_root(pid) is not None)]
    if not ours:
        return 0.0, Counter()
    start, end = min(ours), max(ours)
    jobs_at = [at for pid, _, at in samples if pid not in (0, root) and under_root(pid) not in (None, pid)]
    first_job, last_job = (min(jobs_at), max(jobs_at)) if jobs_at else (end, end)
    counts: Counter[str] = Counter()
    for pid, tid, at in samples:
        if not start <= at <= end:
            continue  # (perf's own start and end)
        if pid == 0:
            counts["idle"] += 1
            counts["idle before the first job" if at < first_job else
                   "idle after the last job" if at > last_job else "idle among the jobs"] += 1
        elif pid == root:
            counts["own: main thread" if tid == pid else "own: other threads"] += 1
        elif (child := under_root(pid)) is not None:
            # The root's child is the starter (the launcher, an xargs); what it starts, and theirs, are the jobs.
            counts["jobs" if pid != child else "starter"] += 1
        else:
            counts["rest of the machine"] += 1
    seconds = Counter({k: v / hz for k, v in counts.items()})
    return end - start, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=BENCH / "results-account.json", help="every run's figures")
    a = ap.parse_args()
    why = perf_problem()
    if why:
        print(f"cpu_account: {why}", file=sys.stderr)
        sys.exit(2)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.path.insert(0, str(BENCH))
    import gen
    from tools import Floor, Flows, Tool

    results: dict[str, object] = {"hz": HZ, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="flows-account-") as tmp:
        for n in (int(s) for s in a.sizes.split(",")):
            projects = gen.generate(n, Path(tmp) / f"n{n}", None)
            tools: list[Tool] = [Flows(projects), Floor(projects)]
            walls: dict[str, list[float]] = defaultdict(list)
            parts: dict[str, list[Counter[str]]] = defaultdict(list)
            for i in range(a.runs + 1):  # a warm-up round, then `runs`, the order alternating
                for t in tools if i % 2 == 0 else tools[::-1]:
                    t.reset()
                    wall, got = sampled(t.cwd, t.env, t.apply_argv() or [], Path(tmp))
                    if i:
                        walls[t.name].append(wall)
                        parts[t.name].append(got)
            print(f"N={n:,}: core-seconds (perf -a, {HZ} Hz, median of {a.runs}); the wall is from the tool's first "
                  "sample to the last of the tool or anything it started")
            print(f"  {'':26}" + "".join(f"{t.name:>10}" for t in tools))
            med = {t.name: {c: statistics.median(p[c] for p in parts[t.name]) for c in CATEGORIES} for t in tools}
            for c in CATEGORIES:
                print(f"  {c:26}" + "".join(f"{med[t.name][c]:10.2f}" for t in tools))
            results[str(n)] = {t.name: {"walls_s": [round(w, 3) for w in walls[t.name]],
                                        "core_s": [{c: round(p[c], 3) for c in CATEGORIES} for p in parts[t.name]]}
                               for t in tools}
            median_wall = {t.name: statistics.median(walls[t.name]) for t in tools}
            print(f"  {'wall (s)':26}" + "".join(f"{median_wall[t.name]:10.2f}" for t in tools))
            ratios = [fw / lw for fw, lw in zip(walls["flows"], walls["floor"])]  # (each round's own pair)
            f, fl = med["flows"], med["floor"]
            # At 1.5x the floor's wall the machine's cores give `cores x 1.5 x wall` core-seconds; the jobs, the
            # starter and the rest of the machine take what they take now; the remainder is what flows's own
            # process may use, the idle time of its serial start and end included (a core then waits for it).
            cores = os.cpu_count() or 2
            budget = cores * 1.5 * median_wall["floor"] - f["jobs"] - f["starter"] - f["rest of the machine"]
            own = f["own: main thread"] + f["own: other threads"]
            print(f"  flows/floor {median_wall['flows'] / median_wall['floor']:.2f}× (rounds: "
                  f"{', '.join(f'{r:.2f}' for r in ratios)}); at 1.5× the floor, {cores} cores leave flows's own "
                  f"process and the idle cores {budget:.2f} core-s; they take {own + f['idle']:.2f} "
                  f"(own {own:.2f}, idle {f['idle']:.2f}; the floor's idle {fl['idle']:.2f})", flush=True)
    a.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
