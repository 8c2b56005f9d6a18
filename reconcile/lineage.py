"""Artifacts and lineage from the state alone: what produced an output, from which inputs, back to the flow inputs.

Outputs are content-addressed and a node's fingerprint holds the digest (or value) of every input it ran on,
so lineage is a walk: output digest -> the node record (or older cache entry) that produced it -> its
fingerprint's inputs -> the edges recorded in the run that made it (`RunRecord.sources`) -> the upstream output
with that digest, and so on until a flow input or a literal. No flow file is needed: the scheduler records the
flow's artifact declarations and input edges in each run record (`run_graph`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator

from reconcile.errors import InputError
from reconcile.graph import FlowGraph
from state.model import ArtifactFileRecord, ArtifactRecord, InputSource, NodeRecord, OutputRecord, RunRecord, State

ARTIFACT_TYPES = ("DATA", "MODEL", "REPORT")
MIN_DIGEST_PREFIX = 6  # shorter prefixes would match too much to be a useful way to name an output


def run_graph(graph: FlowGraph) -> dict[str, Any]:
    """The parts of the flow a run record keeps for `flows artifacts` / `flows lineage` (RunRecord fields)."""
    artifacts = {name: ArtifactRecord(name=spec.name, type=spec.type,
                                      files=[ArtifactFileRecord(file_name=f.file_name, node=f.node, output=f.output)
                                             for f in spec.files])
                 for name, spec in graph.artifacts.items()}
    sources = {address: {name: InputSource(kind=b.kind, name=b.name, node=b.node, output=b.output)
                         for name, b in node.bindings.items()}
               for address, node in graph.nodes.items()}
    return {"artifacts": artifacts, "sources": sources}
