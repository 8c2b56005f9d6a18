"""Names that a job would fail on (too long, climbing out of their folder) are refused when the flow is loaded,
so `flows validate` and `flows plan` say so before anything runs."""
from __future__ import annotations

import pytest

from tests.test_loader_errors import at, error, write


@pytest.mark.parametrize("kind", ["input", "output"])
def test_input_and_output_names_over_255_bytes(tmp_path, kind):
    name = "n" * 256
    spec = (f"inputs=[Input(name={name!r}, type=int, value=1)]" if kind == "input" else
            f"output_specs=[Output(name={name!r}, type=int)]")
    path = write(tmp_path, f"""
        @workflow
        def wf():
            run_domino_job_task(flyte_task_name="t", command="python t.py", {spec})  # <-
        """)
    e = error(path)
    at(e, path, "wf/t")
    assert e.message == f"input/output name '{'n' * 40}…' is 256 bytes long; a file name may have at most 255"


def test_a_255_byte_name_is_fine(tmp_path):
    path = write(tmp_path, f"""
        @workflow
        def wf():
            run_domino_job_task(flyte_task_name="t", command="python t.py", output_specs=[Output(name={"x" * 255!r}, type=int)])
        """)
    from reconcile.loader import load_flow
    assert list(load_flow(path).nodes) == ["wf/t"]


@pytest.mark.parametrize("file_name", ["../../x", "/etc/passwd", "a/../../b", "x" * 256])
def test_artifact_file_name_that_leaves_its_folder(tmp_path, file_name):
    path = write(tmp_path, f"""
        Model = Artifact("Model", DATA)

        @workflow
        def wf():
            run_domino_job_task(flyte_task_name="t", command="python t.py",  # <-
                                output_specs=[Output(name="out", type=Model.File(name={file_name!r}))])
        """)
    e = error(path)
    at(e, path, "wf/t")
    assert e.message.startswith(f"artifact file name {file_name[:60]!r} ")
    assert ("leave its folder" in e.message) or ("longer than 255 bytes" in e.message)


def test_artifact_file_in_a_sub_folder_is_fine(tmp_path):
    path = write(tmp_path, """
        Model = Artifact("Model", DATA)

        @workflow
        def wf():
            run_domino_job_task(flyte_task_name="t", command="python t.py",
                                output_specs=[Output(name="out", type=Model.File(name="plots/a.png"))])
        """)
    from reconcile.loader import load_flow
    assert load_flow(path).artifacts["Model"].files[0].file_name == "plots/a.png"


@pytest.mark.parametrize("dataset_id", ["../..", "a/b", ""])
def test_export_dataset_id_that_leaves_its_folder(tmp_path, dataset_id):
    path = write(tmp_path, f"""
        from flytekitplugins.domino.artifact import ExportArtifactToDatasetsSpec, run_launch_export_artifacts_task
        Model = Artifact("Model", DATA)

        @workflow
        def wf():
            run_domino_job_task(flyte_task_name="t", command="python t.py",
                                output_specs=[Output(name="out", type=Model.File(name="m.csv"))])
            run_launch_export_artifacts_task(  # <-
                spec_list=[ExportArtifactToDatasetsSpec(artifact=Model, dataset_id={dataset_id!r})])
        """)
    e = error(path)
    at(e, path, "wf/export artifacts")
    assert e.message.startswith(f"export spec #1: dataset_id {dataset_id!r} ")


@pytest.mark.parametrize("call, message", [
    ('command=None', "Command: the job config has no Command (a shell command string is needed, got None)"),
    ('command="python t.py", inputs=[1, 2]', "inputs: item 1 is 1, not an Input(name=..., type=..., value=...)"),
    ('command="python t.py", output_specs=[Output(name=3, type=int)]', "output_specs: item 1 has the name 3, not a string"),
])
def test_wrong_kinds_of_arguments_say_what_is_expected(tmp_path, call, message):
    path = write(tmp_path, f"""
        @workflow
        def wf():
            run_domino_job_task(flyte_task_name="t", {call})  # <-
        """)
    e = error(path)
    assert (e.file, e.line) == (str(path), 18)
    assert str(e).endswith(message)
    assert "ValidationError" not in str(e) and "AttributeError" not in str(e)
