"""Run one Python `@task` inside a job folder, the way a Domino job runs a script.

`python -P -m reconcile.task_runner '<json spec>'` (the command `providers.pytask.command` builds): loads
the flow file with the flytekit/Domino shims, finds the task function by its qualname, reads its inputs
from `$FLOWS_INPUTS_DIR/<name>`, calls it, and writes each output to `$FLOWS_OUTPUTS_DIR/<name>`
(`o0, o1, ...` or the NamedTuple's field names; files and directories are copied in). The provider then
collects the outputs exactly as it does for a shell job.
"""
from __future__ import annotations

import datetime as dt
import enum
import json
import os
import shutil
import sys
import typing
from pathlib import Path
from typing import Any

from providers.pytask import ValueFormatError, as_datetime, format_value, inner_type, parse_value
from reconcile.loader import import_flow_module, project_root_for, project_sources
from vocab.errors import FlowsError
from vocab.flytetypes import FlyteDirectory, FlyteFile, check_value, is_blob, is_dir, is_file


class TaskError(Exception):
    """A problem the runner reports as one line on stderr (the job fails with its exit code)."""


def _read_input(t: str, path: Path) -> Any:
    if not path.exists():
        if t.startswith("optional["):
            return None
        raise TaskError(f"input '{path.name}' is missing from {path.parent}")
    if is_file(inner_type(t)):
        return FlyteFile(str(path))
    if is_dir(inner_type(t)):
        return FlyteDirectory(str(path))
    try:
        value = parse_value(t, path.read_bytes())
    except ValueFormatError as e:
        raise TaskError(f"input '{path.name}' is not a {t}: {e}") from None
    if inner_type(t) == "datetime" and value is not None and isinstance(value, dt.datetime):
        value = as_datetime(value)
    return value


def _write_output(name: str, t: str, value: Any, outputs_dir: Path) -> None:
    target = outputs_dir / name
    if value is None and not t.startswith("optional["):
        raise TaskError(f"output '{name}' is None but is declared {t}")
    if value is not None and is_blob(inner_type(t)):
        source = Path(os.fspath(value))
        if not source.exists():
            raise TaskError(f"output '{name}': the task returned {str(source)!r}, which does not exist")
        if is_dir(inner_type(t)):
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
        return
    reason = check_value(t, value)
    if reason:
        raise TaskError(f"output '{name}' is declared {t}: {reason}")
    target.write_bytes(format_value(t, value))


def _as_annotated(fn: Any, name: str, value: Any) -> Any:
    """An enum input reaches the job as its string value (Flyte's string enum); the function gets the member."""
    try:
        hint = typing.get_type_hints(fn).get(name)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve here: pass the value as read
        return value
    for tp in (hint, *typing.get_args(hint)):  # Color, or Optional[Color]
        if isinstance(tp, type) and issubclass(tp, enum.Enum) and isinstance(value, str):
            return tp(value)
    return value


def _split_result(result: Any, names: list[str], task: str) -> dict[str, Any]:
    """Flyte's naming: one output takes the value; several take a tuple (by field name for a NamedTuple)."""
    if not names:
        return {}
    fields = getattr(result, "_fields", None)
    if fields is not None and all(n in fields for n in names):
        return {n: getattr(result, n) for n in names}
    if len(names) == 1:
        return {names[0]: result}
    if not isinstance(result, tuple) or len(result) != len(names):
        got = f"{len(result)} values" if isinstance(result, tuple) else "one value"
        raise TaskError(f"task '{task}' returned {got} but declares {len(names)} outputs ({', '.join(names)})")
    return dict(zip(names, result))


def _find_function(module: Any, qualname: str) -> Any:
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise TaskError(f"no function '{qualname}' in {getattr(module, '__file__', '?')}")
    return getattr(obj, "fn", obj)  # a @task object wraps the user function


def run(spec: dict[str, Any]) -> None:
    flow_file = Path(spec["file"])
    fn = _find_function(import_flow_module(flow_file), spec["qualname"])
    # Python runs a script with its folder importable; do the same for imports made inside the task.
    own_folders = [str(flow_file.parent), str(project_root_for(flow_file))]
    sys.path[:0] = own_folders
    inputs_dir = Path(os.environ["FLOWS_INPUTS_DIR"])
    outputs_dir = Path(os.environ["FLOWS_OUTPUTS_DIR"])
    kwargs = {name: _read_input(t, inputs_dir / name) for name, t in spec["inputs"].items()}
    kwargs = {name: _as_annotated(fn, name, value) for name, value in kwargs.items()}
    with project_sources(own_folders):  # what the task imports as it runs: as its source says, as in the trace
        result = fn(**kwargs)
    outputs: dict[str, str] = spec["outputs"]
    for name, value in _split_result(result, list(outputs), spec["qualname"]).items():
        _write_output(name, outputs[name], value, outputs_dir)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m reconcile.task_runner '<json spec>'", file=sys.stderr)
        return 2
    try:
        run(json.loads(argv[0]))
    except (TaskError, FlowsError) as e:
        print(f"flows: {e}", file=sys.stderr)
        return 2
    return 0  # an exception raised by the task itself prints its traceback to the job log (exit 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
