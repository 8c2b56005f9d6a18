"""The `DOMINO_*` variables a job sees on Domino, for jobs that run on this machine.

Scripts written for Domino Flows read them: `DOMINO_IS_WORKFLOW_JOB` (true in a flow's job) picks the
`/workflow` branch, Domino's AI-training template reads `DOMINO_STARTING_USERNAME`. Values come from
`[tool.flows.provider]` (`project_owner`, `project_name`, `starting_username`), else from the same variables
in flows' own environment (inside a Domino workspace), else from local defaults.
"""
from __future__ import annotations

import functools
import getpass
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

SETTINGS = {"DOMINO_PROJECT_OWNER": "project_owner", "DOMINO_PROJECT_NAME": "project_name",
            "DOMINO_STARTING_USERNAME": "starting_username"}


@functools.lru_cache(maxsize=1)  # asked twice per job; a name lookup can read /etc/passwd
def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container): still a value scripts can use
        return f"uid{os.getuid()}"


def project_variables(project_root: Path, settings: Mapping[str, object] | None = None) -> dict[str, str]:
    """The variables every job of a project gets alike (the same for a whole apply: made once)."""
    settings = settings or {}
    defaults = {"DOMINO_PROJECT_OWNER": _user(), "DOMINO_PROJECT_NAME": Path(project_root).name,
                "DOMINO_STARTING_USERNAME": _user()}
    return {var: str(settings.get(key) or os.environ.get(var) or defaults[var]) for var, key in SETTINGS.items()}


def job_variables(*, run_id: str, address: str, attempt: int, working_dir: str) -> dict[str, str]:
    """The variables that name one job (its run, node and attempt)."""
    return {"DOMINO_RUN_ID": f"{run_id}.{_node_tag(address)}.{attempt}", "DOMINO_WORKING_DIR": working_dir,
            "DOMINO_IS_WORKFLOW_JOB": "true"}


@functools.lru_cache(maxsize=1 << 16)  # (a node's tag is asked once per attempt; a digest per job added up)
def _node_tag(address: str) -> str:
    return hashlib.sha1(address.encode()).hexdigest()[:8]
