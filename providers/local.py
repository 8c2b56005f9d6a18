"""The local provider: every job is a process on this machine, seeing the world as a Domino job does.

A job gets a private folder (`<jobs dir>/<run>/<address hash>.<attempt>.<id>/`) holding `inputs/` and
`outputs/`; the sandbox mounts it at `/workflow` (and the project at `/mnt/code`) in a mount namespace
of its own, so parallel jobs writing the same output name never meet. Inputs are written the way
Domino writes them and outputs are checked, parsed and stored in the blob store (both by
`providers.jobio`, shared with the Domino in-job runtime) before `wait` returns; the folder is emptied then (for a
later job of the same apply when nothing of this one can still run) and removed when the apply ends
(`providers.job_folders` says why).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import typing
import uuid
import weakref
from pathlib import Path
from typing import Any, Callable

from providers import job_folders, jobenv, launcher, process_group, sandbox
from providers.base import EndedCallback, JobHandle, JobResult, JobSpec, NodeSpec, StatusCallback
from providers import jobio
from providers.blobs.base import BlobStore, ensure_inside
from providers import pytask
from vocab.errors import FlowsError, NotStartedError, ProviderError
from vocab.masking import env_signature, redact
from state.model import OutputRecord, trusted

NO_ISOLATION = ("jobs cannot get a private /workflow here (unshare with mount namespaces is not available): "
                "they run one at a time, and job scripts must use $FLOWS_INPUTS_DIR / $FLOWS_OUTPUTS_DIR")
NO_PID_NAMESPACE = ("jobs get no PID namespace of their own here (unshare --pid is not available): a process a "
                    "job detaches (setsid) can outlive it")
POLL_MIN, POLL_MAX = 0.005, 0.1  # seconds between checks of a running job: quick jobs finish quickly
# Starts the launcher may hold beyond --parallelism (StartQueue): one or two ready per slot keep it busy; more
# would only hold threads and prepared folders.
START_AHEAD_MAX = 2
KILL_GRACE = 5.0                 # seconds between SIGTERM and SIGKILL when a job is stopped
LOG_TAIL_LINES = 20


JobProcess = typing.Union[process_group.PopenGroup, sandbox.LaunchedJob]


@dataclasses.dataclass
class _Running:
    proc: JobProcess
    folder: Path
    log: Path
    started: float  # time.monotonic() at spawn
    ended_whole: bool = False  # it ended and, in its own PID namespace, every process it started with it


@dataclasses.dataclass
class _Prepared:
    """A job's folder (inputs written) and its log file, made while it waited for a slot (`prepare`)."""
    folder: Path
    short: str  # the random part of the job's id
    log_path: str
    log_fd: int | None

    def take_log(self) -> int | None:
        fd, self.log_fd = self.log_fd, None
        return fd

    def close_log(self) -> None:
        fd = self.take_log()
        if fd is not None:
            os.close(fd)

    def discard(self, retired: job_folders.RetiredFolders) -> None:
        self.close_log()
        retired.add(self.folder)


