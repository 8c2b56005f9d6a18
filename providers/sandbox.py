"""Run a job's shell command the way a Domino job sees the world, on this machine.

Each job gets a private mount namespace in which its own folder is `/workflow` (with `inputs/`
and `outputs/`) and the project root is `/mnt/code`, so unmodified job scripts that read
`/workflow/inputs/<name>` and run `python /mnt/code/scripts/x.py` work, and parallel jobs never see
each other's files. The project's `.flows/` (state, blobs, stat cache, logs) is an empty read-only
folder there, under both names of the project. Each job also gets a PID namespace of its own: when the
job ends (or is stopped), every process it started ends with it, detached (`setsid`, `&`) or not, like
a finished container. All of it is flags of the one `unshare` per job (`--pid --fork --mount-proc`).
Where namespaces are not available, jobs still get `FLOWS_INPUTS_DIR` / `FLOWS_OUTPUTS_DIR`, and the
caller must run them one at a time (`isolation_available()` is False).
"""
from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Iterable

from providers.joblog import MaskedLogPopen

WORKFLOW = "/workflow"
CODE = "/mnt/code"
PID_FLAGS = ["--pid", "--fork", "--mount-proc", "--kill-child"]


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


def job_env(workflow_dir: Path, project_root: Path, extra: dict[str, str] | None, isolated: bool) -> dict[str, str]:
    env = dict(os.environ)
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
