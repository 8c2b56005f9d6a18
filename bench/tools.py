"""The four contenders on one generated DAG: how to run each, reset it to clean, edit one command,
and read back which nodes it says will run."""
from __future__ import annotations

import atexit
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import gen
from runner import Sample, measure

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PEER_BIN = BENCH / ".venv" / "bin"
PEER_LIMIT = 120.0    # the issue: skip a peer at a size where one run exceeds this
FLOWS_LIMIT = 900.0   # ours: measured even when slow, so the miss is visible; killed past this


def flows_src() -> Path:
    """The flows source under test: the work tree, or a snapshot (FLOWS_BENCH_SRC) so that a long run
    measures one commit while others keep editing the tree."""
    return Path(os.environ.get("FLOWS_BENCH_SRC") or REPO)


def flows_argv() -> tuple[list[str], dict[str, str]]:
    """The installed `flows` console script, else the same entry point through the project's Python."""
    env = dict(os.environ)
    script = REPO / ".venv" / "bin" / "flows"
    if script.exists() and flows_src() == REPO:
        return [str(script)], env
    env["PYTHONPATH"] = str(flows_src()) + os.pathsep + env.get("PYTHONPATH", "")
    # `python -m reconcile.cli.main` would register the commands on a second copy of the app.
    shim = "import sys; sys.argv[0] = 'flows'; from reconcile.cli.entry import run; run()"
    return [sys.executable, "-c", shim], env


class Tool:
    name = ""
    limit = PEER_LIMIT
    plan_label = ""
    apply_label = ""

    def __init__(self, projects: gen.Projects, cwd: Path) -> None:
        self.p = projects
        self.cwd = cwd
        self.env = dict(os.environ)
        self.trash = projects.root / ".bench-trash"  # where a reset puts the last run's files (`_rm`)

    # what the scenarios run (None: this tool has no such step)
    def plan_argv(self) -> list[str] | None:
        return None

    def apply_argv(self) -> list[str] | None:
        return None

    def reapply_argv(self) -> list[str] | None:
        return self.apply_argv()

    def unavailable(self) -> str | None:
        return None

    def reset(self) -> None:
        """Back to a clean checkout: no outputs, no state, no caches (untimed)."""

    def edit_file(self) -> Path | None:
        return None

    def set_change(self, on: bool) -> None:
        """Edit (or restore) the command of the one-change scenario's node, same text in every tool."""
        path = self.edit_file()
        if path is None:
            return
        tag = gen.change_target(self.p.nodes)
        text = path.read_text()
        old, new = "echo " + tag + ";", "echo " + tag + " v2;"
        path.write_text(text.replace(old, new, 1) if on else text.replace(new, old, 1))

    def after_kill(self) -> None:
        """Clean up what a run stopped at the time limit leaves behind (untimed)."""

    def adopt(self, floor: Path) -> str | None:
        """Bring the project up to date some other way than its own apply; None: not possible."""
        return None

    def reported(self, output: str) -> set[str] | None:
        """Nodes a plan's output says will (or may) run; None when the output cannot be read."""
        return None

    def run(self, argv: list[str], timeout: float | None = None) -> Sample:
        return measure(argv, self.cwd, self.env, timeout if timeout is not None else self.limit)


def _md5_entry(root: Path, rel: str) -> dict[str, object]:
    with open(root / rel, "rb") as f:
        md5 = hashlib.file_digest(f, "md5").hexdigest()
    return {"path": rel, "hash": "md5", "md5": md5, "size": (root / rel).stat().st_size}


# A reset sets the last run's files aside (renamed into `<projects root>/.bench-trash/`), deleted when the benchmark
# ends, not right before the next timed run. On ext4 without a journal (this machine's /), a new inode is not given a
# number freed in the last 30 seconds, and finding one walks past every such number (`recently_deleted` in the
# kernel): a reset that deleted a run's thousands of files made each file the next run created cost ~0.5 ms more, a
# penalty of the benchmark's own reset that a user does not meet. The same reset for every tool.
_TRASH: set[Path] = set()


def _empty_trash() -> None:
    for folder in _TRASH:
        shutil.rmtree(folder, ignore_errors=True)


def _rm(trash: Path, *paths: Path) -> None:
    """Set `paths` aside into `trash` (a folder on their filesystem, removed at exit)."""
    if not _TRASH:
        atexit.register(_empty_trash)
    if trash not in _TRASH:
        trash.mkdir(exist_ok=True)
        _TRASH.add(trash)
    for p in paths:
        if p.exists() or p.is_symlink():
            os.rename(p, trash / f"{time.monotonic_ns()}-{p.name}")


