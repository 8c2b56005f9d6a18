"""Remote rows: the state and blobs on S3 (moto's server) and the Domino provider (our emulator), each behind a
TCP proxy on 127.0.0.1 that adds network latency (bench/latency_proxy.py).

    .venv/bin/python bench/remote.py s3 [--nodes 1000] [--rtt 0.030] [--runs 5]
    .venv/bin/python bench/remote.py domino [--nodes 200] [--rtt 0.050] [--runs 3]
    .venv/bin/python bench/remote.py domino-long [--rtt 0.050]   # 2 waves of 16 real 60 s jobs (~2.5 min)

- **S3**: a generated flow (bench/gen.py) whose state and blobs live in a moto bucket behind the proxy; applied
  once with no added latency (setup, untimed), then planned: the full plan (no receipt: it loads the graph from
  its cache, reads the state, checks every output), and the no-op plan (answered from its receipt,
  reconcile/noop_plan.py). Wall time and the HTTP requests each plan sent.
- **Domino**: the same flow shape on the Domino provider: the emulator's API behind the proxy (the jobs
  themselves run on this machine), blobs in moto (behind its own proxy, with the same latency while planning,
  none while applying, so the job's own transfers do not count against the apply). The first plan, the apply
  of every node (requests counted per node: Domino API and S3), and the no-op plan. From the apply's request
  counts and the poll schedule, the apply's own overhead per node for 60-second jobs (see `overhead_60s`).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, os.environ.get("FLOWS_BENCH_SRC") or str(BENCH.parent))

import gen  # noqa: E402
from latency_proxy import LatencyProxy  # noqa: E402
from runner import measure  # noqa: E402
from tools import flows_argv  # noqa: E402

REGION = "us-east-1"
BUCKET = "flows-bench"
OWNER, PROJECT = "flows-user", "demo"
API_KEY = "bench-" + uuid.uuid4().hex


def aws_env() -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": "AKIAFLOWSBENCH000001", "AWS_SECRET_ACCESS_KEY": "flows-bench-secret",
            "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Moto:
    """moto's S3 server as its own process on 127.0.0.1, with one versioned bucket."""

    def __init__(self) -> None:
        self.port = free_port()
        exe = Path(sys.executable).with_name("moto_server")
        self.proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(self.port)],
                                     env={**os.environ, **aws_env()}, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.05)
        import boto3
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=f"http://127.0.0.1:{self.port}", **{
            "aws_access_key_id": aws_env()["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": aws_env()["AWS_SECRET_ACCESS_KEY"]})
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})

    def cpu_seconds(self) -> float | None:
        """moto's own CPU time so far (user + system, every thread): the server shares this machine's cores with
        the command measured, where S3's servers are not on the client's machine. None off Linux."""
        return process_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def process_cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def s3_toml(state_url: str, blobs_url: str, project: str) -> str:
    return (f'[tool.flows.backend]\ntype = "s3"\nbucket = "{BUCKET}"\nkey = "projects/{project}/{{flow}}.json"\n'
            f'region = "{REGION}"\nendpoint_url = "{state_url}"\n\n'
            f'[tool.flows.blobs]\nurl = "s3://{BUCKET}/blobs/{project}/"\nregion = "{REGION}"\n'
            f'endpoint_url = "{blobs_url}"\n')


def flows_run(root: Path, args: list[str], env: dict[str, str], timeout: float = 3600) -> Any:
    exe, base_env = flows_argv()
    return measure([*exe, *args], root, {**base_env, **env}, timeout=timeout)


class Timed:
    def __init__(self, wall: float, cpu_s: float, rc: int, output: str) -> None:
        self.wall, self.cpu_s, self.rc, self.output = wall, cpu_s, rc, output

    def tail(self, n: int = 2) -> str:
        return " | ".join(x.strip() for x in self.output.splitlines()[-n:])


