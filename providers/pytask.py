"""Run one Python `@task` inside a job folder, the way a Domino job runs a script.

`python -P -m providers.pytask '<json spec>'` (spawned by the local provider through the sandbox):
loads the flow file with the flytekit/Domino shims, finds the task function by its qualname, reads
its inputs from `$FLOWS_INPUTS_DIR/<name>`, calls it, and writes each output to
`$FLOWS_OUTPUTS_DIR/<name>` (`o0, o1, ...` or the NamedTuple's field names; files and directories are
copied in). The provider then collects the outputs exactly as it does for a shell job.

This module also holds the value format of `/workflow/inputs` and `/workflow/outputs` (Domino's
flytecopilot format), shared by the provider (which writes inputs, parses outputs) and this runner.
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from reconcile.flytetypes import FlyteDirectory, FlyteFile, canonical_value, check_value, is_blob, is_dir, is_file

# ---- the value format -------------------------------------------------------------------------------

_GO_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
             "h": 3600 * 10**9}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
          "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}  # Go ParseBool


class ValueFormatError(ValueError):
    """A value's text does not parse as its declared type (the message says what was expected)."""


def inner_type(t: str) -> str:
    """`optional[int]` -> `int`; anything else unchanged."""
    return t[len("optional["):-1] if t.startswith("optional[") else t


def _go_float(x: float) -> str:
    """Go's `FormatFloat(x, 'f', -1, 64)`: shortest round-trip digits, never an exponent."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    text = format(decimal.Decimal(repr(float(x))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _fraction(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    return f"{whole}." + str(rest).rjust(len(str(unit)) - 1, "0").rstrip("0")


def go_duration(td: dt.timedelta) -> str:
    """Go's `Duration.String()` (`1h0m0s`, `1m30s`, `1.5s`, `500ms`): how Domino writes a timedelta."""
    ns = (td.days * 86400 + td.seconds) * 10**9 + td.microseconds * 1000
    if ns == 0:
        return "0s"
    sign, ns = ("-" if ns < 0 else ""), abs(ns)
    if ns < 10**9:
        for unit, size in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if ns >= size:
                return sign + _fraction(ns, size) + unit
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "")
    return sign + text + _fraction(rest, 10**9) + "s"


def parse_duration(text: str) -> dt.timedelta:
    """A Go duration string, or a plain number of seconds."""
    text = text.strip()
    try:
        return dt.timedelta(seconds=float(text))
    except ValueError:
        pass
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    parts = _GO_PART.findall(body)
    if not body or "".join(n + u for n, u in parts) != body:
        raise ValueFormatError("expected a duration such as 1h30m0s or 2.5s")
    ns = sum(decimal.Decimal(n) * _GO_UNITS[u] for n, u in parts)
    return sign * dt.timedelta(microseconds=float(ns / 1000))


def _datetime(value: Any) -> dt.datetime:
    when = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(when, dt.datetime):  # a date: midnight
        when = dt.datetime.combine(when, dt.time())
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)  # naive values are UTC


def format_value(t: str, value: Any) -> bytes:
    """The bytes Domino writes for a primitive/JSON value of type `t` (not for files or directories)."""
    if value is None:
        return b"null"
    t = inner_type(t)
    if t == "str":
        return str(value).encode()
    if t == "bool":
        return b"true" if value else b"false"
    if t == "int":
        return str(int(value)).encode()
    if t == "float":
        return _go_float(float(value)).encode()
    if t == "datetime":
        return _datetime(value).isoformat().replace("+00:00", "Z").encode()  # RFC 3339
    if t == "date":
        return (value if isinstance(value, str) else value.isoformat()).encode()
    if t == "timedelta":
        td = value if isinstance(value, dt.timedelta) else dt.timedelta(seconds=float(value))
        return go_duration(td).encode()
    return json.dumps(canonical_value(t, value), ensure_ascii=False).encode()  # list, dict, any, dataclass


def _parse(t: str, text: str) -> Any:
    if t == "str":
        return text
    stripped = text.strip()
    if t == "bool":
        if stripped not in _BOOLS:
            raise ValueFormatError("expected true or false")
        return _BOOLS[stripped]
    if t == "int":
        return int(stripped)
    if t == "float":
        return float(stripped)
    if t == "datetime":
        return dt.datetime.fromisoformat(stripped)
    if t == "date":
        return dt.date.fromisoformat(stripped)
    if t == "timedelta":
        return parse_duration(stripped)
    value = json.loads(stripped)
    reason = check_value(t, value)
    if reason:
        raise ValueFormatError(reason)
    return value


def parse_value(t: str, data: bytes) -> Any:
    """Parse the bytes of a primitive/JSON value as type `t`; ValueFormatError says why it does not fit."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ValueFormatError("not UTF-8 text") from None
    if t.startswith("optional[") and text.strip() in ("", "null"):
        return None
    try:
        return _parse(inner_type(t), text)
    except ValueFormatError:
        raise
    except (ValueError, TypeError, OverflowError) as e:  # int("abc"), json errors, fromisoformat, ...
        raise ValueFormatError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None


def json_value(t: str, value: Any) -> Any:
    """A parsed value as stored in the state (JSON): datetimes as RFC 3339, durations in seconds."""
    if value is None:
        return None
    t = inner_type(t)
    if t == "datetime":
        return format_value(t, value).decode()
    if t == "date":
        return value.isoformat()
    if t == "timedelta":
        return value.total_seconds()
    return value


# ---- the runner ---------------------------------------------------------------------------------------

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
        value = _datetime(value)
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
    from reconcile.loader import import_flow_module, project_root_for  # noqa: PLC0415 - heavy, only here

    flow_file = Path(spec["file"])
    fn = _find_function(import_flow_module(flow_file), spec["qualname"])
    # Python runs a script with its folder importable; do the same for imports made inside the task.
    sys.path[:0] = [str(flow_file.parent), str(project_root_for(flow_file))]
    inputs_dir = Path(os.environ["FLOWS_INPUTS_DIR"])
    outputs_dir = Path(os.environ["FLOWS_OUTPUTS_DIR"])
    kwargs = {name: _read_input(t, inputs_dir / name) for name, t in spec["inputs"].items()}
    result = fn(**kwargs)
    outputs: dict[str, str] = spec["outputs"]
    for name, value in _split_result(result, list(outputs), spec["qualname"]).items():
        _write_output(name, outputs[name], value, outputs_dir)


def command(python: str, job: Any, flow_file: str) -> str:
    """The shell command that runs the `@task` of `job` (a JobSpec) in a job: `flow_file` is the flow file as
    the job sees it. -P: the project's own packages must not shadow ours (`run` adds the project path)."""
    spec = {"file": flow_file, "qualname": job.python["qualname"],
            "inputs": {n: v.type for n, v in job.inputs.items()}, "outputs": job.outputs}
    return f"{shlex.quote(python)} -P -m providers.pytask {shlex.quote(json.dumps(spec))}"


def main(argv: list[str]) -> int:
    from reconcile.errors import FlowsError  # noqa: PLC0415

    if len(argv) != 1:
        print("usage: python -m providers.pytask '<json spec>'", file=sys.stderr)
        return 2
    try:
        run(json.loads(argv[0]))
    except (TaskError, FlowsError) as e:
        print(f"flows: {e}", file=sys.stderr)
        return 2
    return 0  # an exception raised by the task itself prints its traceback to the job log (exit 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
