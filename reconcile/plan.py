"""Planning: for every node one action and its reasons. Reads the state, never writes it, never runs a job."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from providers.base import Provider
from providers.blobs.base import BlobStore, is_s3
from reconcile.code_identity import CodeIdentity
from reconcile.fingerprint import InputResolver, StaticPart, cache_key, fingerprint, is_pending, static_part
from reconcile.graph import FlowGraph, Node
from reconcile.plan_model import EXECUTING, NodeChange, Plan, Reason
from reconcile.reasons import display_notes, fingerprint_reasons
from state.model import CacheEntry, OutputRecord, State, now, trusted
from vocab.digest import StatCache
from vocab.errors import FlowsError
from vocab.flytetypes import is_blob, is_dir


class NodeKeyer:
    """Computes a node's fingerprint and key from what is known of its upstreams (shared by plan and apply)."""

    def __init__(self, graph: FlowGraph, flow_inputs: dict[str, Any], provider: Provider, digests: StatCache,
                 remote_digest: Callable[[str], str] | None = None) -> None:
        self.graph = graph
        self.provider = provider
        self.digests = digests
        self.resolver = InputResolver(graph, flow_inputs, digests, remote_digest)
        self.code = CodeIdentity(Path(graph.project_root), digests)
        self._static: dict[str, tuple[dict[str, Any], dict[str, str]]] = {}
        self._fixed: dict[str, StaticPart] = {}
        self._shared: dict[str, Any] = {}  # (repr of a part) -> the one object every node with that part holds

    def static_parts(self, node: Node) -> tuple[dict[str, Any], dict[str, str]]:
        """(resolved config, code identity): fixed for the whole command, computed once per node."""
        if node.kind == "gate":  # runs no code anywhere: its key is its name and the value it gates
            return {}, {}
        if node.address not in self._static:
            config = self._share(self.provider.resolve_config(node))
            code = self._share(self.code.of(node))
            self._static[node.address] = (config, code)
        return self._static[node.address]

    def _share(self, part: Any) -> Any:
        """One object for equal parts of different nodes' static fingerprint parts (a config, an interface, a
        code identity): a flow's nodes mostly share them, and a 10,000-node apply held ~12 MiB of equal copies
        for its whole run. Keyed by `repr`, which tells `1` from `True` and `1.0` (Python's equality does not, and
        their canonical JSON differs). Safe because these parts are never changed in place (`static_part`)."""
        return self._shared.setdefault(repr(part), part)

    def resolve_ahead(self, nodes: list[Node], workers: int = 8) -> None:
        """A provider that resolves configs remotely (Domino: round trips) gets each distinct config asked for
        at once, in parallel, before the nodes are planned one by one (they then hit its answers)."""
        if not self.provider.resolves_remotely:
            return
        import json
        from concurrent.futures import ThreadPoolExecutor

        distinct: dict[str, Node] = {}
        for node in nodes:
            distinct.setdefault(json.dumps([node.kind, node.job_config, node.resolve_defaults], sort_keys=True,
                                           default=str), node)
        if distinct:  # (one config too: resolved here, it runs beside the blob-presence check)
            with ThreadPoolExecutor(min(workers, len(distinct))) as pool:
                list(pool.map(self.provider.resolve_config, distinct.values()))

    def fingerprint(self, node: Node, upstream_outputs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        config, code = self.static_parts(node)
        entries = {name: self.resolver.entry(node.inputs[name], b, upstream_outputs, f"{node.address}: input {name}")
                   for name, b in node.bindings.items()}
        fixed = self._fixed.get(node.address)
        if fixed is None:
            task, code_part, display = static_part(node, config, code)
            task["interface"] = self._share(task["interface"])
            task["config"] = self._share(task["config"])
            fixed = self._fixed[node.address] = (task, self._share(code_part), self._share(display))
        return fingerprint(node, config, code, entries, fixed)


def _blob_uris(outputs: dict[str, OutputRecord]) -> list[str]:
    return [o.uri for o in outputs.values() if o.uri and is_blob(o.type)]


def _dir_uris(outputs: dict[str, OutputRecord]) -> set[str]:
    return {o.uri for o in outputs.values() if o.uri and is_dir(o.type)}


class BlobPresence:
    """Whether recorded outputs are still in the blob store: asked in batches (S3: parallel HEADs), remembered
    for the command. A cache hit whose blobs are gone is not a hit."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self._exists: dict[str, bool] = {}

    def prefetch(self, outputs: list[dict[str, OutputRecord]]) -> None:
        uris = sorted({u for o in outputs for u in _blob_uris(o) if u not in self._exists})  # (not O(known))
        if uris:
            dirs = set().union(*(_dir_uris(o) for o in outputs)) & set(uris)
            self._exists.update(self.blobs.exists(uris, dirs=dirs))

    def outputs_exist(self, outputs: dict[str, OutputRecord]) -> bool:
        self.prefetch([outputs])
        return all(self._exists.get(u, False) for u in _blob_uris(outputs))


def fmt_seconds(seconds: float) -> str:
    """`1h`, `30m`, `45s`, `1d 2h`: a gate's timeout as people write it."""
    s = int(seconds)
    parts = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "m"), (s % 60, "s")]
    return " ".join(f"{n}{u}" for n, u in parts if n) or f"{seconds:g}s"


