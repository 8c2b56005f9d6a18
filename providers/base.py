"""The Provider protocol: what executes one node's job (local processes or Domino Jobs).

The scheduler knows providers only through this protocol. A provider receives a fully resolved
`JobSpec` (inputs already bound to values, blob URIs or paths), and returns a `JobResult` whose
outputs are already stored in the blob store (content-addressed), so the scheduler only records them.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Literal, Mapping, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from state.model import OutputRecord
from vocab.nodes import NodeKind


class NodeSpec(Protocol):
    """What a provider reads of a flow node at plan time (`reconcile.graph.Node` is one)."""

    @property
    def address(self) -> str: ...
    @property
    def kind(self) -> NodeKind: ...
    @property
    def command(self) -> str: ...
    @property
    def job_config(self) -> dict[str, Any]: ...
    @property
    def resolve_defaults(self) -> bool: ...
    @property
    def python(self) -> Mapping[str, str] | None: ...


class InputValue(BaseModel):
    type: str
    value: Any = None          # primitives (already parsed to the declared type)
    uri: str | None = None     # files / directories: blob URI, local path or s3:// URI
    digest: str | None = None


class JobSpec(BaseModel):
    run_id: str
    address: str
    task_name: str
    kind: NodeKind
    command: str = ""
    job_config: dict[str, Any] = Field(default_factory=dict)  # resolved (provider.resolve_config)
    inputs: dict[str, InputValue] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)     # name -> canonical type
    attempt: int = 1
    timeout_seconds: float | None = None
    key: str | None = None
    python: dict[str, str] | None = None
    export_specs: list[dict[str, Any]] = Field(default_factory=list)
    project_root: str
    flow_file: str
    log_path: str              # the provider writes this attempt's stdout+stderr here


class JobHandle(BaseModel):
    provider: str
    job_id: str
    data: dict[str, Any] = Field(default_factory=dict)


JobStatus = Literal["succeeded", "failed", "timed_out", "cancelled"]


class JobResult(BaseModel):
    status: JobStatus
    outputs: dict[str, OutputRecord] = Field(default_factory=dict)
    error: str | None = None
    log_tail: str = ""
    warnings: list[str] = Field(default_factory=list)


StatusCallback = Callable[[str], None]
"""Told what the provider last heard of a running job (Domino: Queued, Running, ...), for the progress view."""
EndedCallback = Callable[[], None]
"""Told once that the job itself has ended (its compute is free) while the provider still collects its outputs:
the caller's job slot goes to the next job meanwhile."""


class Provider(Protocol):
    """What runs jobs. The engine knows a provider only through this protocol: what it can do is said by its
    capabilities (`max_parallel`, `jobs_outlive_the_process`, `resolves_remotely`), never by its name."""

    name: str  # recorded in runs and shown; never branched on

    @property
    def max_parallel(self) -> int | None:
        """How many jobs may run at once on this provider's own account (None: no limit of its own)."""
        ...

    @property
    def resolves_remotely(self) -> bool:
        """True when `resolve_config` asks a server (Domino's project defaults): its answers can change without
        anything here changing, so a plan asks again (no no-op receipt), and distinct configs are resolved in
        parallel. False (local): the config as written."""
        ...

    @property
    def jobs_outlive_the_process(self) -> bool:
        """True when a started job keeps running if this process dies (Domino): its start is then journaled
        durably, before and after, so `flows recover` can find it and re-attach instead of starting it again.
        False (local): a job dies with the process that started it."""
        ...

    @property
    def start_in_flight_seconds(self) -> float:
        """How long after a process sent a start (and died) its job may still appear: a request in flight when the
        apply was killed is still served. `flows recover` looks again until then before it starts the node anew.
        0 (local): nothing outlives the process."""
        ...

    @property
    def warnings(self) -> list[str]:
        """Said once per apply, before any job starts (e.g. the local provider without isolation)."""
        ...

    def resolve_config(self, node: NodeSpec) -> dict[str, Any]:
        """Plan time: the node's job config with project defaults resolved (Domino: commit, environment
        revision, ...). Never starts a job. Local: the config as written."""
        ...

    def prepare(self, job: JobSpec) -> None:
        """Work a start needs that can be done before a job slot is free (local: the job's folder with its
        inputs written), so the slot runs jobs, not bookkeeping. Never raises: what fails here fails again, and
        is reported, in `start`. A prepared job that never starts is cleaned up with the provider."""
        ...

    def start(self, job: JobSpec) -> JobHandle:
        """Launch the job and return at once with its id (journaled by the caller before waiting)."""
        ...

    def wait(self, handle: JobHandle, job: JobSpec, cancel: threading.Event,
             on_status: StatusCallback | None = None, on_ended: EndedCallback | None = None) -> JobResult:
        """Wait for the job; stop it and return `timed_out` past `job.timeout_seconds`, `cancelled` when
        `cancel` is set. Outputs are checked, parsed and stored in the blob store before returning.
        `on_status` hears each status the provider reads while it waits; `on_ended` is called when the job has
        ended and before its outputs are collected (not at all is allowed: the caller then waits for the return)."""
        ...

    def stop(self, handle: JobHandle) -> None: ...

    def attach(self, job_id: str, job: JobSpec) -> JobHandle | None:
        """Recover: a handle to a job started by an earlier process, or None when it cannot still be running."""
        ...

    def find_started(self, run_id: str, address: str, attempt: int) -> str | None:
        """Recover: the id of the job an earlier process started for (run, node, attempt) but died before
        journaling, or None when that start never reached the provider (or its jobs cannot outlive the process)."""
        ...

    def job_status(self, job_id: str) -> str:
        """What the provider says now of a job an earlier process started (read only); "unknown" when it
        cannot say."""
        ...

    def logs(self, job_id: str) -> str: ...


@runtime_checkable
class StartQueue(Protocol):
    """A provider that takes starts ahead of its free job slots and starts each the moment a running job has
    ended, with no word from the apply (local: the resident launcher), so a slot never waits for the apply's own
    bookkeeping between two jobs. `start` then returns once the job runs, which may be after a running one ends."""

    def get_ready(self) -> None:
        """Start, while the apply still plans, what its first start will need (local: the launcher process)."""
        ...

    def queue_starts(self, running: int, held_until: Callable[[], float | None]) -> int:
        """From now on run at most `running` jobs at once; how many starts beyond them it takes (0: none; the
        caller then starts a job only when a slot is free). `held_until()`: until when (time.monotonic()) the
        caller can show it holds the state lock, None when it cannot; a start waiting past that is asked again,
        so no job starts once the lock may have passed to another apply (a paused one's launcher runs on)."""
        ...

    def hold(self, why: str) -> None:
        """The apply stops (a failure, a Ctrl-C, a lost lock): nothing that has not started yet starts; each such
        start raises NotStartedError(why). Told before the apply stops any running job."""
        ...
