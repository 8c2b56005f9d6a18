"""What a Domino Flows script expects of its job, on the local provider (issue 13, problems 3 and 4):
Domino's launcher rules for a command whose first word is a script file, and the DOMINO_* variables
(`DOMINO_IS_WORKFLOW_JOB=true` first). The Domino side runs in tests/test_domino_realistic.py."""
from __future__ import annotations

import json
import os
from pathlib import Path

from tests.fixtures.projects import flows, write_project

FLOW = '''
from flytekit import workflow
from flytekitplugins.domino.helpers import Output, run_domino_job_task


@workflow
def wf() -> str:
    sh = run_domino_job_task(flyte_task_name="sh", command="scripts/emit.sh hello",
                             output_specs=[Output(name="said", type=str)])
    py = run_domino_job_task(flyte_task_name="py", command="scripts/args.py --day 3",
                             output_specs=[Output(name="argv", type=str)])
    env = run_domino_job_task(flyte_task_name="env", command="python scripts/env.py",
                              output_specs=[Output(name="seen", type=str)])
    return env["seen"]
'''

EMIT = 'printf "%s from bash" "$1" > /workflow/outputs/said\n'   # not executable, as a synced project's files are
ARGS = 'import sys\nopen("/workflow/outputs/argv", "w").write(" ".join(sys.argv[1:]))\n'
ENV = '''import json, os
if os.environ.get("DOMINO_IS_WORKFLOW_JOB") != "true":   # how Domino Flows scripts branch
    raise SystemExit("interactive branch: not a flow job")
names = ["DOMINO_PROJECT_OWNER", "DOMINO_PROJECT_NAME", "DOMINO_STARTING_USERNAME", "DOMINO_RUN_ID",
         "DOMINO_WORKING_DIR", "DOMINO_IS_WORKFLOW_JOB"]
open("/workflow/outputs/seen", "w").write(json.dumps({n: os.environ[n] for n in names}))
'''


def test_launcher_rules_and_domino_variables_on_the_local_provider(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj", FLOW, {"scripts/emit.sh": EMIT, "scripts/args.py": ARGS,
                                                   "scripts/env.py": ENV})
    (root / "flows.toml").write_text('[tool.flows.provider]\nproject_owner = "ana"\n')
    os.chmod(root / "scripts" / "emit.sh", 0o644)
    r = flows("apply", "flow.py", "wf", "--auto-approve", cwd=root)
    assert r.code == 0, r.text

    def value(address: str, name: str) -> str:
        out = flows("outputs", address, "--json", cwd=root)
        assert out.code == 0, out.text
        return json.loads(out.out)[name]["value"]

    assert value("wf/sh", "said") == "hello from bash"
    assert value("wf/py", "argv") == "--day 3"
    seen = json.loads(value("wf/env", "seen"))
    assert seen["DOMINO_IS_WORKFLOW_JOB"] == "true"
    assert seen["DOMINO_PROJECT_OWNER"] == "ana"                 # from the configuration
    assert seen["DOMINO_PROJECT_NAME"] == "proj"                 # a local default: the project's folder
    assert seen["DOMINO_STARTING_USERNAME"] and seen["DOMINO_RUN_ID"]
    assert seen["DOMINO_WORKING_DIR"] in ("/mnt/code", str(root))


def test_launcher_table() -> None:
    from providers.launcher import launch

    assert launch("scripts/train.py --lr 0.1") == "python -u scripts/train.py --lr 0.1"
    assert launch("run.sh") == "bash run.sh"
    assert launch("prod/adam/ADSL.sas") == "sas prod/adam/ADSL.sas -stdio"
    assert launch("report.R x") == ("R --no-save --no-environ --no-site-file --no-restore --max-ppsize=100000 "
                                    "-f report.R --args x")
    assert launch("a/nb.ipynb") == "jupyter nbconvert --to notebook --execute a/nb.ipynb --output nb.ipynb"
    for unchanged in ("python scripts/x.py", "bash -c 'x.sh'", "X=1 run.sh", "echo a.py", "'odd name.py'"):
        assert launch(unchanged) == unchanged
