"""The emulator's jobs: Domino's job object and its life, Queued → Running → Succeeded/Failed/Stopped/Error.

Each job's `commandToRun` runs for real, as `bash -c` in the project directory. By default through
`providers.sandbox.spawn` (its own private /workflow, the project at /mnt/code), like the local provider
runs jobs. In realistic mode (`EmulatorConfig.realistic`) as Domino runs it: a non-root user, an
environment of Domino's variables only (no credentials, only the system Python on PATH), a root-owned
/workflow the job cannot write, and the project at DOMINO_WORKING_DIR. Forced outcomes (fail, hang, die)
stand in for what a real cluster does.
"""
from __future__ import annotations

import html
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from providers import process_group, sandbox

Outcome = Literal["run", "fail", "hang", "die", "bad-ref"]
TERMINAL = frozenset({"Succeeded", "Failed", "Stopped", "Error"})
GIT_REF_TYPES = frozenset({"head", "branches", "tags", "commitId"})
# python-domino's `runs_stdout` strips exactly this wrapper, so the real route sends it.
PRE_OPEN = ("<pre style='white-space: pre-wrap; white-space: -moz-pre-wrap; white-space: -pre-wrap; "
            "white-space: -o-pre-wrap; word-wrap: break-word; word-wrap: break-all;'>")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class EmulatedJob:
    id: str
    number: int
    project_id: str
    owner: str
    project_name: str
    command: str
    title: str | None
    commit_id: str
    git_ref: dict[str, Any] | None
    hardware_tier_id: str
    environment_id: str
    revision_id: str
    started_by: str
    dir: Path               # the emulator's folder for this job: workflow/ and stdout.log
    project_dir: Path       # where the command runs (/mnt/code)
    outcome: Outcome = "run"
    working_dir: str = "/mnt/code"   # DOMINO_WORKING_DIR
    stored_command: str | None = None     # jobRunCommand as Domino answers it (realistic: its own quoting)
    output_commit_id: str | None = None
    on_finish: Callable[["EmulatedJob"], str | None] | None = None   # realistic: commit the results
    status: str = "Queued"
    submitted_ms: int = field(default_factory=now_ms)
    run_start_ms: int | None = None
    completed_ms: int | None = None
    exit_code: int | None = None
    stop_requested: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def workflow_dir(self) -> Path:
        return self.dir / "workflow"

    @property
    def log_path(self) -> Path:
        return self.dir / "stdout.log"

    @property
    def is_completed(self) -> bool:
        return self.status in TERMINAL

    def set_status(self, status: str) -> None:
        commit = None
        if status in ("Succeeded", "Failed") and self.on_finish is not None and self.status not in TERMINAL:
            commit = self.on_finish(self)    # a DFS job writes its results as a new commit, first
        with self.lock:
            if self.status in TERMINAL:
                return
            self.status = status
            if commit is not None:
                self.output_commit_id = commit
            if status == "Running":
                self.run_start_ms = now_ms()
            if status in TERMINAL:
                self.completed_ms = now_ms()

    def write_log(self, text: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(text)

    def stdout(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def setup_log(self) -> str:
        return (f"Preparing job {self.number} on hardware tier {self.hardware_tier_id}\n"
                f"Pulling environment {self.environment_id} revision {self.revision_id}\n"
                f"Checking out commit {self.commit_id}\n")

    def to_json(self) -> dict[str, Any]:
        """Domino's v4 job object (the fields python-domino's tests mock, plus a few UI ones)."""
        with self.lock:
            status, completed = self.status, self.status in TERMINAL
            return {
                "id": self.id, "number": self.number, "projectId": self.project_id, "title": self.title,
                "jobRunCommand": self.stored_command if self.stored_command is not None else self.command,
                "statuses": {"isCompleted": completed, "isArchived": False, "isScheduled": False,
                             "executionStatus": status},
                "stageTime": {"submissionTime": self.submitted_ms, "runStartTime": self.run_start_ms,
                              "completedTime": self.completed_ms},
                "startedBy": {"id": "000000000000000000000001", "username": self.started_by},
                "commitDetails": {"inputCommitId": self.commit_id,
                                  "outputCommitId": (self.output_commit_id or self.commit_id) if completed else None},
                "mainRepoGitRef": self.git_ref,
                "environment": {"environmentId": self.environment_id, "revisionId": self.revision_id},
                "hardwareTier": {"id": self.hardware_tier_id},
                "queuedJobHistoryDetails": ({"expectedWait": "a few seconds", "explanation": "Emulated queue",
                                             "helpText": ""} if status == "Queued" else None),
            }

    def stdout_json(self) -> dict[str, Any]:
        return {"stdout": PRE_OPEN + html.escape(self.stdout(), quote=False) + "</pre>",
                "setup": self.setup_log()}


class JobRunner:
    """Runs emulated jobs, each in its own thread; without mount isolation, one at a time."""

    def __init__(self, *, isolate: bool | None = None, max_running: int = 32, realistic: bool = False,
                 job_user: int = 65534, bin_dir: Path | None = None) -> None:
        self.isolate = sandbox.isolation_available() if isolate is None else isolate
        # Realistic jobs need root here, to give each one its mounts and then drop to the job's user.
        self.realistic = realistic and os.geteuid() == 0 and self.isolate
        self.job_user = job_user
        self.bin_dir = bin_dir
        self._slots = threading.Semaphore(max_running if self.isolate else 1)
        self._threads: list[threading.Thread] = []
        self._jobs: list[EmulatedJob] = []

    def submit(self, job: EmulatedJob, *, queue_seconds: float, env: dict[str, str]) -> None:
        thread = threading.Thread(target=self._life, args=(job, queue_seconds, env),
                                  name=f"emulated-job-{job.number}", daemon=True)
        self._jobs.append(job)
        self._threads.append(thread)
        thread.start()

    def shutdown(self, timeout: float = 10.0) -> None:
        for job in self._jobs:
            job.stop_requested.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _life(self, job: EmulatedJob, queue_seconds: float, env: dict[str, str]) -> None:
        job.workflow_dir.mkdir(parents=True, exist_ok=True)
        if job.stop_requested.wait(queue_seconds):        # a slow queue: stop can come first
            job.set_status("Stopped")
            return
        with self._slots:
            if job.stop_requested.is_set():
                job.set_status("Stopped")
                return
            job.set_status("Running")
            self._run(job, env)

    def _run(self, job: EmulatedJob, env: dict[str, str]) -> None:
        if job.outcome == "bad-ref":       # what Domino does with mainRepoGitRef type "branch" (research notes)
            job.write_log(f"java.lang.IllegalStateException: Unknown reference type {job.git_ref}\n")
            job.set_status("Error")
            return
        if job.outcome == "fail":
            job.write_log("emulator: this job was forced to fail\n")
            job.set_status("Failed")
            return
        if job.outcome == "hang":
            job.stop_requested.wait()
            job.set_status("Stopped")
            return
        if self.realistic:
            proc = self._spawn_realistic(job, env)
        else:
            proc = sandbox.spawn(job.command, cwd=job.project_dir, workflow_dir=job.workflow_dir,
                                 log_path=job.log_path, env=env, isolate=self.isolate)
        if job.outcome == "die":           # the node or container vanished under the job
            _kill(proc, grace=0.0)
            job.write_log("\nemulator: the job's container died\n")
            job.set_status("Error")
            return
        while proc.poll() is None:
            if job.stop_requested.wait(0.02):
                _kill(proc, grace=2.0)
                job.write_log("\nemulator: the job was stopped\n")
                job.set_status("Stopped")
                return
        proc.wait()  # drains the masked log before the status says the job ended (its log is then complete)
        job.exit_code = proc.returncode
        job.set_status("Succeeded" if proc.returncode == 0 else "Failed")


    def _spawn_realistic(self, job: EmulatedJob, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """The job as Domino runs it: a private mount namespace with a root-owned, read-only-to-the-job
        /workflow and the project at the working directory; then the job's user, Domino's variables only."""
        sealed = job.dir / "sealed-workflow"
        sealed.mkdir(parents=True, exist_ok=True)
        os.chmod(sealed, 0o755)
        wd = job.working_dir
        path = (f"{self.bin_dir}:" if self.bin_dir else "") + "/usr/bin:/bin"
        job_env = {"PATH": path, "HOME": "/tmp", "USER": "domino-job", "LANG": "C.UTF-8", "TMPDIR": "/tmp",
                   "DOMINO_WORKING_DIR": wd, **env}
        assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in job_env.items())
        uid = self.job_user
        script = (f"mkdir -p /workflow {wd} && mount --bind {shlex.quote(str(sealed))} /workflow && "
                  f"mount --bind {shlex.quote(str(job.project_dir))} {wd} && cd {wd} || exit 125\n"
                  f"exec setpriv --reuid={uid} --regid={uid} --clear-groups env -i {assignments} "
                  f"bash -c {shlex.quote(job.command)}")
        argv = ["unshare", "--mount", "--propagation", "private", "bash", "-c", script]
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(job.log_path, "ab") as log:
            return subprocess.Popen(argv, cwd="/", env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def domino_quoting(command: str) -> str:
    """How the emulator (realistic mode) returns `jobRunCommand`: split into words and re-joined with double
    quotes around any word that needs quoting. UNCONFIRMED: the exact form of Domino's own quoting; what
    matters is that it is not ours, so nothing may compare commands."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    out = []
    for w in words:
        if w and all(c.isalnum() or c in "-_./=:,@%+" for c in w):
            out.append(w)
        else:
            out.append('"' + w.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"')
    return " ".join(out)


def _kill(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Stop the job's whole process group: TERM, then KILL after `grace` seconds (KILL at once if 0)."""
    group = process_group.PopenGroup(proc)
    try:
        process_group.stop_with_grace(group, grace)
        proc.wait()
    finally:
        group.close()