def flows_timed(root: Path, args: list[str], env: dict[str, str], timeout: float = 3600) -> Timed:
    """Wall time and CPU time (user + system, with the processes it waited for) of one flows command."""
    exe, base_env = flows_argv()
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen([*exe, *args], cwd=root, env={**base_env, **env}, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    return Timed(wall, usage.ru_utime + usage.ru_stime, proc.returncode, text)


def _provider_settings(root: Path) -> dict[str, float]:
    """The poll settings the Domino provider used (its defaults unless flows.toml sets them)."""
    import tomllib
    extra = tomllib.loads((root / "flows.toml").read_text()).get("tool", {}).get("flows", {}).get("provider", {})
    return {"poll_interval": float(extra.get("poll_interval", 1.0)),
            "max_poll_interval": float(extra.get("max_poll_interval", 30.0))}


def plan_args() -> list[str]:
    return ["plan", "flow.py", gen.FLOW_NAME, *gen.flows_input_args()]


def apply_args(parallelism: int) -> list[str]:
    return ["apply", "flow.py", gen.FLOW_NAME, *gen.flows_input_args(), "--auto-approve",
            "--parallelism", str(parallelism)]


def _series(root: Path, args: list[str], env: dict[str, str], runs: int, proxies: list[LatencyProxy],
            before: Callable[[], None] | None = None, log: Callable[[str], None] = print,
            label: str = "", server: Moto | None = None) -> dict[str, Any]:
    """Warm-up + `runs` runs; wall time, requests per run (summed over `proxies`), the load average, and the CPU
    time `server` (moto, on this machine) spent answering each run."""
    walls: list[float] = []
    cpus: list[float] = []
    server_cpus: list[float] = []
    requests: list[int] = []
    load: list[float] = []
    for i in range(runs + 1):
        if before:
            before()
        for p in proxies:
            p.reset_counts()
        load.append(os.getloadavg()[0])
        served = server.cpu_seconds() if server is not None else None
        s = flows_timed(root, args, env)
        if s.rc != 0:
            raise RuntimeError(f"{label}: exit {s.rc}: {s.tail(3)}")
        n = sum(p.counts()["requests"] for p in proxies)
        after = server.cpu_seconds() if server is not None else None
        server_cpu = after - served if after is not None and served is not None else None
        log(f"    {label} run {i}{' (warm-up)' if i == 0 else ''}: {s.wall:.3f} s (CPU {s.cpu_s:.3f} s), "
            f"{n} requests" + (f"; moto's CPU {server_cpu:.2f} s" if server_cpu is not None else ""))
        if i:
            walls.append(s.wall)
            cpus.append(s.cpu_s)
            requests.append(n)
            if server_cpu is not None:
                server_cpus.append(server_cpu)
    # CPU time (user + system) is what a loaded machine inflates least: with the requests x the round trip it
    # bounds what the command costs on an idle one.
    return {"median_wall_s": statistics.median(walls), "walls_s": [round(w, 4) for w in walls],
            "median_cpu_s": statistics.median(cpus), "cpu_s": [round(c, 4) for c in cpus],
            "median_server_cpu_s": statistics.median(server_cpus) if server_cpus else None,
            "server_cpu_s": [round(c, 3) for c in server_cpus],
            "requests": requests, "loadavg_1m": load, "last_output_tail": s.tail(2)}


# ------------------------------------------------------------------------------------------------- S3

def s3_row(work: Path, n: int = 1000, rtt: float = 0.030, runs: int = 5,
           log: Callable[[str], None] = print) -> dict[str, Any]:
    moto = Moto()
    # moto closes every connection (`Connection: close`); S3 keeps them open: no handshake charged (see README)
    proxy = LatencyProxy("127.0.0.1", moto.port, rtt=0.0, handshake=False).start()
    try:
        root = work / f"s3-n{n}"
        shutil.rmtree(root, ignore_errors=True)
        gen.write_flows(root, gen.build_dag(n))
        (root / "flows.toml").write_text(s3_toml(proxy.url, proxy.url, f"n{n}"))
        env = aws_env()
        log(f"  [s3, {n} nodes] apply (setup, no added latency) ...")
        s = flows_run(root, apply_args(2), env)
        if s.rc != 0:
            raise RuntimeError(f"s3 apply failed: {s.tail(3)}")
        proxy.rtt = rtt
        receipts = root / ".flows" / "plans"
        full = _series(root, plan_args(), env, runs, [proxy], before=lambda: shutil.rmtree(receipts, True),
                       log=log, label="full plan (no receipt)", server=moto)
        noop = _series(root, plan_args(), env, runs, [proxy], log=log, label="no-op plan (receipt)", server=moto)
        return {"nodes": n, "rtt_s": rtt, "full_plan": full, "noop_plan": noop}
    finally:
        proxy.stop()
        moto.stop()


# ---------------------------------------------------------------------------------------------- Domino

def domino_toml(blobs_url: str, project: str) -> str:
    return (f'[tool.flows.provider]\ntype = "domino"\n\n'
            f'[tool.flows.blobs]\nurl = "s3://{BUCKET}/blobs/{project}/"\nregion = "{REGION}"\n'
            f'endpoint_url = "{blobs_url}"\n')


def overhead_60s(per_node: dict[str, float], rtt: float, poll: float, max_poll: float,
                 cpu_per_node_s: float, job_s: float = 60.0) -> dict[str, Any]:
    """The apply's own time per node for a `job_s`-second job, from what the apply of short jobs measured:
    every request of the node that is not a status poll, one after the other, at `rtt` each (start, staging,
    the log, collecting the outputs: an upper bound, some overlap); the round trip of the poll that sees the job
    finished; the worst detection lag (the job ends just after a poll: one whole poll interval, which the job
    watcher sets to 2 % of the youngest job's age, between `poll` and `max_poll`); and the apply's CPU per node.
    Polls made while the job runs cost no time on its path: one list request per interval answers for every
    running job."""
    from providers.domino.watcher import AGE_SHARE

    interval = min(max_poll, max(poll, AGE_SHARE * job_s))
    serial = per_node["domino_requests"] - per_node["domino_polls"] + per_node["s3_requests_apply"]
    overhead = serial * rtt + rtt + interval + cpu_per_node_s
    return {"job_s": job_s, "poll_interval_at_end_s": interval, "detection_lag_s": interval,
            "list_requests_per_second": 1 / interval, "polls_per_job_second": 1 / interval,
            "critical_requests": serial, "cpu_per_node_s": cpu_per_node_s, "overhead_s": overhead,
            "share": overhead / job_s}


def domino_row(work: Path, n: int = 200, rtt: float = 0.050, runs: int = 3, parallelism: int = 16,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    from providers.domino.emulator import DominoEmulator
    from providers.domino.emulator_world import EmulatorConfig, demo_project

    root = work / f"domino-n{n}"
    shutil.rmtree(root, ignore_errors=True)
    gen.write_flows(root, gen.build_dag(n))
    flow = root / "flow.py"  # the emulator's project has this environment
    flow.write_text(flow.read_text().replace("Environment Py3.10", "Environment Py3.11"))
    moto = Moto()
    emu = DominoEmulator(EmulatorConfig(projects=[demo_project(root, OWNER, PROJECT)], api_key=API_KEY,
                                        work_dir=work / f"domino-emu-n{n}")).start()
    api = LatencyProxy("127.0.0.1", int(emu.url.rsplit(":", 1)[1]), rtt=rtt).start()
    s3 = LatencyProxy("127.0.0.1", moto.port, rtt=rtt, handshake=False).start()
    try:
        (root / "flows.toml").write_text(domino_toml(s3.url, f"domino{n}"))
        env = {**aws_env(), "DOMINO_API_HOST": api.url, "DOMINO_PROJECT_OWNER": OWNER,
               "DOMINO_PROJECT_NAME": PROJECT, "DOMINO_USER_API_KEY": API_KEY}
        first = _series(root, plan_args(), env, runs, [api, s3], log=log, label="first plan", server=moto)
        s3.rtt = 0.0  # the jobs' own transfers go through this proxy too: no latency, counted apart
        api.reset_counts()
        s3.reset_counts()
        log(f"  [domino, {n} nodes] apply (parallelism {parallelism}) ...")
        s = flows_timed(root, apply_args(parallelism), env)
        wall = s.wall
        if s.rc != 0:
            raise RuntimeError(f"domino apply failed: {s.tail(3)}")
        api_counts, s3_counts = api.counts(), s3.counts()
        jobs = len(emu.started_jobs)
        s3.rtt = rtt
        noop = _series(root, plan_args(), env, runs, [api, s3], log=log, label="no-op plan", server=moto)
        polls = len(emu.calls("GET", "/v4/jobs"))  # the watcher's list requests (and per-job GETs)
        logs = len(emu.calls("GET", "/v1/projects/"))
        job_own = sum(v for k, v in s3_counts["by_agent"].items() if k.lower().startswith("python-urllib"))
        per_node = {"domino_requests": api_counts["requests"] / jobs, "domino_polls": polls / jobs,
                    "domino_log_fetches": logs / jobs, "s3_requests_total": s3_counts["requests"] / jobs,
                    "s3_requests_apply": (s3_counts["requests"] - job_own) / jobs,
                    "s3_requests_job": job_own / jobs}
        extra = _provider_settings(root)
        overhead = overhead_60s(per_node, rtt, extra["poll_interval"], extra["max_poll_interval"],
                                cpu_per_node_s=s.cpu_s / jobs)
        return {"nodes": n, "rtt_s": rtt, "jobs": jobs, "parallelism": parallelism, "first_plan": first,
                "noop_plan": noop, "apply": {"wall_s": wall, "domino": api_counts, "s3": s3_counts,
                                             "per_node": per_node, "overhead_60s": overhead,
                                             "cpu_s": s.cpu_s, "loadavg_1m": os.getloadavg()[0]}}
    finally:
        api.stop()
        s3.stop()
        emu.stop()
        moto.stop()


def domino_long_row(work: Path, width: int = 16, waves: int = 2, job_s: float = 60.0, rtt: float = 0.050,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """The apply's own overhead measured with real `job_s`-second jobs (not computed): `waves` waves of `width`
    jobs (each job of a wave reads one job of the wave before), every job `sleep job_s` first, on the Domino
    provider behind the same proxies as `domino_row`. The jobs' own time on the critical path is waves x job_s;
    whatever the apply adds (starting, staging, polling and its lag, collecting outputs, the journal) is the
    rest of the wall time, per node on that path."""
    from providers.domino.emulator import DominoEmulator
    from providers.domino.emulator_world import EmulatorConfig, demo_project

    root = work / f"domino-long-{width}x{waves}"
    shutil.rmtree(root, ignore_errors=True)
    nodes = [gen.Node(f"w0_{i:02d}", (), i % gen.SOURCES, 0) for i in range(width)]
    for w in range(1, waves):
        nodes += [gen.Node(f"w{w}_{i:02d}", (f"w{w - 1}_{i:02d}",), None, w) for i in range(width)]
    gen.write_flows(root, nodes)
    flow = root / "flow.py"
    text = flow.read_text().replace("Environment Py3.10", "Environment Py3.11")
    flow.write_text(text.replace("'{ echo ", f"'sleep {job_s:g}; {{ echo "))
    moto = Moto()
    emu = DominoEmulator(EmulatorConfig(projects=[demo_project(root, OWNER, PROJECT)], api_key=API_KEY,
                                        work_dir=work / "domino-long-emu")).start()
    api = LatencyProxy("127.0.0.1", int(emu.url.rsplit(":", 1)[1]), rtt=rtt).start()
    s3 = LatencyProxy("127.0.0.1", moto.port, rtt=rtt, handshake=False).start()
    try:
        (root / "flows.toml").write_text(domino_toml(s3.url, "domino-long"))
        env = {**aws_env(), "DOMINO_API_HOST": api.url, "DOMINO_PROJECT_OWNER": OWNER,
               "DOMINO_PROJECT_NAME": PROJECT, "DOMINO_USER_API_KEY": API_KEY}
        log(f"  [domino, {width} x {waves} jobs of {job_s:g} s] apply ...")
        load = os.getloadavg()[0]
        began = time.time()
        s = flows_timed(root, apply_args(width), env)
        ended = time.time()
        if s.rc != 0:
            raise RuntimeError(f"domino long apply failed: {s.tail(3)}")
        # Domino's own times of each job (stageTime): submitted, running, completed; by node (its title)
        times: dict[tuple[int, int], tuple[float, float, float]] = {}
        for job in emu.jobs.values():
            m = re.search(r"w(\d+)_(\d+)", job.title or "")
            if m and job.run_start_ms and job.completed_ms:
                times[int(m[1]), int(m[2])] = (job.submitted_ms / 1e3, job.run_start_ms / 1e3, job.completed_ms / 1e3)
        if len(times) != width * waves:
            raise RuntimeError(f"domino long apply: {len(times)} jobs seen, {width * waves} expected")
        # The apply's own time per node: from a job's completion to the start request of the job that reads it
        # (noticing the end: the poll's lag; collecting its outputs; the journal; the next job's start and
        # staging), and from the last completion to the apply's exit (the same, then the state written).
        between = [times[w, i][0] - times[w - 1, i][2] for w in range(1, waves) for i in range(width)]
        tail = ended - max(t[2] for t in times.values())
        lead_in = min(t[0] for t in times.values()) - began
        job_own = [t[2] - t[1] - job_s for t in times.values()]  # the job's runtime: inputs in, outputs out
        per_node = statistics.mean(between + [tail])
        return {"width": width, "waves": waves, "job_s": job_s, "rtt_s": rtt, "jobs": len(times),
                "wall_s": s.wall, "cpu_s": s.cpu_s, "jobs_on_path_s": waves * job_s,
                "start_to_first_job_s": lead_in, "completion_to_next_start_s": between, "last_completion_to_exit_s": tail,
                "overhead_per_node_s": per_node, "share": per_node / job_s,
                "job_runtime_own_s": statistics.median(job_own),
                "queued_s": statistics.median(t[1] - t[0] for t in times.values()),
                "api_requests": api.counts()["requests"], "s3_requests": s3.counts()["requests"],
                "loadavg_1m": [load, os.getloadavg()[0]]}
    finally:
        api.stop()
        s3.stop()
        emu.stop()
        moto.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("row", choices=("s3", "domino", "domino-long"))
    ap.add_argument("--nodes", type=int)
    ap.add_argument("--rtt", type=float)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", type=Path)
    a = ap.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    work = a.work or Path(tempfile.mkdtemp(prefix="flows-remote-"))
    if a.row == "s3":
        res = s3_row(work, a.nodes or 1000, 0.030 if a.rtt is None else a.rtt, a.runs)
    elif a.row == "domino":
        res = domino_row(work, a.nodes or 200, 0.050 if a.rtt is None else a.rtt, a.runs)
    else:
        res = domino_long_row(work, rtt=0.050 if a.rtt is None else a.rtt)
    print(json.dumps(res, indent=1))
    if a.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
