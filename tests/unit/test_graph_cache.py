"""The traced-graph cache (`reconcile.graph_cache`): a cached graph is used only when nothing the load read has
changed, and never a wrong one."""
from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from reconcile import graph_cache, loader


def load_flow(path: Path, workflow: str | None = None) -> loader.FlowGraph:
    """As a command does: load, then save what it learnt (the entry is written only then)."""
    graph = loader.load_flow(path, workflow)
    graph_cache.save_pending()
    return graph

FLOW = '''
from typing import TypeVar
from flytekit import workflow
from flytekit.types.file import FlyteFile
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task
from helpers import COMMAND, TXT, step

with open("loads.log", "a") as log:   # one line per real load (a cache hit does not import the flow)
    log.write("load\\n")

CSV = FlyteFile[TypeVar("csv")]


@workflow
def wf(data: CSV, n: int = 1, notes: TXT = None) -> CSV:
    a = step("a", COMMAND, data)
    return a
'''

HELPERS = '''
from typing import Optional, TypeVar
from flytekit.types.file import FlyteFile
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task

COMMAND = "python scripts/a.py"
TXT = Optional[FlyteFile[TypeVar("txt")]]


def step(name, command, value, kind=None):
    from flytekit.types.file import FlyteFile
    from typing import TypeVar
    t = kind or FlyteFile[TypeVar("csv")]
    return run_domino_job_task(flyte_task_name=name, command=command, inputs=[Input(name="x", type=t, value=value)],
                               output_specs=[Output(name="out", type=t)])["out"]
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "flows.toml").write_text("[tool.flows]\n")
    (root / "flow.py").write_text(textwrap.dedent(FLOW))
    (root / "helpers.py").write_text(textwrap.dedent(HELPERS))
    monkeypatch.chdir(root)  # the flow's log is written relative to the working folder
    monkeypatch.delenv("FLOWS_GRAPH_CACHE", raising=False)
    return root


def loads(root: Path) -> int:
    return len((root / "loads.log").read_text().splitlines())


def entries(root: Path) -> list[Path]:
    return sorted((root / ".flows" / "graphs").glob("*.json"))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_second_load_comes_from_the_cache_and_equals_the_first(project: Path) -> None:
    first = load_flow(project / "flow.py", "wf")
    second = load_flow(project / "flow.py", "wf")
    assert loads(project) == 1
    assert second.model_dump() == first.model_dump()
    assert len(entries(project)) == 1


def test_editing_a_helper_module_invalidates(project: Path) -> None:
    load_flow(project / "flow.py", "wf")
    edit(project / "helpers.py", "python scripts/a.py", "python scripts/b.py")
    graph = load_flow(project / "flow.py", "wf")
    assert loads(project) == 2
    assert graph.nodes["wf/a"].command == "python scripts/b.py"


def test_editing_the_flow_invalidates(project: Path) -> None:
    load_flow(project / "flow.py", "wf")
    edit(project / "flow.py", 'step("a", COMMAND, data)', 'step("renamed", COMMAND, data)')
    graph = load_flow(project / "flow.py", "wf")
    assert loads(project) == 2
    assert list(graph.nodes) == ["wf/renamed"]


def test_editing_an_input_type_invalidates(project: Path) -> None:
    first = load_flow(project / "flow.py", "wf")
    assert first.inputs["n"].type == "int"
    edit(project / "flow.py", "n: int = 1", "n: float = 1.0")
    graph = load_flow(project / "flow.py", "wf")
    assert graph.inputs["n"].type == "float"
    # and a type defined in a helper module
    assert "txt" in graph.inputs["notes"].type
    edit(project / "helpers.py", 'TXT = Optional[FlyteFile[TypeVar("txt")]]', 'TXT = Optional[FlyteFile[TypeVar("md")]]')
    graph = load_flow(project / "flow.py", "wf")
    assert "md" in graph.inputs["notes"].type and "txt" not in graph.inputs["notes"].type
    assert loads(project) == 3


def test_a_corrupt_entry_is_ignored_and_replaced(project: Path) -> None:
    first = load_flow(project / "flow.py", "wf")
    [entry] = entries(project)
    for damage in (b"{not json", b'{"schema": 1}', json.dumps({**json.loads(entry.read_text() or "{}"),
                                                             "graph": {"nodes": 3}}).encode()):
        entry.write_bytes(damage)
        assert load_flow(project / "flow.py", "wf").model_dump() == first.model_dump()
    assert loads(project) == 4
    assert load_flow(project / "flow.py", "wf").model_dump() == first.model_dump()
    assert loads(project) == 4  # the last load wrote a good entry again


def test_an_entry_of_another_workflow_name_or_project_root_is_not_used(project: Path) -> None:
    load_flow(project / "flow.py", "wf")
    load_flow(project / "flow.py")  # the only workflow, unnamed: an entry of its own
    assert loads(project) == 2
    # A flows.toml appearing closer to the flow would change the project root the graph records.
    sub = project / "sub"
    sub.mkdir()
    (sub / "flow.py").write_text((project / "flow.py").read_text())
    (sub / "helpers.py").write_text((project / "helpers.py").read_text())
    load_flow(sub / "flow.py", "wf")
    (sub / "flows.toml").write_text("[tool.flows]\n")
    graph = load_flow(sub / "flow.py", "wf")
    assert graph.project_root == str(sub)


def test_an_environment_variable_read_at_load_is_part_of_the_key(project: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    edit(project / "flow.py", "    a = step(\"a\", COMMAND, data)",
         "    import os\n    a = step(\"a\", os.environ.get(\"STEP_COMMAND\", COMMAND), data)")
    monkeypatch.setenv("STEP_COMMAND", "python one.py")
    assert load_flow(project / "flow.py", "wf").nodes["wf/a"].command == "python one.py"
    assert load_flow(project / "flow.py", "wf").nodes["wf/a"].command == "python one.py"
    assert loads(project) == 1
    monkeypatch.setenv("STEP_COMMAND", "python two.py")
    assert load_flow(project / "flow.py", "wf").nodes["wf/a"].command == "python two.py"
    monkeypatch.delenv("STEP_COMMAND")
    assert load_flow(project / "flow.py", "wf").nodes["wf/a"].command == "python scripts/a.py"
    assert loads(project) == 3


def test_a_file_read_and_a_folder_listed_at_load_are_part_of_the_key(project: Path) -> None:
    (project / "steps").mkdir()
    (project / "steps" / "one.txt").write_text("python one.py")
    edit(project / "flow.py", "    a = step(\"a\", COMMAND, data)\n    return a",
         "    import glob\n    a = data\n"
         "    for f in sorted(glob.glob('steps/*.txt')):\n"
         "        a = step(f.split('/')[-1][:-4], open(f).read(), a)\n"
         "    return a")
    assert list(load_flow(project / "flow.py", "wf").nodes) == ["wf/one"]
    (project / "steps" / "one.txt").write_text("python uno.py")
    assert load_flow(project / "flow.py", "wf").nodes["wf/one"].command == "python uno.py"
    (project / "steps" / "two.txt").write_text("python two.py")
    assert list(load_flow(project / "flow.py", "wf").nodes) == ["wf/one", "wf/two"]
    assert load_flow(project / "flow.py", "wf").nodes["wf/two"].command == "python two.py"
    assert loads(project) == 3


def test_loads_that_cannot_be_keyed_are_not_cached(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A load that runs a process or reads a secret-looking variable is done every time (and a secret is never
    written to the cache)."""
    edit(project / "flow.py", "CSV = FlyteFile", "import subprocess\nsubprocess.run(['true'])\nCSV = FlyteFile")
    load_flow(project / "flow.py", "wf")
    load_flow(project / "flow.py", "wf")
    assert loads(project) == 2
    assert entries(project) == []
    edit(project / "flow.py", "subprocess.run(['true'])", "import os\nos.environ.get('MY_API_TOKEN')")
    monkeypatch.setenv("MY_API_TOKEN", "s3cr3t-Val7e-xyz")
    load_flow(project / "flow.py", "wf")
    load_flow(project / "flow.py", "wf")
    assert loads(project) == 4
    assert entries(project) == []


def test_turned_off_with_flows_graph_cache_0(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWS_GRAPH_CACHE", "0")
    load_flow(project / "flow.py", "wf")
    load_flow(project / "flow.py", "wf")
    assert loads(project) == 2
    assert not (project / ".flows" / "graphs").exists()


def test_nothing_is_written_until_the_command_saves(project: Path) -> None:
    loader.load_flow(project / "flow.py", "wf")
    assert entries(project) == []
    graph_cache._pending.clear()


def test_the_environment_is_the_real_one_again_after_a_load(project: Path) -> None:
    real = os.environ
    load_flow(project / "flow.py", "wf")
    assert os.environ is real
