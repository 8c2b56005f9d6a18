"""One rich table of every row, with the ratios and the issue's targets, and results.json."""
from __future__ import annotations

import statistics
from typing import Any

from rich.console import Console
from rich.table import Table

from runner import Series
from scenarios import SCENARIOS, TITLES

PEERS = ("dvc", "snakemake", "floor")


MIB_MB = 1.048576  # MiB -> MB
RUNS = 5  # the run's --runs; a cell with another number of samples says so


def fmt_cell(s: Series | None) -> str:
    if s is None:
        return ""
    if not s.ok:
        return f"[dim]{s.skipped}[/dim]" if s.skipped != "n/a" else "[dim]n/a[/dim]"
    text = f"{s.median_wall():.3f} s · {s.median_rss():.0f} MiB"
    if len(s.samples) != RUNS:
        text += f" [yellow](n={len(s.samples)})[/yellow]"
    if s.check:
        colour = "red" if s.check.startswith(("NOT", "MISSES", "could")) else "dim"
        text += f"\n[{colour}]{s.check}[/{colour}]"
    return text


def ratio(a: Series | None, b: Series | None) -> float | None:
    if a is None or b is None or not a.ok or not b.ok:
        return None
    return a.median_wall() / b.median_wall()  # type: ignore[operator]


def fmt_ratio(r: float | None) -> str:
    return "" if r is None else f"{r:.2f}×"


def verdict(ok: bool | None) -> str:
    return "[dim]?[/dim]" if ok is None else ("[green]pass[/green]" if ok else "[red]miss[/red]")


def targets_for(sc: str, n: int, row: dict[str, Series]) -> tuple[str, bool | None]:
    """The issue's target for this row (text, pass/miss/None when not measurable)."""
    f = row.get("flows")
    if sc == "noop_plan" and n == 1000:
        rs = [ratio(f, row.get(p)) for p in ("dvc", "snakemake")]
        ok = None if None in rs else all(r <= 0.1 for r in rs)  # type: ignore[operator]
        return "≥10× faster than dvc and snakemake", ok
    if sc == "noop_plan" and n == 10000:
        return "≤ 1.0 s", None if not (f and f.ok) else f.median_wall() <= 1.0  # type: ignore[operator]
    if sc == "apply" and n == 1000:
        r_floor, r_snake = ratio(f, row.get("floor")), ratio(f, row.get("snakemake"))
        ok = None if r_floor is None else (r_floor <= 1.5 and (r_snake is None or r_snake < 1))
        return "≤1.5× floor, < snakemake", ok
    if sc == "apply" and n == 10000:  # issue 18: the peak memory of a 10,000-node apply
        return "peak RSS ≤ 200 MB", None if not (f and f.ok) else f.median_rss() * MIB_MB <= 200  # type: ignore[operator]
    return "", None


def per_node_overhead(row: dict[str, Series], n: int) -> float | None:
    """(flows apply - floor) / N in ms: what scheduling, hashing and journaling cost per node."""
    f, fl = row.get("flows"), row.get("floor")
    if not (f and fl and f.ok and fl.ok):
        return None
    return (f.median_wall() - fl.median_wall()) / n * 1000  # type: ignore[operator]


def vs_python(row: dict[str, Series], extras: dict[str, Any], n: int) -> str:
    """The no-op plan next to `python -c pass` of the same run (how close the plan gets to Python itself), and
    the same plan with its receipt turned off (graph cache only)."""
    f, py = row.get("flows"), (extras.get("startup") or {}).get("python")
    if not (f and f.ok and py and py.ok):
        return ""
    text = (f"python -c pass {py.median_wall():.3f} s; the plan is {f.median_wall() / py.median_wall():.1f}× that "  # type: ignore[operator]
            f"(+{(f.median_wall() - py.median_wall()) * 1000:.0f} ms)")  # type: ignore[operator]
    off = (extras.get("plan_without_receipt") or {}).get(str(n))
    if off is not None and off.ok:
        text += f"\nwithout the receipt (graph cache only): {fmt_cell(off)}"
    return text


