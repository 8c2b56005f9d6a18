"""Every authoring pattern real Domino flow files use loads into the graph it means.

The flow files live in tests/flows/ (written for these tests); each test checks the bindings,
types and addresses the loader produced, not merely that loading did not fail.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vocab.errors import NotSupportedError
from reconcile.graph import Binding, FlowGraph
from reconcile.loader import load_flow

FLOWS = Path(__file__).parent / "flows"


def load(name: str, workflow: str | None = None) -> FlowGraph:
    return load_flow(FLOWS / name, workflow)


def src(b: Binding) -> tuple[str | None, str | None]:
    """Where a node_output binding points: (node address, output name)."""
    assert b.kind == "node_output", b
    return b.node, b.output


def marked_lines(name: str, marker: str) -> list[int]:
    return [i for i, line in enumerate((FLOWS / name).read_text().splitlines(), 1) if marker in line]


def test_every_way_of_reading_outputs():
    g = load("access_patterns.py")
    n = g.nodes
    assert src(n["access/by_key"].bindings["data"]) == ("access/prep", "clean")      # res["clean"]
    assert src(n["access/by_attr"].bindings["data"]) == ("access/prep", "clean")     # res.clean
    assert src(n["access/by_index"].bindings["data"]) == ("access/prep", "clean")    # res[0]
    assert src(n["access/by_outputs"].bindings["n"]) == ("access/prep", "rows")      # res.outputs["rows"]
    assert src(n["access/unpacked"].bindings["data"]) == ("access/prep", "clean")    # clean, rows = res
    assert src(n["access/unpacked"].bindings["n"]) == ("access/prep", "rows")
    assert src(n["access/whole"].bindings["data"]) == ("access/by_key", "out")       # single-output result whole
    assert [src(n["access/last"].bindings[k]) for k in "abcd"] == [
        ("access/by_attr", "out"), ("access/by_index", "out"), ("access/by_outputs", "out"), ("access/whole", "out")]
    assert n["access/unpacked"].after == ["access/last"]                             # last >> unpacked
    assert src(g.outputs["o0"]) == ("access/unpacked", "score")
    order = g.order()
    assert order.index("access/last") < order.index("access/unpacked")
    assert n["access/prep"].bindings["raw"] == Binding(kind="flow_input", type="file[csv]", name="raw")


def test_every_file_type_spelling():
    g = load("type_spellings.py")
    assert g.inputs["a"].type == "file[csv]"   # FlyteFile[TypeVar("csv")]
    assert g.inputs["b"].type == "file[csv]"   # FlyteFile["csv"]
    assert g.inputs["c"].type == "file"        # bare FlyteFile
    assert g.inputs["d"].type == "file[csv]"   # FlyteFile[csv] with csv = TypeVar("csv")
    assert g.inputs["e"].type == "file[csv]"   # alias of the whole type
    assert g.inputs["f"].type == "file[csv]"   # CSVFile
    assert g.inputs["g"].type == "file[json]"  # a bare TypeVar as the type
    node = g.nodes["spell/spellings"]
    assert node.inputs == {k: g.inputs[k].type for k in "abcdefg"}
    assert node.outputs == {"typed": "file[csv]", "bare": "file"}
    second = g.nodes["spell/spellings#2"]
    assert src(second.bindings["a"]) == ("spell/spellings", "bare")  # generic file into a csv input
    assert g.outputs["o0"].type == "file[csv]"


def test_task_returns_namedtuple_functional_and_class_style():
    g = load("returns.py", "functional_wf")
    assert g.nodes["functional_wf/stats"].outputs == {"mean": "float", "count": "int"}
    assert list(g.outputs) == ["mean", "size"]
    assert src(g.outputs["size"]) == ("functional_wf/stats", "count")
    g = load("returns.py", "class_wf")
    assert g.nodes["class_wf/split"].outputs == {"train": "str", "test": "str"}
    assert {k: src(b) for k, b in g.outputs.items()} == {"train": ("class_wf/split", "train"),
                                                         "test": ("class_wf/split", "test")}


def test_tuple_and_missing_return_annotations():
    g = load("returns.py", "tuple_wf")
    assert g.nodes["tuple_wf/pair"].outputs == {"o0": "int", "o1": "str"}
    assert g.nodes["tuple_wf/side_effect"].outputs == {}
    untyped = g.nodes["tuple_wf/no_annotations"]
    assert untyped.inputs == {"x": "any", "y": "any"}
    assert untyped.bindings["y"].kind == "literal" and untyped.bindings["y"].value == 2  # the task's default
    assert untyped.kind == "python" and untyped.python["qualname"] == "no_annotations"
    assert list(g.outputs) == ["o0", "o1"]
    assert load("returns.py", "no_return_wf").outputs == {}


def test_workflow_returns_a_multi_output_result_whole():
    g = load("returns.py", "whole_result_wf")
    assert {k: src(b) for k, b in g.outputs.items()} == {"train": ("whole_result_wf/split", "train"),
                                                         "test": ("whole_result_wf/split", "test")}


def test_workflow_inputs_defaults_and_structured_types():
    g = load("inputs_kinds.py", "kinds")
    types = {n: i.type for n, i in g.inputs.items()}
    assert types == {"ids": "list[int]", "weights": "dict[str,float]", "since": "datetime",
                     "params": "dataclass[Params]", "window": "timedelta", "note": "optional[str]", "flag": "bool"}
    assert g.inputs["ids"].required and not g.inputs["weights"].required
    assert g.inputs["weights"].default == {"a": 1.0}
    assert g.inputs["since"].default == "2024-01-01T00:00:00+00:00"
    assert g.inputs["params"].default == {"alpha": 0.5, "layers": 2}
    assert g.inputs["note"].default is None and not g.inputs["note"].required


def test_structured_literals_are_canonical():
    g = load("inputs_kinds.py", "literals")
    values = {k: b.value for k, b in g.nodes["literals/consume"].bindings.items()}
    assert values == {"ids": [1, 2], "weights": {"a": 1.5, "b": 2.0}, "since": "2024-05-01T00:00:00+00:00",
                      "params": {"alpha": 0.1, "layers": 3}, "window": 300.0, "note": "n", "flag": False}


def test_sub_workflows_three_levels_deep_are_inlined_with_prefixed_addresses():
    g = load("subworkflows.py")  # `top` is the only workflow no other one calls
    assert g.workflow == "top"
    assert g.workflows == ["leaf", "middle", "top"]
    assert g.order() == ["top/middle/leaf/add", "top/middle/leaf#2/add", "top/add"]
    first, second, last = (g.nodes[a] for a in g.order())
    assert first.bindings["a"] == Binding(kind="flow_input", type="int", name="x")  # passed down two levels
    assert first.bindings["b"].kind == "literal" and first.bindings["b"].value == 1  # leaf's default
    assert src(second.bindings["a"]) == ("top/middle/leaf/add", "sum")
    assert second.bindings["b"].name == "x"
    assert src(last.bindings["a"]) == ("top/middle/leaf#2/add", "sum")
    assert load("subworkflows.py", "middle").order() == ["middle/leaf/add", "middle/leaf#2/add"]


def test_sub_workflows_without_data_and_positional_helper_arguments():
    g = load("nested_no_data.py")
    assert g.workflow == "root" and g.outputs == {}
    assert g.order() == ["root/outer/Echo outer", "root/outer/inner/Echo inner", "root/outer/inner#2/Echo inner",
                         "root/Echo last"]
    assert g.nodes["root/outer/inner/Echo inner"].command == "echo inner"
    assert g.nodes["root/outer/inner/Echo inner"].resolve_defaults


def test_sub_workflow_imported_from_a_sibling_module():
    g = load("imports_helper.py")
    assert g.workflow == "uses_helper"
    assert g.order() == ["uses_helper/shared_sub/shout", "uses_helper/shout"]
    assert src(g.nodes["uses_helper/shout"].bindings["text"]) == ("uses_helper/shared_sub/shout", "loud")
    assert "helper_module" not in sys.modules  # traced with the shims, then dropped


def test_module_level_tasks_repeated_calls_ordering_and_inline_task(monkeypatch):
    monkeypatch.setenv("FLOWS_TEST_HARDWARE", "gpu-k8s")  # os.environ is read when the file is imported
    g = load("misc_patterns.py")
    assert set(g.nodes) == {"misc/prepare", "misc/prepare#2", "misc/prepare#3", "misc/cleanup", "misc/total"}
    assert g.nodes["misc/prepare"].after == ["misc/cleanup"]  # cleanup() >> a
    assert g.order().index("misc/cleanup") < g.order().index("misc/prepare")
    assert [g.nodes[f"misc/prepare{s}"].bindings["part"].describe() for s in ("", "#2", "#3")] == [
        "literal 1", "literal 2", "flow input 'parts'"]
    total = g.nodes["misc/total"]
    assert (total.command, total.cache) == ("python total.py", False)
    assert [src(total.bindings[k]) for k in "abc"] == [("misc/prepare", "rows"), ("misc/prepare#2", "rows"),
                                                       ("misc/prepare#3", "rows")]
    prepare = g.nodes["misc/prepare"]
    assert prepare.job_config["HardwareTierId"] == "gpu-k8s"
    assert prepare.job_config["MainRepoGitRef"] == {"Type": "branches", "Value": "main"}  # "branch" kills Domino jobs
    assert prepare.job_config["DatasetSnapshots"] == [{"DatasetId": "ds-1", "SnapshotVersion": 3},   # Id/Version
                                                      {"DatasetId": "ds-2", "SnapshotVersion": 7}]  # DatasetId/...
    assert (prepare.cache, prepare.cache_version, prepare.retries, prepare.timeout_seconds) == (True, "2", 2, 1800.0)
    assert g.failure_policy == "FAIL_AFTER_EXECUTABLE_NODES_COMPLETE"
    assert load("access_patterns.py").failure_policy == "FAIL_IMMEDIATELY"


def test_run_domino_job_task_takes_every_documented_keyword():
    node = load("all_kwargs.py").nodes["every_kwarg/Train"]
    assert node.command == "python train.py --seed 7"
    assert node.job_config == {
        "Title": "Training job", "CommitId": "dfs-42", "MainRepoGitRef": {"Type": "commitId", "Value": "abc123"},
        "HardwareTierId": "medium-k8s", "HardwareTierName": "Medium", "EnvironmentId": "env-123",
        "EnvironmentName": "Domino Standard Environment",
        "EnvironmentRevisionSpec": {"EnvironmentRevisionType": "SomeRevision", "EnvironmentRevisionId": "rev-9"},
        "VolumeSizeGiB": 20, "DatasetSnapshots": [{"DatasetId": "ds-1", "SnapshotVersion": 1}],
        "NetAppVolumeSnapshots": [{"Id": "vol-1", "Version": 2}], "ExternalVolumeMountIds": ["edv-1"],
    }
    assert node.inputs == {"data": "file[csv]", "seed": "int"} and node.outputs == {"model": "file[json]"}
    assert (node.cache, node.cache_version, node.cache_ignore_input_vars) == (True, "1.0", ["seed"])
    assert (node.retries, node.timeout_seconds, node.resolve_defaults) == (3, 3600.0, True)


def test_artifacts_positional_task_outputs_task_return_workflow_return_and_export():
    g = load("artifacts_flow.py")
    arts = {name: (a.type, [(f.file_name, f.node, f.output) for f in a.files]) for name, a in g.artifacts.items()}
    assert arts == {
        "Clean Data": ("DATA", [("train.csv", "with_artifacts/Prepare", "train"),
                                ("test.csv", "with_artifacts/Prepare", "test")]),
        "Report": ("REPORT", [("summary.md", "with_artifacts/summarize", "o0")]),  # @task return type
        "Model": ("MODEL", [("model.json", "with_artifacts/Fit", "model")]),        # workflow return type
    }
    assert g.nodes["with_artifacts/Prepare"].outputs == {"train": "file[csv]", "test": "file[csv]"}  # from extension
    export = g.nodes["with_artifacts/export artifacts"]
    assert export.kind == "export_artifacts"
    assert export.export_specs == [
        {"kind": "ExportArtifactToDatasetsSpec", "artifact": "Clean Data", "dataset_id": "dataset-123"},
        {"kind": "ExportArtifactToNetAppVolumesSpec", "artifact": "Report", "netapp_volume_id": "vol-7",
         "target_relative_path": "reports"}]
    assert sorted(src(b) for b in export.bindings.values()) == [("with_artifacts/Prepare", "test"),
                                                                ("with_artifacts/Prepare", "train"),
                                                                ("with_artifacts/summarize", "o0")]
    assert g.order()[-1] == "with_artifacts/export artifacts"
    assert export.job_config == {"EnvironmentName": "Domino Standard Environment", "HardwareTierId": "small-k8s"}


def test_names_exported_from_reconcile_work_for_new_flows():
    g = load("native_imports.py")
    assert g.order() == ["native/fetch", "native/measure"]
    assert g.artifacts["Raw"].files[0].file_name == "page.html"
    assert src(g.nodes["native/measure"].bindings["page"]) == ("native/fetch", "page")
    assert g.inputs["url"].default == "https://example.com"


def test_unsupported_names_load_and_only_fail_where_used():
    assert list(load("unsupported.py", "plain").nodes) == ["plain/square"]
    lines = marked_lines("unsupported.py", "# mark:used")
    cases = ["uses_dynamic", "uses_eager", "uses_map_task", "uses_conditional"]
    names = ["@dynamic", "@eager", "map_task", "conditional"]
    for workflow, name, line in zip(cases, names, lines):
        with pytest.raises(NotSupportedError) as info:
            load("unsupported.py", workflow)
        e = info.value
        assert e.message.startswith(f"not supported: {name}"), e.message
        assert (e.file, e.line) == (str(FLOWS / "unsupported.py"), line)
        assert f"unsupported.py:{line}: not supported: {name}" in str(e)


def test_shims_are_removed_after_loading():
    import domino  # the real python-domino package is installed with the test extras

    load("misc_patterns.py")  # imports `domino.flyte.task` through the shim
    assert sys.modules["domino"] is domino
    assert "flytekit" not in sys.modules and "flytekitplugins" not in sys.modules


def test_ordering_whole_sub_workflows_with_several_outputs_or_none():
    g = load("subworkflow_ordering.py", "release")
    n = g.nodes
    assert sorted(n["release/Notify"].after) == ["release/prepare/Clean", "release/prepare/Stats"]  # its last nodes
    assert n["release/prepare/Extract"].after == ["release/setup_env/Mount"]  # its first node waits for the set-up
    assert n["release/prepare/Clean"].after == [] and n["release/prepare/Stats"].after == []  # (through Extract)
    order = g.order()
    assert order.index("release/setup_env/Mount") < order.index("release/prepare/Extract")
    assert max(order.index("release/prepare/Clean"), order.index("release/prepare/Stats")) < order.index("release/Notify")
