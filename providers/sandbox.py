"""Run a job's shell command the way a Domino job sees the world, on this machine.

Each job gets a private mount namespace in which its own folder is `/workflow` (with `inputs/`
and `outputs/`) and the project root is `/mnt/code`, so unmodified job scripts that read
`/workflow/inputs/<name>` and run `python /mnt/code/scripts/x.py` work, and parallel jobs never see
each other's files. Where namespaces are not available, jobs still get `FLOWS_INPUTS_DIR` /
`FLOWS_OUTPUTS_DIR`, and the caller must run them one at a time (`isolation_available()` is False).
"""
from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
from pathlib import Path

WORKFLOW = "/workflow"
CODE = "/mnt/code"


@functools.lru_cache(maxsize=1)
def isolation_available() -> bool:
    """Whether `unshare` can give a job a private mount namespace here (root, or user namespaces)."""
    if not shutil.which("unshare"):
        return False
    for mount_point in (WORKFLOW, CODE):
        try:
            os.makedirs(mount_point, exist_ok=True)
        except OSError:
            return False
    try:
        probe = subprocess.run(_unshare_prefix() + ["true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def _unshare_prefix() -> list[str]:
    prefix = ["unshare", "--mount", "--propagation", "private"]
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


def spawn(command: str, *, cwd: Path, workflow_dir: Path, log_path: Path,
          env: dict[str, str] | None = None, isolate: bool | None = None) -> subprocess.Popen[bytes]:
    """Start `bash -c command` with `workflow_dir` at /workflow and `cwd` (the project root) at /mnt/code.

    stdout and stderr go to `log_path`. The child leads its own process group so it can be stopped whole.
    """
    isolated = isolation_available() if isolate is None else isolate
    (workflow_dir / "inputs").mkdir(parents=True, exist_ok=True)
    (workflow_dir / "outputs").mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if isolated:
        # The command runs in this same bash after the mounts (one exec less per job than `exec bash -c`).
        script = (f"mount --bind {shlex.quote(str(workflow_dir))} {WORKFLOW} && "
                  f"mount --bind {shlex.quote(str(cwd))} {CODE} && "
                  f"cd {shlex.quote(str(cwd))} || exit 125\n{command}")
        argv = _unshare_prefix() + ["bash", "-c", script]
    else:
        argv = ["bash", "-c", command]
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, cwd=cwd, env=job_env(workflow_dir, cwd, env, isolated), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
