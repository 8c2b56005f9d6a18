"""Tracing a `@workflow` body: task calls become graph nodes, their results become promises.

A workflow function is called once with placeholder promises for its inputs; every task call
made while a trace is active registers a node and returns a `NodeOutputs` that flow code can use
the ways real flow files do (`res["x"]`, `res.x`, `res[0]`, `res.outputs["x"]`, unpacking, passing
a single-output result whole, `a >> b`).
"""
from __future__ import annotations

import contextlib
import difflib
import os
import re
import sys
from typing import Any, Iterator

from vocab.errors import FlowLoadError, NotSupportedError
from vocab.flytetypes import (UnsupportedType, assignable, canonical_value, check_value, dataclass_fields, is_blob,
                              type_name)
from reconcile.graph import ArtifactFile, ArtifactSpec, Binding, Node, SourceRef

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
MAX_NAME_BYTES = 255  # NAME_MAX of Linux filesystems


def caller_source() -> SourceRef | None:
    """The first stack frame outside this package: the flow file line that made the call."""
    frame = sys._getframe(1)
    while frame is not None:
        fname = _outside_file(frame.f_code.co_filename)
        if fname is not None:
            return _source_ref(fname, frame.f_lineno)
        frame = frame.f_back  # type: ignore[assignment]
    return None


_OUTSIDE: dict[str, str | None] = {}  # an absolute code file name -> itself when outside this package, else None


def _outside_file(code_file: str) -> str | None:
    """The code file's absolute name when it is not flows' own or the import system's (asked once per node
    and frame: remembered for absolute names, which do not depend on the working folder)."""
    if code_file in _OUTSIDE:
        return _OUTSIDE[code_file]
    fname = os.path.abspath(code_file)
    outside = fname if not fname.startswith(_PACKAGE_DIR + os.sep) and "importlib" not in fname else None
    if os.path.isabs(code_file):
        _OUTSIDE[code_file] = outside
    return outside


_SOURCES: dict[tuple[str, int], SourceRef] = {}


def _source_ref(file: str, line: int) -> SourceRef:
    """One SourceRef per flow file line, whatever the number of nodes a loop on that line makes (a node keeps its
    own: 10,000 of them were 4 MB). Nothing changes a SourceRef once made."""
    ref = _SOURCES.get((file, line))
    if ref is None:
        ref = _SOURCES[(file, line)] = SourceRef(file=file, line=line)
    return ref


