"""Every name our shims export for `flytekit` has the real flytekit's signature: the same parameter names and
defaults (or a difference listed below, with why), the same enum members and file formats.

The real flytekit lives in its own virtualenv (`make test` builds .venv-flytekit): its s3fs pins botocore,
which the project's boto3 cannot share, and it must never be importable where flows load flow files. The
description of the real names is made there, by tests/fixtures/flytekit_signatures.py, in a subprocess.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconcile.authoring_imports import shim_modules
from tests.fixtures.flytekit_signatures import describe

ROOT = Path(__file__).resolve().parents[1]
FLYTEKIT_PYTHON = Path(os.environ.get("FLOWS_FLYTEKIT_PYTHON", ROOT / ".venv-flytekit" / "bin" / "python"))

# Where we differ from flytekit on purpose. Key: "module.name" or "module.name(param)"; value: why.
DIFFERENCES = {
    "flytekit.task(cache)": "default None, not False: the reconciler reuses a result whose key matches unless "
                            "cache=False is written (DESIGN decision 9)",
    "flytekit.task(execution_mode)": "default None: flows runs every task the one way its provider does",
    "flytekit.task(deck_fields)": "default None: flows draws no Flyte decks",
    "flytekit.core.task.task(cache)": "as flytekit.task",
    "flytekit.core.task.task(execution_mode)": "as flytekit.task",
    "flytekit.core.task.task(deck_fields)": "as flytekit.task",
    "flytekit.dynamic": "a placeholder: importable, refused where a traced workflow uses it (not static)",
    "flytekit.eager": "a placeholder: importable, refused where a traced workflow uses it (not static)",
    "flytekit.map_task": "a placeholder: importable, refused where a traced workflow uses it (not static)",
    "flytekit.conditional": "a placeholder: importable, refused where a traced workflow uses it (not static)",
    "flytekit.types.file.JSONFile": "not in flytekit: kept for flows written against earlier versions of flows",
}


def exported() -> list[tuple[str, str]]:
    names = []
    for module_name, module in shim_modules().items():
        if not module_name.startswith("flytekit") or module_name.startswith("flytekitplugins"):
            continue
        names += [(module_name, n) for n in vars(module) if not n.startswith("_") and not isinstance(
            vars(module)[n], type(module))]  # submodules are compared as modules, by their names
    return sorted(names)


def real_descriptions(names: list[tuple[str, str]]) -> dict[str, dict]:
    if not FLYTEKIT_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(f"the real flytekit is not installed ({FLYTEKIT_PYTHON}); `make test` installs it")
        pytest.skip(f"the real flytekit is not installed ({FLYTEKIT_PYTHON}); `make test` installs it")
    r = subprocess.run([str(FLYTEKIT_PYTHON), str(ROOT / "tests" / "fixtures" / "flytekit_signatures.py")],
                       input=json.dumps(names), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def test_every_flytekit_name_we_export_has_the_real_signature():
    names = exported()
    assert ("flytekit", "workflow") in names and ("flytekit.loggers", "logger") in names  # the list is real
    real = real_descriptions(names)
    mods = shim_modules()
    problems: list[str] = []
    for module_name, name in names:
        key = f"{module_name}.{name}"
        ours, theirs = describe(getattr(mods[module_name], name)), real[key]
        if theirs["kind"] == "missing" or ours["kind"] != theirs["kind"]:
            if key not in DIFFERENCES:
                problems.append(f"{key}: ours is a {ours['kind']}, flytekit's a {theirs['kind']}")
            continue
        if ours["kind"] == "callable":
            mine = {p[0]: p[2] for p in ours["params"] if p[1] != "VAR_KEYWORD"}
            real_params = {p[0]: p[2] for p in theirs["params"] or [] if p[1] != "VAR_KEYWORD"}
            if list(mine) != list(real_params):
                problems.append(f"{key}: parameters {list(mine)} != flytekit's {list(real_params)}")
                continue
            for param, default in real_params.items():
                if mine[param] != default and f"{key}({param})" not in DIFFERENCES:
                    problems.append(f"{key}({param}): default {mine[param]} != flytekit's {default}")
        elif ours != theirs and key not in DIFFERENCES:
            problems.append(f"{key}: {ours} != flytekit's {theirs}")
    assert problems == [], "\n".join(problems)


def test_flow_imports_never_resolve_to_the_real_flytekit_even_when_it_is_importable(tmp_path):
    """The real package on sys.path (as in a user's environment with flytekit installed): the loader still
    gives the flow our names, and the real modules are back afterwards."""
    if not FLYTEKIT_PYTHON.exists():
        pytest.skip("the real flytekit is not installed")
    site = subprocess.run([str(FLYTEKIT_PYTHON), "-c", "import flytekit, os; print(os.path.dirname("
                           "os.path.dirname(flytekit.__file__)))"], capture_output=True, text=True, timeout=300)
    flow = tmp_path / "flow.py"
    flow.write_text("import flytekit\nfrom flytekit import workflow\nfrom flytekit.loggers import logger\n"
                    "WHERE = flytekit.__name__, type(workflow).__module__\n\n@workflow\ndef wf() -> int:\n"
                    "    return 1\n")
    script = (f"import sys; sys.path.append({site.stdout.strip()!r})\n"
              "import flytekit\n"
              "from reconcile.loader import import_flow_module, load_flow\n"
              f"from pathlib import Path\np = Path({str(flow)!r})\n"
              "assert load_flow(p).workflow == 'wf'\n"
              "import reconcile.authoring.workflow as ours\n"
              "m = import_flow_module(p)\n"
              "assert isinstance(m.wf, ours.WorkflowDef), type(m.wf)\n"
              "import sys as s2; assert s2.modules['flytekit'] is flytekit and hasattr(flytekit, 'FlyteContext')\n"
              "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.stdout.strip() == "ok", r.stderr[-3000:]
