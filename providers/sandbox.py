"""Run a job's shell command the way a Domino job sees the world, on this machine.

Each job gets a private mount namespace in which its own folder is `/workflow` (with `inputs/`
and `outputs/`) and the project root is `/mnt/code`, so unmodified job scripts that read
`/workflow/inputs/<name>` and run `python /mnt/code/scripts/x.py` work, and parallel jobs never see
each other's files. The project's `.flows/` (state, blobs, stat cache, logs) is an empty read-only
folder there, under both names of the project. Each job also gets a PID namespace of its own: when the
job ends (or is stopped), every process it started ends with it, detached (`setsid`, `&`) or not, like
a finished container. As root, one resident launcher per apply (`Launcher`, `providers/nslauncher.py`) forks every job straight
into those namespaces; otherwise (a user namespace is needed) it is flags of one `unshare` per job (`--pid
--fork --mount-proc`) and `mount` commands. Where namespaces are not available, jobs still get `FLOWS_INPUTS_DIR` / `FLOWS_OUTPUTS_DIR`, and the
caller must run them one at a time (`isolation_available()` is False).
"""
from __future__ import annotations

import functools
import json
import marshal
import os
import re
import shlex
import shutil
import socket
import _socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterable

from providers import process_group
from providers.joblog import MaskedLogPopen, pump_thread
from vocab.masking import env_signature, secret_values

