"""Scenarios 1-4 of the issue on one generated DAG, every tool side by side, alternating."""
from __future__ import annotations

from typing import Callable

import gen
from runner import Sample, Series
from tools import Tool

SCENARIOS = ("apply", "reapply", "noop_plan", "change_plan")
TITLES = {
    "apply": "full apply from clean (parallelism 2)",
    "reapply": "re-apply, nothing to do",
    "noop_plan": "no-op plan",
    "change_plan": "one-change plan",
}


def run_series(tools: list[Tool], argv_of: Callable[[Tool], list[str] | None], runs: int,
               skip: dict[str, str], prepare: Callable[[Tool], None] | None = None,
               log: Callable[[str], None] = print) -> dict[str, Series]:
    """Warm-up + `runs` rounds; each round runs every tool once, in an order that rotates per round."""
    res: dict[str, Series] = {}
    for t in tools:
        why = skip.get(t.name) or (None if argv_of(t) else "n/a")
        res[t.name] = Series(skipped=why)
    active = [t for t in tools if res[t.name].skipped is None]
    for i in range(runs + 1):
        k = i % max(1, len(active))
        for t in active[k:] + active[:k]:
            s = res[t.name]
            if s.skipped:
                continue
            if prepare:
                prepare(t)
            argv = argv_of(t)
            assert argv is not None
            sample = t.run(argv)
            if sample.timed_out:
                s.skipped, s.samples = f"one run exceeded {t.limit:.0f} s", []
                t.after_kill()
            elif sample.rc != 0:
                s.skipped, s.samples = f"failed (exit {sample.rc}): {sample.tail(1)[:120]}", []
            elif i:
                s.samples.append(sample)
            s.last = sample  # type: ignore[attr-defined]  # kept for the checks
            log(f"    {t.name:<10} run {i}{' (warm-up)' if i == 0 else ''}: "
                + (s.skipped if s.skipped else f"{sample.wall:.3f} s, {sample.rss_mb:.0f} MiB"))
    return res


def last(series: Series) -> Sample | None:
    return getattr(series, "last", None)


def check_noop(tool: Tool, series: Series) -> None:
    """A no-op row only counts if the tool really found nothing to do."""
    sample = last(series)
    if not series.ok or sample is None:
        return
    found = tool.reported(sample.output)
    if found is None:
        series.check = "could not read the output"
    elif found:
        series.check = f"NOT a no-op: reports {len(found)} nodes to run"
    else:
        series.check = "ok: nothing to run"


def check_change(tool: Tool, series: Series, nodes: list[gen.Node]) -> None:
    """Does the plan report the edited node, and its downstream (which will have to run)?"""
    sample = last(series)
    if not series.ok or sample is None:
        return
    target = gen.change_target(nodes)
    below = gen.downstream(nodes, target)
    found = tool.reported(sample.output)
    if found is None:
        series.check = "could not read the output"
        return
    extra = found - below - {target}
    series.check = (f"{'reports' if target in found else 'MISSES'} {target}; "
                    f"downstream {len(found & below)}/{len(below)}"
                    + (f"; {len(extra)} unrelated" if extra else ""))


def run_size(tools: list[Tool], projects: gen.Projects, runs: int, carry: dict[str, dict[str, str]],
             log: Callable[[str], None] = print, apply_runs: int | None = None) -> dict[str, dict[str, Series]]:
    """All four scenarios at one size. `carry[scenario][tool]`: skip reasons from smaller sizes."""
    out: dict[str, dict[str, Series]] = {}
    unavailable = {t.name: why for t in tools if (why := t.unavailable())}
    skip = lambda sc: {**unavailable, **carry.get(sc, {})}  # noqa: E731

    log(f"  [{projects.n}] {TITLES['apply']}")
    out["apply"] = run_series(tools, lambda t: t.apply_argv(), runs if apply_runs is None else apply_runs,
                              skip("apply"), prepare=lambda t: t.reset(), log=log)
    # Later scenarios need every project up to date. A tool whose own apply did not finish here is
    # brought up to date another way (untimed) or left out of them, saying why.
    later_skip = dict(unavailable)
    for t in tools:
        s = out["apply"][t.name]
        if s.ok or t.name in unavailable or t.name == "floor":
            continue
        how = t.adopt(projects.floor) if out["apply"]["floor"].ok else None
        if how:
            log(f"    {t.name}: {how}")
            s.check = f"later rows: {how}"
        else:
            later_skip[t.name] = "needs the apply row, which " + ("failed" if s.skipped and s.skipped.startswith("failed") else f"was skipped ({s.skipped})")
    for sc, argv_of in (("reapply", lambda t: t.reapply_argv()), ("noop_plan", lambda t: t.plan_argv())):
        log(f"  [{projects.n}] {TITLES[sc]}")
        out[sc] = run_series(tools, argv_of, runs, {**later_skip, **carry.get(sc, {})}, log=log)
        for t in tools:
            check_noop(t, out[sc][t.name])

    log(f"  [{projects.n}] {TITLES['change_plan']}")
    for t in tools:
        t.set_change(True)
    try:
        out["change_plan"] = run_series(tools, lambda t: t.plan_argv(), runs,
                                        {**later_skip, **carry.get("change_plan", {})}, log=log)
    finally:
        for t in tools:
            t.set_change(False)
    for t in tools:
        check_change(t, out["change_plan"][t.name], projects.nodes)

    # Carry forward: a tool that exceeded the limit here will not do better at a larger size.
    for sc, row in out.items():
        for name, s in row.items():
            if s.skipped and "exceeded" in s.skipped:
                carry.setdefault(sc, {})[name] = f"skipped: exceeded the limit at N={projects.n:,}"
    return out
