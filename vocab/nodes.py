"""The kinds of flow node, shared by the graph (which makes them) and the providers (which run them)."""
from __future__ import annotations

from typing import Literal

# gate: an `approve(value, "name", timeout)`; runs nothing, passes its value through once a person approves.
NodeKind = Literal["domino_job", "python", "export_artifacts", "gate"]