def approved_text(state: State, gate: str | None, run_id: str | None) -> str:
    """`approved by ann at 2026-11-30T12:00:00 (run r…)`, from the run that approved it (when still recorded)."""
    run = state.runs.get(run_id or "")
    approval = run.approvals.get(gate or "") if run is not None else None
    if approval is None:
        return f"approved before (run {run_id or '?'}), for this very value"
    return f"approved by {approval.by} at {approval.at} (run {run_id}), for this very value"


class Planner:
    def __init__(self, graph: FlowGraph, state: State, keyer: NodeKeyer, blobs: BlobStore,
                 targets: list[str] | None = None, replace: list[str] | None = None) -> None:
        self.graph = graph
        self.state = state
        self.keyer = keyer
        self.blobs = blobs
        self.targets = targets or []
        self.replace = replace or []
        self.presence = BlobPresence(blobs)
        for address in self.targets + self.replace:
            if address not in graph.nodes:
                import difflib
                hint = difflib.get_close_matches(address, list(graph.nodes), n=1)
                raise FlowsError(f"no node '{address}' in workflow '{graph.workflow}'" +
                                 (f" (did you mean '{hint[0]}'?)" if hint else ""), node=address)

    def _prefetch(self) -> None:
        """One batched existence check of the outputs the current records point at (S3: parallel HEADs)."""
        entries = [self.state.cache.get(rec.key or "") for rec in self.state.nodes.values()]
        self.presence.prefetch([e.outputs for e in entries if e is not None])

    def selected(self) -> list[str]:
        if not self.targets:
            return list(self.graph.nodes)
        wanted: set[str] = set()
        for t in self.targets:
            wanted |= {t} | self.graph.ancestors(t)
        return [a for a in self.graph.nodes if a in wanted]

    def plan_gate(self, node: Node, running: set[str], outputs: dict[str, dict[str, OutputRecord]]) -> NodeChange:
        """An approval gate: reused when this very value (its key: name + the value's digest) was approved before,
        else `approve`. Its users bind the value itself, so they are planned as if the gate were not there."""
        fp, _ = self.keyer.fingerprint(node, lambda a: None if a in running else outputs.get(a))
        record = self.state.nodes.get(node.address)
        change = trusted(NodeChange, address=node.address, task_name=node.task_name, action="approve", fingerprint=fp,
                         previous_key=record.key if record else None, gate=node.gate)
        how = f"flows apply ... --approve {node.gate}" + (
            f"; times out {fmt_seconds(node.timeout_seconds)} after apply reaches it" if node.timeout_seconds else "")
        if is_pending(fp):
            change.pending_on = [u for u in node.data_upstreams() if u in running]
            change.reasons = [Reason(field="upstream", message=f"waits for {', '.join(change.pending_on)}; then "
                                     f"needs approval unless that value was approved before ({how})")]
            return change
        key = change.key = cache_key(fp)
        entry = self.state.cache.get(key)
        if entry is not None and node.address not in self.replace:
            change.action, change.reused_from_run = "reuse", entry.run_id
            change.reasons = [Reason(field="approval", message=approved_text(self.state, node.gate, entry.run_id))]
            return change
        if node.address in self.replace:
            why = "replace requested: approve again"
        elif record is None or record.key is None:
            why = "never approved"
        elif record.key != key:
            change.reasons = fingerprint_reasons(record.fingerprint, fp)
            why = "this value was never approved"
        elif record.status == "failed":
            why = f"{record.error or 'refused'} last time"
        else:
            why = "its approval is no longer in the cache"
        change.reasons.insert(0, Reason(field="approval", message=f"needs approval: {why} ({how})"))
        return change

    def plan_node(self, node: Node, running: set[str], outputs: dict[str, dict[str, OutputRecord]]) -> NodeChange:
        """`running`: the nodes decided so far that will (or may) execute; their outputs are not known yet."""
        if node.kind == "gate":
            return self.plan_gate(node, running, outputs)
        fp, display = self.keyer.fingerprint(node, lambda a: None if a in running else outputs.get(a))
        record = self.state.nodes.get(node.address)
        # (trusted: the planner's own values; one NodeChange per node, held while the apply runs)
        change = trusted(NodeChange, address=node.address, task_name=node.task_name, action="create", fingerprint=fp,
                         previous_key=record.key if record else None)
        if record is not None:
            change.notes = display_notes(record.display, display)
        if is_pending(fp):
            change.pending_on = [u for u in node.data_upstreams() if u in running]
            waits_for = ", ".join(change.pending_on)
            if record is None:  # nothing to reuse by address: it is created, its key known after apply
                change.action = "create"
                change.reasons = [trusted(Reason, field="new", message=f"never run; waits for {waits_for} "
                                                                   "(key known after apply)")]
                return change
            # It has a record: it may still be reused when its upstreams' new outputs match (early cutoff).
            change.action = "pending"
            change.reasons = [trusted(Reason, field="upstream",
                                      message=f"waits for {waits_for} (inputs known after apply)")]
            if record.fingerprint:
                change.reasons += fingerprint_reasons(record.fingerprint, fp)
            return change
        key = cache_key(fp)
        change.key = key
        entry: CacheEntry | None = self.state.cache.get(key)
        hit = entry is not None and self.presence.outputs_exist(entry.outputs)
        if node.address in self.replace:
            change.action, change.reasons = "run", [Reason(field="replace", message="replace requested")]
        elif not node.cache:
            change.action, change.reasons = "run", [Reason(field="cache", message="caching disabled (cache=False)")]
        elif hit:
            assert entry is not None
            change.action = "reuse"
            change.reused_from_run = entry.run_id
            if record is None or record.key != key:
                change.reasons = [Reason(field="cache", message=f"cache hit: same key as the result of run "
                                                                 f"{entry.run_id or '?'} ({entry.address})")]
            outputs[node.address] = entry.outputs
        elif record is None:
            change.action = "create"
            change.reasons = [trusted(Reason, field="new", message="never run")]
        elif record.key == key and record.status == "failed":
            change.action, change.reasons = "run", [Reason(field="status", message="failed last time" +
                                                            (f": {record.error}" if record.error else ""))]
        elif record.key == key and record.status in ("cancelled", "running", "skipped"):
            change.action, change.reasons = "run", [Reason(field="status", message=f"{record.status} last time")]
        elif record.key == key:
            change.action, change.reasons = "run", [Reason(field="outputs", message="outputs missing from the blob store, or changed in it")]
        else:
            change.action = "update"
            change.reasons = fingerprint_reasons(record.fingerprint, fp) or [
                Reason(field="key", message="cache key changed")]
        return change

    def plan(self, flow_digest: str, flow_inputs: dict[str, Any], backend: str, provider: str,
             serial: int | None, lineage: str | None) -> Plan:
        ahead = [self.graph.nodes[a] for a in self.selected()]
        if is_s3(str(self.blobs.url)):  # two independent sets of round trips: made at once
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(1, thread_name_prefix="blob-presence") as aside:
                looked = aside.submit(self._prefetch)
                self.keyer.resolve_ahead(ahead)
                looked.result()
        else:
            self._prefetch()
            self.keyer.resolve_ahead(ahead)
        decided: dict[str, NodeChange] = {}
        running: set[str] = set()
        outputs: dict[str, dict[str, OutputRecord]] = {}
        for address in self.selected():
            change = self.plan_node(self.graph.nodes[address], running, outputs)
            decided[address] = change
            if change.action in EXECUTING or change.action == "pending":
                running.add(address)  # (a `create` whose key is known only after apply included)
        changes = list(decided.values())
        if not self.targets:
            for address, rec in self.state.nodes.items():
                if address not in self.graph.nodes:
                    changes.append(NodeChange(address=address, task_name=rec.task_name, action="forget",
                                              previous_key=rec.key,
                                              reasons=[Reason(field="flow", message="no longer in the flow; "
                                                              "its record is dropped, its cache entries kept")]))
        summary = {a: 0 for a in ("create", "update", "run", "pending", "approve", "reuse", "forget")}
        for c in changes:
            summary[c.action] += 1
        return Plan(flow=self.graph.workflow, flow_file=self.graph.file, flow_digest=flow_digest, inputs=flow_inputs,
                    state_serial=serial, state_lineage=lineage, backend=backend, provider=provider,
                    created_at=now(), targets=self.targets, replace=self.replace, nodes=changes, summary=summary)
