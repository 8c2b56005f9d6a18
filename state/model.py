"""The state of one flow: nodes as last applied, the cache index, runs; versioned, with serial + lineage.

Plays the role of Terraform's statefile: `version` says the schema (readers upgrade older ones,
refuse newer ones), `serial` is bumped on every write, `lineage` is set once when the state is born.
"""
from __future__ import annotations

import contextlib
import copy
import datetime as dt
import gc
import json
import uuid
from typing import Annotated, Any, Callable, Iterator, Literal, Mapping, TypeVar

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from state.fingerprint_text import STORED, Fingerprint
from vocab.errors import StateError
from vocab.version import VERSION

# 2: `fence` (the lock generation that last fenced the state), runs' `masked_inputs`
# 3: approval gates: runs' `approvals` and `waiting`, the run outcome `waiting`
# 4: a cache entry whose outputs and fingerprint are those of the node record at its address is stored without
#    them, marked `from_node` (they were a third of a large state's bytes, read and parsed twice)
# 5: every fingerprint (node records, cache entries) stored as its JSON text (`state.fingerprint_text`)
STATE_VERSION = 5

NodeStatus = Literal["succeeded", "failed", "running", "cancelled", "skipped"]
# waiting: the run stopped at an approval gate nobody answered; `flows apply|recover --approve NAME` goes on.
RunOutcome = Literal["running", "succeeded", "failed", "interrupted", "recovered", "waiting"]


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def at(seconds: float) -> str:
    """`now()`'s text for a moment taken earlier with `time.time()`."""
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="milliseconds")


Model = TypeVar("Model", bound=BaseModel)
# per class: every field name (a set, and a tuple in declaration order), how to make each default, and whether
# pydantic's own model_construct must make its records (extra fields allowed, or a post-init hook)
_TRUSTED: dict[type[BaseModel], tuple[set[str], tuple[str, ...], dict[str, Callable[[], Any]], bool]] = {}


def trusted(cls: type[Model], **values: Any) -> Model:
    """A record made by the engine from values it made itself (already of the declared types): pydantic's
    `model_construct`, so the dicts it is given are kept, not copied, and with one shared set of field names per
    class instead of a set per instance (pydantic's fields-set: 700+ bytes each). An apply makes a few of these per
    node, and at 10,000 nodes that was tens of MB. Every field counts as set: the state is never dumped with
    exclude_unset, so the output is the same as that of a validated model. Defaults are made here: pydantic's
    own path inspects each default factory's signature on every call (CPU, and cyclic garbage)."""
    spec = _TRUSTED.get(cls)
    if spec is None:  # (`cls.model_fields` is a descriptor of pydantic's: looked up once per class, not per call)
        fields = cls.model_fields
        spec = _TRUSTED[cls] = (set(fields), tuple(fields), {name: _default_maker(field) for name, field in
                                                             fields.items() if not field.is_required()},
                                cls.model_config.get("extra") == "allow" or bool(cls.__pydantic_post_init__))
    every, order, defaults, pydantics_own = spec
    for name, make in defaults.items():
        if name not in values:
            values[name] = make()
    if pydantics_own or values.keys() != every:
        return cls.model_construct(_fields_set=every, **values)
    return _record(cls, {name: values[name] for name in order}, every)  # (in field order: the JSON's)


def _record(cls: type[Model], fields: dict[str, Any], fields_set: set[str]) -> Model:
    """What model_construct makes of `fields` (exactly the declared ones, in declaration order), without its
    per-field search for aliases and defaults (a few of these per node: it was a tenth of the apply's own time per
    job)."""
    record = cls.__new__(cls)
    _set = object.__setattr__
    _set(record, "__dict__", fields)
    _set(record, "__pydantic_fields_set__", fields_set)
    _set(record, "__pydantic_extra__", None)
    _set(record, "__pydantic_private__", None)
    return record


def _default_maker(field: Any) -> Callable[[], Any]:
    if field.default_factory is not None:
        return field.default_factory  # type: ignore[no-any-return]  # (none of ours takes the validated data)
    default = field.default
    if default is None or isinstance(default, (str, int, float, bool)):
        return lambda: default  # immutable: nothing to copy (most defaults are None: 10+ per node)
    return lambda: copy.deepcopy(default)  # (as pydantic: a mutable default is never shared)


class OutputRecord(BaseModel):
    """One produced output: where its bytes live (content-addressed) and what they hash to."""

    model_config = ConfigDict(extra="ignore")
    type: str
    digest: str
    size: int = 0
    uri: str | None = None      # blob store URI (files, directories, and primitives' bytes)
    value: Any = None           # primitives: the parsed value, shown in plans and passed downstream


