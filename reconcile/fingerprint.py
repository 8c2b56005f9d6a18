"""Fingerprints and cache keys: the canonical record of everything that can change a node's results.

Like Bazel's action key: task spec + resolved job config + code version + interface + cache_version +
the digest (or canonical value) of every input that is not ignored. Upstream outputs enter by the
content they produced, never by the upstream's key, so a re-run that produced identical bytes does not
invalidate its dependents (early cutoff).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from blake3 import blake3

from vocab.digest import StatCache, TreeError
from vocab.errors import InputError
from vocab.canonical import canonical_json
from vocab.flytetypes import canonical_value, is_blob, is_dir
from reconcile.graph import Binding, FlowGraph, Node
from reconcile.input_paths import unreadable_reason
from state.fingerprint_text import has_key_schema
from state.model import OutputRecord, State

# As in Domino Flows: fields that cannot change results do not invalidate (DESIGN decision 4).
DISPLAY_FIELDS = {"Title", "VolumeSizeGiB", "HardwareTierId", "HardwareTierName"}
CLUSTER_DISPLAY_FIELDS = {"WorkerHardwareTierId", "WorkerCount", "WorkerStorageGiB", "MaxWorkerCount",
                          "MasterHardwareTierId"}
KEY_LENGTH = 40
# The shape of the fingerprint and how a key is taken of it. Bump it when either changes (keys then change once,
# and the README's changelog says so); `upgrade_keys` re-keys what a state of the previous schema recorded.
KEY_SCHEMA = 2

PENDING = "pending"


def split_config(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fields in the key, fields only recorded)."""
    keyed: dict[str, Any] = {}
    display: dict[str, Any] = {}
    for name, value in config.items():
        if name in DISPLAY_FIELDS:
            display[name] = value
        elif name == "ComputeClusterProperties" and isinstance(value, dict):
            keyed[name] = {k: v for k, v in value.items() if k not in CLUSTER_DISPLAY_FIELDS}
            sizes = {k: v for k, v in value.items() if k in CLUSTER_DISPLAY_FIELDS}
            if sizes:
                display[name] = sizes
        else:
            keyed[name] = value
    return keyed, display


def cache_key(fingerprint: dict[str, Any]) -> str:
    return blake3(canonical_json(fingerprint).encode()).hexdigest()[:KEY_LENGTH]


class InputResolver:
    """Turns flow input values and upstream outputs into fingerprint entries and job input values."""

    def __init__(self, graph: FlowGraph, flow_inputs: dict[str, Any], digests: StatCache,
                 remote_digest: Callable[[str], str] | None = None) -> None:
        self.graph = graph
        self.flow_inputs = flow_inputs
        self.digests = digests
        self.remote_digest = remote_digest
        self._memo: dict[tuple[str, str], str] = {}

    def blob_digest(self, t: str, location: str, what: str) -> str:
        """Digest of a file/dir given by path or URI (stat-cached locally)."""
        memo_key = (t, location)
        if memo_key in self._memo:
            return self._memo[memo_key]
        if location.startswith("s3://"):
            if self.remote_digest is None:
                raise InputError("s3:// inputs need S3 access configured", field=what)
            digest = self.remote_digest(location)
        else:
            # One check for every way a path reaches a digest (flow input, default, literal): a FIFO would
            # block the read forever; a loop or a dangling link would fail deep inside it.
            reason = unreadable_reason(location, want_dir=is_dir(t))
            if reason:
                raise InputError(reason, field=what)
            try:
                digest = self.digests.directory(location) if is_dir(t) else self.digests.file(location)
            except TreeError as e:  # changed since the check
                raise InputError(f"{os.path.join(location, e.rel)} {e.reason}", field=what) from None
        self._memo[memo_key] = digest
        return digest

    def flow_value(self, name: str) -> Any:
        if name in self.flow_inputs:
            return self.flow_inputs[name]
        return self.graph.inputs[name].default

    @staticmethod
    def picked(binding: Binding, value: Any, what: str) -> Any:
        try:
            return binding.pick(value)
        except KeyError as e:
            raise InputError(str(e.args[0]), field=what) from None

    def literal_location(self, value: Any) -> str:
        path = os.fspath(value) if not isinstance(value, str) else value
        if path.startswith("s3://") or os.path.isabs(path):
            return path
        return str(Path(self.graph.project_root) / path)

    def entry(self, want: str, binding: Binding,
              upstream: Callable[[str], dict[str, OutputRecord] | None], what: str) -> dict[str, Any] | None:
        """The fingerprint entry of one input, or None while its upstream has not produced it yet."""
        if binding.kind == "collection":  # keyed by the values it holds, as the same literal would be
            parts = [self.entry(item.type, item, upstream, what) for item in binding.items or []]
            if any(p is None for p in parts):
                return None
            return {"type": want, "value": canonical_value(want, binding_shape(binding, [p["value"] for p in parts]))}  # type: ignore[index]
        if binding.kind == "node_output":
            outputs = upstream(binding.node)  # type: ignore[arg-type]
            if outputs is None:
                return None
            rec = outputs[binding.output]  # type: ignore[index]
            if binding.path:  # a field of a dataclass output: keyed by its value, as the same literal would be
                return {"type": want, "value": canonical_value(want, self.picked(binding, rec.value, what))}
            if is_blob(want):
                return {"type": want, "digest": rec.digest}
            return {"type": want, "value": canonical_value(want, rec.value)}
        value = binding.value if binding.kind == "literal" else self.flow_value(binding.name)  # type: ignore[arg-type]
        value = self.picked(binding, value, what) if binding.path else value
        if is_blob(want) and value is not None:
            return {"type": want, "digest": self.blob_digest(want, self.literal_location(value), what)}
        return {"type": want, "value": canonical_value(want, value)}


