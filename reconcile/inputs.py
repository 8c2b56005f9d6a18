"""Flow inputs as `pyflyte run` takes them (`--name value`, JSON for lists/dicts) or from `--inputs file.json`."""
from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

from vocab.errors import InputError
from vocab.flytetypes import canonical_value, check_value, is_blob, is_dir, parse_cli_value
from reconcile.graph import FlowGraph
from reconcile.input_paths import unreadable_reason


def _not_text(value: Any) -> str | None:
    """Why a string somewhere in `value` cannot be stored or hashed as UTF-8 (None when all can).

    A command-line byte that is not UTF-8 arrives as a surrogate escape (U+DC80..U+DCFF); JSON's
    `"\\ud800"` arrives as a lone surrogate. Either would fail later, deep inside a digest or a write.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            char = ord(value[e.start])
            if 0xDC80 <= char <= 0xDCFF:
                return f"is not valid UTF-8 (byte 0x{char - 0xDC00:02x} at position {e.start})"
            return f"holds a lone surrogate U+{char:04X} at position {e.start} (not valid Unicode text)"
        return None
    if isinstance(value, dict):
        return next((r for k, v in value.items() for r in (_not_text(k), _not_text(v)) if r), None)
    if isinstance(value, (list, tuple)):
        return next((r for v in value if (r := _not_text(v))), None)
    return None


def split_cli_args(args: list[str]) -> dict[str, str]:
    """`--a 1 --b=2` -> {"a": "1", "b": "2"}: the options typer passed through as extra args."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise InputError(f"unexpected argument {arg!r} (flow inputs are given as --name value)")
        name, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise InputError(f"input --{name} needs a value")
            value = args[i + 1]
            i += 1
        out[name] = value  # given twice: the later one wins, as in pyflyte
        i += 1
    return out


def read_inputs_file(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError("no such inputs file", file=path) from None
    except ValueError as e:
        raise InputError(f"inputs file is not valid JSON: {e}", file=path) from None
    if not isinstance(data, dict):
        raise InputError("inputs file must hold a JSON object of input name -> value", file=path)
    return data


def resolve_inputs(graph: FlowGraph, cli: dict[str, str], from_file: dict[str, Any] | None = None,
                   cwd: Path | None = None) -> dict[str, Any]:
    """Canonical values for every flow input (defaults filled); file paths made absolute and checked."""
    cwd = cwd or Path.cwd()
    given: dict[str, Any] = dict(from_file or {})
    for name in list(given) + list(cli):
        bad = _not_text(name)
        if bad:
            raise InputError(f"input name {name!r} {bad}")
        if name not in graph.inputs:
            hint = difflib.get_close_matches(name, list(graph.inputs), n=1)
            raise InputError(f"unknown input '{name}' for workflow '{graph.workflow}'" +
                             (f" (did you mean '{hint[0]}'?)" if hint else
                              f" (inputs: {', '.join(graph.inputs) or 'none'})"), field=f"--{name}")
    values: dict[str, Any] = {}
    for name, spec in graph.inputs.items():
        if name in cli:
            bad = _not_text(cli[name])
            if bad:
                raise InputError(f"the value {bad}", field=f"--{name}")
            try:
                value = parse_cli_value(spec.type, cli[name])
            except ValueError as e:
                raise InputError(f"not a valid {spec.type}: {e}", field=f"--{name}") from None
        elif name in given:
            value = given[name]
            bad = _not_text(value)
            if bad:
                raise InputError(f"the value in the inputs file {bad}", field=f"--{name}")
        elif not spec.required:
            values[name] = spec.default
            continue
        else:
            raise InputError(f"missing required input --{name} ({spec.type}) for workflow '{graph.workflow}'",
                             field=f"--{name}")
        reason = check_value(spec.type, value)
        if reason:
            raise InputError(reason, field=f"--{name}")
        if is_blob(spec.type) and value is not None:
            location = os.fspath(value)
            if not location.startswith("s3://"):
                absolute = cwd / location
                reason = unreadable_reason(str(absolute), want_dir=is_dir(spec.type))
                if reason:
                    raise InputError(reason, field=f"--{name}")
                location = str(absolute.resolve())
            value = location
        values[name] = canonical_value(spec.type, value)
    return values
