"""Flow inputs as `pyflyte run` takes them (`--name value`, JSON for lists/dicts) or from `--inputs file.json`."""
from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

from vocab.errors import InputError
from vocab.flytetypes import canonical_value, check_value, is_blob, parse_cli_value
from reconcile.graph import FlowGraph


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
        if name not in graph.inputs:
            hint = difflib.get_close_matches(name, list(graph.inputs), n=1)
            raise InputError(f"unknown input '{name}' for workflow '{graph.workflow}'" +
                             (f" (did you mean '{hint[0]}'?)" if hint else
                              f" (inputs: {', '.join(graph.inputs) or 'none'})"), field=f"--{name}")
    values: dict[str, Any] = {}
    for name, spec in graph.inputs.items():
        if name in cli:
            try:
                value = parse_cli_value(spec.type, cli[name])
            except ValueError as e:
                raise InputError(f"not a valid {spec.type}: {e}", field=f"--{name}") from None
        elif name in given:
            value = given[name]
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
                location = str((cwd / location).resolve())
                if not os.path.exists(location):
                    raise InputError(f"no such file or directory: {value}", field=f"--{name}")
            value = location
        values[name] = canonical_value(spec.type, value)
    return values
