"""`flows --help` stays quick by not importing the heavy libraries; checked by module, not by a timer."""
from __future__ import annotations

import json
import subprocess
import sys

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

