"""Every way real flow files read a task's outputs."""
from typing import TypeVar

from flytekit import workflow
from flytekit.types.file import FlyteFile
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task

CSV = FlyteFile[TypeVar("csv")]


def _job(name: str, inputs: list, outputs: list):
    # A helper in the flow file itself, as real flows often have.
    return run_domino_job_task(flyte_task_name=name, command=f"python {name}.py", inputs=inputs,
                               output_specs=outputs, use_project_defaults_for_omitted=True)


@workflow
def access(raw: CSV) -> float:
    prep = _job("prep", [Input(name="raw", type=CSV, value=raw)],
                [Output(name="clean", type=CSV), Output(name="rows", type=int)])
    by_key = _job("by_key", [Input(name="data", type=CSV, value=prep["clean"])], [Output(name="out", type=CSV)])
    by_attr = _job("by_attr", [Input(name="data", type=CSV, value=prep.clean)], [Output(name="out", type=CSV)])
    by_index = _job("by_index", [Input(name="data", type=CSV, value=prep[0])], [Output(name="out", type=CSV)])
    by_outputs = _job("by_outputs", [Input(name="n", type=int, value=prep.outputs["rows"])],
                      [Output(name="out", type=CSV)])
    clean, rows = prep  # tuple unpacking
    unpacked = _job("unpacked", [Input(name="data", type=CSV, value=clean), Input(name="n", type=int, value=rows)],
                    [Output(name="score", type=float)])
    whole = _job("whole", [Input(name="data", type=CSV, value=by_key)],  # single-output result passed whole
                 [Output(name="out", type=CSV)])
    last = _job("last", [Input(name="a", type=CSV, value=by_attr), Input(name="b", type=CSV, value=by_index["out"]),
                         Input(name="c", type=CSV, value=by_outputs), Input(name="d", type=CSV, value=whole)],
                [Output(name="done", type=int)])
    last >> unpacked
    return unpacked["score"]
