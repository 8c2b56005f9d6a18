"""The flow graph: nodes with stable addresses, typed input bindings, flow inputs/outputs, artifacts.

Built by the loader from a traced `@workflow`; knows nothing of state, plans or providers.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from vocab.nodes import NodeKind


class SourceRef(BaseModel):
    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


class Binding(BaseModel):
    """Where a node input (or a flow output) gets its value from."""

    kind: Literal["literal", "flow_input", "node_output", "collection"]
    type: str
    value: Any = None          # literal: the JSON-able value
    name: str | None = None    # flow_input: the flow input's name
    node: str | None = None    # node_output: producing node address
    output: str | None = None  # node_output: output name
    # Nodes the value must also wait for, without changing it: the approval gates it passed through
    # (`approve(x, "deploy")` is x, available once 'deploy' is approved). Not part of any key.
    after: list[str] = Field(default_factory=list)
    # Attribute access into a dataclass value (`metrics.accuracy`): the fields to follow, in order.
    path: list[str] = Field(default_factory=list)
    # collection: a list (keys None) or dict literal holding flow values (`parts=[a["out"], b["out"]]`): one binding
    # per element, in order.
    items: list["Binding"] | None = None
    keys: list[str] | None = None

    def leaves(self) -> list["Binding"]:
        """This binding, or a collection's element bindings (nested ones flattened)."""
        if self.kind != "collection":
            return [self]
        return [leaf for item in self.items or [] for leaf in item.leaves()]

    def gates(self) -> list[str]:
        """The approval gates this value (or any element of it) must wait for."""
        return list(dict.fromkeys(g for leaf in self.leaves() for g in leaf.after))

    def describe(self) -> str:
        fields = "".join(f".{p}" for p in self.path)
        if self.kind == "collection":
            parts = [i.describe() for i in self.items or []]
            if self.keys is None:
                return "[" + ", ".join(parts) + "]"
            return "{" + ", ".join(f"{k!r}: {p}" for k, p in zip(self.keys, parts)) + "}"
        if self.kind == "literal":
            return f"literal {self.value!r}"
        if self.kind == "flow_input":
            return f"flow input '{self.name}'{fields}"
        return f"'{self.node}'.{self.output}{fields}"

    def pick(self, value: Any) -> Any:
        """The part of `value` (the whole output or flow input) this binding takes: its `path` followed."""
        for field in self.path:
            if not isinstance(value, dict) or field not in value:
                raise KeyError(f"{self.describe()}: the value has no field '{field}'")
            value = value[field]
        return value


class ArtifactFileRef(BaseModel):
    artifact: str
    artifact_type: str
    file_name: str


class ArtifactFile(BaseModel):
    file_name: str
    node: str
    output: str


class ArtifactSpec(BaseModel):
    name: str
    type: str  # DATA | MODEL | REPORT
    files: list[ArtifactFile] = Field(default_factory=list)


class Node(BaseModel):
    address: str
    task_name: str
    kind: NodeKind
    command: str = ""
    job_config: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, str] = Field(default_factory=dict)    # interface: name -> canonical type
    outputs: dict[str, str] = Field(default_factory=dict)
    bindings: dict[str, Binding] = Field(default_factory=dict)
    after: list[str] = Field(default_factory=list)          # ordering-only upstreams (`a >> b`)
    cache: bool = True
    cache_version: str = ""
    cache_ignore_input_vars: list[str] = Field(default_factory=list)
    retries: int = 0
    timeout_seconds: float | None = None
    resolve_defaults: bool = False  # use_latest / use_project_defaults_for_omitted
    python: dict[str, str] | None = None  # python tasks: {"file", "module", "qualname"}
    output_artifacts: dict[str, ArtifactFileRef] = Field(default_factory=dict)
    export_specs: list[dict[str, Any]] = Field(default_factory=list)
    source: SourceRef | None = None
    gate: str | None = None  # kind "gate": the approval's name (`--approve NAME`)

    def data_upstreams(self) -> list[str]:
        seen: list[str] = []
        for binding in self.bindings.values():  # (asked for every node on every pass of the scheduler: no copies)
            for b in (binding.leaves() if binding.kind == "collection" else (binding,)):
                if b.kind == "node_output" and b.node not in seen:
                    seen.append(b.node)  # type: ignore[arg-type]
        return seen

    def upstreams(self) -> list[str]:
        data = self.data_upstreams()
        extra = self.after
        for b in self.bindings.values():
            if b.after or b.kind == "collection":
                extra = extra + b.gates()
        if not extra:
            return data
        return data + list(dict.fromkeys(a for a in extra if a not in data))


class FlowInput(BaseModel):
    name: str
    type: str
    required: bool = True
    default: Any = None


class FlowGraph(BaseModel):
    workflow: str
    file: str
    project_root: str
    inputs: dict[str, FlowInput] = Field(default_factory=dict)
    outputs: dict[str, Binding] = Field(default_factory=dict)
    nodes: dict[str, Node] = Field(default_factory=dict)  # in topological order
    artifacts: dict[str, ArtifactSpec] = Field(default_factory=dict)
    failure_policy: str = "FAIL_IMMEDIATELY"
    workflows: list[str] = Field(default_factory=list)  # every workflow defined in the file
    warnings: list[str] = Field(default_factory=list)  # `file:line: ...`: loads, but probably not what was meant

    def order(self) -> list[str]:
        return list(self.nodes)

    def ancestors(self, address: str) -> set[str]:
        out: set[str] = set()
        stack = [address]
        while stack:
            for up in self.nodes[stack.pop()].upstreams():
                if up not in out:
                    out.add(up)
                    stack.append(up)
        return out
