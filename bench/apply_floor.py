"""The local-apply rows of issue 18 alone: `flows apply` vs the floor (`xargs -P2 bash -c` waves) and a bare
`sh -c` per job, in the same run, order rotating every round; plus a no-op plan's peak RSS at the same size.

    .venv/bin/python bench/apply_floor.py --sizes 1000 --runs 5          # minutes, not the hour of `make bench`
    .venv/bin/python bench/apply_floor.py --sizes 10000 --runs 1 --plan  # the 10,000-node peak memory

`make bench` (bench/compare.py) prints the same rows among all the others. Writes bench/results-apply.json
(every sample, the load average before and after each size).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

import gen  # noqa: E402
from scenarios import run_series  # noqa: E402
from runner import Series  # noqa: E402
from tools import Floor, FloorSh, Flows  # noqa: E402

MIB_MB = 1.048576


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--plan", action="store_true", help="also a no-op plan's peak RSS after the applies")
    ap.add_argument("--out", type=Path, default=BENCH / "results-apply.json")
    a = ap.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # as compare.py: every tool with its bytecode cache
    results = {}
    with tempfile.TemporaryDirectory(prefix="flows-apply-") as tmp:
        for n in (int(s) for s in a.sizes.split(",")):
            projects = gen.generate(n, Path(tmp) / f"n{n}", None)
            tools = [Flows(projects), Floor(projects), FloorSh(projects)]
            before = os.getloadavg()
            row = run_series(tools, lambda t: t.apply_argv(), a.runs, {}, prepare=lambda t: t.reset())
            plan = run_series(tools[:1], lambda t: t.plan_argv(), max(1, min(a.runs, 3)), {})["flows"] \
                if a.plan else None
            after = os.getloadavg()
            f, fl, sh = row["flows"], row["floor"], row["floor_sh"]
            res = {"loadavg_before": before, "loadavg_after": after,
                   **{name: s.to_json() for name, s in row.items()}}
            if plan is not None:
                res["flows_noop_plan"] = plan.to_json()
            results[str(n)] = res
            if f.ok and fl.ok:
                paired = paired_ratios(f, fl)
                res["flows_floor_paired"] = paired
                print(f"N={n:,}: flows/floor round by round (each round's own runs: the machine's speed moves between "
                      f"rounds) median {statistics.median(paired):.2f}× ({min(paired):.2f}–{max(paired):.2f}×)")
            if f.ok and fl.ok and sh.ok:
                print(f"N={n:,}: flows apply {f.median_wall():.2f} s · {f.median_rss() * MIB_MB:.0f} MB peak RSS | "
                      f"floor {fl.median_wall():.2f} s | sh -c {sh.median_wall():.2f} s | "
                      f"flows/floor {f.median_wall() / fl.median_wall():.2f}× | "
                      f"flows/sh -c {f.median_wall() / sh.median_wall():.2f}× | "
                      f"load {before[0]:.1f} → {after[0]:.1f}", flush=True)
            else:
                print(f"N={n:,}: " + "; ".join(f"{k}: {s.skipped}" for k, s in row.items() if not s.ok))
            if (split := f.median_phases()) is not None and fl.ok:
                print(f"N={n:,}: flows apply split by its run timeline: start-up {split['start']:.2f} s, run "
                      f"{split['run']:.2f} s ({split['run'] / fl.median_wall():.2f}× the floor alone), tail "
                      f"{split['tail']:.2f} s", flush=True)
            if plan is not None and plan.ok:
                print(f"N={n:,}: no-op plan {plan.median_wall():.2f} s · {plan.median_rss() * MIB_MB:.0f} MB peak RSS")
    # (the sizes not run this time keep their samples: other rounds' figures cite them)
    kept = json.loads(a.out.read_text()) if a.out.exists() else {}
    a.out.write_text(json.dumps({**kept, **results}, indent=1) + "\n")
    print(f"wrote {a.out}")


def paired_ratios(a: Series, b: Series) -> list[float]:
    """a/b for each round's own pair of runs (run_series runs every tool once per round, in rotating order)."""
    return [round(x.wall / y.wall, 4) for x, y in zip(a.samples, b.samples)]


if __name__ == "__main__":
    main()
