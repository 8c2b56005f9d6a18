"""Which project files a job command names (the local provider's code identity)."""
from __future__ import annotations

from pathlib import Path

import pytest

from providers.code_files import command_files


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for rel in ("scripts/train.py", "x.R", "run.sh", "conf/params.yaml", "pkg/mod.py", "app/__main__.py",
                "sub/inner.py", "data/in.csv", "a.py", "b.sh"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    (tmp_path / "outside.py").write_text("not in the project")
    return root


@pytest.mark.parametrize("command, expected", [
    ("python scripts/train.py", ["scripts/train.py"]),
    ("python /mnt/code/scripts/train.py --lr 0.1", ["scripts/train.py"]),
    ("Rscript /mnt/code/x.R", ["x.R"]),
    ("bash run.sh", ["run.sh"]),
    ("bash ./run.sh", ["run.sh"]),
    ("python -m pkg.mod", ["pkg/mod.py"]),
    ("python -m app", ["app/__main__.py"]),
    ("python scripts/train.py --config=conf/params.yaml data/in.csv",
     ["conf/params.yaml", "data/in.csv", "scripts/train.py"]),
    ("cd sub && python inner.py", ["sub/inner.py"]),
    ("python a.py;bash b.sh", ["a.py", "b.sh"]),
    ("python 'scripts/train.py' | tee log", ["scripts/train.py"]),
])
def test_files_named_in_the_command(project: Path, command: str, expected: list[str]) -> None:
    assert command_files(command, project) == expected


@pytest.mark.parametrize("command", [
    "python scripts/missing.py",           # not a file
    "python ../outside.py",                # outside the project
    "python /etc/hostname",                # absolute, outside the project
    "python $HOME/scripts/train.py",       # known only at run time
    "ls scripts",                          # a folder, not a file
    "echo hello",
])
def test_nothing_outside_or_unknowable(project: Path, command: str) -> None:
    assert command_files(command, project) == []


def test_absolute_path_inside_the_project(project: Path) -> None:
    assert command_files(f"python {project}/scripts/train.py", project) == ["scripts/train.py"]


def test_unbalanced_quotes_fall_back_to_words(project: Path) -> None:
    assert command_files("python scripts/train.py 'unclosed", project) == ["scripts/train.py"]


def test_each_file_once_and_sorted(project: Path) -> None:
    assert command_files("bash run.sh && python a.py && bash /mnt/code/run.sh", project) == ["a.py", "run.sh"]


def test_stat_cache_remembers_path_kinds_for_one_command(tmp_path: Path) -> None:
    from vocab.digest import StatCache
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    cache = StatCache(None)
    assert [cache.path_kind(str(tmp_path / n)) for n in ("d", "f", "g")] == ["dir", "file", None]
    (tmp_path / "g").write_text("created later in the same command")
    assert cache.path_kind(str(tmp_path / "g")) is None  # fixed for the command, like the code identity
    assert StatCache(None).path_kind(str(tmp_path / "g")) == "file"  # the next command sees it


def test_a_tasks_code_is_its_function_and_the_project_modules_it_imports(tmp_path: Path) -> None:
    """Editing a module the task imports (at the top of the flow file, inside the function, or through another
    project module) changes its identity; editing a neighbour function or an unrelated module does not."""
    from types import SimpleNamespace

    from providers.code_files import task_files
    from reconcile.code_identity import CodeIdentity
    from vocab.digest import StatCache

    root = tmp_path / "proj"
    (root / "lib").mkdir(parents=True)
    (root / "lib" / "__init__.py").write_text("")
    (root / "lib" / "deep.py").write_text("FACTOR = 2\n")
    (root / "helpers.py").write_text("from lib.deep import FACTOR\n\ndef rows(p):\n    return FACTOR\n")
    (root / "inner.py").write_text("X = 1\n")
    (root / "unrelated.py").write_text("Y = 1\n")
    flow = root / "flow.py"
    flow.write_text("import helpers\nfrom flytekit import task\n\n\n@task\ndef count() -> int:\n    import inner\n"
                    "    return helpers.rows(None) + inner.X\n\n\n@task\ndef other() -> int:\n    import unrelated\n"
                    "    return unrelated.Y\n")
    assert task_files(flow, "count", root) == ["flow.py", "helpers.py", "inner.py", "lib/__init__.py", "lib/deep.py"]

    def identity() -> dict[str, str]:
        node = SimpleNamespace(address="wf/count", python={"file": str(flow), "qualname": "count"})
        return CodeIdentity(root, StatCache(None)).task(node)  # type: ignore[arg-type]

    before = identity()
    (root / "unrelated.py").write_text("Y = 2\n")
    assert identity() == before
    (root / "lib" / "deep.py").write_text("FACTOR = 3\n")
    after = identity()
    assert after != before and after["lib/deep.py"] != before["lib/deep.py"]
