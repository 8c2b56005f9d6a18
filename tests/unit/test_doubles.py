"""The test doubles keep up with the protocols they stand in for: a member added to Provider or Backend that a
double lacks fails here, by name, instead of as a puzzling AttributeError deep in a scheduler test."""
from __future__ import annotations

import inspect
from typing import Any

import pytest

from providers.base import Provider
from state.backend import Backend
from tests.fixtures.memory_backend import MemoryBackend
from tests.fixtures.scripted import ScriptedProvider


def protocol_members(protocol: type) -> dict[str, Any]:
    """What a protocol declares: its methods, properties and annotated attributes (not object's own)."""
    members = {name: value for name, value in vars(protocol).items()
               if not name.startswith("_") and (callable(value) or isinstance(value, property))}
    members.update({name: None for name in getattr(protocol, "__annotations__", {})})
    return members


def parameters(fn: Any) -> tuple[int, set[str]]:
    """(how many positional parameters, the names of the keyword-only ones)."""
    params = inspect.signature(fn).parameters.values()
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional), {p.name for p in params if p.kind == p.KEYWORD_ONLY}


@pytest.mark.parametrize("protocol, double", [(Provider, ScriptedProvider()), (Backend, MemoryBackend())],
                         ids=["provider", "backend"])
def test_the_double_has_every_member_of_its_protocol(protocol, double):
    members = protocol_members(protocol)
    assert members, f"found no members in {protocol.__name__}"
    missing = [name for name in members if not hasattr(double, name)]
    assert missing == [], f"{type(double).__name__} lacks {missing} of {protocol.__name__}"
    for name, declared in members.items():
        if callable(declared) and not isinstance(declared, property):
            # As many positional parameters, and every keyword-only one by its name.
            mine, mine_kw = parameters(getattr(double, name))
            want, want_kw = parameters(declared)
            assert (mine, want_kw - mine_kw) == (want - 1, set()), (  # (the protocol's count includes self)
                f"{type(double).__name__}.{name}{inspect.signature(getattr(double, name))} vs "
                f"{protocol.__name__}.{name}{inspect.signature(declared)}")
