"""The scheduler: walks a plan in dependency order, runs invalidated nodes through the provider, and makes
every result durable the moment it exists (journal), folding the journal into the state at the end.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import functools
import getpass
import os
import queue
import re
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from reconcile import run_timeline
from reconcile.gates import AskApproval, GateQuestion, approver
from vocab.errors import FlowsError, LockHeldError, NotStartedError
from reconcile.fingerprint import binding_shape, cache_key
from vocab.flytetypes import is_blob
from reconcile.graph import FlowGraph, Node
from reconcile.plan import BlobPresence, NodeKeyer
from reconcile.plan_model import Plan
from providers.base import InputValue, JobResult, JobSpec, Provider, StartQueue
from providers.blobs.base import BlobStore
from state import journal
from state.fingerprint_text import Fingerprint
from state.model import Approval, CacheEntry, GateWait, NodeRecord, OutputRecord, RunRecord, State, at, now, trusted
from state.store import Lease, StateStore

DONE_OK = ("succeeded", "reused")
# An approval gate nobody answered (yet) is `awaiting`; what depends on it, left unstarted, is `blocked`.
AWAITING, BLOCKED = "awaiting", "blocked"
UPSTREAM_FAILED = "skipped: upstream failed"
NOT_STARTED = "not started"  # an attempt's status: the provider held its start back (StartQueue.hold)
STOPPED = "not started: stopped after a failure (--keep-going runs independent nodes)"
LOST_LOCK = "not started: this apply lost the state lock"
POLL = 0.05


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("r%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]


def safe_file_name(address: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", address).strip("_")


@dataclasses.dataclass
class ApplyOptions:
    parallelism: int = os.cpu_count() or 2
    keep_going: bool = False
    lock_timeout: float = 0.0
    break_expired_lock: bool = False
    approve: list[str] = dataclasses.field(default_factory=list)  # gate names approved in advance (--approve)
    approver: str = dataclasses.field(default_factory=approver)  # who approves (FLOWS_APPROVER or the OS user)


@dataclasses.dataclass(slots=True)  # one per node, kept for the whole run: no per-instance __dict__
class NodeOutcome:
    address: str
    action: str
    # waiting | running | succeeded | reused | failed | skipped | cancelled | awaiting (an unanswered approval
    # gate) | blocked (waits for one)
    result: str = "waiting"
    queued: float | None = None       # handed to a worker (its upstreams done, a slot free); for the run timeline
    started: float | None = None
    started_at: str | None = None     # when its first job started (wall clock, for the record)
    finished: float | None = None
    job_id: str | None = None
    attempts: int = 0
    detail: str = ""
    log_tail: str = ""
    status: str = ""                  # what the provider last said of the running job (Domino: Queued, ...)

    def hear_status(self, status: str) -> None:
        self.status = status

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.monotonic()) - self.started


class JobSlots:
    """`--parallelism` job slots, granted in the order the walk handed the nodes out (so a run is as
    deterministic as before). More worker threads than slots prepare and record nodes while the slots run
    jobs: a node's Python work (fingerprint, inputs, the journal's fsync) is off the jobs' critical path.

    A freed slot is handed straight to the next ticket in line (its own lock is released): one thread wakes per
    grant, not every waiting worker (each wake-up costs the GIL and a few futex calls)."""

    def __init__(self, slots: int) -> None:
        self.free = slots
        self._lock = threading.Lock()
        self._line: collections.deque[int] = collections.deque()  # handed out, neither granted nor dropped yet
        self._waiting: dict[int, threading.Lock] = {}  # ticket -> the held lock its worker blocks on
        self._next = 0

    def ticket(self) -> int:
        with self._lock:
            t = self._next
            self._next += 1
            self._line.append(t)
            return t

    def acquire(self, ticket: int) -> None:
        with self._lock:
            if self.free > 0 and self._line[0] == ticket:
                self._line.popleft()
                self.free -= 1
                self._grant()  # a slot still free goes on to whoever waits behind
                return
            gate = threading.Lock()
            gate.acquire()
            self._waiting[ticket] = gate
        gate.acquire()  # released by _grant, which did the bookkeeping for this ticket

    def _grant(self) -> None:
        """Under the lock: give free slots to the tickets at the head of the line that already wait."""
        while self.free > 0 and self._line and self._line[0] in self._waiting:
            self.free -= 1
            self._waiting.pop(self._line.popleft()).release()

    def drop(self, ticket: int) -> None:
        """The node needs no slot (a cache hit, a skip, an error before its job): the next in line goes on."""
        with self._lock:
            if ticket in self._waiting or ticket not in self._line:
                return
            self._line.remove(ticket)
            self._grant()

    def release(self) -> None:
        with self._lock:
            self.free += 1
            self._grant()


class HeldSlot:
    """One node's job slot: given back when its job has ended (the provider says so before it collects the
    outputs: the next job starts meanwhile), or at the latest when the node is done; taken again, at the end of
    the line, for a retry."""

    def __init__(self, slots: JobSlots, ticket: int) -> None:
        self._slots = slots
        self._ticket: int | None = ticket
        self._held = False
        self._lock = threading.Lock()

    def take(self) -> None:
        if self._held:
            return
        ticket = self._ticket if self._ticket is not None else self._slots.ticket()
        self._ticket = None
        self._slots.acquire(ticket)
        self._held = True

    def give_back(self) -> None:
        with self._lock:  # from the provider's thread or the node's, once
            if not self._held:
                return
            self._held = False
        self._slots.release()


class NodeWorkers:
    """The threads that run nodes: an address in, the same address out (on `done`) once its node is over. Plain
    queues both ways: a future per node cost a condition, a callback and their locks on every hand-off."""

    def __init__(self, count: int, run: Callable[[str], None], done: "queue.SimpleQueue[str]") -> None:
        self._work: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._run, self._done = run, done
        self._threads = [threading.Thread(target=self._loop, name=f"node_{i}") for i in range(count)]
        self._started = 0

    def submit(self, address: str) -> None:
        if self._started < len(self._threads):  # (started as nodes come: a small apply starts few threads)
            self._threads[self._started].start()
            self._started += 1
        self._work.put(address)

    def _loop(self) -> None:
        while (address := self._work.get()) is not None:
            try:
                self._run(address)
            except BaseException:  # noqa: BLE001 - as a pool's future kept it: the node's outcome says the rest
                pass
            finally:
                self._done.put(address)

    def __enter__(self) -> "NodeWorkers":
        return self

    def __exit__(self, *exc: object) -> None:
        for _ in range(self._started):
            self._work.put(None)
        for thread in self._threads[:self._started]:
            thread.join()


class Reporter(Protocol):
    """Receives scheduler events; the CLI renders them (live view or plain log)."""

    def attach(self, outcomes: dict[str, NodeOutcome]) -> None:
        """The live outcomes of every node, updated by the scheduler (a live view renders them)."""

    def event(self, outcome: NodeOutcome, message: str) -> None: ...


def take_lock(store: StateStore, operation: str, run_id: str, opts: ApplyOptions) -> Lease:
    try:
        return store.lock(operation, run_id=run_id, timeout=opts.lock_timeout, break_expired=opts.break_expired_lock)
    except LockHeldError as e:
        held = store.read_lock()
        if held is None or not (held.expired() or held.holder_gone()):
            raise
        # The usual aftermath of a killed apply: say how to go on.
        why = f"its process {held.pid} is gone" if held.holder_gone() else "its lease has expired"
        raise LockHeldError(f"{e.message}; {why}: run again with --break-expired-lock to take the lock over",
                            file=e.file) from None


class Scheduler:
    def __init__(self, *, graph: FlowGraph, plan: Plan, state: State, keyer: NodeKeyer, provider: Provider,
                 blobs: BlobStore,
                 lease: Lease, run: RunRecord, logs_dir: Path, opts: ApplyOptions, reporter: Reporter,
                 cancel: threading.Event, attach: dict[str, dict[str, Any]] | None = None,
                 ask: AskApproval | None = None) -> None:
        self.attach = attach or {}  # recover: address -> {"job_id", "key"} of jobs still running
        self.ask = ask  # puts an unanswered gate's question to a person (None: nobody to ask)
        self.waiting: dict[str, GateWait] = {}  # gate name -> since when it waits for an answer
        self.graph, self.plan, self.state, self.keyer = graph, plan, state, keyer
        self.provider, self.blobs, self.lease, self.run = provider, blobs, lease, run
        self.logs_dir, self.opts, self.reporter, self.cancel = logs_dir, opts, reporter, cancel
        self.outputs: dict[str, dict[str, OutputRecord]] = {}
        self.outcomes: dict[str, NodeOutcome] = {}
        self.stopping = False  # set by the node that fails first (without --keep-going): nothing new starts
        self.lost_lock = False  # set when the lock can no longer be shown to be ours: nothing new starts
        self._known: dict[str, tuple[str, Mapping[str, Any], dict[str, Any]]] = {}  # address -> (key, fp, display)
        self._lock = threading.Lock()
        self.presence = BlobPresence(blobs)
        self.slots = JobSlots(1)  # sized by run_all
        self._tickets: dict[str, int] = {}  # address -> its place in the line for a job slot
        self._finished: queue.SimpleQueue[str] = queue.SimpleQueue()  # nodes the workers are done with
        self._held = False  # the provider was told to start nothing more (StartQueue.hold)
        self._upstreams: dict[str, list[str]] = {}  # address -> its upstreams in this run (`_upstreams_of`)

    # -- journal -----------------------------------------------------------------------------
    def _journal(self, record: journal.JournalRecord, durable: bool = True) -> None:
        # Not under self._lock: a backend orders its own appends, and holding the scheduler's lock through an
        # fsync (or an S3 PUT) stalled every other worker. A node's own records come from one thread, in order.
        self.lease.append(record, durable)

    def _may_start(self) -> bool:
        """Whether this apply provably still holds the state lock; once it cannot show that, nothing new starts
        (a paused apply whose lease ran out may have been taken over)."""
        if self.lease.holds():
            return True
        self.lost_lock = True
        self._hold_starts()
        return False

    def _held_until(self) -> float | None:
        """For a provider that holds starts (StartQueue): until when a start may still begin without asking again;
        None once the lock cannot be shown to be ours (then nothing new starts)."""
        until = self.lease.held_until()
        if until is None:
            self._may_start()  # (marks the lock lost and holds the provider's starts)
        return until

    def _hold_starts(self) -> None:
        """The apply stops (a failure, a Ctrl-C, a lost lock): a provider holding starts ahead of free slots
        (StartQueue) starts none of them. Said once, before anything running is stopped for it."""
        why = self._why_not_start()
        if why is None or self._held or not isinstance(self.provider, StartQueue):
            return
        self._held = True
        self.provider.hold(why)

    def _record(self, node: NodeRecord, cache: CacheEntry | None) -> None:
        self._journal(trusted(journal.NodeFinished, run_id=self.run.id, node=node, cache=cache))
        if isinstance(node.fingerprint, Fingerprint):
            node.fingerprint.settle()  # (its text is what was journaled; the run holds every record to its end)
        with self._lock:
            self.state.nodes[node.address] = node
            if cache is not None:
                self.state.cache[cache.key] = cache

    # -- node execution ----------------------------------------------------------------------
    def _inputs(self, node: Node) -> dict[str, InputValue]:
        values: dict[str, InputValue] = {}
        for name, b in node.bindings.items():
            want = node.inputs[name]
            if b.kind == "collection":  # a list or dict of values from several places: its assembled value
                values[name] = trusted(InputValue, type=want, value=self._value_of(b, name))
                continue
            if b.kind == "node_output":
                rec = self.outputs[b.node][b.output]  # type: ignore[index]
                if b.path:  # a field of a dataclass output: the value alone (the blob holds the whole)
                    values[name] = trusted(InputValue, type=want, value=self.keyer.resolver.picked(b, rec.value, name))
                    continue
                values[name] = trusted(InputValue, type=want, value=rec.value, uri=rec.uri, digest=rec.digest)
                continue
            value = b.value if b.kind == "literal" else self.keyer.resolver.flow_value(b.name)  # type: ignore[arg-type]
            value = self.keyer.resolver.picked(b, value, name) if b.path else value
            if is_blob(want) and value is not None:
                values[name] = trusted(InputValue, type=want, uri=self.keyer.resolver.literal_location(value))
            else:
                values[name] = trusted(InputValue, type=want, value=value)
        return values

    def _value_of(self, b: Any, name: str) -> Any:
        """The value of a (primitive) binding now that its upstreams are done: collections element by element."""
        if b.kind == "collection":
            return binding_shape(b, [self._value_of(item, name) for item in b.items or []])
        if b.kind == "node_output":
            value = self.outputs[b.node][b.output].value
        else:
            value = b.value if b.kind == "literal" else self.keyer.resolver.flow_value(b.name)
        return self.keyer.resolver.picked(b, value, name) if b.path else value

    def _reuse(self, node: Node, outcome: NodeOutcome, key: str, fp: Mapping[str, Any], display: dict[str, Any],
               entry: CacheEntry, why: str) -> None:
        self.outputs[node.address] = entry.outputs
        rec = self.state.nodes.get(node.address)
        if rec is None or rec.key != key or rec.status != "succeeded":
            self._record(trusted(NodeRecord, address=node.address, task_name=node.task_name, key=key, fingerprint=fp,
                                 display=display, outputs=entry.outputs, status="succeeded", run_id=self.run.id,
                                 job_id=entry.job_id, finished_at=now(), reused_from=entry.run_id), None)
        outcome.result, outcome.detail = "reused", why
        self.reporter.event(outcome, why)
        self._stop_leftover(node.address, outcome, lambda: self._spec(node, key), "cache hit")

    def _spec(self, node: Node, key: str) -> JobSpec:
        # (trusted: every value is the engine's own, of the declared type; the containers are copied as
        # validation would have copied them, so a provider never holds the graph's or the keyer's own)
        return trusted(JobSpec, run_id=self.run.id, address=node.address, task_name=node.task_name, kind=node.kind,
                       command=node.command, job_config=dict(self.keyer.static_parts(node)[0]),
                       inputs=self._inputs(node), outputs=dict(node.outputs), attempt=1,
                       timeout_seconds=node.timeout_seconds, key=key,
                       python=dict(node.python) if node.python is not None else None,
                       export_specs=[dict(spec) for spec in node.export_specs],
                       project_root=self.graph.project_root, flow_file=self.graph.file, log_path="")

    def _stop_leftover(self, address: str, outcome: NodeOutcome, spec: Callable[[], JobSpec], why: str) -> None:
        """A job the interrupted run left running for a node that needs no run now (a cache hit, or gone from
        the flow) is stopped: on Domino it would go on billing for a result nobody reads."""
        job = self.attach.pop(address, None)
        if not job or not job.get("job_id"):
            return
        try:
            handle = self.provider.attach(job["job_id"], spec())
            if handle is not None:
                self.provider.stop(handle)
        except Exception as e:  # noqa: BLE001 - the node's outcome stands; say which job may still run
            self.reporter.event(outcome, f"warning: could not stop job {job['job_id']} left running by the "
                                         f"interrupted run: {_describe(e)}")
            return
        self.reporter.event(outcome, f"stopped job {job['job_id']} left running by the interrupted run "
                                     f"(not needed: {why})")

    def _forgotten_spec(self, address: str) -> JobSpec:
        """A node that left the flow has no spec left; a provider finds a leftover job by its id alone."""
        return JobSpec(run_id=self.run.id, address=address, task_name=address.rsplit("/", 1)[-1],
                       kind="domino_job", project_root=self.graph.project_root, flow_file=self.graph.file,
                       log_path="")

    # -- approval gates ------------------------------------------------------------------------
    def _gate(self, node: Node, outcome: NodeOutcome, key: str, fp: Mapping[str, Any], display: dict[str, Any]) -> None:
        """A gate whose upstreams are done: reused when this value was approved before; passed when its name is
        approved (--approve, or earlier in this run); otherwise it waits for the question at the end of the walk."""
        entry = self.state.cache.get(key)
        if entry is not None and node.address not in self.plan.replace:
            from reconcile.plan import approved_text
            self._reuse(node, outcome, key, fp, display, entry, approved_text(self.state, node.gate, entry.run_id))
            return
        name = node.gate or ""
        approval = self.run.approvals.get(name)
        if approval is None and name in self.opts.approve:
            approval = Approval(by=self.opts.approver)
        if approval is not None:
            self._pass_gate(node, outcome, key, fp, display, approval)
            return
        with self._lock:
            earlier = self.run.waiting.get(name)  # recover: the gate has waited since the run first reached it
            self.waiting.setdefault(name, earlier if earlier is not None and earlier.address == node.address else
                                    GateWait(address=node.address, timeout_seconds=node.timeout_seconds))
        outcome.detail = f"waits for approval (--approve {name})"
        outcome.result = AWAITING
        self.reporter.event(outcome, f"waits for approval: flows apply ... --approve {name}" +
                            (" (or answer below)" if self.ask is not None else ""))

    def _pass_gate(self, node: Node, outcome: NodeOutcome, key: str, fp: Mapping[str, Any], display: dict[str, Any],
                   approval: Approval) -> None:
        name = node.gate or ""
        if name not in self.run.approvals:
            # Durable before anything depends on it: a kill after the approval keeps it (recover goes on).
            self._journal(journal.GateApproved(run_id=self.run.id, name=name, approval=approval))
            self.run.approvals[name] = approval
        with self._lock:
            self.waiting.pop(name, None)
        self._record(trusted(NodeRecord, address=node.address, task_name=node.task_name, key=key, fingerprint=fp,
                             display=display, status="succeeded", run_id=self.run.id, finished_at=now()),
                     trusted(CacheEntry, key=key, task_name=node.task_name, address=node.address, outputs={},
                             run_id=self.run.id, fingerprint=fp) if node.cache else None)
        outcome.detail = f"approved by {approval.by} at {approval.at}"
        outcome.result = "succeeded"
        self.reporter.event(outcome, outcome.detail)

    def _answer_gates(self) -> bool:
        """Nothing else can run: put each unanswered gate's question (once per name) to a person. Whether any
        was answered (the walk then goes on)."""
        if self.ask is None:
            return False
        answered = False
        for name in list(self.waiting):
            wait = self.waiting[name]
            addresses = [a for a, o in self.outcomes.items() if o.result == AWAITING
                         and self.graph.nodes[a].gate == name]
            left = None
            if wait.timeout_seconds:
                waited = (dt.datetime.now(dt.timezone.utc) - dt.datetime.fromisoformat(wait.since)).total_seconds()
                left = max(0.0, wait.timeout_seconds - waited)
            answer = self.ask(GateQuestion(name=name, addresses=addresses, seconds_left=left,
                                           values=[self._gated_value(a) for a in addresses]))
            if answer == "unanswered":
                continue
            answered = True
            for address in addresses:
                outcome = self.outcomes[address]
                if answer == "approved":
                    node = self.graph.nodes[address]
                    key, fp, display = self._known[address]
                    self._pass_gate(node, outcome, key, fp, display,
                                    self.run.approvals.get(name) or Approval(by=self.opts.approver))
                    continue
                outcome.detail = (f"approval refused by {self.opts.approver}" if answer == "refused" else
                                  f"timed out: nobody approved it within {wait.timeout_seconds:g}s")
                self._record(self._failed_record(address, outcome), None)
                outcome.result = "failed"
                self.reporter.event(outcome, f"failed: {outcome.detail}")
            self.waiting.pop(name, None)
        return answered

    def _gated_value(self, address: str) -> str:
        """What a gate passes on, for the person asked: a value, or a file's type, digest and size."""
        b = self.graph.nodes[address].bindings["value"]
        rec = self.outputs.get(b.node or "", {}).get(b.output or "")
        if rec is None:
            return "?"
        if rec.value is not None or not is_blob(rec.type):
            return f"{b.node}.{b.output} = {rec.value!r}"
        return f"{b.node}.{b.output}: {rec.type} {rec.digest[:12]} ({rec.size} bytes; flows outputs '{b.node}')"

    def _blocking_gates(self, address: str) -> list[str]:
        """The unanswered gates (names) a node waits for, through any chain of upstreams."""
        names = []
        for up in self.graph.ancestors(address):
            if self.outcomes.get(up) is not None and self.outcomes[up].result == AWAITING:
                names.append(self.graph.nodes[up].gate or up)
        return sorted(set(names))

    def execute(self, address: str) -> None:
        node = self.graph.nodes[address]
        change = self.plan.node(address)
        outcome = self.outcomes[address]
        raw_fp, display = self.keyer.fingerprint(node, lambda a: self.outputs.get(a))
        key = cache_key(raw_fp)
        fp = Fingerprint(raw_fp)  # (its text made once, for the record and the cache entry alike)
        self._known[address] = (key, fp, display)
        if node.kind == "gate":
            self._gate(node, outcome, key, fp, display)
            return
        # Keyed only now (pending, or a new node whose key was known only after apply): a cache hit is reused.
        keyed_late = change is not None and (change.action == "pending" or change.key is None)
        if keyed_late and node.cache and address not in self.plan.replace:
            entry = self.state.cache.get(key)
            if entry is not None and self.presence.outputs_exist(entry.outputs):
                self._reuse(node, outcome, key, fp, display, entry, "early cutoff: inputs unchanged, cache hit")
                return
        spec = self._spec(node, key)
        first = self._attempt_spec(spec, address, 1)
        if not self.attach.get(address):  # (a job to re-attach to needs no folder)
            self.provider.prepare(first)  # while it waits for its slot
        slot = HeldSlot(self.slots, self._tickets.pop(address))
        slot.take()
        try:
            why_not = self._why_not_start()
            if why_not:  # a failure, a Ctrl-C or a lost lock while this node waited for a slot
                self._skip(address, why_not)
                return
            result, started_at, spec = self._run_attempts(address, node, key, spec, first, outcome, slot)
        finally:
            slot.give_back()  # before the record's fsync: the next job starts meanwhile
        outcome.finished = time.monotonic()
        if result.status == NOT_STARTED:  # held back by the provider: the apply stops
            self._skip(address, self._why_not_start() or result.error or STOPPED)
            return
        status = {"succeeded": "succeeded", "cancelled": "cancelled"}.get(result.status, "failed")
        if status == "failed" and not self.opts.keep_going:
            self.stopping = True  # before the record is durable: nothing new may start once a failure is seen
            self._hold_starts()
        # (trusted: made from the engine's own values; one fingerprint and one outputs dict for record and entry)
        record = trusted(NodeRecord, address=address, task_name=node.task_name, key=key, fingerprint=fp,
                         display=display, outputs=result.outputs if status == "succeeded" else {}, status=status,
                         run_id=self.run.id, job_id=outcome.job_id, started_at=started_at, finished_at=now(),
                         attempts=outcome.attempts, error=result.error, log=spec.log_path or None)
        entry = None
        if status == "succeeded" and node.cache:
            entry = trusted(CacheEntry, key=key, task_name=node.task_name, address=address, outputs=result.outputs,
                            run_id=self.run.id, job_id=outcome.job_id, fingerprint=fp)
        self._record(record, entry)
        if status == "succeeded":
            self.outputs[address] = result.outputs
        outcome.detail = result.error or ""
        outcome.log_tail = result.log_tail
        outcome.result = status  # last: the walk reads it without a lock
        self.reporter.event(outcome, status if status != "failed" else f"failed: {result.error}")

    def _run_attempts(self, address: str, node: Node, key: str, spec: JobSpec, first: JobSpec,
                      outcome: NodeOutcome, slot: HeldSlot) -> tuple["_Result", str, JobSpec]:
        """The node's job, with its retries, in a job slot: (result, started_at, the last attempt's spec)."""
        outcome.started = time.monotonic()
        began = time.time()  # (written out only for a job that did not start here: a re-attached one, or none)
        result: _Result | None = None
        for attempt in range(1, node.retries + 2):
            if self.cancel.is_set():
                result = _Result(status="cancelled", error="interrupted before it started")
                break
            spec = first if attempt == 1 else self._attempt_spec(spec, address, attempt)  # (the first: prepared)
            outcome.attempts = attempt
            tried = result
            result = self._attempt(address, key, spec, outcome, slot)
            if result.status == NOT_STARTED and tried is not None:  # a retry the stopping apply held back
                self.reporter.event(outcome, f"attempt {attempt} not started: {self._why_not_start() or result.error}")
                result = tried
                break
            for w in result.warnings:
                self.reporter.event(outcome, f"warning: {w}")
            if result.status in ("succeeded", "cancelled") or result.error_is_final:
                break
            if attempt <= node.retries:
                self.reporter.event(outcome, f"attempt {attempt} {result.status}: {result.error}; retrying")
        assert result is not None
        return result, outcome.started_at or at(began), spec

    def _attempt_spec(self, spec: JobSpec, address: str, attempt: int) -> JobSpec:
        log = f"{self._run_logs}/{safe_file_name(address)}.{attempt}.log"
        return spec.model_copy(update={"attempt": attempt, "log_path": log})

    @functools.cached_property
    def _run_logs(self) -> str:
        """The run's folder of job logs (a string: joined with a name per attempt)."""
        return str(self.logs_dir / self.graph.workflow / self.run.id)

    def _why_not_start(self) -> str | None:
        """Why a node handed to a worker must not start its job after all (None: it may)."""
        if self.stopping:
            return STOPPED
        if self.cancel.is_set():
            return "not started: apply interrupted"
        if self.lost_lock:
            return LOST_LOCK
        return None

    def _attempt(self, address: str, key: str, spec: JobSpec, outcome: NodeOutcome, slot: HeldSlot) -> "_Result":
        """One attempt: start (or re-attach), wait. A provider exception is this attempt's failure, and the job
        it may have left running is stopped, so the node is recorded as failed instead of vanishing."""
        handle = None
        try:
            handle = self._attached(address, key, spec) if spec.attempt == 1 else None
            if handle is not None:
                self.reporter.event(outcome, f"re-attached to running job {handle.job_id}")
                # The resumed run records the job too: a recover that dies in turn re-attaches to it again.
                self._journal(journal.NodeStarted(run_id=self.run.id, address=address, key=key, job_id=handle.job_id,
                                                  attempt=spec.attempt))
                outcome.job_id = handle.job_id
                outcome.result = "running"
                result = _Result.of(self.provider.wait(handle, spec, self.cancel, outcome.hear_status,
                                                        slot.give_back))
                if result.status in ("succeeded", "cancelled"):
                    return result
                # It ended badly while no apply watched it: what is left of a partial run runs again.
                self.reporter.event(outcome, f"re-attached job {handle.job_id} {result.status}: {result.error}; "
                                             "starting the node again")
                handle = None
            if handle is None:
                slot.take()  # a retry, or a start after a re-attached job ended: the slot was given back then
                if not self._may_start():
                    return _Result(status="cancelled", error=LOST_LOCK, error_is_final=True)
                if self.provider.jobs_outlive_the_process:
                    # A job that outlives this process may start and the process die before its id is
                    # journaled: this intent lets recover find it by run, node and attempt (no second start).
                    self._journal(journal.NodeStarting(run_id=self.run.id, address=address, key=key,
                                                       attempt=spec.attempt))
                try:
                    handle = self.provider.start(spec)
                except NotStartedError as e:  # (a provider that holds starts: it was told the apply stops)
                    return _Result(status=NOT_STARTED, error=e.message, error_is_final=True)
                if spec.attempt == 1:  # (a start may wait in the provider for a running job to end)
                    outcome.started, outcome.started_at = time.monotonic(), now()
                # A job that dies with this process need not have its start forced to disk (one fsync less
                # per node); the id of one that outlives it must survive anything, for recover to re-attach.
                self._journal(trusted(journal.NodeStarted, run_id=self.run.id, address=address, key=key,
                                      job_id=handle.job_id, attempt=spec.attempt),
                              durable=self.provider.jobs_outlive_the_process)
                self.reporter.event(outcome, f"started {handle.job_id}" +
                                    (f" (attempt {spec.attempt})" if spec.attempt > 1 else ""))
            outcome.job_id = handle.job_id
            outcome.result = "running"
            return _Result.of(self.provider.wait(handle, spec, self.cancel, outcome.hear_status, slot.give_back))
        except Exception as e:  # noqa: BLE001 - any provider error fails this node, never the whole apply
            if handle is not None:
                with contextlib.suppress(Exception):
                    self.provider.stop(handle)
            return _Result(status="failed", error=_describe(e), error_is_final=True)

    def _attached(self, address: str, key: str, spec: JobSpec) -> Any:
        """A job an interrupted run launched for this very key and that is still running, or None."""
        job = self.attach.get(address)
        if not job or not job.get("job_id"):
            return None
        if job.get("key") != key:
            # Launched for an older definition: its result would be stale for this plan. Stop it.
            handle = self.provider.attach(job["job_id"], spec)
            if handle is not None:
                self.provider.stop(handle)
            return None
        return self.provider.attach(job["job_id"], spec)

    # -- the walk ----------------------------------------------------------------------------
    def run_all(self) -> dict[str, NodeOutcome]:
        todo = self._settle_reused()
        slots = max(1, min(self.opts.parallelism, self.provider.max_parallel or self.opts.parallelism))
        # A provider that starts jobs itself as running ones end (StartQueue) takes a few starts ahead: a slot
        # then never waits for this process between two jobs. It still runs at most `slots` at once.
        ahead = self.provider.queue_starts(slots, self._held_until) if isinstance(self.provider, StartQueue) else 0
        self.slots = JobSlots(slots + ahead)
        # the extra threads prepare and record nodes while the slots run jobs
        workers = slots + ahead + min(slots, 4)
        running: set[str] = set()  # handed to a worker, not done
        trouble = False  # a node failed or was cancelled: every pass must look at every waiting node
        changed = True
        with NodeWorkers(workers, self._guarded, self._finished) as pool:
            while todo or running:
                if changed or self.cancel.is_set() or self.stopping or self.lost_lock:
                    self._hold_starts()
                    todo = self._pass(todo, running, pool, workers, thorough=trouble)
                if not running:
                    halted = self.cancel.is_set() or self.stopping or self.lost_lock
                    if self.waiting and not halted and self._answer_gates():
                        changed = trouble = True  # an answer: what waited on it may start (or be skipped)
                        continue
                    self._settle_unanswered(todo, halted)
                    break
                done = self._finished_nodes()
                changed = bool(done)
                for address in done:
                    running.discard(address)
                    trouble = trouble or self.outcomes[address].result in ("failed", "cancelled")
        return self.outcomes

    def _finished_nodes(self) -> list[str]:
        """The nodes the workers finished since the last look, waiting up to POLL for one."""
        try:
            done = [self._finished.get(timeout=POLL)]
        except queue.Empty:
            return []
        while True:
            try:
                done.append(self._finished.get_nowait())
            except queue.Empty:
                return done

    def _settle_unanswered(self, todo: list[str], halted: bool) -> None:
        """The walk is over: nodes left waiting for an unanswered gate are `blocked` (the run then ends `waiting`),
        unless the apply stopped anyway (then the gates were never asked: not started)."""
        for address, outcome in self.outcomes.items():
            if outcome.result == AWAITING and halted:
                self._skip(address, "not approved: the apply stopped (interrupted, or after a failure)")
        for address in todo:
            gates = self._blocking_gates(address)
            if gates:
                outcome = self.outcomes[address]
                outcome.result, outcome.detail = BLOCKED, f"waits for approval of {', '.join(gates)}"
                self.reporter.event(outcome, outcome.detail)
            else:  # nothing runs and nothing can start: never expected, never a hang
                self._skip(address, "not started: an upstream did not finish")
        if halted:
            self.waiting.clear()

    def _settle_reused(self) -> list[str]:
        """Outcomes for every planned node; plain cache hits are settled at once. Returns the rest, in order."""
        todo: list[str] = []
        for change in self.plan.nodes:
            if change.action == "forget":
                continue
            outcome = NodeOutcome(address=change.address, action=change.action)
            self.outcomes[change.address] = outcome
            if change.action == "reuse":
                outcome.queued = time.monotonic()
            if change.action != "reuse":
                todo.append(change.address)
                continue
            node = self.graph.nodes[change.address]
            entry = self.state.cache[change.key]  # type: ignore[index]
            rec = self.state.nodes.get(change.address)
            if rec is not None and rec.key == change.key and rec.status == "succeeded":
                self.outputs[change.address] = entry.outputs
                outcome.result = "reused"
                self.reporter.event(outcome, "reused")
                self._stop_leftover(node.address, outcome, lambda: self._spec(node, change.key), "cache hit")  # type: ignore[arg-type]
            else:  # a hit on an older result (a revert): the state must point at it from now on
                fp, display = self.keyer.fingerprint(node, lambda a: self.outputs.get(a))
                self._reuse(node, outcome, change.key, fp, display, entry,  # type: ignore[arg-type]
                            f"cache hit from run {entry.run_id}")
        for address in [a for a in self.attach if a not in self.graph.nodes]:
            self._stop_leftover(address, NodeOutcome(address=address, action="forget"),
                                lambda: self._forgotten_spec(address), "no longer in the flow")
        return todo

    def _pass(self, todo: list[str], running: set[str], pool: "NodeWorkers",
              workers: int, thorough: bool = True) -> list[str]:
        """One pass in dependency order: skip what can no longer run, start what is ready; return what waits.

        Unless `thorough` (something failed, was cancelled, or we are stopping), nothing needs skipping, so
        the pass ends as soon as every worker is busy: O(ready) per completion, not O(nodes)."""
        waiting: list[str] = []
        if not (thorough or self.cancel.is_set() or self.stopping or self.lost_lock):
            # Nothing failed, was cancelled or stops: a node either starts or waits (a pass per finished node).
            for i, address in enumerate(todo):
                if len(running) >= workers:
                    waiting.extend(todo[i:])
                    break
                if all(self.outcomes[u].result in DONE_OK for u in self._upstreams_of(address)):
                    self._submit(address, running, pool)
                else:
                    waiting.append(address)
            return waiting
        for address in todo:
            ups = [self.outcomes[u] for u in self._upstreams_of(address)]
            if any(u.result == "failed" or (u.result == "skipped" and u.detail == UPSTREAM_FAILED) for u in ups):
                self._skip(address, UPSTREAM_FAILED)
            elif self.cancel.is_set():
                self._skip(address, "not started: apply interrupted")
            elif self.lost_lock:
                self._skip(address, LOST_LOCK)
            elif any(u.result == "cancelled" for u in ups):
                self._skip(address, "skipped: upstream cancelled")
            elif self.stopping and not any(u.result == "running" for u in ups):
                # (an upstream still "running" may be the very node that failed, not yet settled: wait for it,
                # so its dependents say "upstream failed", not "stopped")
                self._skip(address, STOPPED)
            elif self.stopping:
                waiting.append(address)
            elif all(u.result in DONE_OK for u in ups) and len(running) < workers:
                self._submit(address, running, pool)
            else:
                waiting.append(address)
        return waiting

    def _submit(self, address: str, running: set[str], pool: "NodeWorkers") -> None:
        outcome = self.outcomes[address]
        outcome.result = "running"
        outcome.queued = time.monotonic()
        self._tickets[address] = self.slots.ticket()
        running.add(address)
        pool.submit(address)

    def _upstreams_of(self, address: str) -> list[str]:
        """The node's upstreams that are in this run (every planned node has an outcome from the start of the
        walk): computed once per node, not on every pass."""
        ups = self._upstreams.get(address)
        if ups is None:
            ups = self._upstreams[address] = [u for u in self.graph.nodes[address].upstreams() if u in self.outcomes]
        return ups

    def _guarded(self, address: str) -> None:
        ticket = self._tickets[address]
        try:
            self._execute_guarded(address)
        finally:
            self.slots.drop(ticket)  # when the node never asked for its slot

    def _execute_guarded(self, address: str) -> None:
        if self.stopping:  # a failure elsewhere while this node was being handed to a worker
            self._skip(address, STOPPED)
            return
        try:
            self.execute(address)
        except Exception as e:  # noqa: BLE001 - a bug or an input that vanished fails this node, never the state
            if not self.opts.keep_going:
                self.stopping = True
                self._hold_starts()
            outcome = self.outcomes[address]
            outcome.finished = time.monotonic()
            outcome.detail = _describe(e)
            with contextlib.suppress(Exception):  # the journal itself may be what failed
                self._record(self._failed_record(address, outcome), None)
            outcome.result = "failed"
            self.reporter.event(outcome, f"failed: {outcome.detail}")

    def _failed_record(self, address: str, outcome: NodeOutcome) -> NodeRecord:
        """A failure outside any job: the key as far as it was computed (else the previous record's), so the
        next plan says "failed last time" with the reason."""
        node = self.graph.nodes[address]
        previous = self.state.nodes.get(address)
        key, fp, display = self._known.get(address) or (
            (previous.key, previous.fingerprint, previous.display) if previous else (None, {}, {}))
        return NodeRecord(address=address, task_name=node.task_name, key=key, fingerprint=fp, display=display,
                          status="failed", run_id=self.run.id, job_id=outcome.job_id, finished_at=now(),
                          attempts=outcome.attempts, error=outcome.detail)

    def _skip(self, address: str, why: str) -> None:
        outcome = self.outcomes[address]
        outcome.result, outcome.detail = "skipped", why
        self.reporter.event(outcome, why)


