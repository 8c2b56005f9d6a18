"""`flows --help` stays quick by not importing the heavy libraries; checked by module, not by a timer."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.fixtures.projects import flows

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ai_training"
HEAVY = ("pydantic", "boto3", "botocore", "requests", "deepdiff", "blake3")

_PROBE = """
import json, sys
sys.argv = ["flows", "--help"]
from reconcile.cli.main import run
try:
    run()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})), file=sys.stderr)
"""


def test_help_imports_no_heavy_library() -> None:
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=set(HEAVY))],
                          capture_output=True, text=True, timeout=60)
    assert "validate" in proc.stdout and "apply" in proc.stdout  # the help really was printed
    loaded = json.loads(proc.stderr.strip().splitlines()[-1])
    assert loaded == []



_PLAN_PROBE = """
import json, sys
sys.argv = ["flows", "plan", "flow.py", "model_training", "--data_path_a", "data/a.csv", "--data_path_b", "data/b.csv"]
from reconcile.cli.main import run
try:
    run()
except SystemExit as e:
    assert not e.code, e.code
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {"deepdiff", "boto3", "requests"})), file=sys.stderr)
"""


def test_a_no_op_plan_on_the_local_defaults_imports_no_diff_s3_or_http_library(tmp_path: Path) -> None:
    root = tmp_path / "ai_training"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".flows"))
    r = flows("apply", "flow.py", "model_training", "--data_path_a", "data/a.csv", "--data_path_b", "data/b.csv",
              "--auto-approve", cwd=root)
    assert r.code == 0, r.text
    proc = subprocess.run([sys.executable, "-c", _PLAN_PROBE], capture_output=True, text=True, timeout=60, cwd=root)
    assert "No changes." in proc.stdout, proc.stdout + proc.stderr
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []


def test_one_version_everywhere() -> None:
    """`flows --version`, the installed distribution and the state all say the one version (vocab/version.py)."""
    import importlib.metadata

    from state.model import State
    from vocab.version import VERSION

    assert flows("--version", cwd=EXAMPLE).out.strip() == f"flows {VERSION}"
    assert importlib.metadata.version("flows") == VERSION
    assert State(flow="wf").tool_version == VERSION