def remote_rows(ex: dict[str, Any]) -> list[tuple[str, list[str], str, bool | None]]:
    """S3 and Domino behind the latency proxy (bench/remote.py)."""
    rows: list[tuple[str, list[str], str, bool | None]] = []
    s3 = ex.get("remote_s3")
    if s3:
        full, noop = s3["full_plan"], s3["noop_plan"]
        cell = (f"no-op plan (receipt): {_timing(noop)}, {_median(noop['requests'])} requests\n"
                f"full plan (no receipt): {_timing(full)}, {_median(full['requests'])} requests")
        rows.append((f"no-op plan, S3 state + blobs, +{s3['rtt_s'] * 1000:.0f} ms RTT ({s3['nodes']:,} nodes)",
                     [cell, "", "", "", "", "", ""], "≤ 1.5 s", noop["median_wall_s"] <= 1.5))
    dm = ex.get("remote_domino")
    if dm:
        first, noop, ap = dm["first_plan"], dm["noop_plan"], dm["apply"]
        plan_s = max(first["median_wall_s"], noop["median_wall_s"])
        cell = (f"first plan {_timing(first)} ({_median(first['requests'])} requests); "
                f"no-op plan {_timing(noop)} ({_median(noop['requests'])} requests)")
        rows.append((f"plan, Domino provider, +{dm['rtt_s'] * 1000:.0f} ms RTT ({dm['nodes']:,} nodes)",
                     [cell, "", "", "", "", "", ""], "≤ 2 s", plan_s <= 2))
        o = ap.get("overhead_60s")
        pn = ap["per_node"]
        cell = (f"apply of {dm['jobs']} jobs: {ap['wall_s']:.1f} s; per node {pn['domino_requests']:.1f} Domino "
                f"requests ({pn['domino_polls']:.2f} of them polls), {pn['s3_requests_total']:.1f} S3 (with the job's own)")
        if o:
            cell += (f"\n60 s jobs: {o['overhead_s']:.2f} s per node ({o['share'] * 100:.1f} %): "
                     f"{o['critical_requests']:.1f} requests on its path, worst detection lag {o['detection_lag_s']:.2f} s, "
                     f"CPU {o['cpu_per_node_s'] * 1000:.0f} ms; status: one list request per "
                     f"{o['poll_interval_at_end_s']:.1f} s for all running jobs")
        measured = ex.get("remote_domino_long")
        # With real 60-second jobs measured (the next row), that row is the verdict; this one explains it.
        rows.append(("  apply's own overhead per node, Domino" + (" (computed; the measured row decides)" if measured else ""),
                     [cell, "", "", "", "", "", ""], "" if measured else "≤ 5 % of a 60 s job",
                     None if not o else o["share"] <= 0.05))
    lg = ex.get("remote_domino_long")
    if lg:
        gaps = lg["completion_to_next_start_s"]
        cell = (f"{lg['waves']} waves of {lg['width']} real {lg['job_s']:g} s jobs: {lg['wall_s']:.1f} s wall, "
                f"{lg['jobs_on_path_s']:g} s of it the jobs on the path; per node {lg['overhead_per_node_s']:.2f} s "
                f"({lg['share'] * 100:.1f} %): a job's end to its reader's start {statistics.median(gaps):.2f} s "
                f"(median), the last end to exit {lg['last_completion_to_exit_s']:.2f} s; before the first job "
                f"(start-up, plan, lock) {lg['start_to_first_job_s']:.2f} s; {lg['api_requests']} Domino requests")
        rows.append((f"  apply's own overhead per node, Domino, measured (+{lg['rtt_s'] * 1000:.0f} ms RTT)",
                     [cell, "", "", "", "", "", ""], f"≤ 5 % of a {lg['job_s']:g} s job", lg["share"] <= 0.05))
    return rows


def _timing(series: dict[str, Any]) -> str:
    text = f"{series['median_wall_s']:.3f} s"
    if series.get("median_cpu_s") is not None:
        text += f" (CPU {series['median_cpu_s']:.3f} s"
        if series.get("median_server_cpu_s") is not None:  # moto answering it, on the same cores
            text += f"; moto's {series['median_server_cpu_s']:.2f} s"
        text += ")"
    load = series.get("loadavg_1m") or []
    if load:
        text += f" at load {statistics.median(load):.1f}"
    return text