def unsafe_path_part(text: str, *, nested: bool = True) -> str | None:
    """Why `text` cannot name a file inside an output or export folder (None when it can).

    `nested`: sub-folders (`plots/a.png`) are allowed, but never a part that climbs out (`..`) or an
    absolute path. Checked at load time, so `validate` and `plan` refuse what a job would fail on.
    """
    if not isinstance(text, str) or not text:
        return "is empty or not a string"
    parts = text.split("/")
    if text.startswith("/") or "\0" in text or any(p in ("", ".", "..") for p in parts) or (not nested and len(parts) > 1):
        return ("would leave its folder (a plain relative name is needed: no '..', no leading '/')" if nested
                else "would leave its folder (an id is needed: no '/' or '..')")
    if any(len(p.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for p in parts):
        return f"has a part longer than {MAX_NAME_BYTES} bytes (the limit of a file name)"
    return None


class Promise:
    """A value known only when the flow runs: a flow input or one output of a node (perhaps through approval
    gates: then `binding.after` names them)."""

    def __init__(self, binding: Binding) -> None:
        self._binding = binding

    @property
    def binding(self) -> Binding:
        return self._binding

    def __rshift__(self, other: Any) -> Any:
        return _order(self, other)

    def __repr__(self) -> str:
        return f"<promise {self._binding.describe()}>"

    def __getattr__(self, name: str) -> "Promise":
        """`metrics.accuracy` on a dataclass value: a promise of that field (Flyte's attribute access)."""
        binding: Binding | None = self.__dict__.get("_binding")
        if binding is None or name.startswith("_"):
            raise AttributeError(name)
        fields = dataclass_fields(binding.type)
        if fields is None:
            raise AttributeError(name)
        src = caller_source()
        where: dict[str, Any] = {"file": src.file if src else None, "line": src.line if src else None}
        if name not in fields:
            hint = difflib.get_close_matches(name, list(fields), n=1)
            raise FlowLoadError(f"{binding.describe()} ({binding.type}) has no field '{name}'" +
                                (f" (did you mean '{hint[0]}'?)" if hint else f" (fields: {', '.join(fields)})"),
                                **where)
        try:
            t = type_name(fields[name])
        except UnsupportedType as e:
            raise FlowLoadError(f"{binding.describe()}.{name}: {e}", **where) from None
        if "file" in t or "dir" in t:
            raise NotSupportedError(f"not supported: {binding.describe()}.{name} is a {t} inside a dataclass "
                                    "(flows stores files by content as outputs of their own: return it as one)",
                                    **where)
        return Promise(binding.model_copy(update={"type": t, "path": [*binding.path, name]}))

    def __bool__(self) -> bool:
        src = caller_source()
        raise NotSupportedError(
            "not supported: using a flow value in a Python condition inside a workflow "
            "(the value is only known when the flow runs; use a task)",
            file=src.file if src else None, line=src.line if src else None)



class NodeOutputs:
    """What a task call returns inside a workflow."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self.outputs = {name: Promise(Binding(kind="node_output", type=t, node=node.address, output=name))
                        for name, t in node.outputs.items()}

    @property
    def node_address(self) -> str:
        return self._node.address

    def _unknown(self, name: str) -> FlowLoadError:
        names = list(self._node.outputs)
        hint = difflib.get_close_matches(name, names, n=1)
        msg = f"has no output '{name}'"
        msg += f" (did you mean '{hint[0]}'?)" if hint else f" (outputs: {', '.join(names) or 'none'})"
        src = caller_source()
        return FlowLoadError(msg, file=src.file if src else None, line=src.line if src else None,
                             node=self._node.address)

    def __getitem__(self, key: int | str) -> Promise:
        if isinstance(key, int):
            names = list(self._node.outputs)
            if not -len(names) <= key < len(names):
                raise self._unknown(str(key))
            return self.outputs[names[key]]
        if key not in self.outputs:
            raise self._unknown(key)
        return self.outputs[key]

    def __getattr__(self, name: str) -> Promise:
        if name.startswith("_"):
            raise AttributeError(name)
        outputs = self.__dict__.get("outputs", {})
        if name not in outputs:
            if len(outputs) == 1:  # a single dataclass output read field by field: `evaluate(...).accuracy`
                only = next(iter(outputs.values()))
                if dataclass_fields(only.binding.type) is not None:
                    return getattr(only, name)  # type: ignore[no-any-return]
            raise self._unknown(name)
        return self.outputs[name]

    def __iter__(self) -> Iterator[Promise]:
        return iter(self.outputs.values())

    def __len__(self) -> int:
        return len(self.outputs)

    def __rshift__(self, other: Any) -> Any:
        return _order(self, other)

    def __repr__(self) -> str:
        return f"<outputs of {self._node.address}: {', '.join(self._node.outputs)}>"


def _order(before: Any, after: Any) -> Any:
    """`a >> b`: b waits for a, without data passing. A sub-workflow's result stands for all of its nodes (Flyte
    orders the sub-workflow's one node): its last nodes come first, or its first nodes wait."""
    trace = current()
    if trace is None:
        return after
    firsts, seconds = _ordered_nodes(trace, before, last=True), _ordered_nodes(trace, after, last=False)
    for second in seconds:
        node = trace.nodes[second]
        for first in firsts:
            if first not in node.after and first != second:
                node.after.append(first)
    return after


def _ordered_nodes(trace: "Trace", obj: Any, *, last: bool) -> list[str]:
    """The nodes `obj` stands for in an ordering: one node, or a whole sub-workflow's (only its last nodes
    before `>>`, only its first nodes after it: the rest follow from its own edges)."""
    members = getattr(obj, "_members", None)
    if members is None:
        node = _node_of(obj)
        return [node] if node is not None and node in trace.nodes else []
    inside = set(members)
    if last:
        feeding = {u for m in members for u in trace.nodes[m].upstreams()}
        return [m for m in members if m not in feeding]
    return [m for m in members if not inside & set(trace.nodes[m].upstreams())]


def _node_of(obj: Any) -> str | None:
    if isinstance(obj, NodeOutputs):
        return obj.node_address
    if isinstance(obj, Promise) and obj.binding.after:  # `approve(x, "deploy") >> t()`: t waits for the gate
        return obj.binding.after[-1]
    if isinstance(obj, Promise) and obj.binding.kind == "node_output":
        return obj.binding.node
    return None


class Trace:
    """The graph being built while one workflow is traced."""

    def __init__(self, workflow: str) -> None:
        self.workflow = workflow
        self.nodes: dict[str, Node] = {}
        self.prefix: list[str] = [workflow]
        self.counters: dict[str, int] = {}
        self.artifacts: dict[str, ArtifactSpec] = {}

    def address_for(self, name: str) -> str:
        base = "/".join(self.prefix + [name])
        n = self.counters.get(base, 0) + 1
        self.counters[base] = n
        return base if n == 1 else f"{base}#{n}"

    @contextlib.contextmanager
    def sub_workflow(self, name: str) -> Iterator[None]:
        self.prefix.append(self.address_for(name).rsplit("/", 1)[-1])
        try:
            yield
        finally:
            self.prefix.pop()

    def add_node(self, node: Node, values: dict[str, Any]) -> NodeOutputs:
        """Bind call arguments to the node's interface, check them, and register the node."""
        where = node.source
        file, line = (where.file, where.line) if where else (None, None)
        for name in list(node.inputs) + list(node.outputs):
            if not name or not SAFE_NAME.match(name):
                raise FlowLoadError(f"input/output name {name!r} is not a safe file name "
                                    "(letters, digits, '_', '-', '.'; no '/' or '..')",
                                    file=file, line=line, node=node.address)
            if len(name.encode()) > MAX_NAME_BYTES:  # each is a file under /workflow/inputs|outputs
                raise FlowLoadError(f"input/output name '{name[:40]}…' is {len(name.encode())} bytes long; "
                                    f"a file name may have at most {MAX_NAME_BYTES}",
                                    file=file, line=line, node=node.address)
        for name, value in values.items():
            if name not in node.inputs:
                hint = difflib.get_close_matches(name, list(node.inputs), n=1)
                raise FlowLoadError(f"unknown input '{name}'" + (f" (did you mean '{hint[0]}'?)" if hint else
                                    f" (inputs: {', '.join(node.inputs) or 'none'})"),
                                    file=file, line=line, node=node.address)
            node.bindings[name] = self._bind(node, name, value)
        missing = [n for n in node.inputs if n not in node.bindings]
        if missing:
            raise FlowLoadError(f"missing required input(s): {', '.join(missing)}",
                                file=file, line=line, node=node.address)
        for output, ref in node.output_artifacts.items():
            self.add_artifact_file(ref.artifact, ref.artifact_type, ref.file_name, node.address, output, file, line)
        self.nodes[node.address] = node
        return NodeOutputs(node)

    def add_gate(self, value: Any, name: Any, timeout: Any, src: SourceRef | None) -> Promise:
        """`approve(value, name, timeout)`: a gate node whose key is its name and the value's digest. What it
        returns is the same value, available once the gate is approved: its users bind the value itself (so
        their keys do not change because of the gate) and wait for the gate (`Binding.after`)."""
        file, line = (src.file, src.line) if src else (None, None)
        if not isinstance(name, str) or not name.strip() or "/" in name or any(ord(c) < 32 for c in name):
            raise FlowLoadError(f"approve: the gate name must be a non-empty string without '/' (got {name!r})",
                                file=file, line=line)
        if len(name.encode()) > MAX_NAME_BYTES:
            raise FlowLoadError(f"approve: the gate name is longer than {MAX_NAME_BYTES} bytes", file=file, line=line)
        seconds = _gate_timeout(timeout, name, file, line)
        if isinstance(value, NodeOutputs):
            if len(value) == 0:  # flytekit: "You can't use approval on a task that doesn't return anything."
                raise FlowLoadError(f"approve '{name}': '{value.node_address}' returns nothing; a gate needs a "
                                    "value for a person to check (approve one of its outputs)", file=file, line=line)
            if len(value) > 1:
                raise FlowLoadError(f"approve '{name}': '{value.node_address}' has {len(value)} outputs; approve "
                                    f"one of them (e.g. result[\"{next(iter(value.outputs))}\"])",
                                    file=file, line=line)
            value = next(iter(value))
        if not isinstance(value, Promise) or value.binding.kind != "node_output":
            what = ("a workflow input (Flyte refuses that too: \"Workflow inputs cannot be passed to approval "
                    "nodes\")" if isinstance(value, Promise) else f"a plain value ({type(value).__name__})")
            raise FlowLoadError(f"approve '{name}': the value to approve is {what}; approve a task's output",
                                file=file, line=line)
        for other in self.nodes.values():
            if other.kind == "gate" and other.gate == name and other.address.rsplit("/", 1)[0] == "/".join(self.prefix):
                where = f" (line {other.source.line})" if other.source and other.source.line else ""
                raise FlowLoadError(f"approve: two gates named '{name}' in one workflow{where}; give each its own "
                                    "name (`--approve NAME` approves by name)", file=file, line=line)
        source = value.binding
        node = Node(address=self.address_for(f"approve {name}"), task_name=f"approve {name}", kind="gate",
                    inputs={"value": source.type}, timeout_seconds=seconds, source=src, gate=name,
                    bindings={"value": source})
        self.nodes[node.address] = node
        return Promise(source.model_copy(update={"after": [*source.after, node.address]}))

    def add_artifact_file(self, artifact: str, artifact_type: str, file_name: str, node: str, output: str,
                          file: str | None, line: int | None) -> None:
        for what, text in (("artifact name", artifact), ("artifact file name", file_name)):
            reason = unsafe_path_part(text)
            if reason:
                raise FlowLoadError(f"{what} {text[:60]!r} {reason}", file=file, line=line, node=node)
        spec = self.artifacts.setdefault(artifact, ArtifactSpec(name=artifact, type=artifact_type))
        if spec.type != artifact_type:
            raise FlowLoadError(f"artifact '{artifact}' is declared both {spec.type} and {artifact_type}",
                                file=file, line=line, node=node)
        for f in spec.files:
            if f.file_name == file_name:
                if f.node == node and f.output == output:
                    return
                raise FlowLoadError(f"artifact '{artifact}' has the file name '{file_name}' twice "
                                    f"('{f.node}'.{f.output} and '{node}'.{output})",
                                    file=file, line=line, node=node)
        spec.files.append(ArtifactFile(file_name=file_name, node=node, output=output))

    def _bind(self, node: Node, name: str, value: Any) -> Binding:
        want = node.inputs[name]
        where = node.source
        file, line = (where.file, where.line) if where else (None, None)
        if isinstance(value, NodeOutputs):
            if len(value) != 1:
                raise FlowLoadError(f"input '{name}' is given the whole result of '{value.node_address}', "
                                    f"which has {len(value)} outputs; pick one (e.g. result[\"{next(iter(value.outputs), 'x')}\"])",
                                    file=file, line=line, node=node.address)
            value = next(iter(value))
        if isinstance(value, Promise):
            b = value.binding
            if not assignable(b.type, want):
                raise FlowLoadError(f"type mismatch: input '{name}' is {want} but {b.describe()} is {b.type}",
                                    file=file, line=line, node=node.address)
            return b
        if _holds_promise(value):
            return self._bind_collection(node, name, want, value)
        reason = check_value(want, value)
        if reason:
            raise FlowLoadError(f"input '{name}' ({want}): {reason}", file=file, line=line, node=node.address)
        return Binding(kind="literal", type=want, value=canonical_value(want, value))


    def _bind_collection(self, node: Node, name: str, want: str, value: Any) -> Binding:
        """A list or dict literal holding flow values (`parts=[a["out"], b["out"]]`), as Flyte binds a collection:
        each element bound to the input's element type."""
        where = node.source
        file, line = (where.file, where.line) if where else (None, None)
        inner = want[len("optional["):-1] if want.startswith("optional[") else want
        is_list = isinstance(value, (list, tuple))
        if is_list and inner.startswith("list["):
            element = inner[len("list["):-1]
        elif isinstance(value, dict) and inner.startswith("dict[str,"):
            element = inner[len("dict[str,"):-1]
        else:
            raise FlowLoadError(f"type mismatch: input '{name}' is {want} but is given a "
                                f"{'list' if is_list else type(value).__name__} of flow values",
                                file=file, line=line, node=node.address)
        if is_blob(element) or element.startswith(("list[file", "list[dir", "dict[str,file", "dict[str,dir")):
            raise NotSupportedError(f"not supported: a {want} input made of files from several nodes (input "
                                    f"'{name}'; a job input holds one file or folder: give each its own input)",
                                    file=file, line=line, node=node.address)
        elements = list(value) if is_list else list(value.values())
        bound = []
        for i, item in enumerate(elements):
            if isinstance(item, NodeOutputs) and len(item) == 1:
                item = next(iter(item))
            label = f"{name}[{i if is_list else repr(list(value)[i])}]"
            if isinstance(item, Promise):
                b = item.binding
                if not assignable(b.type, element):
                    raise FlowLoadError(f"type mismatch: {label} is {element} but {b.describe()} is {b.type}",
                                        file=file, line=line, node=node.address)
                bound.append(b)
            elif _holds_promise(item):
                bound.append(self._bind_collection(node, label, element, item))
            else:
                reason = check_value(element, item)
                if reason:
                    raise FlowLoadError(f"{label} ({element}): {reason}", file=file, line=line, node=node.address)
                bound.append(Binding(kind="literal", type=element, value=canonical_value(element, item)))
        keys = None if is_list else [str(k) for k in value]
        return Binding(kind="collection", type=want, items=bound, keys=keys)


def _gate_timeout(timeout: Any, name: str, file: str | None, line: int | None) -> float | None:
    """flytekit's `timeout` (a timedelta; a number of seconds is taken too); 0 or None: no timeout."""
    import datetime as dt
    if timeout is None:
        return None
    seconds = timeout.total_seconds() if isinstance(timeout, dt.timedelta) else timeout
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
        raise FlowLoadError(f"approve '{name}': timeout must be a timedelta (e.g. timedelta(hours=1)), "
                            f"got {timeout!r}", file=file, line=line)
    return float(seconds) or None


def _holds_promise(value: Any) -> bool:
    if isinstance(value, (Promise, NodeOutputs)):
        return True
    if isinstance(value, dict):
        return any(_holds_promise(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_promise(v) for v in value)
    return False


_TRACES: list[Trace] = []


def current() -> Trace | None:
    return _TRACES[-1] if _TRACES else None


@contextlib.contextmanager
def tracing(workflow: str) -> Iterator[Trace]:
    trace = Trace(workflow)
    _TRACES.append(trace)
    try:
        yield trace
    finally:
        _TRACES.pop()
