"""The one kill-with-grace (providers/process_group.py): TERM, then KILL to the whole group, for our own child and
for an orphan known by pid and start time."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from providers.process_group import OrphanGroup, PopenGroup, process_start, stop_with_grace
from tests.fixtures.waiting import alive, wait_until

# The leader ignores SIGTERM; a child it started in the background outlives it unless the group is killed.
STUBBORN = "trap '' TERM; sleep 600 & echo $! > {child}; echo ready > {ready}; while :; do sleep 0.05; done"


def _start(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    child, ready = tmp_path / "child", tmp_path / "ready"
    proc = subprocess.Popen(["bash", "-c", STUBBORN.format(child=child, ready=ready)], start_new_session=True)
    wait_until(ready.exists, what="the job to start its child")
    return proc, child


def test_a_job_ignoring_sigterm_and_its_child_are_killed_after_the_grace(tmp_path: Path) -> None:
    proc, child = _start(tmp_path)
    group = PopenGroup(proc)
    stop_with_grace(group, grace=0.2)
    assert proc.wait(timeout=30) == -9
    group.close()
    wait_until(lambda: not alive(int(child.read_text())), what="the job's child to be gone")


def test_an_orphan_is_stopped_by_pid_and_start_time(tmp_path: Path) -> None:
    proc, child = _start(tmp_path)
    started = process_start(proc.pid)
    assert started is not None
    stop_with_grace(OrphanGroup(proc.pid, started), grace=0.2)
    assert proc.wait(timeout=30) == -9
    wait_until(lambda: not alive(int(child.read_text())), what="the orphan's child to be gone")


def test_a_pid_with_another_start_time_is_not_waited_for(tmp_path: Path) -> None:
    proc, _child = _start(tmp_path)
    try:
        assert OrphanGroup(proc.pid, "not-its-start-time").wait_exit(5.0)  # "exited": not the job we knew
        assert proc.poll() is None
    finally:
        stop_with_grace(PopenGroup(proc), grace=0)
        proc.wait(timeout=30)


def test_a_launched_job_is_found_again_only_as_a_child_of_the_launcher_that_started_it() -> None:
    """Recover tells a launched job from a later process with its pid by its parent: the same launcher (pid and
    start time), still running."""
    from providers.local import _child_of_launcher
    child = subprocess.Popen(["sleep", "30"])
    try:
        me, my_start = os.getpid(), process_start(os.getpid())
        assert _child_of_launcher(child.pid, me, my_start) == process_start(child.pid) is not None
        assert _child_of_launcher(child.pid, me, "1") is None  # another process with the launcher's pid
        assert _child_of_launcher(child.pid, 1, process_start(1)) is None  # not that launcher's child
        assert _child_of_launcher(os.getpid(), me, my_start) is None  # (a process is not its own child)
    finally:
        child.kill()
        child.wait()
    assert _child_of_launcher(child.pid, me, my_start) is None  # gone
