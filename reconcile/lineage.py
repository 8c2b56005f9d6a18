"""Artifacts and lineage from the state alone: what produced an output, from which inputs, back to the flow inputs.

Outputs are content-addressed and a node's fingerprint holds the digest (or value) of every input it ran on,
so lineage is a walk: output digest -> the node record (or older cache entry) that produced it -> its
fingerprint's inputs -> the edges recorded in the run that made it (`RunRecord.sources`) -> the upstream output
with that digest, and so on until a flow input or a literal. No flow file is needed: the scheduler records the
flow's artifact declarations and input edges in each run record (`run_graph`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping

from vocab.errors import InputError
from reconcile.graph import FlowGraph
from state.model import (ArtifactFileRecord, ArtifactRecord, InputSource, NodeRecord, OutputRecord, RunRecord, State,
                         trusted)

ARTIFACT_TYPES = ("DATA", "MODEL", "REPORT")
MIN_DIGEST_PREFIX = 6  # shorter prefixes would match too much to be a useful way to name an output


def _labelled(name: str, binding: Any) -> list[tuple[str, Any]]:
    """An input's source, or each element's of a list/dict of flow values (`parts[0]`, `parts['eu']`)."""
    if binding.kind != "collection":
        return [(name, binding)]
    keys = binding.keys or list(range(len(binding.items or [])))
    return [pair for key, item in zip(keys, binding.items or [])
            for pair in _labelled(f"{name}[{key!r}]" if binding.keys else f"{name}[{key}]", item)]


def run_graph(graph: FlowGraph) -> dict[str, Any]:
    """The parts of the flow a run record keeps for `flows artifacts` / `flows lineage` (RunRecord fields)."""
    artifacts = {name: ArtifactRecord(name=spec.name, type=spec.type,
                                      files=[ArtifactFileRecord(file_name=f.file_name, node=f.node, output=f.output)
                                             for f in spec.files])
                 for name, spec in graph.artifacts.items()}
    # (trusted: the graph's own values; one per node input, held by the run for the whole apply)
    sources = {address: {label: trusted(InputSource, kind=b.kind, name=b.name, node=b.node, output=b.output)
                         for name, binding in node.bindings.items() for label, b in _labelled(name, binding)}
               for address, node in graph.nodes.items()}
    return {"artifacts": artifacts, "sources": sources}


# ---------------------------------------------------------------- producers

@dataclasses.dataclass
class Producer:
    """One node result that produced an output: the current node record or an older cache entry."""

    address: str
    task_name: str
    outputs: dict[str, OutputRecord]
    fingerprint: Mapping[str, Any]
    key: str | None
    run_id: str | None   # the run whose job made these outputs (not a later run that reused them)
    job_id: str | None
    current: bool        # the node's record as last applied (False: an older result kept in the cache index)


def producers(state: State, address: str | None = None) -> Iterator[Producer]:
    """Every recorded result (current records first), optionally of one node."""
    for rec in state.nodes.values():
        if rec.status == "succeeded" and (address is None or rec.address == address):
            yield _from_record(rec)
    for entry in state.cache.values():
        if address is None or entry.address == address:
            yield Producer(entry.address, entry.task_name, entry.outputs, entry.fingerprint, entry.key,
                           entry.run_id, entry.job_id, current=False)


def _from_record(rec: NodeRecord) -> Producer:
    return Producer(rec.address, rec.task_name, rec.outputs, rec.fingerprint, rec.key,
                    rec.reused_from or rec.run_id, rec.job_id, current=True)


def _matches(out: OutputRecord | None, entry: dict[str, Any]) -> bool:
    """Does a recorded output match an input's fingerprint entry (a digest for files, a value for primitives)?"""
    if out is None:
        return False
    if "digest" in entry:
        return out.digest == entry["digest"]
    if "value" in entry:
        from vocab.flytetypes import canonical_value
        try:
            return canonical_value(entry.get("type", out.type), out.value) == entry["value"]
        except (TypeError, ValueError):
            return False
    return False


