"""The job sandbox for a user who is not root: a user namespace maps them to root inside, and a job still gets
its own /workflow, an empty `.flows/` and a PID namespace that ends every process it started."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.fixtures.waiting import lock_holders

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"  # the test venv's interpreter may live where the other user cannot read
NOBODY = 65534

JOB = """
exec 9>>{lock}; flock 9
(setsid sleep 300 &)
ls -A .flows /mnt/code/.flows > /workflow/outputs/listing
echo $$ > /workflow/outputs/pid
"""

RUN = """
import json, sys
from pathlib import Path
from providers import sandbox
root = Path(sys.argv[1])
proc = sandbox.spawn(sys.argv[2], cwd=root / "proj", workflow_dir=root / "proj/.flows/jobs/1",
                     log_path=root / "job.log", hide=[root / "proj/.flows"])
print(json.dumps({"rc": proc.wait(), "isolated": sandbox.isolation_available(),
                  "pids": sandbox.pid_namespace_available()}))
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv") or not os.access(SYSTEM_PYTHON, os.X_OK),
                    reason="needs root (to become another user), setpriv and a system python3")
def test_a_job_of_a_user_who_is_not_root_is_sandboxed_as_well() -> None:
    root = Path(tempfile.mkdtemp(prefix="flows-nobody-", dir="/tmp"))
    try:
        (root / "proj" / ".flows" / "jobs" / "1").mkdir(parents=True)
        (root / "proj" / ".flows" / "state.json").write_text("{}")
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(root)], check=True)
        lock = root / "left.lock"
        r = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                            SYSTEM_PYTHON, "-c", RUN, str(root), JOB.format(lock=lock)],
                           capture_output=True, text=True, timeout=60,
                           env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "HOME": str(root)})
        assert r.returncode == 0, r.stderr
        result = json.loads(r.stdout)
        if not result["isolated"]:
            pytest.skip("no user namespaces for other users here")
        out = root / "proj" / ".flows" / "jobs" / "1" / "outputs"
        assert result == {"rc": 0, "isolated": True, "pids": True}, (root / "job.log").read_text()
        assert (out / "listing").read_text() == ".flows:\n\n/mnt/code/.flows:\n"  # hidden, under both names
        assert (out / "pid").read_text() == "1\n"  # bash is PID 1 of the job's own namespace
        assert not lock_holders(lock), "the detached sleep outlived the job"
    finally:
        shutil.rmtree(root, ignore_errors=True)