WORKFLOW = "/workflow"
# The launcher runs as a script of its own (not imported here: it loads ctypes and libc at import).
LAUNCHER = Path(__file__).with_name("nslauncher.py")
LAUNCHER_MACHINES = ("x86_64", "aarch64")  # where it knows clone's system call number (nslauncher.SYS_CLONE)
CODE = "/mnt/code"
PID_FLAGS = ["--pid", "--fork", "--mount-proc", "--kill-child"]
# The two answers every job gets, as the launcher writes them (read without the json module: twice per job)
_PLAIN_ANSWER = re.compile(rb'\{"op": "(started|exited)", "(pid|code)": (-?[0-9]+)\}')


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[bool, bool]:
    """(private mounts, private PIDs): what `unshare` can give a job here (root, or user namespaces)."""
    if not shutil.which("unshare"):
        return False, False
    for mount_point in (WORKFLOW, CODE):
        try:
            os.makedirs(mount_point, exist_ok=True)
        except OSError:
            return False, False
    for pids in (True, False):
        try:
            probe = subprocess.run(_unshare_prefix(pids) + ["true"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return True, pids
    return False, False


def isolation_available() -> bool:
    """Whether `unshare` can give a job a private mount namespace here."""
    return _probe()[0]


def pid_namespace_available() -> bool:
    """Whether each job also gets its own PID namespace (so nothing it starts outlives it)."""
    return _probe()[1]


def _unshare_prefix(pids: bool = True) -> list[str]:
    prefix = ["unshare", "--mount", "--propagation", "private", *(PID_FLAGS if pids else [])]
    if os.geteuid() != 0:
        prefix[1:1] = ["--user", "--map-root-user"]
    return prefix


_environ: tuple[object, dict[str, str]] | None = None


def _own_environ() -> dict[str, str]:
    """A copy of this process's environment: decoded once, again only when it changes."""
    global _environ
    signature = env_signature()
    if _environ is None or _environ[0] != signature:
        _environ = (signature, dict(os.environ))
    return dict(_environ[1])


def job_env(workflow_dir: Path, project_root: Path, extra: dict[str, str] | None, isolated: bool) -> dict[str, str]:
    env = _own_environ()
    env.update(extra or {})
    base = WORKFLOW if isolated else str(workflow_dir)
    env["FLOWS_INPUTS_DIR"] = f"{base}/inputs"
    env["FLOWS_OUTPUTS_DIR"] = f"{base}/outputs"
    env["FLOWS_PROJECT_ROOT"] = CODE if isolated else str(project_root)
    return env


def _outermost(folders: Iterable[Path]) -> list[str]:
    """The existing folders of `folders`, without those inside another (hidden with it already)."""
    found = sorted({os.path.realpath(f) for f in folders if Path(f).is_dir()})
    return [f for i, f in enumerate(found) if not any(f.startswith(g.rstrip("/") + "/") for g in found[:i])]


def launcher_available() -> bool:
    """Whether jobs can be forked straight into their namespaces by a resident launcher: as root (no user
    namespace to map), where `unshare` proved that mount and PID namespaces work, on a known architecture."""
    return os.geteuid() == 0 and os.uname().machine in LAUNCHER_MACHINES and pid_namespace_available()


def spawn(command: str, *, cwd: Path, workflow_dir: Path, log_path: Path,
          env: dict[str, str] | None = None, isolate: bool | None = None,
          hide: Iterable[Path] = ()) -> subprocess.Popen[bytes]:
    """Start `bash -c command` with `workflow_dir` at /workflow and `cwd` (the project root) at /mnt/code,
    each folder of `hide` (e.g. the project's `.flows/`) an empty read-only one, in its own PID namespace.

    stdout and stderr go to `log_path`, masked. The child leads its own process group so it can be stopped whole.
    """
    isolated = isolation_available() if isolate is None else isolate
    (workflow_dir / "inputs").mkdir(parents=True, exist_ok=True)
    (workflow_dir / "outputs").mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if isolated:
        # Order matters: /workflow is bound before `.flows/` (which holds the job's folder) is hidden, and the
        # project is bound (recursively) after, so /mnt/code/.flows is hidden too.
        mounts = [f"mount --bind {shlex.quote(str(workflow_dir))} {WORKFLOW}"]
        mounts += [f"mount -t tmpfs -o ro,size=4k,mode=0555 flows-hidden {shlex.quote(folder)}"
                   for folder in _outermost(hide)]
        mounts += [f"mount --rbind {shlex.quote(str(cwd))} {CODE}", f"cd {shlex.quote(str(cwd))}"]
        # The command runs in this same bash after the mounts (one exec less per job than `exec bash -c`).
        # The EXIT trap keeps bash from exec'ing the command's last line: bash stays PID 1 of the namespace
        # (it reaps orphans; a PID 1 would not get the SIGTERM of a stop), the command runs under it.
        script = f"trap : EXIT; {' && '.join(mounts)} || exit 125\n{command}"
        argv = _unshare_prefix(pid_namespace_available()) + ["bash", "-c", script]
    else:
        argv = ["bash", "-c", command]
    # masked as it is written (providers/joblog.py): the raw log of a job never reaches the disk
    return MaskedLogPopen(argv, log_path=log_path, cwd=cwd, env=job_env(workflow_dir, cwd, env, isolated),
                          stdin=subprocess.DEVNULL, start_new_session=True)


# ---- the resident launcher -------------------------------------------------------------------------------

def open_log(log_path: str | Path) -> int:
    """A job's log file, for its stdout and stderr (appended to: a re-attached job's log goes on)."""
    return os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)


class LauncherError(Exception):
    """The launcher could not start a job, or is gone; the message says why."""


class StartHeld(LauncherError):
    """The launcher held the start back for good (`Launcher.hold`: the apply stops); the message says why."""


class StartExpired(LauncherError):
    """The start's turn came after its `start_by`: ask the lock again, and send it again."""


class LaunchedJob:
    """A job started by the `Launcher`: its answers (started, exited) come on a reply socket of its own, read by
    whichever thread waits for it; signals go through the launcher, which knows whether the job has been reaped
    (so a signal never reaches a reused pid)."""

    def __init__(self, launcher: "Launcher", job_id: int, reply: _socket.socket) -> None:
        self.launcher = launcher
        self.id = job_id
        self.pid = 0
        self.returncode: int | None = None
        self.log_done: threading.Thread | None = None  # the masking pump, when the log needs one
        self._reply: _socket.socket | None = reply
        self._reading = threading.Lock()  # one reader of the reply socket at a time
        self._timeout: float | None = reply.gettimeout()  # the reply socket's, as last set

    def answer(self, timeout: float | None) -> dict[str, Any] | None:
        """The launcher's next answer about this job; None when none came within `timeout` (None: no limit). A
        reply socket that closes unanswered means the launcher is gone: `exited` with LAUNCHER_GONE."""
        reply = self._reply
        assert reply is not None
        if timeout != self._timeout:  # (each change is a system call; a job's waits mostly repeat the last)
            reply.settimeout(timeout)
            self._timeout = timeout
        try:
            data = reply.recv(1 << 16)
        except (TimeoutError, BlockingIOError):  # (a timeout of 0 makes the socket non-blocking)
            return None
        except OSError:
            data = b""
        if not data:
            why = self.launcher.gone()
            return {"op": "exited", "code": LAUNCHER_GONE, "error": why}
        plain = _PLAIN_ANSWER.fullmatch(data)
        if plain is not None:
            return {"op": plain[1].decode(), plain[2].decode(): int(plain[3])}
        message: dict[str, Any] = json.loads(data)
        return message

    def exited(self) -> bool:
        return self.returncode is not None

    def wait_exit(self, timeout: float | None) -> bool:
        if self.returncode is not None:
            return True
        if not self._reading.acquire(timeout=-1 if timeout is None else timeout):
            return self.returncode is not None
        try:
            if self.returncode is None:
                message = self.answer(timeout)
                if message is not None:  # (only `exited` comes after `started`)
                    self.returncode = int(message["code"])
                    self._close()
        finally:
            self._reading.release()
        return self.returncode is not None

    def _close(self) -> None:
        if self._reply is not None:
            self._reply.close()
            self._reply = None

    def signal(self, sig: int) -> None:
        if self.returncode is None:
            self.launcher.kill(self, sig)

    def wait(self) -> int:
        self.wait_exit(None)
        if self.log_done is not None:
            from providers.joblog import DRAIN_SECONDS
            self.log_done.join(DRAIN_SECONDS)
        assert self.returncode is not None
        return self.returncode


ENV_CHANGES_MAX = 16  # variables a job's environment may differ in from the launcher's base before a new base
LAUNCHER_GONE = -255  # the return code of a job whose launcher died: it was killed with it


class Launcher:
    """One resident launcher process (`providers/nslauncher.py`), started on first use; every job is a fork
    of it into fresh namespaces, with no `unshare`/`mount` exec per job. Each job's start and exit come back on
    a socket of its own, to the thread that waits for that job (no reader thread, no hand-off between threads).
    Closing it (or this process ending) closes the socket, and the launcher kills what still runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._next = 0
        self._dead: str | None = None
        self._bash = shutil.which("bash") or "/bin/bash"
        self._hidden: dict[tuple[str, ...], list[str]] = {}  # `hide` -> the folders to mount over, once all exist
        self._env_base: dict[str, str] | None = None  # the environment the launcher keeps (see _env_against_base)
        self._env_base_id = 0
        self._env_source: dict[str, str] | None = None  # the caller's dict the base was made from (see above)
        self._started: str | None = None  # the process's start time, once asked (`started`)

    def _ensure(self) -> socket.socket:
        if self._dead is not None:
            raise LauncherError(self._dead)
        if self._sock is None:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                # -I -S: no site-packages, no environment: the launcher is small, and so is each fork of it
                self._proc = subprocess.Popen([sys.executable, "-I", "-S", str(LAUNCHER), str(theirs.fileno())],
                                              pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL, start_new_session=True)
            finally:
                theirs.close()
            self._sock = ours
        return self._sock

    def boot(self) -> None:
        """Start the launcher's process now, not at the first spawn (which then finds it running)."""
        with self._lock:
            self._ensure()

    def gone(self) -> str:
        """A job's reply socket closed unanswered: the launcher exited (or was closed). Nothing more starts."""
        with self._lock:
            self._dead = self._dead or "the job launcher exited"
            return self._dead

    def _folders_to_hide(self, hide: Iterable[Path]) -> list[str]:
        key = tuple(map(str, hide))
        found = self._hidden.get(key)
        if found is None:
            found = _outermost(map(Path, key))
            if all(os.path.isdir(folder) for folder in key):  # one made later (the blob store) is looked for again
                self._hidden[key] = found
        return found

    def spawn(self, command: str, *, cwd: Path, workflow_dir: Path, log_path: Path, env: dict[str, str],
              hide: Iterable[Path], log_fd: int | None = None, running: int | None = None,
              start_by: float | None = None, env_changes: dict[str, str] | None = None) -> LaunchedJob:
        """Start `bash -c command` as `spawn` does in the isolated case; returns once it runs (or raises
        LauncherError with the reason; StartHeld after `hold`). `log_fd`: `log_path` opened already (`open_log`);
        closed here. `running`: at most that many jobs run at once; this one waits in the launcher (in the order
        of the calls) until one of them has ended, and starts then without a word from this process, unless its
        turn comes after `start_by` (time.monotonic()): then StartExpired. `env_changes`: the job's environment
        is `env` with these set (`env` then one dict shared by many jobs and never changed: sent once)."""
        values = secret_values()
        if values:  # masked as it is written (a pump thread); with no secret known, the job writes its log itself
            if log_fd is not None:
                os.close(log_fd)  # (the pump opens the log itself)
            read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        else:
            read_fd, write_fd = -1, log_fd if log_fd is not None else open_log(log_path)
        request: dict[str, Any] = {"op": "spawn", "argv": [self._bash, "-c", f"trap : EXIT\n{command}"],
                   "cwd": str(cwd), "workflow": str(workflow_dir), "hide": self._folders_to_hide(hide),
                   "running": running, "start_by": start_by}
        # (the C module's pair: `socket.socketpair` wraps each end again, asking the kernel for its address)
        reply, theirs = _socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with self._lock:
                sock = self._ensure()
                self._next += 1
                job = LaunchedJob(self, self._next, reply)
                request["id"] = job.id
                try:
                    request.update(self._env_against_base(sock, env, env_changes))
                    socket.send_fds(sock, [marshal.dumps(request)], [write_fd, theirs.fileno()])
                except OSError as e:
                    gone = self._proc is not None and self._proc.poll() is not None
                    raise LauncherError("the job launcher exited" if gone else
                                        f"the job launcher is gone ({e.strerror or e})") from None
        except BaseException:
            reply.close()
            if read_fd >= 0:
                os.close(read_fd)
            raise
        finally:
            theirs.close()  # the launcher holds its own copies until the job has them
            os.close(write_fd)
        answer = job.answer(None)
        assert answer is not None
        if answer.get("op") != "started":
            job._close()
            if read_fd >= 0:
                os.close(read_fd)
            error = StartHeld if answer.get("held") else StartExpired if answer.get("expired") else LauncherError
            raise error(str(answer.get("error") or "the job launcher did not start the job"))
        job.pid = int(answer["pid"])
        if read_fd >= 0:
            job.log_done = pump_thread(os.fdopen(read_fd, "rb"), log_path, values)
        return job

    def _env_against_base(self, sock: socket.socket, env: dict[str, str],
                          changes: dict[str, str] | None) -> dict[str, Any]:
        """Under the lock: a job's environment (`env`, with `changes` set) as the changes from one the launcher was
        sent before (`env` message), which it keeps: the jobs of an apply share all but a few variables, and the
        whole environment in every request cost both processes a JSON document of kilobytes per job. A new base
        is sent when a job differs from the last in more than a few variables. With `changes` given, `env` is a
        dict shared by many jobs and never changed: sent as the base itself, and not compared again, variable by
        variable, for each of its jobs (their changes are their own variables)."""
        if changes is not None and env is self._env_source and len(changes) <= ENV_CHANGES_MAX:
            return {"env_base": self._env_base_id, "env": changes, "unset": []}
        whole = {**env, **changes} if changes else env
        base = self._env_base
        if base is not None:
            changed = {k: v for k, v in whole.items() if base.get(k) != v}
            unset = [k for k in base if k not in whole]
            if len(changed) + len(unset) <= ENV_CHANGES_MAX:
                return {"env_base": self._env_base_id, "env": changed, "unset": unset}
        self._env_base_id += 1
        sock.send(marshal.dumps({"op": "env", "id": self._env_base_id, "env": env}))
        self._env_base = dict(env)
        self._env_source = env if changes is not None else None
        return {"env_base": self._env_base_id, "env": dict(changes or {}), "unset": []}

    def hold(self, why: str) -> None:
        """Start nothing more: each start waiting in the launcher, and each later one, fails with StartHeld(why).
        Sent before any kill that follows it, so a job killed now frees no slot for a waiting start."""
        with self._lock:
            if self._sock is None or self._dead is not None:
                return
            try:
                self._sock.send(marshal.dumps({"op": "hold", "why": why}))
            except OSError:
                pass

    def kill(self, job: LaunchedJob, sig: int) -> None:
        with self._lock:
            if self._sock is None or self._dead is not None:
                return
            try:
                self._sock.send(marshal.dumps({"op": "kill", "id": job.id, "sig": int(sig)}))
            except OSError:
                pass

    def close(self) -> None:
        """End the launcher: it kills whatever job still runs, and exits."""
        with self._lock:
            sock, self._sock = self._sock, None
            self._dead = self._dead or "the job launcher was closed"
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # the launcher sees the end
            except OSError:
                pass
            sock.close()
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def started(self) -> str | None:
        """The launcher process's start time (`process_group.process_start`), read once: with its pid, what tells
        its jobs from later processes with their pids (a read of /proc per job cost more than the job's start)."""
        if self._started is None and self.pid is not None:
            self._started = process_group.process_start(self.pid)
        return self._started

    def dead(self) -> str | None:
        return self._dead

