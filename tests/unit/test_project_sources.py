"""Which modules the trace loads with their .pyc checked by the source's hash (reconcile.loader.project_sources): the
flow's own, found in its folder or project, and their submodules; not a package found elsewhere on `sys.path`, even
inside the project (a virtualenv kept there), which keeps Python's own loader."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

from reconcile import loader


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "helpers_x1.py").write_text("K = 1\n")
    (tmp_path / "pkg_x1").mkdir()
    (tmp_path / "pkg_x1" / "__init__.py").write_text("")
    (tmp_path / "pkg_x1" / "sub.py").write_text("K = 2\n")
    site = tmp_path / ".venv" / "lib" / "site-packages"
    (site / "lib_x1").mkdir(parents=True)
    (site / "lib_x1" / "__init__.py").write_text("")
    (site / "lib_x1" / "sub.py").write_text("K = 3\n")
    sys.path[:0] = [str(tmp_path), str(site)]
    names = ("helpers_x1", "pkg_x1", "pkg_x1.sub", "lib_x1", "lib_x1.sub")
    try:
        yield tmp_path
    finally:
        del sys.path[:2]
        for name in names:
            sys.modules.pop(name, None)


def loader_of(name: str) -> type:
    return type(sys.modules[name].__spec__.loader)


def test_the_flows_own_modules_and_their_submodules_are_hash_checked(project: Path) -> None:
    with loader.project_sources([str(project)]):
        import helpers_x1  # noqa: F401
        import pkg_x1.sub  # noqa: F401
        import lib_x1.sub  # noqa: F401
    assert loader_of("helpers_x1") is loader_of("pkg_x1") is loader_of("pkg_x1.sub") is loader._HashCheckedLoader
    # Found through another `sys.path` entry, though inside the project: Python's own loader, bytecode cache and all.
    assert loader_of("lib_x1") is loader_of("lib_x1.sub") is not loader._HashCheckedLoader
    assert not any(isinstance(f, loader._ProjectSources) for f in sys.meta_path)