class LocalProvider:
    name = "local"

    def __init__(self, blobs: BlobStore, logs_dir: Path, *, jobs_dir: Path | None = None,
                 isolate: bool | None = None, kill_grace: float = KILL_GRACE,
                 domino_settings: dict[str, Any] | None = None, hide: list[Path] | None = None) -> None:
        self.blobs = blobs
        self.domino_settings = domino_settings or {}  # DOMINO_* values for jobs (providers.jobenv)
        self.logs_dir = Path(logs_dir)
        self.jobs_dir = Path(jobs_dir) if jobs_dir else self.logs_dir.parent / "jobs"
        self.kill_grace = kill_grace
        # Folders a job must not see (an empty read-only mount over each): the project's .flows/ (state,
        # blobs, stat cache, logs), and the blob store and state wherever they are configured.
        store = getattr(blobs, "root", None)
        self.hidden = (self.logs_dir.parent, *([Path(store)] if store else []), *(hide or []))
        self._isolate = isolate
        self._running: dict[str, _Running] = {}
        self._stopped: set[str] = set()
        self._lock = threading.Lock()
        self._launcher: sandbox.Launcher | None = None
        self._retired = job_folders.RetiredFolders()
        self._index_fd: int | None = None  # the job index (see _remember)
        self._prepared: dict[tuple[str, str, int], _Prepared] = {}  # (run, node, attempt) -> its folder and log
        self._log_folders: set[str] = set()
        self._running_limit: int | None = None  # set by queue_starts: the launcher runs this many, holds the rest
        self._held_until: Callable[[], float | None] | None = None  # set by queue_starts (StartQueue)
        self._held: str | None = None  # why nothing more starts (hold)
        self._project_envs: dict[str, dict[str, str]] = {}  # project root -> the variables all its jobs get
        self._launcher_envs: dict[tuple[object, str], dict[str, str]] = {}  # see _launcher_env

    def close(self) -> None:
        """Stop the resident job launcher, if one was started (it kills any job still running), and remove the
        finished jobs' folders."""
        if self._launcher is not None:
            self._launcher.close()
        with self._lock:
            unused, self._prepared = list(self._prepared.values()), {}
        for prepared in unused:  # prepared for a job that never started
            prepared.discard(self._retired)
        self._retired.remove_all()

    @functools.cached_property
    def _uses_launcher(self) -> bool:
        """Whether jobs go through the resident launcher (asked once: it reads the machine's name)."""
        return self.contained and sandbox.launcher_available()

    def _log_folder(self, log_path: str | Path) -> None:
        folder = os.path.dirname(log_path)
        if folder not in self._log_folders:  # one mkdir per run, not per job
            os.makedirs(folder, exist_ok=True)
            self._log_folders.add(folder)

    def _spawn(self, command: str, *, cwd: Path, workflow_dir: Path, log_path: Path,
               env: dict[str, str], job_env: dict[str, str], log_fd: int | None = None) -> JobProcess:
        """`env`: what every job of the project gets alike (`_project_env`); `job_env`: this job's own variables."""
        if self._uses_launcher:
            launcher = self._the_launcher()
            if log_fd is None:
                self._log_folder(log_path)  # (the launcher opens the log)
            shared = self._launcher_env(cwd, env)
            while True:
                start_by = None
                if self._held_until is not None:  # (starts held in the launcher: only while the lock is ours)
                    start_by = self._held_until()
                    if start_by is None:
                        if log_fd is not None:
                            os.close(log_fd)
                        raise NotStartedError(self._held or "not started: the state lock cannot be shown to be ours")
                try:
                    return launcher.spawn(command, cwd=cwd, workflow_dir=workflow_dir, log_path=log_path, env=shared,
                                          hide=self.hidden, log_fd=log_fd, running=self._running_limit,
                                          start_by=start_by, env_changes=job_env)
                except sandbox.StartExpired:
                    log_fd = None  # (the launcher closed it: the log is opened again, appended to)
                except sandbox.StartHeld as e:
                    raise NotStartedError(str(e)) from None
                except sandbox.LauncherError as e:
                    raise OSError(str(e)) from None
        if log_fd is not None:
            os.close(log_fd)
        return process_group.PopenGroup(sandbox.spawn(command, cwd=cwd, workflow_dir=workflow_dir, log_path=log_path,
                                                      env={**env, **job_env}, isolate=self.isolated,
                                                      hide=self.hidden))

    # ---- capabilities --------------------------------------------------------------------------
    @functools.cached_property
    def isolated(self) -> bool:
        """Whether jobs get a private /workflow; probed on first use (plan never needs it)."""
        return sandbox.isolation_available() if self._isolate is None else self._isolate

    @functools.cached_property
    def contained(self) -> bool:
        """Whether every process a job starts provably ends with it (its own PID namespace)."""
        return self.isolated and sandbox.pid_namespace_available()

    @property
    def max_parallel(self) -> int | None:
        return None if self.isolated else 1  # without isolation, parallel jobs would share /workflow

    jobs_outlive_the_process = False  # a job dies with the apply that started it (recover stops an orphan)
    resolves_remotely = False  # the config as written: no server to ask
    start_in_flight_seconds = 0.0  # a start is a fork of this process: nothing is in flight after it dies

    @property
    def warnings(self) -> list[str]:
        """Said once per apply by the caller."""
        if not self.isolated:
            return [NO_ISOLATION]
        return [] if self.contained else [NO_PID_NAMESPACE]

    def _the_launcher(self) -> sandbox.Launcher:
        with self._lock:
            if self._launcher is None:
                self._launcher = sandbox.Launcher()
                weakref.finalize(self, self._launcher.close)
            return self._launcher

    # ---- start queue (StartQueue) ----------------------------------------------------------------
    def get_ready(self) -> None:
        """The launcher's process boots (~30 ms of Python) on the other core while the apply plans."""
        if self._uses_launcher and self._held is None:
            self._the_launcher().boot()

    def queue_starts(self, running: int, held_until: Callable[[], float | None]) -> int:
        """With the resident launcher, starts go to it ahead of a free slot: it runs `running` jobs at once and
        starts a waiting one the moment a job has been reaped (no round trip through this process's threads)."""
        if not self._uses_launcher:
            return 0
        if self._held is not None:  # a new run on a provider whose last one stopped: a launcher that starts again
            self._held = None
            with self._lock:
                launcher, self._launcher = self._launcher, None
            if launcher is not None:
                launcher.close()
        self._running_limit, self._held_until = max(1, running), held_until
        return min(self._running_limit, START_AHEAD_MAX)

    def hold(self, why: str) -> None:
        with self._lock:
            if self._held is not None:  # (said once: every job's watcher says it on a Ctrl-C)
                return
            self._held, launcher = why, self._launcher
        if launcher is not None:
            launcher.hold(why)

    # ---- plan time -----------------------------------------------------------------------------
    def resolve_config(self, node: NodeSpec) -> dict[str, Any]:
        return dict(node.job_config)  # no project defaults on this machine

    # ---- start -----------------------------------------------------------------------------------
    def prepare(self, job: JobSpec) -> None:
        """The job's folder with its inputs written, while the job waits for a slot (taken by `start`)."""
        if job.kind == "export_artifacts":
            return
        short = _short_id()
        try:
            folder = self._prepared_folder(job, short)
        except (FlowsError, OSError):
            return  # the start tries again and reports it
        log_fd = None
        if job.log_path and self._uses_launcher:
            try:  # (a new file costs ~1 ms on ext4: made here, not while the job's slot waits for it)
                self._log_folder(job.log_path)
                log_fd = sandbox.open_log(job.log_path)
            except OSError:
                pass  # the start opens it again and reports it
        with self._lock:
            earlier = self._prepared.pop((job.run_id, job.address, job.attempt), None)
            self._prepared[(job.run_id, job.address, job.attempt)] = _Prepared(folder, short, job.log_path, log_fd)
        if earlier is not None:
            earlier.discard(self._retired)

    def start(self, job: JobSpec) -> JobHandle:
        if job.kind == "export_artifacts":  # no process: done in wait(), where a failure becomes a result
            short = _short_id()
            log = Path(job.log_path) if job.log_path else self.logs_dir / "local" / f"{short}.log"
            job_id = f"local-{os.getpid()}-{short}"
            self._remember(job_id, {"log": str(log)})
            return JobHandle(provider=self.name, job_id=job_id,
                             data={"kind": job.kind, "pid": os.getpid(), "log": str(log)})
        if self._held is not None:  # (its prepared folder and log are left to `close`)
            raise NotStartedError(self._held)
        # (before the prepared folder and log are taken: a command that cannot be built leaves them to `close`)
        command = self._command(job)
        env = self._project_env(job.project_root)
        variables = jobenv.job_variables(run_id=job.run_id, address=job.address, attempt=job.attempt,
                                         working_dir=sandbox.CODE if self.isolated else job.project_root)
        with self._lock:
            prepared = self._prepared.pop((job.run_id, job.address, job.attempt), None)
        if prepared is not None and prepared.log_path != job.log_path:  # (prepared for another log: not its own)
            prepared.close_log()
        short = prepared.short if prepared is not None else _short_id()
        log = Path(job.log_path) if job.log_path else self.logs_dir / "local" / f"{short}.log"
        folder = prepared.folder if prepared is not None else self._prepared_folder(job, short)
        log_fd = prepared.take_log() if prepared is not None else None
        try:
            proc = self._spawn(command, cwd=Path(job.project_root), workflow_dir=folder, log_path=log, env=env,
                               job_env=variables, log_fd=log_fd)
        except FlowsError:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        except OSError as e:
            shutil.rmtree(folder, ignore_errors=True)
            raise ProviderError(redact(f"cannot start the job: {e}"), node=job.address) from None
        job_id = f"local-{proc.pid}-{short}"
        with self._lock:
            self._running[job_id] = _Running(proc=proc, folder=folder, log=log, started=time.monotonic())
        log_text, folder_text = str(log), str(folder)
        info: dict[str, Any] = {"log": log_text, "pid": proc.pid, "folder": folder_text}
        if isinstance(proc, sandbox.LaunchedJob):  # its launcher (recover finds the job as that launcher's child)
            info["launcher"], info["launcher_start"] = proc.launcher.pid, proc.launcher.started()
        else:
            info["proc_start"] = process_group.process_start(proc.pid)
        self._remember(job_id, info)
        return trusted(JobHandle, provider=self.name, job_id=job_id,
                       data={"kind": job.kind, "pid": proc.pid, "folder": folder_text, "log": log_text})

    def _launcher_env(self, project_root: Path, project_env: dict[str, str]) -> dict[str, str]:
        """The environment every launched job of the project starts from (this process's, the project's variables,
        the job folders' fixed places): made again only when this process's environment changed, and otherwise
        the same dict, never changed (the launcher keeps it: a job sends its own variables only)."""
        key = (env_signature(), str(project_root))
        made = self._launcher_envs.get(key)
        if made is None:
            made = sandbox.job_env(Path(sandbox.WORKFLOW), project_root, project_env, True)
            self._launcher_envs = {key: made}  # (one kept: an environment that changed is not asked for again)
        return made

    def _project_env(self, project_root: str) -> dict[str, str]:
        """What every job of the project gets alike (made once per project, not per job)."""
        env = self._project_envs.get(project_root)
        if env is None:
            env = {"PYTHONUNBUFFERED": "1", **jobenv.project_variables(Path(project_root), self.domino_settings)}
            self._project_envs[project_root] = env
        return env

    def _prepared_folder(self, job: JobSpec, short: str) -> Path:
        """The job's folder with its inputs written: an emptied one of a finished job when there is one (see
        `providers.job_folders`), else a new one."""
        reused = self._retired.take(job.inputs) if self.contained else None
        if reused is not None:
            folder, kept = reused
            try:
                written = self._write_inputs(job, folder / "inputs")
                for stale in kept - written:  # (an optional input not given this time: no file, as on Domino)
                    os.unlink(folder / "inputs" / stale)
                return folder
            except (OSError, ProviderError):
                pass  # something of the last job's left in the way: this job gets a new folder (the same error
                # with a new folder is this job's own)
        try:
            folder = self._job_folder(job, short)
        except OSError as e:  # e.g. .flows not writable: one line, not a traceback
            raise ProviderError(redact(f"cannot create the job's folder: {e}"), node=job.address) from None
        try:
            self._write_inputs(job, folder / "inputs")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return folder

    def _job_folder(self, job: JobSpec, short: str) -> Path:
        address = hashlib.sha1(job.address.encode()).hexdigest()[:12]
        run = "".join(c if c.isalnum() or c in "-_." else "_" for c in job.run_id) or "run"
        folder = self.jobs_dir / run / f"{address}.{job.attempt}.{short}"
        with self._lock:
            try:
                folder.mkdir()
            except FileNotFoundError:  # the run's first job
                folder.parent.mkdir(parents=True, exist_ok=True)
                folder.mkdir()
            (folder / "inputs").mkdir()
            (folder / "outputs").mkdir()
        return folder

    def _command(self, job: JobSpec) -> str:
        if job.kind != "python":
            return launcher.launch(job.command)  # `scripts/x.py --day 3` runs as on Domino
        if not job.python:
            raise ProviderError("python task without a function reference", node=job.address)
        return pytask.command(sys.executable, job, job.python["file"])

    def _write_inputs(self, job: JobSpec, inputs_dir: Path) -> set[str]:
        """The job's inputs in Domino's formats (`providers.jobio`), errors naming the node; the names written."""
        try:
            return jobio.write_inputs(job.inputs, inputs_dir, self.blobs, made=True)
        except jobio.InputsError as e:
            raise ProviderError(str(e), node=job.address) from None

    # ---- wait / stop -----------------------------------------------------------------------------
    def wait(self, handle: JobHandle, job: JobSpec, cancel: threading.Event,
             on_status: StatusCallback | None = None, on_ended: EndedCallback | None = None) -> JobResult:
        if handle.data.get("kind") == "export_artifacts":
            return self._export(job, Path(handle.data["log"]))
        with self._lock:
            running = self._running.get(handle.job_id)
        if running is None:
            return JobResult(status="failed", error=f"job {handle.job_id} is not running in this process")
        try:
            return self._watch(handle.job_id, running, job, cancel, on_ended)
        finally:
            with self._lock:
                self._running.pop(handle.job_id, None)
                self._stopped.discard(handle.job_id)
            # emptied now, for the next job when nothing of this one can still run; removed at close
            # (providers/job_folders.py)
            self._retired.add(running.folder, reuse=running.ended_whole)

    def _watch(self, job_id: str, running: _Running, job: JobSpec, cancel: threading.Event,
               on_ended: EndedCallback | None) -> JobResult:
        try:
            return self._watch_job(job_id, running, job, cancel, on_ended)
        finally:
            if isinstance(running.proc, process_group.PopenGroup):
                running.proc.close()

    def _watch_job(self, job_id: str, running: _Running, job: JobSpec, cancel: threading.Event,
                   on_ended: EndedCallback | None) -> JobResult:
        proc = running.proc
        deadline = running.started + job.timeout_seconds if job.timeout_seconds else None
        # A launched job's exit wakes its waiter at once (its reply socket): the interval only bounds how soon a
        # cancel or a deadline is seen, so it starts at the longest (no timed-out waits while a quick job runs).
        interval = POLL_MAX if isinstance(proc, sandbox.LaunchedJob) else POLL_MIN
        while not proc.exited():
            if cancel.is_set() or job_id in self._stopped:
                if cancel.is_set():  # before the kill frees a slot: no start waiting in the launcher takes it
                    self.hold("not started: apply interrupted")
                self._kill(proc)
                why = "stopped" if job_id in self._stopped else "cancelled"
                return JobResult(status="cancelled", error=why, log_tail=_tail(running.log))
            if deadline is not None and time.monotonic() >= deadline:
                self._kill(proc)
                return JobResult(status="timed_out", error=f"timed out after {_seconds(job.timeout_seconds)}",
                                 log_tail=_tail(running.log))
            left = deadline - time.monotonic() if deadline is not None else POLL_MAX
            # wakes on exit at once (pidfd, or the launcher's message); looks at cancel/deadline every POLL_MAX
            proc.wait_exit(min(interval, left))
            interval = min(interval * 2, POLL_MAX)
        proc.signal(signal.SIGKILL)  # like a finished container: nothing the job left behind runs on
        code = proc.wait()
        # (the kernel reaps a PID namespace's every process before its first one's exit is reported; a job
        # whose launcher died is killed by a signal that may still be on its way)
        running.ended_whole = self.contained and code != sandbox.LAUNCHER_GONE
        if on_ended is not None:
            on_ended()  # every process of it has ended: the next job may start while its outputs are stored
        if job_id in self._stopped:
            return JobResult(status="cancelled", error="stopped", log_tail=_tail(running.log))
        if code == sandbox.LAUNCHER_GONE:
            gone = self._launcher.dead() if self._launcher is not None else None
            return JobResult(status="failed", error=f"the job was killed: {gone or 'its launcher is gone'}",
                             log_tail=_tail(running.log))
        if code != 0:
            error = f"exit code {code}" if code > 0 else f"killed by signal {-code}"
            return JobResult(status="failed", error=error, log_tail=_tail(running.log))
        try:
            outputs, warnings = self._collect(job, running.folder / "outputs")
        except jobio.OutputsError as e:
            return JobResult(status="failed", error=redact(str(e)), log_tail=_tail(running.log))
        return JobResult(status="succeeded", outputs=outputs, warnings=warnings)

    def _kill(self, proc: JobProcess) -> None:
        process_group.stop_with_grace(proc, self.kill_grace)
        proc.wait()

    def stop(self, handle: JobHandle) -> None:
        with self._lock:
            running = self._running.get(handle.job_id)
            self._stopped.add(handle.job_id)
        if running is not None:
            self._kill(running.proc)

    def attach(self, job_id: str, job: JobSpec) -> JobHandle | None:
        """Only a job of this very process can be waited for (an orphan's exit status is lost with its
        parent). An orphan still running from a killed apply is stopped, so it cannot race the re-run."""
        with self._lock:
            running = self._running.get(job_id)
        if running is not None:
            return JobHandle(provider=self.name, job_id=job_id,
                             data={"kind": job.kind, "pid": running.proc.pid, "folder": str(running.folder),
                                   "log": str(running.log)})
        info = self._recall(job_id)
        pid = info.get("pid")
        started = info.get("proc_start") if isinstance(pid, int) else None
        if isinstance(pid, int) and isinstance(info.get("launcher"), int):
            started = _child_of_launcher(pid, info["launcher"], info.get("launcher_start"))
        if isinstance(pid, int) and started and process_group.process_start(pid) == started:
            process_group.stop_with_grace(process_group.OrphanGroup(pid, started), self.kill_grace)
        if info.get("folder"):
            shutil.rmtree(info["folder"], ignore_errors=True)
        return None

    def find_started(self, run_id: str, address: str, attempt: int) -> str | None:
        return None  # a local job never outlives its apply: there is nothing to find

    def job_status(self, job_id: str) -> str:
        return "unknown"  # an orphan's exit status is lost with its parent

    def logs(self, job_id: str) -> str:
        log = self._recall(job_id).get("log")
        if not log or not Path(log).is_file():
            raise ProviderError(f"no log for local job {job_id}")
        return redact(Path(log).read_text(errors="replace"))

    # job id -> {log, pid, folder, proc_start}: so `flows logs` and recover work from another process. One
    # append-only file per provider (an apply), a line per job: a file per job cost an inode per job.
    def _index_dir(self) -> Path:
        return self.logs_dir / ".local-jobs"

    def _remember(self, job_id: str, info: dict[str, Any]) -> None:
        line = (json.dumps({"job": job_id, **info}) + "\n").encode()
        with self._lock:
            if self._index_fd is None:
                path = self._index_dir() / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                try:
                    self._index_fd = os.open(path, flags, 0o644)
                except FileNotFoundError:  # its folder is made on first need
                    path.parent.mkdir(parents=True, exist_ok=True)
                    self._index_fd = os.open(path, flags, 0o644)
                weakref.finalize(self, os.close, self._index_fd)
            os.write(self._index_fd, line)  # one write of one line in append mode: lines never interleave

    def _recall(self, job_id: str) -> dict[str, Any]:
        if "/" in job_id or not job_id.startswith("local-"):
            return {}
        folder = self._index_dir()
        try:  # a job of an apply before the index files (a file of its own)
            info = json.loads((folder / f"{job_id}.json").read_text())
            return info if isinstance(info, dict) else {}
        except (OSError, ValueError):
            pass
        needle = b'{"job": ' + json.dumps(job_id).encode() + b", "
        try:
            files = sorted(folder.glob("*.jsonl"), key=_mtime, reverse=True)  # the latest applies first
        except OSError:
            return {}
        for path in files:
            try:
                data = path.read_bytes()
            except OSError:
                continue
            at = data.rfind(b"\n" + needle) + 1 or (0 if data.startswith(needle) else -1)
            if at >= 0:
                try:
                    info = json.loads(data[at:data.find(b"\n", at)])
                except ValueError:
                    continue
                return info if isinstance(info, dict) else {}
        return {}

    # ---- outputs ---------------------------------------------------------------------------------
    def _collect(self, job: JobSpec, out_dir: Path) -> tuple[dict[str, OutputRecord], list[str]]:
        """Check, parse and store the declared outputs (`providers.jobio`); raises jobio.OutputsError."""
        # The folder goes next; when nothing the job started can still run, its files may become the blobs
        # themselves (a hard link); otherwise a process it left behind could write to them: private copies.
        return jobio.collect_outputs(job.outputs, out_dir, self.blobs, consume=self.contained)

    # ---- export artifacts ------------------------------------------------------------------------
    def _export(self, job: JobSpec, log: Path) -> JobResult:
        """The local stand-in for Domino's export: the artifact's files are copied into
        `<project>/.flows/exports/<dataset | volume | bundle id>/<artifact>/<file>`."""
        root = Path(job.project_root) / ".flows" / "exports"
        artifacts = {spec["artifact"] for spec in job.export_specs}
        lines: list[str] = []
        try:
            for input_name, value in job.inputs.items():
                matches = [a for a in artifacts if input_name.startswith(_safe_name(a) + ".")]
                if not matches:
                    continue
                artifact = max(matches, key=len)  # "a.b.x.csv" belongs to artifact "a.b", not "a"
                file_name = input_name[len(_safe_name(artifact)) + 1:]
                for spec in job.export_specs:
                    if spec["artifact"] != artifact or file_name not in spec.get("files", [file_name]):
                        continue  # another artifact's spec, or a bundle spec naming other files
                    target = (spec.get("dataset_id") or spec.get("netapp_volume_id") or spec.get("bundle_id")
                              or spec.get("kind", "export"))
                    try:
                        dest = ensure_inside(root, f"{target}/{artifact}/{file_name}")
                    except ValueError:
                        raise ProviderError(f"export target '{target}/{artifact}/{file_name}' escapes {root}",
                                            node=job.address) from None
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    location = value.uri if value.uri is not None else value.value
                    if location is None:
                        continue  # an optional file that was not produced
                    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
                    try:
                        jobio.fetch(input_name, pytask.inner_type(value.type), os.fspath(location), tmp, self.blobs)
                    except jobio.InputsError as e:
                        raise ProviderError(str(e), node=job.address) from None
                    os.replace(tmp, dest)
                    lines.append(f"exported {input_name} -> {dest}")
        except FlowsError as e:
            _append_log(log, lines + [f"export failed: {e.message}"])
            return JobResult(status="failed", error=e.message, log_tail="\n".join(lines[-LOG_TAIL_LINES:]))
        _append_log(log, lines or ["nothing to export"])
        return JobResult(status="succeeded")


