"""The kinds of flow node, shared by the graph (which makes them) and the providers (which run them)."""
from __future__ import annotations

from typing import Literal

NodeKind = Literal["domino_job", "python", "export_artifacts"]