def binding_shape(binding: Binding, values: list[Any]) -> Any:
    """A collection binding's value from its elements' values: the list, or the dict with its keys."""
    return list(values) if binding.keys is None else dict(zip(binding.keys, values))


# A node's task, code and display fields: the parts of its fingerprint fixed for a whole command.
StaticPart = tuple[dict[str, Any], dict[str, str], dict[str, Any]]


def static_part(node: Node, resolved_config: dict[str, Any], code: dict[str, str]) -> StaticPart:
    """(task, code, display fields) of a node's fingerprint: computed once per command and shared by every
    fingerprint of the node (the plan's and the apply's), so they are held once. Never mutated in place."""
    keyed, display = split_config(resolved_config)
    task: dict[str, Any] = {
        "name": node.task_name,
        "kind": node.kind,
        # Never masked here: a key must not depend on this machine's environment (secrets are masked where text
        # leaves the process: the plan, the state, logs and errors).
        "command": node.command,
        "config": keyed,
        "interface": {"inputs": dict(sorted(node.inputs.items())), "outputs": dict(sorted(node.outputs.items()))},
        "cache_version": node.cache_version,
    }
    if node.output_artifacts:
        task["artifacts"] = {k: v.model_dump() for k, v in sorted(node.output_artifacts.items())}
    if node.export_specs:
        task["exports"] = node.export_specs
    return task, dict(sorted(code.items())), display


def fingerprint(node: Node, resolved_config: dict[str, Any], code: dict[str, str],
                inputs: dict[str, dict[str, Any] | None],
                static: StaticPart | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fingerprint, display fields). Pending inputs are marked and must be filled before keying. `static`: the
    node's `static_part`, when the caller keeps it."""
    task, code_part, display = static or static_part(node, resolved_config, code)
    fp_inputs = {name: (entry if entry is not None else {"type": node.inputs[name], PENDING: True})
                 for name, entry in sorted(inputs.items()) if name not in node.cache_ignore_input_vars}
    return {"key_schema": KEY_SCHEMA, "task": task, "code": code_part, "inputs": fp_inputs}, display


def upgrade_keys(state: State) -> int:
    """Re-key, in memory, the cache entries and node records a state of key schema 1 holds, from the fingerprints
    it recorded, so an upgrade does not re-run what is unchanged. Returns how many were re-keyed. (A recorded
    fingerprint that was masked, or whose code identity changed since, simply matches nothing: that node runs.)"""
    rekeyed = 0
    for old_key, entry in list(state.cache.items()):
        if entry.fingerprint and not has_key_schema(entry.fingerprint):
            fp = {"key_schema": KEY_SCHEMA, **entry.fingerprint}
            new_key = cache_key(fp)
            del state.cache[old_key]
            state.cache.setdefault(new_key, entry.model_copy(update={"key": new_key, "fingerprint": fp}))
            rekeyed += 1
    for rec in state.nodes.values():
        if rec.fingerprint and not has_key_schema(rec.fingerprint):
            rec.fingerprint = {"key_schema": KEY_SCHEMA, **rec.fingerprint}
            rec.key = cache_key(rec.fingerprint) if rec.key else None
            rekeyed += 1
    return rekeyed


def is_pending(fp: dict[str, Any]) -> bool:
    return any(v.get(PENDING) for v in fp.get("inputs", {}).values())