# ---- helpers ---------------------------------------------------------------------------------------

_IDS = random.Random()  # (its own generator, seeded from the system: a flow that seeds `random` does not set it)
os.register_at_fork(after_in_child=_IDS.seed)  # (a forked child draws its own)


def _short_id() -> str:
    """The random part of a job's id and folder name: 8 hex digits, not a UUID per job (a system call and an
    object each)."""
    return f"{_IDS.getrandbits(32):08x}"


def _child_of_launcher(pid: int, launcher: int, launcher_start: object) -> str | None:
    """The start time of process `pid` when it is still a child of the launcher that started the job (the same
    launcher: its start time matches), else None. A child of that launcher with the job's pid is the job, or,
    after the pids wrapped around, another job of the same apply: an orphan of it all the same."""
    if not launcher_start or process_group.process_start(launcher) != launcher_start:
        return None  # the launcher is gone (and every job of it: they die with it)
    found = process_group.parent_and_start(pid)
    return found[1] if found is not None and found[0] == launcher else None


def _tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 64 * 1024))
            data = f.read()
    except OSError:
        return ""
    return redact("\n".join(data.decode(errors="replace").splitlines()[-lines:]))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _append_log(log: Path, lines: list[str]) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write("".join(line + "\n" for line in lines))


def _seconds(value: float | None) -> str:
    """`2s`, `0.5s`, `1m30s`, `3h`: how a timeout is shown."""
    seconds = float(value or 0)
    if seconds < 60 or seconds != int(seconds):
        return f"{seconds:g}s"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{v}{unit}" for v, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if v)


def _safe_name(name: str) -> str:
    """How the authoring API names export inputs (`<artifact>.<file>`, spaces and slashes made safe)."""
    return name.replace(" ", "_").replace("/", "_")