class Flows(Tool):
    name = "flows"
    limit = FLOWS_LIMIT
    plan_label = "flows plan"
    apply_label = "flows apply --parallelism 2"

    def __init__(self, projects: gen.Projects) -> None:
        super().__init__(projects, projects.flows)
        self.exe, self.env = flows_argv()
        self._why: str | None | bool = False

    def _common(self) -> list[str]:
        return ["flow.py", gen.FLOW_NAME, *gen.flows_input_args()]

    def plan_argv(self) -> list[str]:
        return [*self.exe, "plan", *self._common()]

    def apply_argv(self) -> list[str]:
        return [*self.exe, "apply", *self._common(), "--auto-approve", "--parallelism", "2"]

    def unavailable(self) -> str | None:
        if self._why is False:
            self._why = command_missing(self.exe, self.env, self.cwd, ("plan", "apply"))
        return self._why  # type: ignore[return-value]

    def reset(self) -> None:
        _rm(self.trash, self.cwd / ".flows")

    def edit_file(self) -> Path:
        return self.cwd / "flow.py"

    def run(self, argv: list[str], timeout: float | None = None) -> Sample:
        sample = super().run(argv, timeout)
        if "apply" in argv and sample.rc == 0:
            sample.phases = apply_phases(self.cwd, sample)
        return sample

    LINE = re.compile(r"^\s*([+~!?=-])\s+" + gen.FLOW_NAME + r"/(\S+)\s+(create|update|run|pending|reuse|forget)\b")

    SUMMARY = re.compile(r"^Plan: (\d+) to create, (\d+) to update, (\d+) to run, (\d+) pending\b", re.M)

    def reported(self, output: str) -> set[str] | None:
        seen = {m.group(2): m.group(3) for m in map(self.LINE.match, output.splitlines()) if m}
        summary = self.SUMMARY.search(output)
        if not seen and summary and not any(int(n) for n in summary.groups()):
            return set()  # many plain reuses are folded into one line: the summary says nothing runs
        if not seen:
            return None
        return {n for n, action in seen.items() if action != "reuse"}


def command_missing(exe: list[str], env: dict[str, str], cwd: Path, commands: tuple[str, ...]) -> str | None:
    """Why `flows` cannot be benchmarked yet (a command not on main), or None."""
    for c in commands:
        r = subprocess.run([*exe, c, "--help"], cwd=cwd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            last = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
            return f"unavailable: `flows {c}` failed ({last[0].strip('│ ')[:80]})"
    return None


class Dvc(Tool):
    name = "dvc"
    plan_label = "dvc status"
    apply_label = "dvc repro (serial)"

    def __init__(self, projects: gen.Projects) -> None:
        super().__init__(projects, projects.dvc)
        self.exe = str(PEER_BIN / "dvc")
        self.env = gen.dvc_env()

    def unavailable(self) -> str | None:
        return None if Path(self.exe).exists() else "unavailable: bench/.venv has no dvc"

    def plan_argv(self) -> list[str]:
        return [self.exe, "status"]

    def apply_argv(self) -> list[str]:
        # DVC has no parallel repro: it runs stages one at a time.
        return [self.exe, "repro"]

    def reset(self) -> None:
        d = self.cwd
        _rm(self.trash, d / "out", d / "dvc.lock", d / ".dvc" / "cache", d / ".dvc" / "tmp", d / ".dvc" / "site")
        (d / "out").mkdir()

    def edit_file(self) -> Path:
        return self.cwd / "dvc.yaml"

    def after_kill(self) -> None:
        # A killed `dvc repro` leaves a half-written rwlock that makes every later command fail.
        _rm(self.trash, self.cwd / ".dvc" / "tmp" / "rwlock", self.cwd / ".dvc" / "tmp" / "lock")

    def adopt(self, floor: Path) -> str:
        """Up to date without `dvc repro` (too slow at this size): the floor's outputs, with the
        dvc.lock and cache entries DVC itself would write (plain md5 of each dep and out). Untimed;
        `dvc status` must then say "up to date", which the no-op row checks."""
        self.reset()
        lock: dict[str, object] = {}
        ignore = []
        for node in self.p.nodes:
            out = f"out/{node.name}.txt"
            shutil.copyfile(floor / out, self.cwd / out)
            ignore.append(f"/{node.name}.txt")
            entry = _md5_entry(self.cwd, out)
            obj = self.cwd / ".dvc" / "cache" / "files" / "md5" / entry["md5"][:2] / entry["md5"][2:]
            obj.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.cwd / out, obj)
            lock[node.name] = {"cmd": gen.peer_command(node),
                               "deps": [_md5_entry(self.cwd, d) for d in gen.peer_paths(node)],
                               "outs": [entry]}
        (self.cwd / "out" / ".gitignore").write_text("\n".join(ignore) + "\n")
        (self.cwd / "dvc.lock").write_text(json.dumps({"schema": "2.0", "stages": lock}, indent=1) + "\n")
        return "dvc.lock and cache written from the floor's outputs (dvc repro too slow at this size)"

    def reported(self, output: str) -> set[str] | None:
        if "up to date" in output:
            return set()
        names = {line[:-1] for line in output.splitlines() if line.endswith(":") and not line[:1].isspace()}
        return names or None


