"""The value format of `/workflow/inputs` and `/workflow/outputs` (Domino's flytecopilot format), shared by
the providers (which write inputs and parse outputs) and the in-job `@task` runner, and the command that
starts that runner in a job.

The runner itself (`reconcile.task_runner`) imports the flow file with the flytekit/Domino shims, which
are the engine's: a provider names it in the job's command and never imports it.
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import re
import shlex
from typing import Any

from vocab.flytetypes import canonical_value, check_value

RUNNER = "reconcile.task_runner"  # the module a job runs a `@task` with (`python -P -m RUNNER '<spec>'`)

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


def as_datetime(value: Any) -> dt.datetime:
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
    if t.startswith("enum["):  # Flyte's string enum: the member's value
        return str(getattr(value, "value", value)).encode()
    if t == "bool":
        return b"true" if value else b"false"
    if t == "int":
        return str(int(value)).encode()
    if t == "float":
        return _go_float(float(value)).encode()
    if t == "datetime":
        return as_datetime(value).isoformat().replace("+00:00", "Z").encode()  # RFC 3339
    if t == "date":
        return (value if isinstance(value, str) else value.isoformat()).encode()
    if t == "timedelta":
        td = value if isinstance(value, dt.timedelta) else dt.timedelta(seconds=float(value))
        return go_duration(td).encode()
    return json.dumps(canonical_value(t, value), ensure_ascii=False).encode()  # list, dict, any, dataclass


def _parse(t: str, text: str) -> Any:
    if t == "str":
        return text
    if t.startswith("enum["):
        reason = check_value(t, text.strip())
        if reason:
            raise ValueFormatError(reason)
        return text.strip()
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


def command(python: str, job: Any, flow_file: str) -> str:
    """The shell command that runs the `@task` of `job` (a JobSpec) in a job: `flow_file` is the flow file as
    the job sees it. -P: the project's own packages must not shadow ours (`run` adds the project path)."""
    spec = {"file": flow_file, "qualname": job.python["qualname"],
            "inputs": {n: v.type for n, v in job.inputs.items()}, "outputs": job.outputs}
    return f"{shlex.quote(python)} -P -m {RUNNER} {shlex.quote(json.dumps(spec))}"
