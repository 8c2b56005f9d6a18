"""Fast in-process tests of the planner and the scheduler: no subprocess, no server, no sleep.

`flow` builds a graph in code, `provider` is a scripted Provider, `engine` plans and applies through the real
Planner and Scheduler against an in-memory state backend and blob store (tests/fixtures/inprocess.py).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.inprocess import Engine
from tests.fixtures.scripted import FlowBuilder, ScriptedProvider


@pytest.fixture
def flow(tmp_path: Path) -> FlowBuilder:
    return FlowBuilder(tmp_path)


@pytest.fixture
def provider() -> ScriptedProvider:
    return ScriptedProvider()


@pytest.fixture
def engine(tmp_path: Path, flow: FlowBuilder, provider: ScriptedProvider) -> Engine:
    return Engine(tmp_path, flow, provider)
