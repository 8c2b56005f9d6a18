"""`make bench`: flows vs DVC vs Snakemake (and the xargs floor) on the same synthetic DAGs.

    .venv/bin/python bench/compare.py                      # N = 100, 1,000, 10,000; 5 runs each
    .venv/bin/python bench/compare.py --sizes 100 --runs 3 # quick look (a couple of minutes)

Peers live in bench/.venv (created here from PyPI when missing), apart from the project's venv.
Prints one table and writes bench/results.json. See bench/README.md for what each row means.
"""
from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent


def _snapshot_arg() -> None:
    """`--snapshot`: measure HEAD as committed (a `git archive` copy), not the shared, moving work tree."""
    if "--snapshot" not in sys.argv:
        return
    sys.argv.remove("--snapshot")
    dest = Path(tempfile.mkdtemp(prefix="flows-src-"))
    ref = os.environ.get("FLOWS_BENCH_REF", "HEAD")  # e.g. the commit an earlier, merged run measured
    head = subprocess.run(["git", "-C", str(BENCH.parent), "rev-parse", ref], capture_output=True, text=True,
                          check=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(BENCH.parent), "archive", head], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    atexit.register(shutil.rmtree, dest, True)
    os.environ["FLOWS_BENCH_SRC"] = str(dest)
    os.environ["FLOWS_BENCH_COMMIT"] = head


_snapshot_arg()
sys.path.insert(0, os.environ.get("FLOWS_BENCH_SRC") or str(BENCH.parent))  # reconcile, state: in-process rows

import extras  # noqa: E402
import gen  # noqa: E402
import report  # noqa: E402
from runner import RSS_SOURCE, Series  # noqa: E402
from scenarios import run_size  # noqa: E402
from tools import PEER_BIN, all_tools  # noqa: E402

PEER_PACKAGES = ("dvc", "snakemake", "pyinstrument")