@dataclasses.dataclass
class _Result:
    """A job attempt's result as the scheduler sees it; `error_is_final`: retrying cannot help."""

    status: str
    outputs: dict[str, OutputRecord] = dataclasses.field(default_factory=dict)
    error: str | None = None
    log_tail: str = ""
    warnings: list[str] = dataclasses.field(default_factory=list)
    error_is_final: bool = False

    @classmethod
    def of(cls, r: JobResult) -> "_Result":
        return cls(status=r.status, outputs=r.outputs, error=r.error, log_tail=r.log_tail, warnings=r.warnings)


def _describe(e: Exception) -> str:
    """One line for an unexpected exception: a FlowsError's own message, else its type and text."""
    if isinstance(e, FlowsError):
        return e.message
    return f"{type(e).__name__}: {e}".splitlines()[0]


def counts_of(outcomes: dict[str, NodeOutcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes.values():
        counts[o.result] = counts.get(o.result, 0) + 1
    return counts


def outcome_of(outcomes: dict[str, NodeOutcome], cancelled: bool) -> str:
    # A Ctrl-C that came after the last node finished interrupted nothing: the run is what its nodes are.
    if cancelled and any(o.result in ("cancelled", "skipped") for o in outcomes.values()):
        return "interrupted"
    if any(o.result in ("failed", "skipped", "cancelled") for o in outcomes.values()):
        return "failed"
    if any(o.result in (AWAITING, BLOCKED) for o in outcomes.values()):
        return "waiting"
    return "succeeded"


def start_run(flow: str, graph: FlowGraph, flow_digest: str, provider: str, inputs: dict[str, Any],
              run_id: str | None = None) -> RunRecord:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    from reconcile.lineage import run_graph  # artifacts + input edges, for `flows artifacts` / `flows lineage`
    return RunRecord(id=run_id or new_run_id(), flow=flow, flow_file=graph.file, flow_digest=flow_digest,
                     user=user, host=socket.gethostname(), pid=os.getpid(), provider=provider, inputs=inputs,
                     **run_graph(graph))


def execute_plan(*, graph: FlowGraph, plan: Plan, state: State, keyer: NodeKeyer, provider: Provider,
                 blobs: BlobStore,
                 lease: Lease, run: RunRecord, logs_dir: Path, opts: ApplyOptions, reporter: Reporter,
                 cancel: threading.Event, on_start: Callable[[], None] | None = None,
                 attach: dict[str, dict[str, Any]] | None = None, resumed: bool = False,
                 ask: AskApproval | None = None) -> tuple[dict[str, NodeOutcome], State]:
    """Run the plan; the run record and every node result are journaled; the state is written at the end.

    `resumed`: `run` is an earlier, partial run that recover finishes under the same id. `ask`: how an approval
    gate nobody approved in advance (`opts.approve`) is put to a person; without it such a gate ends the run
    `waiting`.
    """
    if resumed:
        lease.append(journal.RunResumed(run_id=run.id))
    else:
        lease.append(journal.RunStarted(run=run))
        state.runs[run.id] = run
    scheduler = Scheduler(graph=graph, plan=plan, state=state, keyer=keyer, provider=provider, blobs=blobs,
                          lease=lease, run=run, logs_dir=logs_dir, opts=opts, reporter=reporter, cancel=cancel,
                          attach=attach, ask=ask)
    reporter.attach(scheduler.outcomes)
    if on_start:
        on_start()
    outcomes = scheduler.run_all()
    outcome = outcome_of(outcomes, cancel.is_set())
    if resumed and outcome == "succeeded":
        outcome = "recovered"
    failures = [f"{o.address}: {o.detail}" for o in outcomes.values() if o.result == "failed"]
    if scheduler.lost_lock:
        outcome = "interrupted"
    waiting = scheduler.waiting if outcome == "waiting" else {}
    lease.append(journal.RunFinished(run_id=run.id, outcome=outcome, counts=counts_of(outcomes),
                                     error="; ".join(failures)[:500] or None, waiting=waiting))
    forget = [c.address for c in plan.nodes if c.action == "forget"]
    final = lease.finish(forget)  # raises LockLostError when the lock was lost: nothing is written then
    run_timeline.write_from_outcomes(run_timeline.timeline_path(logs_dir, graph.workflow, run.id),
                                     graph=graph, plan=plan, run=run, outcomes=outcomes, state=final)
    return outcomes, final
