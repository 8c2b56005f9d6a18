"""Flyte value types (`FlyteFile`, `FlyteDirectory`) and the canonical type names the graph uses.

A type is reduced to a short canonical string (`int`, `file[csv]`, `list[float]`, `dict[str,int]`)
so interfaces can be compared, fingerprinted and shown without carrying Python objects around.
"""
from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import enum
import json
import math
import os
import typing
from typing import Any, TypeVar

from vocab.canonical import jsonable


class _FormatMeta(abc.ABCMeta):
    """`FlyteFile[TypeVar("csv")]`, `FlyteFile["csv"]`: a cached subclass carrying the format."""

    _format: str = ""

    def __getitem__(cls, item: Any) -> type:
        fmt = _format_of(item)
        cache = cls.__dict__.get("_variants")
        if cache is None:
            cache = {}
            setattr(cls, "_variants", cache)
        if fmt not in cache:
            cache[fmt] = type(f"{cls.__name__}[{fmt}]", (cls,), {"_format": fmt, "_variants": {}})
        return cache[fmt]


def _format_of(item: Any) -> str:
    if isinstance(item, TypeVar):
        return item.__name__
    if isinstance(item, str):
        return item
    if isinstance(item, type):
        return item.__name__
    return str(item)


class _PathValue(os.PathLike, metaclass=_FormatMeta):
    """A file or directory value: as a type it marks an input/output; as a value it wraps a path or `s3://` URI."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def __fspath__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    def __eq__(self, other: object) -> bool:
        same_kind = isinstance(other, _PathValue) and isinstance(other, FlyteFile) == isinstance(self, FlyteFile)
        return same_kind and other.path == self.path  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self.path)

    def download(self) -> str:
        return self.path


def noop() -> None:
    """flytekit's default downloader: the value is a path already (nothing to fetch)."""


class FlyteFile(_PathValue):
    """A file (Flyte's single-part blob); flytekit's constructor signature."""

    def __init__(self, path: str | os.PathLike[str], downloader: Any = noop, remote_path: Any = None,
                 metadata: dict[str, str] | None = None) -> None:
        super().__init__(path)
        self.remote_path = remote_path
        self.metadata = metadata


class FlyteDirectory(_PathValue):
    """A directory (Flyte's multipart blob); flytekit's constructor signature."""

    def __init__(self, path: str | os.PathLike[str], downloader: Any = None, remote_directory: Any = None) -> None:
        super().__init__(path)
        self.remote_directory = remote_directory


class DominoFile(FlyteFile):
    """`flytekitplugins.domino.file.DominoFile`: a file, exactly as `FlyteFile` (`DominoFile[TypeVar("sas7bdat")]`)."""


# flytekit.types.file's named formats (the format strings are flytekit's own extensions).
CSVFile = FlyteFile["csv"]
HDF5EncodedFile = FlyteFile["hdf5"]
HTMLPage = FlyteFile["html"]
JPEGImageFile = FlyteFile["jpeg"]
JSONLFile = FlyteFile["jsonl"]
JoblibSerializedFile = FlyteFile["joblib"]
ONNXFile = FlyteFile["onnx"]
PDFFile = FlyteFile["pdf"]
PNGImageFile = FlyteFile["png"]
PythonNotebook = FlyteFile["ipynb"]
PythonPickledFile = FlyteFile["python_pickle"]
SVGImageFile = FlyteFile["svg"]
TFRecordFile = FlyteFile["tfrecord"]
JSONFile = FlyteFile["json"]  # not in flytekit: kept for flows written against earlier versions of this project
NAMED_FILE_TYPES = ("CSVFile", "HDF5EncodedFile", "HTMLPage", "JPEGImageFile", "JSONLFile", "JoblibSerializedFile",
                    "ONNXFile", "PDFFile", "PNGImageFile", "PythonNotebook", "PythonPickledFile", "SVGImageFile",
                    "TFRecordFile", "JSONFile")


class UnsupportedType(TypeError):
    """A Python type that has no Flyte literal here."""


PRIMITIVES: dict[type, str] = {
    bool: "bool", int: "int", float: "float", str: "str",
    dt.datetime: "datetime", dt.date: "date", dt.timedelta: "timedelta",
}