# A fingerprint field: a dict, or a Fingerprint (its text until read); stored as text (`STORED` context).
FingerprintField = Annotated[Mapping[str, Any], Fingerprint]


class NodeRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")
    address: str
    task_name: str
    key: str | None = None
    fingerprint: FingerprintField = Field(default_factory=dict)
    display: dict[str, Any] = Field(default_factory=dict)   # recorded, not in the key (Title, tiers, ...)
    outputs: dict[str, OutputRecord] = Field(default_factory=dict)
    status: NodeStatus = "succeeded"
    run_id: str | None = None
    job_id: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    attempts: int = 0
    error: str | None = None
    log: str | None = None
    reused_from: str | None = None  # run id the outputs came from, when the node was a cache hit


class CacheEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")
    key: str
    task_name: str
    address: str
    outputs: dict[str, OutputRecord]
    run_id: str | None = None
    job_id: str | None = None
    created_at: str = Field(default_factory=now)
    fingerprint: FingerprintField = Field(default_factory=dict)


class StoredCacheEntry(BaseModel):
    """A cache entry as the state document stores it. With `from_node`, it is the node record's at its `address`
    but for `job_id` and `created_at`: its key (the document's key for it), task name, run, outputs and fingerprint
    are the node's, and are not written twice."""

    model_config = ConfigDict(extra="ignore")
    key: str | None = None
    task_name: str | None = None
    address: str
    outputs: dict[str, OutputRecord] | None = None
    run_id: str | None = None
    job_id: str | None = None
    created_at: str = Field(default_factory=now)
    fingerprint: FingerprintField | None = None
    from_node: bool = False


def _mirrors_its_node(key: str, entry: CacheEntry, nodes: dict[str, NodeRecord]) -> bool:
    node = nodes.get(entry.address)
    return (node is not None and node.key == entry.key == key and node.task_name == entry.task_name
            and node.run_id == entry.run_id
            and (node.outputs is entry.outputs or node.outputs == entry.outputs)
            and (node.fingerprint is entry.fingerprint or node.fingerprint == entry.fingerprint))


def _stored_entry_json(key: str, entry: CacheEntry, nodes: dict[str, NodeRecord]) -> bytes:
    """One cache entry of the stored document (indent=1, as pydantic writes the rest)."""
    if not _mirrors_its_node(key, entry, nodes):
        return entry.__pydantic_serializer__.to_json(entry, indent=1, context=STORED)
    return pydantic_core.to_json({"address": entry.address, "job_id": entry.job_id, "created_at": entry.created_at,
                                  "from_node": True}, indent=1)


def _cache_from_stored(stored: dict[str, StoredCacheEntry], nodes: dict[str, NodeRecord],
                       source: str) -> dict[str, CacheEntry]:
    """The cache entries of a parsed document, each `from_node` one given its node's outputs and fingerprint (the
    same objects: one copy in memory, as an apply holds them). Made as `trusted` makes records (`_record`): there
    is one per node of the state."""
    every = set(CacheEntry.model_fields)
    cache: dict[str, CacheEntry] = {}
    for key, entry in stored.items():
        if entry.from_node:
            node = nodes.get(entry.address)
            if node is None or node.key != key:
                why = "is not in the state" if node is None else "has another key"
                raise StateError(f"cache entry {key[:12]}: it is that of node {entry.address!r}, which {why}; "
                                 "restore the state with `flows state history` / `flows state push`", file=source)
            task_name: str | None = node.task_name
            run_id = node.run_id
            outputs: dict[str, OutputRecord] | None = node.outputs
            fingerprint: Mapping[str, Any] | None = node.fingerprint
        else:
            missing = next((f for f in ("key", "task_name", "outputs") if getattr(entry, f) is None), None)
            if missing is not None:
                raise StateError(f"state does not match the schema: cache.{key}.{missing}: Field required",
                                 file=source)
            task_name, run_id, outputs, fingerprint = entry.task_name, entry.run_id, entry.outputs, entry.fingerprint
        cache[key] = _record(CacheEntry, {  # (in field order: the JSON's)
            "key": key if entry.from_node else entry.key, "task_name": task_name, "address": entry.address,
            "outputs": outputs, "run_id": run_id, "job_id": entry.job_id, "created_at": entry.created_at,
            "fingerprint": fingerprint if fingerprint is not None else {}}, every)
    return cache


class ArtifactFileRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")
    file_name: str
    node: str
    output: str


class ArtifactRecord(BaseModel):
    """A declared Domino artifact (DATA | MODEL | REPORT) and the node outputs that make up its files."""

    model_config = ConfigDict(extra="ignore")
    name: str
    type: str
    files: list[ArtifactFileRecord] = Field(default_factory=list)


class InputSource(BaseModel):
    """Where one node input came from in the applied flow; lineage walks these edges back to the flow inputs."""

    model_config = ConfigDict(extra="ignore")
    kind: Literal["literal", "flow_input", "node_output"]
    name: str | None = None    # flow_input
    node: str | None = None    # node_output
    output: str | None = None  # node_output


class Approval(BaseModel):
    """Who approved an approval gate of a run, and when."""

    model_config = ConfigDict(extra="ignore")
    by: str
    at: str = Field(default_factory=now)


class GateWait(BaseModel):
    """An approval gate a run stopped at, unanswered: since when, and for how long it may wait (Flyte fails the
    execution when its timeout passes; so does flows, when it next reads the state)."""

    model_config = ConfigDict(extra="ignore")
    address: str
    since: str = Field(default_factory=now)
    timeout_seconds: float | None = None

    def deadline(self) -> dt.datetime | None:
        if not self.timeout_seconds:
            return None
        return dt.datetime.fromisoformat(self.since) + dt.timedelta(seconds=self.timeout_seconds)


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    flow: str
    flow_file: str = ""
    flow_digest: str = ""
    started_at: str = Field(default_factory=now)
    finished_at: str | None = None
    user: str = ""
    host: str = ""
    pid: int | None = None
    provider: str = "local"
    inputs: dict[str, Any] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)
    outcome: RunOutcome = "running"
    error: str | None = None
    recovered_at: str | None = None
    # input name -> digest of its value, for inputs whose recorded value is masked (it looked like a secret):
    # recover asks for those values again and checks them against these digests, never runs with the mask.
    masked_inputs: dict[str, str] = Field(default_factory=dict)
    # address -> {"key", "job_id", "attempt", "started_at", "status"}: what was launched, for recover.
    jobs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # The flow's artifact declarations and input edges as applied: `flows artifacts` and `flows lineage` read
    # them without the flow file. Per run (journaled when it starts), so an older output keeps the edges it was
    # made with.
    artifacts: dict[str, ArtifactRecord] = Field(default_factory=dict)
    sources: dict[str, dict[str, InputSource]] = Field(default_factory=dict)  # address -> input -> source
    # Approval gates: gate name -> who approved it and when (journaled the moment it is given); and the gates the
    # run stopped at, unanswered (outcome `waiting`).
    approvals: dict[str, Approval] = Field(default_factory=dict)
    waiting: dict[str, GateWait] = Field(default_factory=dict)


class State(BaseModel):
    model_config = ConfigDict(extra="ignore")
    version: int = STATE_VERSION
    serial: int = 0
    lineage: str = Field(default_factory=lambda: str(uuid.uuid4()))
    # The generation of the lock that last fenced this state: a holder whose lock generation is older lost
    # its lock to a takeover and may not write (checked in the same compare-and-swap as the write).
    fence: int = 0
    tool_version: str = VERSION
    flow: str
    nodes: dict[str, NodeRecord] = Field(default_factory=dict)
    cache: dict[str, CacheEntry] = Field(default_factory=dict)
    runs: dict[str, RunRecord] = Field(default_factory=dict)

    def to_json(self) -> str:
        """The whole state, every cache entry written out in full (`flows state show`; not the stored form)."""
        return self.model_dump_json(indent=1)

    def to_json_bytes(self) -> bytes:
        """The stored document (`to_json_parts`) at once."""
        return b"".join(self.to_json_parts())

    def to_json_parts(self) -> Iterator[bytes]:
        """The stored document in pieces, made as they are asked for: the head, then one piece per node record,
        cache entry (`StoredCacheEntry`: without what it shares with its node) and run. A 10,000-node state is
        20+ MB of text; written from these, it is never held whole."""
        shell = self.model_copy(update={"nodes": {}, "cache": {}, "runs": {}})
        head = shell.__pydantic_serializer__.to_json(shell, indent=1, context=STORED)
        tail = b'"nodes": {},\n "cache": {},\n "runs": {}\n}'
        assert head.endswith(tail), "nodes, cache and runs are the state's last fields, in this order"
        yield head[:-len(tail)]
        for name, records in (("nodes", self.nodes), ("cache", self.cache), ("runs", self.runs)):
            yield b'"' + name.encode() + b'": '
            if name == "cache":
                yield from _dict_parts(records, lambda key, entry: _stored_entry_json(key, entry, self.nodes))
            else:
                yield from _dict_parts(records)
            yield b",\n " if name != "runs" else b"\n}"


