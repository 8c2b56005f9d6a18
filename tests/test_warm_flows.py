"""The warmed `flows` the suite uses (tests/fixtures/warm_flows.py) answers exactly as the exec'd console script:
same exit code, stdout and stderr, the command's own folder and environment; a timeout kills it."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.projects import FLOWS, write_project
from tests.fixtures.waiting import alive, wait_until
from tests.fixtures.warm_flows import run_warm

INPUTS = ["--data", "data/in.csv"]


def _both(args: list[str], cwd: Path, **extra: str) -> tuple[subprocess.CompletedProcess[str], ...]:
    env = {**os.environ, "COLUMNS": "200", **extra}
    env.pop("FLOWS_TEST_WARM", None)
    warm = run_warm(FLOWS, args, cwd, env, timeout=120, always=True)
    assert warm is not None, "the warmed server did not take the command"
    cold = subprocess.run([FLOWS, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    return warm, cold


def _same(warm: subprocess.CompletedProcess[str], cold: subprocess.CompletedProcess[str]) -> None:
    assert (warm.returncode, warm.stdout, warm.stderr) == (cold.returncode, cold.stdout, cold.stderr)


def test_a_plan_an_apply_and_a_usage_error_answer_as_the_real_script(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    warm, cold = _both(["plan", "flow.py", "wf", *INPUTS], root)
    _same(warm, cold)
    assert warm.returncode == 0 and "3 to create" in warm.stdout

    warm, cold = _both(["plan", "flow.py", "wf", "--no-such-input", "1", *INPUTS], root)
    _same(warm, cold)
    assert warm.returncode != 0 and "no-such-input" in warm.stderr and "Traceback" not in warm.stderr

    applied = run_warm(FLOWS, ["apply", "flow.py", "wf", *INPUTS, "--auto-approve"], root,
                       {**os.environ, "COLUMNS": "200"}, timeout=120, always=True)
    assert applied is not None and applied.returncode == 0, applied
    warm, cold = _both(["plan", "flow.py", "wf", *INPUTS, "--detailed-exitcode"], root)
    _same(warm, cold)
    assert warm.returncode == 0 and "No changes" in warm.stdout


def test_the_command_gets_its_own_environment_and_folder(tmp_path: Path) -> None:
    flow = "import os\nraise RuntimeError('word is ' + os.environ.get('TEST_WORD', 'unset') + ' in ' + os.getcwd())\n"
    root = write_project(tmp_path / "p", flow=flow)
    warm, cold = _both(["plan", "flow.py", "wf"], root, TEST_WORD="heron")
    _same(warm, cold)
    assert warm.returncode == 1 and f"word is heron in {root}" in warm.stderr


def test_a_command_past_its_timeout_is_killed(tmp_path: Path) -> None:
    flow = "import os\nopen(os.environ['PID_FILE'], 'w').write(str(os.getpid()))\nimport time\ntime.sleep(600)\n"
    root = write_project(tmp_path / "p", flow=flow, toml="[tool.flows]\nload_timeout = 900\n")
    pid_file = tmp_path / "pid"
    with pytest.raises(subprocess.TimeoutExpired):
        run_warm(FLOWS, ["plan", "flow.py", "wf"], root, {**os.environ, "PID_FILE": str(pid_file)}, timeout=5, always=True)
    pid = int(pid_file.read_text())
    wait_until(lambda: not alive(pid), timeout=30, what="the timed-out command to be gone")
