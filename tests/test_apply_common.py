"""Helpers shared by the tests/test_apply_*.py modules (no tests here).

Projects are built from tiny job scripts that leave evidence outside the project: every job appends
`<event> <unix time> <pid>` lines to `$MARKS/<script name>.log`, so a test can count how many processes
a node started and when, with no sleeps and no mocks. The real `flows` console script runs them.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from providers import sandbox
from tests.fixtures.projects import FLOWS, Result, flows
from tests.fixtures.waiting import alive, lock_holders, wait_until  # noqa: F401 - re-exported to the apply tests

ISOLATED = sandbox.isolation_available()
DEADLINE = 30.0  # seconds any poll waits before failing the test

# Imported by every job script (`python scripts/<node>.py` puts scripts/ first on sys.path).
KIT = '''
import os, sys, time

NODE = os.path.splitext(os.path.basename(sys.argv[0]))[0]
MARKS = os.environ["MARKS"]


def mark(event):
    """Append one evidence line, durably, before going on (tests poll these files)."""
    with open(os.path.join(MARKS, NODE + ".log"), "a") as f:
        f.write(f"{event} {time.time():.6f} {os.getpid()}\\n")
        f.flush()
        os.fsync(f.fileno())


def read(name):
    return open(os.path.join(os.environ["FLOWS_INPUTS_DIR"], name)).read()


def write(name, text):
    with open(os.path.join(os.environ["FLOWS_OUTPUTS_DIR"], name), "w") as f:
        f.write(text)


def wait_for(check, seconds=20.0):
    """Poll `check()` until true or the deadline; True when it became true."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.01)  # poll interval, under the deadline above
    return False


def exists(name):
    return lambda: os.path.exists(os.path.join(MARKS, name))


_LOCKS = []


def hold_lock(name=None):
    """Hold a file lock on `$MARKS/<name or node>.lock` while this process lives: the test sees the process in
    /proc/locks with the pid it has out there (`os.getpid()` is the job's own PID namespace's)."""
    import fcntl
    f = open(os.path.join(MARKS, (name or NODE) + ".lock"), "a")
    fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    os.set_inheritable(f.fileno(), True)  # kept across exec (`sleep`) and by children
    _LOCKS.append(f)
'''

FLOW_HEADER = '''
import datetime
from typing import TypeVar
from flytekit import workflow
from flytekit.types.file import FlyteFile
from flytekit.types.directory import FlyteDirectory
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task

CSV = FlyteFile[TypeVar("csv")]
TXT = FlyteFile[TypeVar("txt")]
'''


def poll(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Wait for `check()` to be truthy, with a deadline (never a fixed sleep)."""
    return wait_until(check, timeout, what=what)


@dataclass
class Project:
    root: Path
    marks: Path
    flow_name: str = "wf"
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. a secret the jobs can see

    @property
    def env(self) -> dict[str, str]:
        return {"MARKS": str(self.marks), **self.extra_env}

    def run(self, *args: str, timeout: float = 120) -> Result:
        return flows(*args, cwd=self.root, env=self.env, timeout=timeout)

    def apply(self, *args: str, code: int | None = 0) -> Result:
        r = self.run("apply", "flow.py", self.flow_name, *args, "--auto-approve")
        if code is not None:
            assert r.code == code, r.text
        assert "Traceback" not in r.text, r.text
        return r

    def plan(self, *args: str) -> dict[str, Any]:
        r = self.run("plan", "flow.py", self.flow_name, *args, "--json")
        assert r.code == 0, r.text
        return json.loads(r.out)

    def actions(self, *args: str) -> dict[str, str]:
        return {n["address"]: n["action"] for n in self.plan(*args)["nodes"]}

    def spawn(self, *args: str, name: str = "apply") -> subprocess.Popen[str]:
        """Start `flows ARGS` in the background; its output goes to marks/<name>.out (read with `output`)."""
        out = open(self.marks / f"{name}.out", "w")
        return subprocess.Popen([FLOWS, *args], cwd=self.root, stdout=out, stderr=subprocess.STDOUT, text=True,
                                stdin=subprocess.DEVNULL,
                                env={**os.environ, "COLUMNS": "200", **self.env})

    def output(self, name: str = "apply") -> str:
        return (self.marks / f"{name}.out").read_text()

    @property
    def state_file(self) -> Path:
        return self.root / ".flows" / "state" / f"{self.flow_name}.json"

    @property
    def lock_file(self) -> Path:
        return self.root / ".flows" / "state" / f"{self.flow_name}.lock"

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text())

    def events(self, script: str) -> list[tuple[str, float, int]]:
        """The evidence lines of one job script: (event, unix time, pid)."""
        path = self.marks / f"{script}.log"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            event, at, pid = line.rsplit(" ", 2)
            out.append((event, float(at), int(pid)))
        return out

    def holders(self, name: str) -> list[int]:
        """The live processes holding `$MARKS/<name>.lock` (see the kit's `hold_lock`), by their pids out here."""
        return lock_holders(self.marks / f"{name}.lock")

    def starts(self, script: str) -> int:
        return sum(1 for e in self.events(script) if e[0] == "start")

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.root / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new, 1))


def make_project(root: Path, flow: str, scripts: dict[str, str], files: dict[str, str] | None = None,
                 flow_name: str = "wf") -> Project:
    """A project with flow.py (FLOW_HEADER + `flow`), scripts/<name>.py (each importing the kit) and files."""
    root.mkdir(parents=True)
    marks = root.parent / f"{root.name}-marks"
    marks.mkdir()
    (root / "flows.toml").write_text("[tool.flows]\n")
    (root / "flow.py").write_text(FLOW_HEADER + textwrap.dedent(flow))
    (root / "scripts").mkdir()
    (root / "scripts" / "kit.py").write_text(KIT)
    for name, body in scripts.items():
        (root / "scripts" / f"{name}.py").write_text("from kit import *\n" + textwrap.dedent(body))
    for rel, text in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return Project(root=root, marks=marks, flow_name=flow_name)


def stop(proc: subprocess.Popen[str]) -> None:
    """Test cleanup: end a background `flows` we started (and its jobs) if a failed test left it running."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kill_pids(pids: list[int]) -> None:
    """Test cleanup: end orphan job processes (a kill -9'd apply leaves its jobs running)."""
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
