"""Where the local backend keeps a flow's state and journal, and the state's etag: without the backend's models,
so the no-op plan shortcut (reconcile/noop_plan.py) can check them without importing pydantic."""
from __future__ import annotations

import os
import re
from pathlib import Path

from blake3 import blake3

from vocab.errors import StateError

FLOW_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
JOURNAL_SUFFIX = ".journal.jsonl"


def check_flow_name(flow: str) -> str:
    if not FLOW_NAME.match(flow):
        raise StateError(f"'{flow}' is not a valid flow name")
    return flow


ETAG_CHARS = 32  # of the state's BLAKE3 digest, hex


def etag_of(data: bytes) -> str:
    return blake3(data).hexdigest()[:ETAG_CHARS]


def flow_file(root: Path, flow: str, suffix: str = ".json") -> Path:
    return Path(root) / f"{check_flow_name(flow)}{suffix}"


def peek(root: Path, flow: str) -> tuple[str | None, bool]:
    """(the state's etag, None when there is none; whether a journal with records is waiting to be folded)."""
    try:
        etag: str | None = etag_of(flow_file(root, flow).read_bytes())
    except FileNotFoundError:
        etag = None
    try:
        journal = os.path.getsize(flow_file(root, flow, JOURNAL_SUFFIX)) > 0
    except FileNotFoundError:
        journal = False
    return etag, journal