def type_name(tp: Any) -> str:
    """The canonical name of a Python/Flyte type: what the graph, fingerprints and checks use."""
    if isinstance(tp, str):  # already canonical (interfaces read back from state)
        return tp
    artifact_type = getattr(tp, "__flows_type__", None)
    if artifact_type is not None:  # Artifact(...).File(...)
        return artifact_type
    if tp is None or tp is type(None):
        return "none"
    if tp is typing.Any:
        return "any"
    if isinstance(tp, TypeVar):  # a bare TypeVar used as a type: treat as a file format alias
        return f"file[{tp.__name__}]"
    if tp in PRIMITIVES:
        return PRIMITIVES[tp]
    if isinstance(tp, type) and issubclass(tp, FlyteFile):
        return f"file[{tp._format}]" if tp._format else "file"
    if isinstance(tp, type) and issubclass(tp, FlyteDirectory):
        return f"dir[{tp._format}]" if tp._format else "dir"
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin in (list, typing.List):
        return f"list[{type_name(args[0])}]" if args else "list[any]"
    if origin in (dict, typing.Dict):
        if args:
            return f"dict[{type_name(args[0])},{type_name(args[1])}]"
        return "dict[str,any]"
    if origin is typing.Union or (origin is not None and getattr(origin, "__name__", "") == "UnionType"):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return f"optional[{type_name(rest[0])}]"
        return "union[" + ",".join(sorted(type_name(a) for a in args)) + "]"
    if tp is list:
        return "list[any]"
    if tp is dict:
        return "dict[str,any]"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        _DATACLASSES[f"dataclass[{tp.__name__}]"] = tp
        return f"dataclass[{tp.__name__}]"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return enum_type(tp)
    if isinstance(tp, type):
        # Flyte pickles other Python classes; a pickle has no canonical bytes (the same object can pickle
        # differently), so nothing could be keyed by it: a dataclass, an Enum or a file is.
        raise UnsupportedType(f"type {tp.__qualname__} is not supported as a flow value (Flyte "
                              "would pickle it, and a pickle cannot key a cache: use a dataclass, an Enum, or "
                              "a file)")
    raise UnsupportedType(f"type {tp!r} is not supported as a flow value")


# The dataclasses behind `dataclass[Name]` types seen while flows were traced in this process: attribute access on
# a flow value of such a type (`metrics.accuracy`) needs its fields' types.
_DATACLASSES: dict[str, type] = {}


def dataclass_fields(t: str) -> dict[str, Any] | None:
    """Field name -> Python type of the dataclass behind `t` (None: not a dataclass type seen here)."""
    tp = _DATACLASSES.get(t)
    if tp is None:
        return None
    hints = typing.get_type_hints(tp, include_extras=True)
    return {f.name: hints.get(f.name, typing.Any) for f in dataclasses.fields(tp)}


def enum_type(tp: type[enum.Enum]) -> str:
    """Flyte maps an Enum to a string enum literal: `enum[red|green|blue]` (its values, in declaration order); so
    an Enum whose values are not strings has no Flyte type (flytekit refuses it too)."""
    values = [m.value for m in tp]
    bad = [v for v in values if not isinstance(v, str) or not v or "|" in v or "]" in v]
    if bad or not values:
        raise UnsupportedType(f"enum {tp.__qualname__}: Flyte needs string values (got {bad[0]!r})" if bad else
                              f"enum {tp.__qualname__} has no members")
    return "enum[" + "|".join(values) + "]"


def is_enum(t: str) -> bool:
    return t.startswith("enum[")


def enum_values(t: str) -> list[str]:
    return t[len("enum["):-1].split("|")


def is_file(t: str) -> bool:
    return t == "file" or t.startswith("file[")


def is_dir(t: str) -> bool:
    return t == "dir" or t.startswith("dir[")


def is_blob(t: str) -> bool:
    return is_file(t) or is_dir(t)


def _inner(t: str, prefix: str) -> str:
    return t[len(prefix) + 1:-1]


def assignable(src: str, dst: str) -> bool:
    """Whether a value of type `src` may feed an input of type `dst` (Flyte's type-check rules)."""
    if src == dst or "any" in (src, dst):
        return True
    if dst.startswith("optional["):
        return src == "none" or assignable(src, _inner(dst, "optional"))
    if is_file(src) and is_file(dst) or is_dir(src) and is_dir(dst):
        # Flyte: blob formats must match unless one side is generic.
        fs, fd = src.partition("[")[2].rstrip("]"), dst.partition("[")[2].rstrip("]")
        return not fs or not fd or fs == fd
    for prefix in ("list", "dict"):
        if src.startswith(prefix + "[") and dst.startswith(prefix + "["):
            a, b = _inner(src, prefix), _inner(dst, prefix)
            if prefix == "list":
                return assignable(a, b)
            ka, _, va = a.partition(",")
            kb, _, vb = b.partition(",")
            return ka == kb and assignable(va, vb)
    return False


