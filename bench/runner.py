"""Whole-process measurement: wall time and peak RSS of one command and everything it waits for.

Peak RSS comes from `/usr/bin/time -f %M`: Linux carries a process's high-water RSS across
fork+exec, so a command started straight from this (large) Python process would report at least
this process's own RSS; started from the small `time` process it reports its own. `time` waits for
exactly the process it started, so earlier or concurrent children cannot leak into a figure the way a
`getrusage(RUSAGE_CHILDREN)` maximum would. Without /usr/bin/time, `os.wait4` is the fallback
(figures then include the harness's RSS: flagged in results.json).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Sequence


TIME = shutil.which("time", path="/usr/bin:/bin")  # GNU time (Debian package `time`)
RSS_SOURCE = "/usr/bin/time %M" if TIME else "os.wait4 ru_maxrss (includes the harness's own RSS)"


@dataclasses.dataclass
class Sample:
    wall: float            # seconds
    rss_mb: float          # peak resident set size of the largest process in the tree, MiB
    rc: int
    output: str            # stdout + stderr (for the checks and for error messages)
    timed_out: bool = False
    began: float = 0.0     # time.time() when it was started (to place a tool's own timestamps in the run)
    phases: dict[str, float] | None = None  # flows apply: start-up, run, tail (`tools.apply_phases`)

    def tail(self, lines: int = 2) -> str:
        """The last meaningful lines (rich traceback frames and box drawing left out), for a skip reason."""
        keep = [x.strip() for x in self.output.splitlines()
                if x.strip() and x.strip()[0] not in "│╭╰─┃━╷╵"]
        return " | ".join(keep[-lines:])


def measure(argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None,
            timeout: float | None = None) -> Sample:
    """Run argv to completion (or kill its process group at `timeout`) and measure it."""
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as rss_file:
        prefix = [TIME, "-f", "%M", "-o", rss_file.name] if TIME else []
        began, t0 = time.time(), time.perf_counter()
        proc = subprocess.Popen(prefix + list(argv), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if timer:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen never waits on a reaped pid
        out.seek(0)
        text = out.read().decode(errors="replace")
        rss_kb = float(usage.ru_maxrss)
        if TIME:
            # `time` writes "Command exited with non-zero status N" before the figure when rc != 0
            figures = [x for x in rss_file.read().split() if x.isdigit()]
            rss_kb = float(figures[-1]) if figures else float("nan")
    return Sample(wall=wall, rss_mb=rss_kb / 1024, rc=proc.returncode, output=text, timed_out=killed.is_set(),
                  began=began)


@dataclasses.dataclass
class Series:
    """The samples of one (scenario, size, tool) cell, or why there are none."""

    samples: list[Sample] = dataclasses.field(default_factory=list)
    skipped: str | None = None     # e.g. "one run exceeded 120 s", "unavailable: ..."
    check: str | None = None       # result of a correctness check, shown beside the figure

    @property
    def ok(self) -> bool:
        return self.skipped is None and bool(self.samples)

    def median_wall(self) -> float | None:
        return statistics.median(s.wall for s in self.samples) if self.ok else None

    def median_rss(self) -> float | None:
        return statistics.median(s.rss_mb for s in self.samples) if self.ok else None

    def median_phases(self) -> dict[str, float] | None:
        """Each phase's median over the samples that have them (flows applies), or None."""
        split = [s.phases for s in self.samples if s.phases]
        return {k: statistics.median(p[k] for p in split) for k in split[0]} if self.ok and split else None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Series":
        """Back from results.json (walls, RSS and any phases), to re-print or merge an earlier run."""
        phases = d.get("phases_s") or [None] * len(d["walls_s"])
        samples = [Sample(wall=w, rss_mb=r, rc=0, output="", phases=p)
                   for w, r, p in zip(d["walls_s"], d["peak_rss_mib"], phases)]
        return cls(samples=samples, skipped=d.get("skipped"), check=d.get("check"))

    def to_json(self) -> dict[str, object]:
        return {"median_wall_s": self.median_wall(), "median_peak_rss_mib": self.median_rss(),
                "walls_s": [round(s.wall, 4) for s in self.samples],
                "peak_rss_mib": [round(s.rss_mb, 1) for s in self.samples],
                "skipped": self.skipped, "check": self.check,
                **({"phases_s": [s.phases for s in self.samples]} if any(s.phases for s in self.samples) else {})}
