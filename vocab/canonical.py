"""Canonical JSON: the one byte form every digest and cache key in the project is taken of.

Sorted keys, fixed separators, UTF-8 text kept as is; values JSON has no word for (dates, paths,
dataclasses, `FlyteFile`) are reduced by `jsonable` first.
"""
from __future__ import annotations

import dataclasses
import enum
import datetime as dt
import json
import os
from typing import Any


def jsonable(value: Any) -> Any:
    """A JSON-able form of `value`: dataclasses as dicts, dates as ISO text, durations in seconds, paths
    (and `FlyteFile`/`FlyteDirectory`, which are paths) as text, dict keys as sorted text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):  # Flyte's string enum: the member's value
        return jsonable(value.value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def canonical_json(obj: Any, *, ascii: bool = False) -> str:
    """Sorted-key, separator-stable JSON: the byte form every hash in the project is taken of.

    `ascii`: text beyond ASCII escaped (`\\u00e9`), the form directory manifests and masked-input digests have
    always been taken of (their digests must not move)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii, default=jsonable)
