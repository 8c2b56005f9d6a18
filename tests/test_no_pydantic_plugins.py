"""The console script does not search for pydantic plugins (reconcile/cli/no_pydantic_plugins.py): the search
imports importlib.metadata and reads every installed distribution's metadata on every command that builds a model."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.fixtures.projects import flows, write_project

CHECK_MODELS = """
import sys
from reconcile.cli import no_pydantic_plugins
no_pydantic_plugins.install()
from pydantic import BaseModel, TypeAdapter
class M(BaseModel):
    x: int
    tags: list[str] = []
assert M(x=1).x == 1 and M.model_validate_json('{"x": 2, "tags": ["a"]}').tags == ["a"]
assert TypeAdapter(dict[str, int]).validate_python({"a": 1}) == {"a": 1}
from pydantic.plugin._schema_validator import create_schema_validator  # what pydantic asks through
assert sys.modules["pydantic.plugin._loader"].get_plugins() == ()
assert "importlib.metadata" not in sys.modules, "the plugin search ran"
print("ok")
"""


def _imported(stderr: str) -> set[str]:
    return {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def test_an_apply_builds_its_models_without_searching_for_pydantic_plugins(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    r = flows("apply", "flow.py", "--data", "data/in.csv", "--auto-approve", cwd=root,
              env={"PYTHONPROFILEIMPORTTIME": "1"})  # (a real process, which reports what it imported)
    assert r.code == 0, r.text
    imported = _imported(r.err)
    assert "pydantic.main" in imported and "state.model" in imported  # models were built
    assert "importlib.metadata" not in imported and "pydantic.plugin._loader" not in imported


def test_pydantic_validates_as_before_with_the_stand_in() -> None:
    r = subprocess.run([sys.executable, "-c", CHECK_MODELS], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


CHECK_OTHER_NAMES = """
import sys
from reconcile.cli import no_pydantic_plugins
no_pydantic_plugins.install()
from pydantic.plugin._loader import PYDANTIC_ENTRY_POINT_GROUP  # a name the stand-in does not have
assert PYDANTIC_ENTRY_POINT_GROUP == "pydantic"
assert type(sys.modules["pydantic.plugin._loader"]).__name__ == "module"  # the real one replaced it
print("ok")
"""


def test_a_name_the_stand_in_does_not_have_comes_from_the_real_module() -> None:
    r = subprocess.run([sys.executable, "-c", CHECK_OTHER_NAMES], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