def _median(xs: list[int]) -> int:
    return int(statistics.median(xs)) if xs else 0


def revive(res: dict[str, Any]) -> tuple[dict[int, dict[str, dict[str, Series]]], dict[str, Any]]:
    """results.json -> the Series the table is built from."""
    sizes = {int(n): {sc: {tool: Series.from_json(v) for tool, v in row.items()} for sc, row in scen.items()}
             for n, scen in res.get("sizes", {}).items()}
    ex = dict(res.get("extras", {}))
    if "startup" in ex:
        ex["startup"] = {k: Series.from_json(v) for k, v in ex["startup"].items()}
    if "plan_without_receipt" in ex:
        ex["plan_without_receipt"] = {k: Series.from_json(v) for k, v in ex["plan_without_receipt"].items()}
    if "statcache" in ex:
        sc = dict(ex["statcache"])
        for k in ("flows_first_plan", "flows_second_plan"):
            sc[k] = Series.from_json(sc[k])
        sc["dvc"] = {k: Series.from_json(v) for k, v in sc.get("dvc", {}).items()}
        ex["statcache"] = sc
    return sizes, ex


HEAD = ("row", "N", "flows", "dvc", "snakemake", "floor", "flows/dvc", "flows/snakemake", "flows/floor", "target",
        "result")


def table_rows(sizes: dict[int, dict[str, dict[str, Series]]], extras: dict[str, Any]) -> list[list[str]]:
    """Every row of the report, one cell per column of HEAD (rich markup): the terminal table and the markdown one."""
    rows: list[list[str]] = []

    def add(label: str, n: int | None, cells: list[str], target: str = "", ok: bool | None = None) -> None:
        rows.append([label, "" if n is None else f"{n:,}", *cells, target, verdict(ok) if target else ""])

    for n, scen in sizes.items():
        for sc in SCENARIOS:
            row = scen.get(sc)
            if not row:
                continue
            target, ok = targets_for(sc, n, row)
            add(TITLES[sc], n, [*(fmt_cell(row.get(k)) for k in ("flows", *PEERS)),
                                *(fmt_ratio(ratio(row.get("flows"), row.get(p))) for p in PEERS)], target, ok)
            if sc == "apply":
                ms = per_node_overhead(row, n)
                if ms is not None:
                    add("  apply overhead per node vs floor", n, [f"{ms:.1f} ms", "", "", "", "", "", ""],
                        "well under 10 ms" if n == 1000 else "", ms < 10)
                if (flows := row.get("flows")) is not None and (split := flows.median_phases()) is not None:
                    floor = row.get("floor")
                    run_ratio = split["run"] / floor.median_wall() if floor is not None and floor.ok else None  # type: ignore[operator]
                    add("  flows apply split: start-up · run · tail; run vs floor", n,
                        [f"{split['start']:.2f} · {split['run']:.2f} · {split['tail']:.2f} s", "", "", "", "", "",
                         fmt_ratio(run_ratio)])
                if (sh := row.get("floor_sh")) is not None and sh.ok:
                    add("  bare `sh -c` per job (xargs -P2 sh -c waves)", n,
                        ["", "", "", fmt_cell(sh), "", "", fmt_ratio(ratio(row.get("flows"), sh))])
            if sc == "noop_plan" and (cell := vs_python(row, extras, n)):
                add("  no-op plan vs Python's start-up", n, [cell, "", "", "", "", "", ""])
    for label, cells, target, ok in extras_rows(extras):
        add(label, None, cells, target, ok)
    return rows


def build_table(res: dict[str, Any], sizes: dict[int, dict[str, dict[str, Series]]], extras: dict[str, Any]) -> Table:
    global RUNS
    RUNS = res["runs"]
    t = Table(title=f"flows vs DVC vs Snakemake — median of {res['runs']} runs after a warm-up "
                    f"(wall · peak RSS) — {res['machine']}", show_lines=True)
    for col in HEAD:
        t.add_column("" if col == "result" else col, overflow="fold")
    for cells in table_rows(sizes, extras):
        t.add_row(*cells)
    return t


