"""Every validation error: one message naming the file, the line (where known), the node and the field.

Each case writes a small flow file to a temp folder; `# <-` marks the line the error must name.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from vocab.errors import FlowLoadError, NotSupportedError
from reconcile.loader import load_flow

HEADER = """\
from typing import TypeVar
from flytekit import task, workflow
from flytekit.types.file import FlyteFile
from flytekitplugins.domino.artifact import DATA, Artifact
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task
from flytekitplugins.domino.task import DominoJobConfig, DominoJobTask

CSV = FlyteFile[TypeVar("csv")]


def job(name, inputs=None, outputs=None):
    return DominoJobTask(name=name, domino_job_config=DominoJobConfig(Command=f"python {name}.py"),
                         inputs=inputs or {}, outputs=outputs or {})

"""


def write(tmp_path: Path, body: str, name: str = "flow.py", header: bool = True) -> Path:
    path = tmp_path / name
    path.write_text((HEADER if header else "") + textwrap.dedent(body))
    return path


def marked(path: Path) -> int:
    lines = [i for i, line in enumerate(path.read_text().splitlines(), 1) if "# <-" in line]
    assert len(lines) == 1
    return lines[0]


def error(path: Path, workflow: str | None = None) -> FlowLoadError:
    with pytest.raises(FlowLoadError) as info:
        load_flow(path, workflow)
    e = info.value
    assert "Traceback" not in str(e) and "\n" not in str(e)
    return e


def at(e: FlowLoadError, path: Path, node: str | None = None) -> None:
    """The error names the file, the marked line and (when given) the node, also in its rendered text."""
    assert (e.file, e.line) == (str(path), marked(path)), str(e)
    assert str(e).startswith(f"{path}:{marked(path)}: ")
    if node is not None:
        assert e.node == node and f"node '{node}'" in str(e)


# ---------------------------------------------------------------- types and names

def test_type_mismatch_int_output_into_file_input(tmp_path):
    path = write(tmp_path, """
        count = job("count", outputs={"n": int})
        use = job("use", inputs={"data": CSV})

        @workflow
        def wf():
            n = count()
            use(data=n["n"])  # <-
        """)
    e = error(path)
    at(e, path, "wf/use")
    assert "type mismatch: input 'data' is file[csv] but 'wf/count'.n is int" in e.message


def test_type_mismatch_through_run_domino_job_task(tmp_path):
    path = write(tmp_path, """
        @workflow
        def wf(n: int = 3):
            run_domino_job_task(flyte_task_name="use", command="python use.py",  # <-
                                inputs=[Input(name="data", type=CSV, value=n)])
        """)
    e = error(path)
    at(e, path, "wf/use")
    assert "input 'data' is file[csv] but flow input 'n' is int" in e.message


def test_literal_of_the_wrong_type(tmp_path):
    path = write(tmp_path, """
        use = job("use", inputs={"data": CSV, "n": int})

        @workflow
        def wf():
            use(data="a.csv", n="three")  # <-
        """)
    e = error(path)
    at(e, path, "wf/use")
    assert "input 'n' (int): expected an int, got 'three'" in e.message


def test_csv_output_into_json_input(tmp_path):
    path = write(tmp_path, """
        make = job("make", outputs={"out": CSV})
        use = job("use", inputs={"data": FlyteFile[TypeVar("json")]})

        @workflow
        def wf():
            use(data=make()["out"])  # <-
        """)
    e = error(path)
    at(e, path, "wf/use")
    assert "input 'data' is file[json]" in e.message and "is file[csv]" in e.message


@pytest.mark.parametrize("access", ['res["modle"]', "res.modle"])
def test_unknown_output_suggests_the_close_name(tmp_path, access):
    path = write(tmp_path, f"""
        train = job("train", outputs={{"model": FlyteFile, "score": float}})

        @workflow
        def wf() -> FlyteFile:
            res = train()
            return {access}  # <-
        """)
    e = error(path)
    at(e, path, "wf/train")
    assert e.message == "has no output 'modle' (did you mean 'model'?)"


def test_output_index_out_of_range_lists_the_outputs(tmp_path):
    path = write(tmp_path, """
        train = job("train", outputs={"model": FlyteFile})

        @workflow
        def wf() -> FlyteFile:
            return train()[3]  # <-
        """)
    e = error(path)
    at(e, path, "wf/train")
    assert e.message == "has no output '3' (outputs: model)"


def test_missing_required_input(tmp_path):
    path = write(tmp_path, """
        use = job("use", inputs={"data": CSV, "n": int})

        @workflow
        def wf(data: CSV):
            use(data=data)  # <-
        """)
    e = error(path)
    at(e, path, "wf/use")
    assert e.message == "missing required input(s): n"


def test_unknown_input_name(tmp_path):
    path = write(tmp_path, """
        use = job("use", inputs={"data": CSV})

        @workflow
        def wf(data: CSV):
            use(data=data, dtaa=data)  # <-
        """)
    e = error(path)
    at(e, path, "wf/use")
    assert e.message == "unknown input 'dtaa' (did you mean 'data'?)"


def test_missing_required_input_of_a_sub_workflow(tmp_path):
    path = write(tmp_path, """
        use = job("use", inputs={"n": int})

        @workflow
        def sub(n: int, m: int):
            use(n=n)

        @workflow
        def wf():
            sub(n=1)  # <-
        """)
    e = error(path, "wf")
    at(e, path)
    assert "sub-workflow 'sub': missing required input 'm'" in e.message


@pytest.mark.parametrize("field", ["output_specs", "inputs"])
def test_duplicate_name_in_one_task(tmp_path, field):
    specs = ('output_specs=[Output(name="x", type=int), Output(name="x", type=str)]' if field == "output_specs" else
             'inputs=[Input(name="x", type=int, value=1), Input(name="x", type=int, value=2)]')
    path = write(tmp_path, f"""
        @workflow
        def wf():
            run_domino_job_task(flyte_task_name="Dup", command="python dup.py",  # <-
                                {specs})
        """)
    e = error(path)
    at(e, path, "Dup")
    assert e.field == field and f"{field}: " in str(e)
    assert e.message == ("output 'x' is declared twice, with different types (int and str)"
                         if field == "output_specs" else "input 'x' is declared twice")


def test_same_file_name_twice_in_one_artifact(tmp_path):
    path = write(tmp_path, """
        Data = Artifact("Data", DATA)

        @workflow
        def wf():
            run_domino_job_task(flyte_task_name="a", command="python a.py",
                                output_specs=[Output(name="out", type=Data.File(name="data.csv"))])
            run_domino_job_task(flyte_task_name="b", command="python b.py",  # <-
                                output_specs=[Output(name="out", type=Data.File(name="data.csv"))])
        """)
    e = error(path)
    at(e, path, "wf/b")
    assert e.message == "artifact 'Data' has the file name 'data.csv' twice ('wf/a'.out and 'wf/b'.out)"


@pytest.mark.parametrize("kind", ["input", "output"])
@pytest.mark.parametrize("name", ["../x", "a/b", ""])
def test_unsafe_input_and_output_names(tmp_path, kind, name):
    spec = (f"inputs=[Input(name={name!r}, type=int, value=1)]" if kind == "input" else
            f"output_specs=[Output(name={name!r}, type=int)]")
    path = write(tmp_path, f"""
        @workflow
        def wf():
            run_domino_job_task(flyte_task_name="t", command="python t.py", {spec})  # <-
        """)
    e = error(path)
    at(e, path, "wf/t")
    assert e.message.startswith(f"input/output name {name!r} is not a safe file name")


def test_cycle_through_ordering(tmp_path):
    path = write(tmp_path, """
        step = job("step", outputs={"n": int})
        use = job("use", inputs={"n": int})

        @workflow
        def wf():
            a = step()  # <-
            b = use(n=a["n"])
            b >> a
        """)
    e = error(path)
    at(e, path, "wf/step")
    assert e.message.startswith("the flow has a cycle: wf/step -> wf/use -> wf/step")


def test_cycle_among_several_nodes_names_only_the_cycle(tmp_path):
    path = write(tmp_path, """
        step = job("step")

        @workflow
        def wf():
            first = step()
            a = step()  # <-
            b = step()
            c = step()
            first >> a
            a >> b
            b >> c
            c >> a
        """)
    e = error(path)
    at(e, path, "wf/step#2")
    assert "cycle: wf/step#2 -> wf/step#3 -> wf/step#4 -> wf/step#2 " in e.message
    assert "wf/step ->" not in e.message  # `first` is upstream of the cycle, not in it


def test_a_list_of_files_from_several_nodes(tmp_path):
    path = write(tmp_path, """
        from typing import List
        make = job("make", outputs={"out": CSV})
        merge = job("merge", inputs={"parts": List[CSV]})

        @workflow
        def wf():
            a, b = make(), make()
            merge(parts=[a["out"], b["out"]])  # <-
        """)
    with pytest.raises(NotSupportedError) as info:
        load_flow(path)
    at(info.value, path, "wf/merge")
    assert info.value.message == ("not supported: a list[file[csv]] input made of files from several nodes (input "
                                  "'parts'; a job input holds one file or folder: give each its own input)")


def test_export_of_an_artifact_without_files_yet(tmp_path):
    path = write(tmp_path, """
        from flytekitplugins.domino.artifact import ExportArtifactToDatasetsSpec, run_launch_export_artifacts_task
        Empty = Artifact("Empty", DATA)

        @workflow
        def wf():
            run_launch_export_artifacts_task(  # <-
                spec_list=[ExportArtifactToDatasetsSpec(artifact=Empty, dataset_id="d")])
        """)
    e = error(path)
    at(e, path, "wf/export artifacts")
    assert e.message == "artifact 'Empty' has no files produced before this export"


# ---------------------------------------------------------------- files that do not load

def test_import_error_names_the_python_error_and_line(tmp_path):
    path = write(tmp_path, """
        import not_a_real_module_for_flows  # <-
        """)
    e = error(path)
    at(e, path)
    assert e.message == "failed to load: ModuleNotFoundError: No module named 'not_a_real_module_for_flows'"


def test_exception_at_import_is_shortened(tmp_path):
    path = write(tmp_path, """
        SETTINGS = {"a": 1}
        raise ValueError("bad settings " + "x" * 500 + "\\nsecond line")  # <-
        """)
    e = error(path)
    at(e, path)
    assert e.message.startswith("failed to load: ValueError: bad settings xxx")
    assert e.message.endswith("…") and len(e.message) < 260 and "second line" not in e.message


def test_syntax_error(tmp_path):
    path = write(tmp_path, """
        @workflow
        def wf(:  # <-
            pass
        """)
    e = error(path)
    at(e, path)
    assert e.message.startswith("syntax error")


def test_error_inside_a_workflow_body_names_the_flow_line(tmp_path):
    path = write(tmp_path, """
        CONFIG = {}

        @workflow
        def wf():
            CONFIG["missing"]  # <-
        """)
    e = error(path)
    at(e, path)
    assert e.message == "failed to load: KeyError: 'missing'"


def test_error_in_an_imported_helper_names_the_helper(tmp_path):
    helper = write(tmp_path, "VALUE = 1 / 0  # <-\n", name="helper_mod.py", header=False)
    path = write(tmp_path, """
        import helper_mod
        """)
    e = error(path)
    assert (e.file, e.line) == (str(helper), 1)
    assert e.message == "failed to load: ZeroDivisionError: division by zero"


def test_task_called_outside_a_workflow(tmp_path):
    path = write(tmp_path, """
        use = job("use")
        use()  # <-
        """)
    e = error(path)
    at(e, path)
    assert "called outside a @workflow" in e.message


def test_python_condition_on_a_flow_value(tmp_path):
    path = write(tmp_path, """
        @workflow
        def wf(flag: bool = True):
            if flag:  # <-
                pass
        """)
    with pytest.raises(NotSupportedError) as info:
        load_flow(path)
    at(info.value, path)
    assert info.value.message.startswith("not supported: using a flow value in a Python condition")


def test_no_such_file(tmp_path):
    e = error(tmp_path / "missing.py")
    assert (e.file, e.message) == (str(tmp_path / "missing.py"), "no such flow file")


# ---------------------------------------------------------------- choosing the workflow

def test_file_without_a_workflow(tmp_path):
    path = write(tmp_path, """
        use = job("use")
        """)
    e = error(path)
    assert (e.file, e.message) == (str(path), "no @workflow found in this file")


def test_several_workflows_and_none_named(tmp_path):
    path = write(tmp_path, """
        use = job("use")

        @workflow
        def beta():
            use()

        @workflow
        def alpha():
            use()
        """)
    e = error(path)
    assert (e.file, e.message) == (str(path), "the file defines several workflows; name one of: alpha, beta")
    assert load_flow(path, "beta").workflow == "beta"
    e = error(path, "gamma")
    assert e.message == "no workflow named 'gamma' (workflows: alpha, beta)"