def check_value(t: str, value: Any) -> str | None:
    """None when `value` fits type `t`, else a short reason."""
    if t == "any" or value is None and (t.startswith("optional[") or t == "none"):
        return None
    if t.startswith("optional["):
        return check_value(_inner(t, "optional"), value)
    if t == "bool":
        return None if isinstance(value, bool) else f"expected a bool, got {value!r}"
    if t == "int":
        return None if isinstance(value, int) and not isinstance(value, bool) else f"expected an int, got {value!r}"
    if t == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else f"expected a float, got {value!r}"
    if t == "str":
        return None if isinstance(value, str) else f"expected a str, got {value!r}"
    if is_enum(t):
        text = value.value if isinstance(value, enum.Enum) else value
        return None if text in enum_values(t) else f"expected one of {', '.join(enum_values(t))}, got {text!r}"
    if is_blob(t):
        ok = isinstance(value, (str, os.PathLike, FlyteFile, FlyteDirectory))
        return None if ok else f"expected a path or URI, got {value!r}"
    if t.startswith("list["):
        if not isinstance(value, (list, tuple)):
            return f"expected a list, got {value!r}"
        inner = _inner(t, "list")
        for v in value:
            reason = check_value(inner, v)
            if reason:
                return reason
        return None
    if t.startswith("dict["):
        if not isinstance(value, dict):
            return f"expected a dict, got {value!r}"
        key_type, _, value_type = _inner(t, "dict").partition(",")
        for k, v in value.items():
            if key_type == "str" and not isinstance(k, str):
                return f"expected str keys, got {k!r}"
            reason = check_value(value_type, v)
            if reason:
                return f"key {k!r}: {reason}"
        return None
    if t in ("datetime", "date"):
        if isinstance(value, str):  # JSON carries them as ISO 8601 text; "yesterday" must fail here, not in a job
            try:
                (dt.datetime if t == "datetime" else dt.date).fromisoformat(value)
            except ValueError:
                return f"expected an ISO 8601 {t} (e.g. {'2024-05-01T12:00:00' if t == 'datetime' else '2024-05-01'}), got {value!r}"
            return None
        ok = isinstance(value, dt.datetime) if t == "datetime" else isinstance(value, dt.date)
        return None if ok else f"expected a {t}, got {value!r}"
    if t == "timedelta":
        return None if isinstance(value, (dt.timedelta, int, float)) else f"expected a timedelta, got {value!r}"
    return None


def canonical_value(t: str, value: Any) -> Any:
    """A JSON value that is equal for equal inputs: `1` and `1.0` for a float, dict key order, ..."""
    if value is None:
        return None
    if t.startswith("optional["):
        return canonical_value(_inner(t, "optional"), value)
    if t == "float":
        f = float(value)
        return f if math.isfinite(f) else str(f)
    if t == "int":
        return int(value)
    if t.startswith("list[") and isinstance(value, (list, tuple)):
        inner = _inner(t, "list")
        return [canonical_value(inner, v) for v in value]
    if t.startswith("dict[") and isinstance(value, dict):
        inner = _inner(t, "dict").partition(",")[2]
        return {str(k): canonical_value(inner, v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if t in ("datetime", "date") and isinstance(value, str):
        return value
    if isinstance(value, enum.Enum):  # an enum travels as its string value, as in Flyte
        return value.value
    return jsonable(value)


def parse_cli_value(t: str, text: str) -> Any:
    """Parse `--name VALUE` as pyflyte does: JSON for lists/dicts, paths for files."""
    if t.startswith("optional["):
        if text in ("", "null", "None"):
            return None
        return parse_cli_value(_inner(t, "optional"), text)
    if t == "str" or is_blob(t):
        return text
    if is_enum(t):
        if text not in enum_values(t):
            raise ValueError(f"not one of {', '.join(enum_values(t))}: {text!r}")
        return text
    if t == "bool":
        low = text.strip().lower()
        if low in ("true", "1", "yes", "y", "t"):
            return True
        if low in ("false", "0", "no", "n", "f"):
            return False
        raise ValueError(f"not a bool: {text!r}")
    if t == "int":
        return int(text)
    if t == "float":
        return float(text)
    if t in ("datetime", "date"):
        return dt.datetime.fromisoformat(text) if t == "datetime" else dt.date.fromisoformat(text)
    if t == "timedelta":
        return dt.timedelta(seconds=float(text))
    return json.loads(text)
