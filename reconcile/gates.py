"""Approval gates (`approve(value, "name", timeout)`): who approves, which names a flow has, and how a question
put to a person is answered. The scheduler (reconcile/apply.py) stops at a gate until it is approved.
"""
from __future__ import annotations

import dataclasses
import difflib
import getpass
import os
from typing import Callable, Literal

from reconcile.graph import FlowGraph
from vocab.errors import InputError

Answer = Literal["approved", "refused", "unanswered", "timed out"]


@dataclasses.dataclass
class GateQuestion:
    """What a person is asked once nothing else can run, once per gate name."""

    name: str
    addresses: list[str]        # its gate nodes (a sub-workflow called twice has its gate twice)
    values: list[str]           # what each passes on, as text: a value, or a file's digest and size
    seconds_left: float | None  # before its timeout fails it (None: no timeout)


# The answer to a question; without one (no terminal) every gate stays unanswered and the run ends `waiting`.
AskApproval = Callable[[GateQuestion], Answer]


def approver() -> str:
    """Who approves: FLOWS_APPROVER when set (a CI's name for the person who pressed the button), else the OS
    user."""
    named = os.environ.get("FLOWS_APPROVER", "").strip()
    if named:
        return named
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name (a container without a passwd entry)
        return "unknown"


def gate_names(graph: FlowGraph) -> dict[str, list[str]]:
    """Gate name -> the addresses of its gate nodes (a sub-workflow called twice has its gate twice)."""
    names: dict[str, list[str]] = {}
    for address, node in graph.nodes.items():
        if node.kind == "gate" and node.gate is not None:
            names.setdefault(node.gate, []).append(address)
    return names


def check_approvals(graph: FlowGraph, given: list[str], option: str = "--approve") -> list[str]:
    """The names given to `--approve`, each checked against the flow's gates (an unknown one is an error with
    a did-you-mean). Returns them without repeats."""
    known = gate_names(graph)
    for name in given:
        if name in known:
            continue
        hint = difflib.get_close_matches(name, list(known), n=1)
        listed = f"its gates: {', '.join(known)}" if known else "it has no approval gates"
        raise InputError(f"workflow '{graph.workflow}' has no approval gate '{name}'" +
                         (f" (did you mean '{hint[0]}'?)" if hint else f" ({listed})"), field=option)
    return list(dict.fromkeys(given))
