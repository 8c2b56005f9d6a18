"""State surgery used by `flows state/cache/runs`: pure changes of a State, applied under the lock by the
StateStore (`store.mutate`), which writes them compare-and-swap with serial + 1."""
from __future__ import annotations

import json
from typing import Any

from vocab.errors import StateError
from reconcile.fingerprint import cache_key
from state.fingerprint_text import fresh_dict
from vocab.flytetypes import is_dir
from state.model import State


def remove_nodes(state: State, addresses: list[str]) -> list[str]:
    """Forget nodes so they plan as `create`: their records go, and with them the cache entries of their
    current keys (else the next plan would just find them again). Older cache entries stay, so going back
    to an earlier definition is still free. Returns the evicted keys."""
    missing = [a for a in addresses if a not in state.nodes]
    if missing:
        raise StateError(f"no node {', '.join(repr(m) for m in missing)} in the state of '{state.flow}'")
    evicted: list[str] = []
    for a in addresses:
        rec = state.nodes.pop(a)
        if rec.key and state.cache.pop(rec.key, None) is not None:
            evicted.append(rec.key)
    return evicted


def move_node(state: State, old: str, new: str) -> None:
    """Rename a node; when its task was renamed too, re-key its record and cache entries so nothing re-runs."""
    if old not in state.nodes:
        raise StateError(f"no node '{old}' in the state of '{state.flow}'")
    if new in state.nodes:
        raise StateError(f"node '{new}' already exists in the state of '{state.flow}'")
    rec = state.nodes.pop(old)
    new_task = new.rsplit("/", 1)[-1].split("#", 1)[0]
    rec.address = new
    if new_task != rec.task_name:
        for entry in [e for e in state.cache.values() if e.task_name == rec.task_name and e.fingerprint]:
            fp = fresh_dict(entry.fingerprint)
            fp["task"]["name"] = new_task
            key = cache_key(fp)
            state.cache.setdefault(key, entry.model_copy(update={"key": key, "task_name": new_task,
                                                                 "address": new, "fingerprint": fp}))
        if rec.fingerprint:  # a new dict: a fingerprint's parts may be shared (with a cache entry, in memory)
            rec.fingerprint = {**rec.fingerprint, "task": {**rec.fingerprint["task"], "name": new_task}}
            rec.key = cache_key(rec.fingerprint)
        rec.task_name = new_task
    state.nodes[new] = rec


def referenced_digests(state: State, blobs: Any) -> set[str]:
    """Every blob a node record or cache entry needs, including the files inside stored directories."""
    digests: set[str] = set()
    outputs = [o for rec in state.nodes.values() for o in rec.outputs.values()]
    outputs += [o for e in state.cache.values() for o in e.outputs.values()]
    for o in outputs:
        digests.add(o.digest)
        if is_dir(o.type) and o.uri:
            try:
                manifest = json.loads(blobs.read_bytes(o.uri))
            except Exception:
                continue  # a missing manifest references nothing more
            digests.update(str(f["digest"]) for f in manifest.get("files", {}).values())
    return digests


def evict(state: State, keep_last: int) -> list[str]:
    """Keep the newest `keep_last` cache entries per node address (and every entry a record points at)."""
    current = {rec.key for rec in state.nodes.values()}
    by_address: dict[str, list[Any]] = {}
    for e in state.cache.values():
        by_address.setdefault(e.address, []).append(e)
    dropped: list[str] = []
    for entries in by_address.values():
        entries.sort(key=lambda e: e.created_at, reverse=True)
        for e in entries[keep_last:]:
            if e.key not in current:
                dropped.append(e.key)
                del state.cache[e.key]
    return dropped
