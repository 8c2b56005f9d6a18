"""Stopping a job: the one kill-with-grace, for the local provider's jobs, an orphan a killed apply left, and the
emulator's jobs. A job leads its own process group (or PID namespace), so a stop reaches what it started too."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from typing import Protocol

POLL = 0.01  # seconds between looks at a process that gives no exit notice (no pidfd, not our child)


class Stoppable(Protocol):
    def signal(self, sig: int) -> None: ...

    def wait_exit(self, timeout: float) -> bool:
        """True once the job has exited (waiting at most `timeout` seconds), without reaping it."""
        ...


def stop_with_grace(job: Stoppable, grace: float) -> None:
    """SIGTERM, up to `grace` seconds to exit, then SIGKILL to the whole group: children that ignored the SIGTERM
    or outlived their leader end too (with `grace` 0, SIGKILL at once)."""
    if grace > 0:
        job.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while not job.wait_exit(min(POLL, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                break
    job.signal(signal.SIGKILL)


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


class PopenGroup:
    """A child process leading its own group (`start_new_session=True`). Its exit is seen without reaping it:
    until it is reaped its pid, and so its group id, cannot be reused, so signalling the group stays safe."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid
        self._exit_fd = _pidfd(proc.pid)  # readable the moment it exits: no polling latency per job

    def exited(self) -> bool:
        if self.proc.returncode is not None:
            return True
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def wait_exit(self, timeout: float) -> bool:
        fd = self._exit_fd
        if self.exited():
            return True
        if fd is None:  # no pidfd here: the caller polls
            time.sleep(max(0.0, timeout))
            return self.exited()
        try:
            select.select([fd], [], [], max(0.0, timeout))
        except (OSError, ValueError):  # closed by the watching thread meanwhile (a stop from another thread)
            time.sleep(max(0.0, min(timeout, POLL)))
        return self.exited()

    def signal(self, sig: int) -> None:
        signal_group(self.pid, sig)

    def wait(self) -> int:
        return self.proc.wait()

    def close(self) -> None:
        """By the thread that watched the job, when done (a stop from another thread may still wait on it)."""
        if self._exit_fd is not None:
            os.close(self._exit_fd)
            self._exit_fd = None


class OrphanGroup:
    """A job's group whose leader is not our child (a killed apply's job), found by pid and start time (the
    caller checks that the start time is the job's: a later process that got the same pid is not it)."""

    def __init__(self, pid: int, started: str) -> None:
        self.pid = pid
        self.started = started

    def signal(self, sig: int) -> None:
        signal_group(self.pid, sig)

    def wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while process_start(self.pid) == self.started:
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
        return True


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks (Linux), to tell it from a later process with the same pid;
    None for no process or a zombie."""
    fields = _stat_fields(pid)
    return fields[19] if len(fields) > 19 and fields[0] != "Z" else None


def parent_and_start(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a live process (not a zombie), or None."""
    fields = _stat_fields(pid)
    return (int(fields[1]), fields[19]) if len(fields) > 19 and fields[0] != "Z" else None


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (state, ppid, ...: field 3 onwards), or [] for no process."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        stat = os.read(fd, 4096)
    except OSError:
        return []
    finally:
        os.close(fd)
    return stat.rsplit(b")", 1)[-1].decode(errors="replace").split()


def _pidfd(pid: int) -> int | None:
    """A pidfd for the process (Linux 5.3+), or None where there is none (then the caller polls)."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
