"""The plan: one `NodeChange` per node with its action and the reasons (Terraform's plans.Change role).

Documented JSON schema (`flows plan --json`, saved plans): see README "Plan JSON".
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr

PLAN_SCHEMA_VERSION = 2  # 2: approval gates (action `approve`, `gate` on a node change, `approve` in the summary)
READABLE_PLAN_VERSIONS = (1, 2)  # a version-1 plan is a version-2 plan without gates

# approve: an approval gate that apply stops at until a person approves it (`--approve NAME`).
Action = Literal["create", "update", "run", "pending", "approve", "reuse", "forget"]
# Actions that start a job (pending may, once its inputs are known).
EXECUTING: tuple[str, ...] = ("create", "update", "run")
SYMBOLS: dict[str, str] = {"create": "+", "update": "~", "run": "!", "pending": "?", "approve": "⏸", "reuse": "=",
                           "forget": "-"}
COLOURS: dict[str, str] = {"create": "green", "update": "yellow", "run": "magenta", "pending": "cyan",
                           "approve": "bright_yellow",
                           "reuse": "dim", "forget": "red"}


class Reason(BaseModel):
    """One reason for an action, e.g. field `command` changed from old to new."""

    field: str
    message: str
    old: Any = None
    new: Any = None


class NodeChange(BaseModel):
    address: str
    task_name: str
    action: Action
    reasons: list[Reason] = Field(default_factory=list)
    # Recorded but not part of the key ("takes effect the next time it runs").
    notes: list[Reason] = Field(default_factory=list)
    key: str | None = None             # None while its inputs are known only after apply (pending, or create)
    previous_key: str | None = None
    reused_from_run: str | None = None
    pending_on: list[str] = Field(default_factory=list)
    fingerprint: dict[str, Any] | None = None
    gate: str | None = None            # an approval gate: its name (`flows apply --approve NAME`)


class Plan(BaseModel):
    schema_version: int = PLAN_SCHEMA_VERSION
    flow: str
    flow_file: str
    flow_digest: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    state_serial: int | None = None
    state_lineage: str | None = None
    backend: str = "local"
    provider: str = "local"
    created_at: str = ""
    targets: list[str] = Field(default_factory=list)
    replace: list[str] = Field(default_factory=list)
    nodes: list[NodeChange] = Field(default_factory=list)
    summary: dict[str, int] = Field(default_factory=dict)

    def has_changes(self) -> bool:
        return any(n.action != "reuse" for n in self.nodes)

    # address -> change, built on first lookup (the scheduler asks once per node: a scan would be O(N^2)).
    _by_address: dict[str, NodeChange] | None = PrivateAttr(default=None)

    def node(self, address: str) -> NodeChange | None:
        index = self._by_address
        if index is None or len(index) != len(self.nodes):
            index = self._by_address = {n.address: n for n in self.nodes}
        return index.get(address)
