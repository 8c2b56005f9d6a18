"""Flow files shaped like the Domino docs' "Define flows" and "Define Flow Artifacts" pages load unchanged."""
from __future__ import annotations

from pathlib import Path

from reconcile.loader import load_flow
from reconcile.render_graph import as_json, redacted

FLOWS = Path(__file__).parent / "flows"


def test_define_flows_helper_style():
    g = load_flow(FLOWS / "docs_define_flows.py", "training_workflow")
    assert g.order() == ["training_workflow/Prepare data", "training_workflow/Train model"]
    assert g.inputs["data_path"].type == "str"
    assert list(g.outputs) == ["model"] and g.outputs["model"].type == "file[pt]"
    train = g.nodes["training_workflow/Train model"]
    assert train.bindings["processed_data"].node == "training_workflow/Prepare data"
    assert (train.bindings["epochs"].value, train.bindings["batch_size"].value) == (10, 32)
    assert train.resolve_defaults and train.command == "python /mnt/code/scripts/train-model.py"


def test_define_flows_task_style_with_full_job_config():
    g = load_flow(FLOWS / "docs_define_flows.py", "training_workflow_tasks")
    prep, train = (g.nodes[a] for a in g.order())
    assert prep.resolve_defaults and not train.resolve_defaults  # use_latest=True / False
    assert train.job_config == {
        "OwnerName": "jane_doe", "ProjectName": "flows-demo", "MainRepoGitRef": {"Type": "head"},
        "HardwareTierId": "small-k8s", "EnvironmentId": "6630a1b2c3d4e5f6a7b8c9d0",
        "EnvironmentRevisionSpec": {"EnvironmentRevisionType": "SomeRevision",
                                    "EnvironmentRevisionId": "6630a1b2c3d4e5f6a7b8c9d1"},
        "DatasetSnapshots": [{"DatasetId": "6630a1b2c3d4e5f6a7b8c9d2", "SnapshotVersion": 1}],
        "VolumeSizeGiB": 10,
    }  # ApiKey is never part of the graph
    assert "docs-api-key-0123456789" not in str(as_json(redacted(g)))


def test_define_flow_artifacts_single_return():
    g = load_flow(FLOWS / "docs_define_artifacts.py", "training_workflow")
    assert {n: (a.type, [(f.file_name, f.node, f.output) for f in a.files]) for n, a in g.artifacts.items()} == {
        "My Data": ("DATA", [("data.csv", "training_workflow/Prepare data", "processed_data")]),
        "My Model": ("MODEL", [("model.pt", "training_workflow/Train model", "model")]),
    }
    assert g.nodes["training_workflow/Prepare data"].outputs == {"processed_data": "file[csv]"}
    assert g.outputs["o0"].type == "file[pt]"


def test_define_flow_artifacts_namedtuple_return_and_export():
    g = load_flow(FLOWS / "docs_define_artifacts.py", "multiple_artifacts")
    assert sorted(g.artifacts) == ["My Data", "My Model", "My Report"]
    assert g.artifacts["My Report"].files[0].file_name == "report.pdf"
    assert list(g.outputs) == ["model", "report"]
    export = g.nodes["multiple_artifacts/export artifacts"]
    assert export.kind == "export_artifacts" and export.export_specs[0]["artifact"] == "My Data"
    assert [(b.node, b.output) for b in export.bindings.values()] == [("multiple_artifacts/Prepare data",
                                                                       "processed_data")]