class Snakemake(Tool):
    name = "snakemake"
    plan_label = "snakemake -n"
    apply_label = "snakemake -c2"

    def __init__(self, projects: gen.Projects) -> None:
        super().__init__(projects, projects.snakemake)
        self.exe = str(PEER_BIN / "snakemake")

    def unavailable(self) -> str | None:
        return None if Path(self.exe).exists() else "unavailable: bench/.venv has no snakemake"

    def plan_argv(self) -> list[str]:
        return [self.exe, "-n"]

    def apply_argv(self) -> list[str]:
        return [self.exe, "-c2"]

    def reset(self) -> None:
        _rm(self.trash, self.cwd / "out", self.cwd / ".snakemake")

    def edit_file(self) -> Path:
        return self.cwd / "Snakefile"

    def adopt(self, floor: Path) -> str:
        """Up to date without `snakemake -c2` (too slow at this size): the floor's outputs with
        mtimes in topological order. Snakemake then has no provenance metadata, so an edited
        command is not seen (the one-change check says so). Untimed."""
        self.reset()
        (self.cwd / "out").mkdir()
        t = time.time()  # newer than the sources, older than nothing
        for node in self.p.nodes:
            out = f"out/{node.name}.txt"
            shutil.copyfile(floor / out, self.cwd / out)
            t += 0.01
            os.utime(self.cwd / out, (t, t))
        return "outputs copied from the floor, no metadata (snakemake -c2 too slow at this size)"

    WILDCARD = re.compile(r"^\s*wildcards:\s*n=(\S+)")

    def reported(self, output: str) -> set[str] | None:
        if "Nothing to be done" in output:
            return set()
        names = {m.group(1) for m in map(self.WILDCARD.match, output.splitlines()) if m}
        return names or None


class Floor(Tool):
    """The same commands, in topological waves, by `xargs -P2`: no hashing, no state, no checks."""

    name = "floor"
    limit = FLOWS_LIMIT
    apply_label = "xargs -P2 waves"

    def __init__(self, projects: gen.Projects) -> None:
        super().__init__(projects, projects.floor)

    def apply_argv(self) -> list[str]:
        return ["bash", "floor.sh"]

    def reapply_argv(self) -> None:
        return None

    def reset(self) -> None:
        _rm(self.trash, self.cwd / "out")


class FloorSh(Floor):
    """The floor's waves with a bare `sh -c` per job instead of bash: one process per job, nothing else."""

    name = "floor_sh"
    apply_label = "xargs -P2 sh -c waves"

    def apply_argv(self) -> list[str]:
        return ["bash", "floor_sh.sh"]


def all_tools(projects: gen.Projects) -> list[Tool]:
    return [Flows(projects), Dvc(projects), Snakemake(projects), Floor(projects), FloorSh(projects)]


def apply_phases(project: Path, sample: Sample) -> dict[str, float] | None:
    """A flows apply's wall time split by its own run timeline (the newest `timeline.json` under .flows/logs: when
    each node's job started, when its record was made): start-up (the process's start to the first job's start),
    run (to the last node's record) and tail (to the process's exit). None when no job ran."""
    try:
        timeline = max((project / ".flows" / "logs").glob("*/*/timeline.json"), key=lambda p: p.stat().st_mtime)
        nodes = json.loads(timeline.read_text())["nodes"].values()
    except (OSError, ValueError, KeyError):
        return None
    started = [dt.datetime.fromisoformat(x["started_at"]).timestamp() for x in nodes if x.get("started_at")]
    finished = [dt.datetime.fromisoformat(x["finished_at"]).timestamp() for x in nodes if x.get("finished_at")]
    if not started or not finished or min(started) < sample.began:  # (no job ran: an earlier run's timeline)
        return None
    first, last = min(started), max(finished)
    return {"start": first - sample.began, "run": last - first, "tail": sample.began + sample.wall - last}
