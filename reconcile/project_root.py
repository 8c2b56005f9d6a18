"""The project around a flow file (it plays Domino's /mnt/code), found without importing anything heavy."""
from __future__ import annotations

from pathlib import Path

PROJECT_MARKERS = ("flows.toml", "pyproject.toml", ".git")


def project_root_for(flow_file: Path) -> Path:
    """The nearest folder above the flow with flows.toml, else pyproject.toml, else .git; else the flow's folder.

    It plays Domino's /mnt/code: job commands run there and script paths are resolved from it.
    """
    for marker in PROJECT_MARKERS:
        for folder in [flow_file.parent, *flow_file.parent.parents]:
            if (folder / marker).exists():
                return folder
    return flow_file.parent
