"""A recorded fingerprint, kept as its JSON text until something reads into it.

A state holds one fingerprint per node record and cache entry. Parsed into nested dicts, they were most of the
objects of a loaded state (about a dozen dicts and two dozen strings a node) and so most of the time and memory
of loading a large one, though a plan reads them only to explain the few nodes that changed. The stored
document (schema 5) and the journal therefore carry each fingerprint as one JSON string, parsed on first read.
Every other form (`flows state show`, `model_dump`) stays the nested object it always was.
"""
from __future__ import annotations

import json
from typing import Any, Iterator, Mapping

import pydantic_core
from pydantic_core import core_schema

from vocab.errors import StateError

# Serialisation context that asks for the stored form (the state document, a journal line): fingerprints as text.
STORED = {"stored": True}
_KEY_SCHEMA_FIRST = '{"key_schema":'


class Fingerprint(Mapping[str, Any]):
    """Read-only: made from a dict (the engine's, kept as is) or from its text (a parsed document); the other
    form is made on first need and kept."""

    __slots__ = ("_data", "_text")
    _data: dict[str, Any] | None
    _text: str | None

    def __init__(self, data: dict[str, Any] | None = None, *, text: str | None = None) -> None:
        self._data = data if data is not None or text is not None else {}
        self._text = text

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            try:
                parsed = json.loads(self._text or "{}")
            except ValueError as e:
                raise StateError(f"a recorded fingerprint is not valid JSON ({e}); restore the state with "
                                 "`flows state history` / `flows state push`") from None
            if not isinstance(parsed, dict):
                raise StateError("a recorded fingerprint is not a JSON object; restore the state with "
                                 "`flows state history` / `flows state push`")
            self._data = parsed
        return self._data

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = _text_of(self.data)
        return self._text

    def settle(self) -> None:
        """Keep the text alone (made now if need be): a record once written keeps no parsed copy of its fingerprint
        (an apply holds every node's record to its end; the text takes less than the nested dicts it stands for)."""
        if self._data is not None:
            self._text = self.text
            self._data = None

    def has_key_schema(self) -> bool:
        """Whether the fingerprint says its key schema: from the text's start when it shows it (the engine puts it
        first), else from the parsed object."""
        if self._data is None and self._text is not None and self._text.startswith(_KEY_SCHEMA_FIRST):
            return True
        return "key_schema" in self.data

    def __getitem__(self, name: str) -> Any:
        return self.data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __bool__(self) -> bool:
        if self._data is None and self._text is not None:
            return ":" in self._text  # (a JSON object with a member has a colon; `{}` and `{ }` have none)
        return bool(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Fingerprint):
            if self is other or (self._text is not None and self._text == other._text):
                return True
            return self.data == other.data
        if isinstance(other, Mapping):
            return self.data == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __copy__(self) -> "Fingerprint":
        return self  # immutable

    def __deepcopy__(self, _memo: dict[int, Any]) -> "Fingerprint":
        return self

    def __repr__(self) -> str:
        return f"Fingerprint({self.data!r})"

    @classmethod
    def _from_text(cls, text: str) -> "Fingerprint":
        stripped = text.strip()
        if not (stripped.startswith("{") and stripped.endswith("}")):
            raise ValueError("a fingerprint's text must be a JSON object")
        return cls(text=text)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.union_schema(
            [core_schema.is_instance_schema(cls),
             core_schema.no_info_after_validator_function(cls._from_text, core_schema.str_schema()),
             core_schema.dict_schema(core_schema.str_schema(), core_schema.any_schema())],
            mode="left_to_right",
            serialization=core_schema.plain_serializer_function_ser_schema(_serialise, info_arg=True))


def _serialise(value: Mapping[str, Any], info: core_schema.SerializationInfo) -> Any:
    if info.mode == "json" and info.context and info.context.get("stored"):
        return value.text if isinstance(value, Fingerprint) else _text_of(value)
    return value.data if isinstance(value, Fingerprint) else value


def _text_of(data: Mapping[str, Any]) -> str:
    return pydantic_core.to_json(data).decode()  # (compact, in the engine's order: `key_schema` first)


def as_dict(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """The plain dict of a fingerprint (deepdiff compares types too: a Fingerprint against a dict differs)."""
    return fingerprint.data if isinstance(fingerprint, Fingerprint) else dict(fingerprint)


def fresh_dict(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of a fingerprint as plain dicts, to change without touching the original."""
    return json.loads(pydantic_core.to_json(as_dict(fingerprint)))  # type: ignore[no-any-return]


def has_key_schema(fingerprint: Mapping[str, Any]) -> bool:
    """Whether a fingerprint names its key schema (without parsing a stored one that shows it first)."""
    return fingerprint.has_key_schema() if isinstance(fingerprint, Fingerprint) else "key_schema" in fingerprint