def ensure_peer_venv() -> None:
    """bench/.venv with the peers, separate from the project's venv (their pins must not meet ours)."""
    if all((PEER_BIN / exe).exists() for exe in ("dvc", "snakemake")):
        return
    print("creating bench/.venv with", ", ".join(PEER_PACKAGES), "from PyPI ...", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(BENCH / ".venv")], check=True)
    subprocess.run([str(PEER_BIN / "python"), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def versions() -> dict[str, str]:
    out = {}
    for name, argv in (("dvc", [str(PEER_BIN / "dvc"), "--version"]),
                       ("snakemake", [str(PEER_BIN / "snakemake"), "--version"])):
        try:
            out[name] = subprocess.run(argv, capture_output=True, text=True, env=gen.dvc_env()).stdout.strip()
        except OSError as e:
            out[name] = f"unavailable ({e})"
    try:
        head = subprocess.run(["git", "-C", str(BENCH.parent), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
    except OSError:
        head = "?"
    snap = os.environ.get("FLOWS_BENCH_COMMIT")
    out["flows"] = f"{snap[:7]} (snapshot)" if snap else f"work tree at {head}"
    return out


def series_json(x: Any) -> Any:
    if isinstance(x, Series):
        return x.to_json()
    if isinstance(x, dict):
        return {str(k): series_json(v) for k, v in x.items()}
    if isinstance(x, list):
        return [series_json(v) for v in x]
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,1000,10000", help="comma-separated node counts")
    ap.add_argument("--runs", type=int, default=5, help="measured runs per cell (after one warm-up)")
    ap.add_argument("--no-hash", action="store_true", help="skip the 1 GiB hashing rows")
    ap.add_argument("--work", type=Path, help="keep the generated projects here (default: a temp dir, removed)")
    ap.add_argument("--out", type=Path, default=BENCH / "results.json")
    ap.add_argument("--snapshot", action="store_true", help="measure HEAD as committed, not the work tree")
    ap.add_argument("--apply-runs", type=int, help="measured runs of the full-apply row (default: --runs); "
                    "flows needs minutes per apply at N=10,000")
    ap.add_argument("--merge", type=Path, help="start from this earlier results.json: keep its sizes and rows "
                    "that this run does not measure")
    ap.add_argument("--no-remote", action="store_true", help="skip the S3 and Domino rows (moto, the emulator, "
                    "the latency proxy)")
    ap.add_argument("--only-remote", action="store_true", help="only the S3 and Domino rows (with --merge: "
                    "added to an earlier run's)")
    ap.add_argument("--s3-nodes", type=int, default=1000, help="nodes of the S3 row's flow")
    ap.add_argument("--domino-nodes", type=int, default=200, help="nodes of the Domino row's flow")
    ap.add_argument("--domino-job-seconds", type=float, default=60.0,
                    help="the Domino overhead row's job length (2 waves of 16 real jobs; 0 skips it)")
    ap.add_argument("--report", type=Path, help="only print the table of an existing results.json")
    ap.add_argument("--markdown", action="store_true", help="with --report: as a markdown table")
    a = ap.parse_args()
    # Read now: the partial results saved along the way go to --out, which may be the --merge file itself.
    base = json.loads(a.merge.read_text()) if a.merge else None

    def kept(r: dict[str, Any]) -> dict[str, Any]:
        """`r` over the --merge file's rows (what is saved)."""
        return merged(base, r) if base is not None else r

    sizes = [int(s) for s in a.sizes.replace("_", "").split(",") if s.strip()]
    if a.report:
        old = json.loads(a.report.read_text())
        if a.markdown:
            print(report.markdown(old))
        else:
            report.print_table(report.build_table(old, *report.revive(old)))
        return
    ensure_peer_venv()
    # Every tool runs as its users run it: with Python's bytecode cache. pip byte-compiled the peers at
    # install; flows is an editable install, so PYTHONDONTWRITEBYTECODE=1 (set on some machines) would
    # make it recompile its own sources on every run. The warm-up run writes the cache.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

    tmp = tempfile.TemporaryDirectory(prefix="flows-bench-") if a.work is None else None
    work = Path(tmp.name) if tmp else a.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    res: dict[str, Any] = {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                           "machine": machine(), "versions": versions(), "runs": a.runs, "sizes": {},
                           # other work on the machine skews figures: recorded so a reader can judge
                           "loadavg_start": os.getloadavg(), "rss_source": RSS_SOURCE}
    per_size: dict[int, dict[str, dict[str, Series]]] = {}
    no_receipt: dict[str, Series] = {}
    carry: dict[str, dict[str, str]] = {}
    if a.only_remote:
        sizes = []
    try:
        for n in sizes:
            print(f"N = {n:,}: generating ...", flush=True)
            projects = gen.generate(n, work / f"n{n}", str(PEER_BIN / "dvc") if (PEER_BIN / "dvc").exists() else None)
            tools_n = all_tools(projects)
            per_size[n] = run_size(tools_n, projects, a.runs, carry, log=lambda m: print(m, flush=True),
                                   apply_runs=a.apply_runs)
            res["sizes"][str(n)] = series_json(per_size[n])
            if per_size[n].get("noop_plan", {}).get("flows") and per_size[n]["noop_plan"]["flows"].ok:
                print(f"  [{n}] no-op plan without its receipt (graph cache only) ...", flush=True)
                no_receipt[str(n)] = extras.plan_without_receipt(tools_n[0], a.runs)
                res.setdefault("extras", {})["plan_without_receipt"] = series_json(no_receipt)
            # a real state written by flows apply at this size, for the state-load row
            real = projects.flows / ".flows"
            res.setdefault("_real_state", None)
            found = sorted(real.rglob(f"{gen.FLOW_NAME}.json")) if real.exists() else []
            if found:
                res["_real_state"] = str(found[0])
            save(a.out, kept(res))

        ex: dict[str, Any] = {"plan_without_receipt": no_receipt} if no_receipt else {}
        print("CLI start-up ...", flush=True)
        ex["startup"] = extras.startup(max(a.runs, 5), work)
        if not a.no_remote:  # S3 and Domino behind the latency proxy (bench/remote.py)
            import remote
            log = lambda m: print(m, flush=True)  # noqa: E731
            print(f"S3 state and blobs, {a.s3_nodes:,} nodes, +30 ms round trip ...", flush=True)
            ex["remote_s3"] = remote.s3_row(work, a.s3_nodes, 0.030, max(a.runs, 3), log=log)
            print(f"Domino provider, {a.domino_nodes:,} nodes, +50 ms round trip ...", flush=True)
            ex["remote_domino"] = remote.domino_row(work, a.domino_nodes, 0.050, max(a.runs, 3), log=log)
            if a.domino_job_seconds > 0:
                print(f"Domino provider, 2 waves of 16 jobs of {a.domino_job_seconds:g} s, +50 ms round trip ...",
                      flush=True)
                ex["remote_domino_long"] = remote.domino_long_row(work, job_s=a.domino_job_seconds, log=log)
            res["extras"] = series_json(ex)
            save(a.out, kept(res))
        if a.only_remote:
            res["extras"] = series_json(ex)
            res["elapsed_s"] = round(time.time() - started, 1)
            res["loadavg_end"] = os.getloadavg()
            res = kept(res)
            save(a.out, res)
            report.print_table(report.build_table(res, *report.revive(res)))
            return
        print("state load (10,000 nodes) ...", flush=True)
        real_state = res.pop("_real_state", None)
        ex["state_load"] = extras.state_load(10_000, max(a.runs, 5), work,
                                             Path(real_state) if real_state and "10000" in real_state else None)
        print("journal append cost ...", flush=True)
        ex["journal"] = extras.journal_cost(work)
        if not a.no_hash:
            big = work / "big" / "big.bin"
            print("hashing: writing a 1 GiB file ...", flush=True)
            extras.make_big_file(big)
            ex["hash"] = extras.hash_throughput(big, a.runs)
            print("hashing: plans over the 1 GiB input ...", flush=True)
            ex["statcache"] = extras.stat_cache_plans(work, big, a.runs)
        res["extras"] = series_json(ex)
        res["elapsed_s"] = round(time.time() - started, 1)
        res["loadavg_end"] = os.getloadavg()
        res = kept(res)
        save(a.out, res)
        report.print_table(report.build_table(res, *report.revive(res)))
        print(f"wrote {a.out}  ({res['elapsed_s']:.0f} s)")
    finally:
        if tmp:
            tmp.cleanup()


def merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The new run's rows over an earlier run's; what came from where is kept in `runs_merged`."""
    out = dict(new)
    out["sizes"] = {**old.get("sizes", {}), **new.get("sizes", {})}
    out["extras"] = {**old.get("extras", {}), **new.get("extras", {})}
    out["runs_merged"] = [{k: r.get(k) for k in ("date", "versions", "runs", "loadavg_start", "loadavg_end",
                                                  "elapsed_s")} | {"sizes": sorted(r.get("sizes", {}), key=int)}
                          for r in (old, new)]
    return out


def save(path: Path, res: dict[str, Any]) -> None:
    data = {k: v for k, v in res.items() if not k.startswith("_")}
    path.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