def find_producer(state: State, address: str, output: str, entry: dict[str, Any]) -> Producer | None:
    return next((p for p in producers(state, address) if _matches(p.outputs.get(output), entry)), None)


def by_digest(state: State, digest: str) -> Producer | None:
    """Fallback when a run recorded no edges (older state): content addressing names the producer."""
    return next((p for p in producers(state) if any(o.digest == digest for o in p.outputs.values())), None)


# ---------------------------------------------------------------- the lineage tree

def _output_view(out: OutputRecord) -> dict[str, Any]:
    view: dict[str, Any] = {"type": out.type, "digest": out.digest, "size": out.size}
    if out.value is not None:
        view["value"] = out.value
    return view


def lineage(state: State, producer: Producer, output: str, _path: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The lineage of one output as a JSON-able tree: the producing node and run, then each input it was made
    from (digest or value) with where that came from, recursively to flow inputs and literals."""
    out = producer.outputs[output]
    run = state.runs.get(producer.run_id or "")
    node: dict[str, Any] = {"kind": "output", "address": producer.address, "output": output, **_output_view(out),
                            "run_id": producer.run_id, "job_id": producer.job_id, "key": producer.key,
                            "current": producer.current, "inputs": []}
    sources = run.sources.get(producer.address) if run is not None else None
    path = _path | {f"{producer.address}\0{out.digest}"}  # a guard only: a DAG cannot revisit an output
    for name, entry in (producer.fingerprint.get("inputs") or {}).items():
        item: dict[str, Any] = {"name": name, "type": entry.get("type")}
        item.update({k: entry[k] for k in ("digest", "value") if k in entry})
        item["from"] = _source(state, run, sources.get(name) if sources is not None else None, entry, path)
        node["inputs"].append(item)
    return node


def _source(state: State, run: RunRecord | None, source: InputSource | None, entry: dict[str, Any],
            path: frozenset[str]) -> dict[str, Any]:
    if source is None:
        # No edge recorded (a run from before edges were kept): a file input's digest still names its producer.
        found = by_digest(state, entry["digest"]) if "digest" in entry else None
        if found is None:
            return {"kind": "unknown", "why": "no producer recorded (a flow input, a literal, or an older run)"}
        output = next(k for k, o in found.outputs.items() if o.digest == entry["digest"])
        return _descend(state, found, output, path)
    if source.kind == "flow_input":
        return {"kind": "flow_input", "name": source.name,
                "value": run.inputs.get(source.name or "") if run is not None else None}
    if source.kind == "literal":
        return {"kind": "literal"}
    found = find_producer(state, source.node or "", source.output or "", entry)
    if found is None:
        return {"kind": "unknown", "address": source.node, "output": source.output,
                "why": "that result is no longer in the state"}
    return _descend(state, found, source.output or "", path)


def _descend(state: State, producer: Producer, output: str, path: frozenset[str]) -> dict[str, Any]:
    if f"{producer.address}\0{producer.outputs[output].digest}" in path:
        return {"kind": "unknown", "address": producer.address, "output": output, "why": "cycle"}
    return lineage(state, producer, output, path)


def flow_inputs_of(tree: dict[str, Any]) -> set[str]:
    """The names of the flow inputs a lineage tree reaches (what tests and summaries ask)."""
    found: set[str] = set()
    for item in tree.get("inputs", []):
        src = item["from"]
        if src["kind"] == "flow_input":
            found.add(src["name"])
        elif src["kind"] == "output":
            found |= flow_inputs_of(src)
    return found


# ---------------------------------------------------------------- naming what to trace

@dataclasses.dataclass
class Target:
    flow: str
    producer: Producer
    outputs: list[str]
    note: str = ""


def resolve(states: dict[str, State], what: str, output: str | None = None) -> Target:
    """`flows lineage ADDR|DIGEST`: a node address (all its outputs, or `output`) or a digest (prefix)."""
    for flow, state in states.items():
        rec = state.nodes.get(what)
        if rec is None:
            continue
        if rec.status != "succeeded" or not rec.outputs:
            raise InputError(f"node '{what}' has no outputs in the state (its last status: {rec.status})")
        names = list(rec.outputs)
        if output is not None:
            if output not in rec.outputs:
                raise InputError(f"node '{what}' has no output '{output}' (outputs: {', '.join(names)})",
                                 field="--output")
            names = [output]
        return Target(flow, _from_record(rec), names)
    hexed = what.lower()
    if len(hexed) >= MIN_DIGEST_PREFIX and all(c in "0123456789abcdef" for c in hexed):
        return _by_digest_prefix(states, hexed)
    import difflib
    addresses = [a for s in states.values() for a in s.nodes]
    hint = difflib.get_close_matches(what, addresses, n=1)
    raise InputError(f"no node or output digest '{what}' in the state" +
                     (f" (did you mean '{hint[0]}'?)" if hint else ""))


def _by_digest_prefix(states: dict[str, State], prefix: str) -> Target:
    hits: list[tuple[str, Producer, str]] = []
    for flow, state in states.items():
        for p in producers(state):
            hits += [(flow, p, name) for name, o in p.outputs.items() if o.digest.startswith(prefix)]
    digests = sorted({p.outputs[name].digest for _, p, name in hits})
    if not digests:
        raise InputError(f"no output with digest '{prefix}' in the state")
    if len(digests) > 1:
        raise InputError(f"digest prefix '{prefix}' is ambiguous: " + ", ".join(d[:16] for d in digests[:5]))
    flow, first, name = hits[0]  # current records come first: the result as last applied
    others = sorted({p.address for _, p, _ in hits[1:] if p.address != first.address})
    note = f"the same bytes were also produced by: {', '.join(others)}" if others else ""
    return Target(flow, first, [name], note)


# ---------------------------------------------------------------- artifacts

def last_run(state: State) -> RunRecord | None:
    return max(state.runs.values(), key=lambda r: r.started_at, default=None)


def declared_artifacts(state: State) -> dict[str, ArtifactRecord]:
    """The artifacts declared by the flow as of its last apply."""
    run = last_run(state)
    return dict(run.artifacts) if run is not None else {}


@dataclasses.dataclass
class ArtifactFile:
    file_name: str
    node: str
    output: str
    producer: Producer | None  # None: the node has no successful result in the state

    @property
    def record(self) -> OutputRecord | None:
        return self.producer.outputs.get(self.output) if self.producer else None


def artifact_files(state: State, artifact: ArtifactRecord) -> list[ArtifactFile]:
    files = []
    for f in artifact.files:
        rec = state.nodes.get(f.node)
        ok = rec is not None and rec.status == "succeeded" and f.output in rec.outputs
        files.append(ArtifactFile(f.file_name, f.node, f.output, _from_record(rec) if ok else None))  # type: ignore[arg-type]
    return files


def find_artifact(states: dict[str, State], name: str) -> tuple[str, ArtifactRecord]:
    """An artifact by its name (exact, else case-insensitive) across the flows of a project."""
    found = [(flow, a) for flow, s in states.items() for a in declared_artifacts(s).values() if a.name == name]
    if not found:
        found = [(flow, a) for flow, s in states.items() for a in declared_artifacts(s).values()
                 if a.name.lower() == name.lower()]
    if len(found) > 1:
        raise InputError(f"artifact '{name}' is in several flows ({', '.join(f for f, _ in found)}); name one with --flow")
    if not found:
        import difflib
        names = sorted({a.name for s in states.values() for a in declared_artifacts(s).values()})
        hint = difflib.get_close_matches(name, names, n=1)
        raise InputError(f"no artifact '{name}' in the last apply" +
                         (f" (did you mean '{hint[0]}'?)" if hint else
                          f" (artifacts: {', '.join(names)})" if names else ""))
    return found[0]