def extras_rows(ex: dict[str, Any]) -> list[tuple[str, list[str], str, bool | None]]:
    rows: list[tuple[str, list[str], str, bool | None]] = []
    st = ex.get("startup")
    if st:
        f = st["flows"]
        rows.append(("CLI start-up (--help)", [fmt_cell(f), fmt_cell(st["dvc"]), fmt_cell(st["snakemake"]),
                     "python -c pass: " + fmt_cell(st["python"]), fmt_ratio(ratio(f, st["dvc"])),
                     fmt_ratio(ratio(f, st["snakemake"])), ""], "< 0.3 s",
                     None if not f.ok else f.median_wall() < 0.3))
    h = ex.get("hash")
    if h:
        rows.append(("hash 1 GiB: flows file_digest vs hashlib md5 (GB/s)",
                     [f"{h['flows_gbps']:.2f} GB/s", f"md5 {h['md5_gbps']:.2f} GB/s", "", "", f"{h['ratio']:.2f}× md5",
                      "", ""], "≥4× md5", h["ratio"] >= 4))
    sc = ex.get("statcache")
    if sc:
        a, b = sc["flows_first_plan"], sc["flows_second_plan"]
        r = ratio(a, b)
        d1, d2 = sc.get("dvc", {}).get("first"), sc.get("dvc", {}).get("second")
        rows.append(("plan over 1 GiB input: 1st (no stat cache) → 2nd, whole process",
                     [fmt_cell(a) + "\n→ " + fmt_cell(b), (fmt_cell(d1) + "\n→ " + fmt_cell(d2)) if d1 else "",
                      "", "", "", "", (f"{r:.1f}× faster" if r else "") + "\n(Python's start-up bounds it: the "
                      "target is the step's, below)"], "", None))
        c, w = statistics.median(sc["digest_cold_s"]), statistics.median(sc["digest_warm_s"])
        rows.append(("  its input digest step alone (StatCache cold → hit), in process",
                     [f"{c * 1000:.1f} ms → {w * 1000:.2f} ms", "", "", "", "", "", f"{c / w:.0f}× faster"],
                     "2nd ≥100× faster", c / w >= 100))
    j = ex.get("journal")
    if j:
        small, big = j["10"]["append_median_ms"], j["10000"]["append_median_ms"]
        rows.append(("journal: one fsynced record per node, beside a 10 → 10,000-node state",
                     [f"{small:.2f} ms → {big:.2f} ms per record\nfold (state write) once per run: "
                      f"{j['10000']['state_write_s'] * 1000:.0f} ms at 10,000", "", "", "", "", "", ""],
                     "O(1) per node", big <= 2 * small + 0.5))
    sl = ex.get("state_load")
    if sl:
        cells = [f"{sl['median_s'] * 1000:.0f} ms ({sl['bytes'] / 1e6:.1f} MB)", "", "", "", "", "", ""]
        if "real_state" in sl:
            real = sl["real_state"]
            cells[0] += f"\nreal state from flows apply: {real['median_s'] * 1000:.0f} ms ({real['bytes'] / 1e6:.1f} MB)"
        rows.append((f"load a {sl['nodes']:,}-node state (parse_state)", cells, "< 0.5 s", sl["median_s"] < 0.5))
    return rows + remote_rows(ex)


def print_table(t: Table) -> None:
    Console(width=220).print(t)


def _plain(text: str) -> str:
    """Rich markup -> plain text, newlines -> '; ' (for a markdown cell)."""
    from rich.text import Text
    return Text.from_markup(text).plain.replace("\n", "; ").replace("|", "/")


def markdown(res: dict[str, Any]) -> str:
    """The same rows as the rich table, as a markdown table for bench/README.md."""
    sizes, ex = revive(res)
    global RUNS
    RUNS = res["runs"]
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(_plain(c) for c in cells) + " |" for cells in table_rows(sizes, ex)]
    return "\n".join(lines) + "\n"