"""The one owner of a flow's state (as Terraform's remote-state `State` is over its dumb storage client).

Backends move bytes. `StateStore` alone parses and serialises the state and the journal, masks what
leaves the process, bumps the serial, keeps the lineage, folds the journal, settles dead runs, and fences:

- Reading (`view`) never locks: a journal left by a crashed apply is folded in memory, and a run whose apply
  is gone shows as interrupted.
- Every change happens under a `Lease` (`store.lock(...)`): the lock, renewed while it is held. Taking it
  folds what a dead holder left in the journal; taking over (breaking an expired lock, or after a force
  unlock) also raises the state's `fence` to a new generation, in the same compare-and-swap. A holder
  writes only with If-Match on the version it read and only while the state's fence is its own generation,
  so a holder that lost its lock can never write, however long it slept.
- A write or lock whose answer was lost is settled by reading back (our bytes? our lock nonce?) before
  saying what happened.
- Masking never touches what recovery needs: a run's inputs whose recorded values get masked keep a
  (slow, salted) digest, so recover can ask for them again and check them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import re
import threading
import time
from typing import Any, Callable, Container, Iterator

from vocab.canonical import canonical_json
from vocab.errors import FlowsError, LockHeldError, StateError
from vocab.masking import redact, redact_bytes, redact_obj, secret_values
from state.backend import Backend, HistoryEntry, LockInfo, LockLostError
from state.journal import JournalRecord, RunStarted, dump_record, fold, parse_record
from state.model import RunRecord, State, parse_state


@dataclasses.dataclass
class StateView:
    """The state as stored (`stored`, `etag`), and with any leftover journal folded in (`state`)."""

    state: State
    stored: State | None
    etag: str | None
    journal: list[JournalRecord]
    lock: LockInfo | None
    rekeyed: int = 0  # set by the engine: recorded keys of an earlier key schema it re-keyed in memory


def settle_dead_runs(state: State, lock: LockInfo | None, *, holding: bool = False) -> None:
    """Runs still `running` whose apply is gone become `interrupted`: under our own lock (`holding`) every one of
    them; otherwise those without a live lock of their own (none, another run's, lease expired, holder gone)."""
    for run in state.runs.values():
        if run.outcome != "running":
            continue
        if holding or lock is None or lock.run_id != run.id or lock.expired() or lock.holder_gone():
            run.outcome = "interrupted"


def timed_out_gates(state: State, at: dt.datetime | None = None) -> list[tuple[RunRecord, str]]:
    """(run, gate name) of every `waiting` run's gate whose timeout has passed unanswered."""
    when = at or dt.datetime.now(dt.timezone.utc)
    out = []
    for run in state.runs.values():
        if run.outcome == "waiting":
            out += [(run, name) for name, wait in run.waiting.items()
                    if (deadline := wait.deadline()) is not None and deadline <= when]
    return out


def settle_timed_out_gates(state: State, at: dt.datetime | None = None) -> bool:
    """A waiting run whose approval gate timed out unanswered has failed, as Flyte fails the execution; its
    `waiting` is cleared (recover asks again, with a fresh timeout). Whether anything changed."""
    found = timed_out_gates(state, at)
    for run, name in found:
        wait = run.waiting.pop(name)
        run.outcome = "failed"
        why = (f"approval gate '{name}' ({wait.address}) timed out: nobody approved it within "
               f"{wait.timeout_seconds:g}s of {wait.since}")
        run.error = f"{run.error}; {why}" if run.error and why not in run.error else why
    return bool(found)


def masked_input_digest(run_id: str, name: str, value: Any) -> str:
    """A salted, slow digest of a masked input's value: enough to check a value given again, useless for
    guessing a short secret offline."""
    text = canonical_json(value, ascii=True).encode()
    salt = f"flows-input:{run_id}:{name}".encode()
    return "scrypt:" + hashlib.scrypt(text, salt=salt, n=2 ** 14, r=8, p=1, dklen=32).hex()


def note_masked_inputs(run: RunRecord) -> None:
    """Record a digest for every input whose value masking would change (before it is masked)."""
    for name, value in run.inputs.items():
        if name not in run.masked_inputs and redact_obj(value) != value:
            run.masked_inputs[name] = masked_input_digest(run.id, name, value)


class StateStore:
    def __init__(self, backend: Backend, flow: str, lease_seconds: float = 120.0) -> None:
        self.backend, self.flow, self.lease_seconds = backend, flow, lease_seconds

    def describe(self) -> str:
        return self.backend.describe(self.flow)

    # -- serialising (the only place that masks what is stored) -------------------------------------
    def serialise(self, state: State) -> bytes:
        return b"".join(self.serialise_parts(state))

    def serialise_parts(self, state: State) -> Iterator[bytes]:
        """The stored document in pieces, masked piece by piece (made as they are written: never held whole). A
        secret is found inside one JSON string, and pieces end between lines, where no string is; a secret
        with a line break (never in JSON text as such) makes the whole document masked at once, as it was."""
        for run in state.runs.values():
            note_masked_inputs(run)
        values = secret_values()  # (once for the document, not once per piece)
        if any("\n" in value for value in values):
            return iter((redact_bytes(state.to_json_bytes(), values),))
        return (redact_bytes(part, values) for part in state.to_json_parts())

    def record_bytes(self, record: JournalRecord) -> bytes:
        if isinstance(record, RunStarted):
            note_masked_inputs(record.run)
        return redact(dump_record(record)).encode()

    # -- reading, without the lock ------------------------------------------------------------------
    def read(self) -> tuple[State | None, str | None]:
        data, etag = self.backend.read_bytes(self.flow)
        if data is None:
            return None, None
        return parse_state(data, self.describe()), etag

    def records(self) -> list[JournalRecord]:
        return list(self.iter_records())

    def iter_records(self, known_runs: Container[str] = ()) -> Iterator[JournalRecord]:
        """The journal's records, parsed one at a time (folding them as they come never holds them all).
        `known_runs`: the start records of these runs are skipped unparsed: folding one into a state that has its
        run changes nothing, and it holds the whole run (every node's input sources: 10,000 of them)."""
        where = self.describe() + " (journal)"
        for data in self.backend.journal_read(self.flow):
            if known_runs and _started_run(data) in known_runs:
                continue
            try:
                raw = json.loads(data)
            except ValueError:
                break  # a damaged record (a torn write): everything before it is intact
            yield parse_record(raw, where)

    def view(self) -> StateView:
        """Read without locking; a journal left by a crashed apply is folded in memory (not written)."""
        stored, etag = self.read()
        records = self.records()
        base = stored or State(flow=self.flow)
        state = fold(base, records) if records else base  # (fold works on a copy)
        lock = None
        if records or _any_running(state):
            lock = self.backend.read_lock(self.flow)
            if not records:
                state = state.model_copy(deep=True)  # `stored` stays as stored
            settle_dead_runs(state, lock)
        if timed_out_gates(state):
            if state is stored:
                state = state.model_copy(deep=True)  # `stored` stays as stored
            settle_timed_out_gates(state)
        return StateView(state=state, stored=stored, etag=etag, journal=records, lock=lock)

    def read_lock(self) -> LockInfo | None:
        return self.backend.read_lock(self.flow)

    def history(self) -> list[HistoryEntry]:
        return self.backend.history(self.flow)

    def read_version(self, version_id: str) -> State:
        data, source = self.backend.read_version_bytes(self.flow, version_id)
        return parse_state(data, source)

    # -- locking ------------------------------------------------------------------------------------
    def lock(self, operation: str, *, run_id: str | None = None, timeout: float = 0.0,
             break_expired: bool = False) -> "Lease":
        """Take the lock (see Backend.lock) and, under it, fold what a dead holder left; a takeover fences."""
        info = self.backend.lock(self.flow, LockInfo(operation=operation, run_id=run_id), timeout=timeout,
                                 break_expired=break_expired)
        started = time.monotonic()
        lease = Lease(self, info, valid_from=started)
        try:
            lease._take_over_state(fence="(broke " in info.operation)
        except BaseException:
            with contextlib.suppress(FlowsError):
                self.backend.unlock(self.flow, info.id)
            raise
        return lease

    def force_unlock(self, lock_id: str, operation: str = "unlock") -> LockInfo | None:
        """Release someone else's lock (its holder is gone, or so a person says) and fence the state, so that
        holder can never write again should it come back."""
        held = self.backend.read_lock(self.flow)
        self.backend.unlock(self.flow, lock_id)
        with contextlib.suppress(LockHeldError):  # someone took the lock at once: their takeover fences
            lease = self.backend.lock(self.flow, LockInfo(operation=f"{operation} (fences {lock_id})"))
            mine = Lease(self, lease, valid_from=time.monotonic())
            try:
                mine._take_over_state(fence=True)
            finally:
                mine.release()
        return held

    @contextlib.contextmanager
    def locked(self, operation: str, timeout: float = 0.0) -> Iterator["Lease"]:
        lease = self.lock(operation, timeout=timeout)
        try:
            yield lease
        finally:
            lease.release()

    def mutate(self, operation: str, change: Callable[[State], None]) -> State:
        """Lock, fold any leftover journal, apply `change`, write with serial + 1 (the previous version is kept)."""
        with self.locked(operation) as lease:
            if lease.etag is None:
                raise StateError(f"flow '{self.flow}' has no state yet")
            state = lease.state.model_copy(deep=True)
            change(state)
            return lease.commit(state)


_RUN_STARTED = re.compile(rb'^\{"v":\d+,"fence":(?:\d+|null),"type":"run_started","run":\{"id":"([^"\\]*)"')


def _started_run(data: bytes) -> str | None:
    """The run id of a `run_started` record as this flows writes it (fields in their declared order), else None."""
    found = _RUN_STARTED.match(data)
    return found.group(1).decode() if found else None


def _any_running(state: State | None) -> bool:
    return state is not None and any(r.outcome == "running" for r in state.runs.values())


class Lease:
    """The lock of one flow, held: the only way to change its state. Renew it while working (`keep_alive`),
    ask `holds()` before starting anything, `commit` a changed state, `release` at the end."""

    def __init__(self, store: StateStore, info: LockInfo, valid_from: float) -> None:
        self.store, self.info = store, info
        self.generation = 0
        self.state: State = State(flow=store.flow)
        self.etag: str | None = None
        self.stored: State | None = None
        self.lost: str | None = None  # why the lock is known lost
        self._valid_until = valid_from + store.lease_seconds
        self._mutex = threading.Lock()
        self.renew_error: Exception | None = None

    @property
    def backend(self) -> Backend:
        return self.store.backend

    @property
    def flow(self) -> str:
        return self.store.flow

    # -- taking the state over ----------------------------------------------------------------------
    def _take_over_state(self, *, fence: bool) -> None:
        """Fold what a dead holder left in the journal (its runs are interrupted) and, on a takeover, raise the
        fence to a new generation: both in one compare-and-swap write, retried if the old holder wrote first."""
        for _ in range(5):
            stored, etag = self.store.read()
            records = self.store.records()
            self.stored = stored  # as found, before folding (a saved plan was made against this)
            base = stored or State(flow=self.flow)
            self.generation = base.fence + (1 if fence else 0)
            state = fold(base, records) if records else base
            dead = _any_running(state)
            settle_dead_runs(state, None, holding=True)
            settle_timed_out_gates(state)  # (written with the next commit)
            self.state, self.etag = state, etag
            if not records and not fence and not dead:
                return
            try:
                self.commit(state, bump=bool(records))
            except LockLostError:
                raise
            except StateError:
                continue  # the old holder wrote between our read and our write: fold again
            if records:
                self.backend.journal_clear(self.flow, lock_id=self.info.id)
            return
        raise StateError("could not take over the state: it keeps changing under the lock",
                         file=self.store.describe())

    # -- the journal ----------------------------------------------------------------------------------
    def append(self, record: JournalRecord, durable: bool = True) -> None:
        record.fence = self.generation
        self.backend.journal_append(self.flow, self.store.record_bytes(record), durable)

    # -- writing ------------------------------------------------------------------------------------
    def commit(self, state: State, *, bump: bool = True) -> State:
        """Write `state` (serial + 1 unless `bump` is False) with proof of holding the lock: If-Match on the
        version this lease read or wrote, whose fence is this lease's generation."""
        state.fence = self.generation
        if bump:
            state.serial = max(state.serial, self.state.serial if self.etag else 0) + 1
        error: FlowsError | None = None
        try:
            etag = self.backend.write_parts(self.flow, self.store.serialise_parts(state), self.etag,
                                            serial=state.serial, lineage=state.lineage, lock_id=self.info.id)
        except FlowsError as e:  # no answer: the write may or may not have landed
            etag, error = None, e
        if etag is None:
            etag = self._settle_unanswered(self.store.serialise(state), error)
        self.state, self.etag = state, etag
        return state

    def _settle_unanswered(self, data: bytes, error: FlowsError | None) -> str:
        """A write that was refused or not answered: read back and say what really happened."""
        try:
            stored_data, stored_etag = self.backend.read_bytes(self.flow)
        except FlowsError:
            if error is not None:
                raise StateError(f"{error.message}; whether the state was written is unknown (it could not be "
                                 "read back). Run `flows state pull` to see it.", file=error.file) from None
            raise
        if stored_data == data and stored_etag is not None:
            return stored_etag  # our write landed; only its answer was lost
        holder = self.backend.read_lock(self.flow)
        stored_fence = parse_state(stored_data, self.store.describe()).fence if stored_data else 0
        if stored_fence > self.generation or holder is None or holder.id != self.info.id:
            self.lost = self.lost or _who_holds(holder)
            raise LockLostError(self.lost_message(), file=self.store.describe())
        if error is not None:
            raise error
        raise StateError("the state changed since it was read (another writer); nothing was written. "
                         "Run the command again.", file=self.store.describe())

    def lost_message(self) -> str:
        return (f"lost the state lock {self.info.id} ({self.lost or 'taken over'}); nothing was written to the "
                "state. Results of nodes that finished are in the journal (the next command keeps them as cache "
                "entries). See `flows runs list`.")

    def finish(self, forget: list[str] = ()) -> State:  # type: ignore[assignment]
        """Fold this lease's journal into the state (serial + 1), forget nodes, write, then clear the journal (only
        while the lock is still ours: resumed after a takeover, this holder must not delete the new holder's).

        The records are read back (masked, as written) and folded into the lease's own state, which is not used
        afterwards: folding is idempotent, so a failed write leaves the journal for the next command to fold."""
        state = fold(self.state, self.store.iter_records(known_runs=set(self.state.runs)), copy=False)
        for address in forget:
            state.nodes.pop(address, None)
        self.commit(state)
        self.backend.journal_clear(self.flow, lock_id=self.info.id)
        return state

    # -- the lease ----------------------------------------------------------------------------------
    def renew(self) -> None:
        with self._mutex:
            if self.lost:
                raise LockLostError(self.lost_message(), file=self.store.describe())
            sent = time.monotonic()
            try:
                self.info = self.backend.renew(self.flow, self.info)
            except LockLostError:
                self.lost = _who_holds(self.backend.read_lock(self.flow))
                raise LockLostError(self.lost_message(), file=self.store.describe()) from None
            self._valid_until = sent + self.store.lease_seconds

    def holds(self) -> bool:
        """Whether this process provably still holds the lock: its lease has not run out by this machine's
        clock (renewing now if the renewal is overdue). False as soon as that cannot be shown."""
        if self.lost:
            return False
        if time.monotonic() < self._valid_until - self.store.lease_seconds / 3:
            return True
        try:
            self.renew()
        except FlowsError as e:
            self.renew_error = e
            return not self.lost and time.monotonic() < self._valid_until
        return True

    def held_until(self) -> float | None:
        """Until when (time.monotonic(), the same clock in every process of this machine) this process can show it
        holds the lock without renewing again; None when it cannot show it now (`holds`, which renews if due)."""
        return self._valid_until if self.holds() else None

    @contextlib.contextmanager
    def keep_alive(self) -> Iterator["Lease"]:
        """Renew the lease in the background while the body runs, so a crashed holder's lock expires."""
        stop = threading.Event()
        interval = max(self.store.lease_seconds / 3.0, 0.05)

        def run() -> None:
            while not stop.wait(interval) and not self.lost:
                try:
                    self.renew()
                except FlowsError as e:  # a lost lock stops new starts (holds); a blip is retried
                    self.renew_error = e

        thread = threading.Thread(target=run, name="lease", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()

    def release(self) -> None:
        with contextlib.suppress(FlowsError):  # already released, or taken over (then said elsewhere)
            self.backend.unlock(self.flow, self.info.id)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _who_holds(holder: LockInfo | None) -> str:
    if holder is None:
        return "the lock was released by someone else"
    return f"now {holder.describe()}"