class _StoredState(State):
    """The state document as stored: its cache entries in their stored form (`parse_state` makes the State)."""

    cache: dict[str, StoredCacheEntry] = Field(default_factory=dict)  # type: ignore[assignment]

    def as_state(self, source: str) -> State:
        values = {name: getattr(self, name) for name in State.model_fields}
        values["cache"] = _cache_from_stored(self.cache, self.nodes, source)
        values["version"] = STATE_VERSION  # (read as is: see _READ_AS_IS)
        return trusted(State, **values)


def _model_json(_key: str, record: BaseModel) -> bytes:
    return record.__pydantic_serializer__.to_json(record, indent=1, context=STORED)


def _dict_parts(records: dict[str, Any], to_json: Callable[[str, Any], bytes] = _model_json) -> Iterator[bytes]:
    """A dict of models one level deep in the state, as pydantic writes it with indent=1: each entry's lines two
    levels deep (JSON text has no raw newline but between lines, so indenting after each one is exact)."""
    if not records:
        yield b"{}"
        return
    sep = b"{\n  "
    for key, record in records.items():
        body = to_json(key, record).replace(b"\n", b"\n  ")
        yield sep + pydantic_core.to_json(key) + b": " + body
        sep = b",\n  "
    yield b"\n }"


def _upgrade_1(raw: dict[str, Any]) -> dict[str, Any]:
    """Version 1 had no fence (every lock generation starts at 0) and no masked-input digests."""
    return {**raw, "version": 2, "fence": 0}


def _upgrade_2(raw: dict[str, Any]) -> dict[str, Any]:
    """Version 2 had no approval gates: no run approved or waited for one."""
    return {**raw, "version": 3}


def _upgrade_3(raw: dict[str, Any]) -> dict[str, Any]:
    """Version 3 wrote every cache entry whole, which version 4 still reads."""
    return {**raw, "version": 4}


def _upgrade_4(raw: dict[str, Any]) -> dict[str, Any]:
    """Version 4 wrote fingerprints as nested objects, which version 5 still reads."""
    return {**raw, "version": 5}


# Upgrade functions, one per older schema version: UPGRADES[n] turns a version-n dict into n+1.
UPGRADES: dict[int, Any] = {1: _upgrade_1, 2: _upgrade_2, 3: _upgrade_3, 4: _upgrade_4}
# Versions whose documents read as the current one's (no upgrade but the number): no detour through json.loads
_READ_AS_IS = {3, 4, STATE_VERSION}


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Parsing a state builds hundreds of thousands of objects and no reference cycles: the cyclic
    collector's passes over them were half the time of loading a 10,000-node state. Once parsed they are moved
    out of its sight for good (`gc.freeze`): a command keeps its state to the end, and the first collection after
    the parse would otherwise walk every one of them (150 ms at 10,000 nodes)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def parse_state(text: str | bytes, source: str) -> State:
    """Read a state document; upgrade an older schema, refuse a newer or broken one with a clear error."""
    try:  # the common case, current schema, in one pass of pydantic-core's own JSON parser (2x json.loads + validate)
        with _no_cyclic_gc():
            current = _StoredState.model_validate_json(text)
            if current.version in _READ_AS_IS:
                return current.as_state(source)
    except ValidationError:
        pass  # the checks below say what is wrong
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise StateError(f"state is not valid JSON ({e}); restore it with `flows state history` / "
                         "`flows state push`, or from its .bak", file=source) from None
    if not isinstance(raw, dict):
        raise StateError("state is not a JSON object", file=source)
    version = raw.get("version")
    if not isinstance(version, int):
        raise StateError("state has no integer 'version' field", file=source)
    if version > STATE_VERSION:
        raise StateError(f"state version {version} was written by a newer flows "
                         f"({raw.get('tool_version', '?')}); this flows {VERSION} reads up to version "
                         f"{STATE_VERSION}. Upgrade flows.", file=source)
    while version < STATE_VERSION:
        raw = UPGRADES[version](raw)
        version = raw["version"]
    try:
        stored = _StoredState.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise StateError(f"state does not match the schema: {loc}: {first['msg']}", file=source) from None
    return stored.as_state(source)
