"""The Backend protocol, the same tests for the local file backend and the S3 backend (moto's server).

Also: S3 failures as clear one-line errors, and 8 processes racing on one flow's lock and state.
"""
from __future__ import annotations

import gc
import json
import multiprocessing as mp
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vocab.errors import ConfigError, LockHeldError, StateError
from state.backend import LockInfo
from state.local import LocalBackend
from state.model import STATE_VERSION, RunRecord, State, parse_state
from tests.fixtures.s3 import FAKE_SECRET, Canned, S3Env, aws_env
from tests.fixtures.waiting import wait_until

FLOW = "wf"


@dataclass
class Kit:
    kind: str
    make: Callable[..., Any]                    # a new backend instance on the same storage (another "process")
    put_raw: Callable[[str, bytes, str], None]  # (flow, bytes, "state" | "lock"): bypass the backend
    spec: tuple[str, ...]                       # how a child process builds its own backend


@pytest.fixture(params=["local", "s3"])
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Kit:
    if request.param == "local":
        root = tmp_path / "state"

        def put_local(flow: str, data: bytes, what: str) -> None:
            root.mkdir(parents=True, exist_ok=True)
            (root / f"{flow}{'.json' if what == 'state' else '.lock'}").write_bytes(data)

        return Kit("local", lambda lease_seconds=30.0: LocalBackend(root, lease_seconds=lease_seconds), put_local,
                   ("local", str(root)))
    env: S3Env = request.getfixturevalue("s3")

    def put_s3(flow: str, data: bytes, what: str) -> None:
        env.client.put_object(Bucket=env.bucket, Key=f"flows/{flow}.json" + (".lock" if what == "lock" else ""),
                              Body=data)

    return Kit("s3", lambda lease_seconds=30.0: env.backend(lease_seconds=lease_seconds, poll_seconds=0.05), put_s3,
               ("s3", env.endpoint, env.bucket))


# Backends move bytes; these helpers parse and serialise as the StateStore does (without masking).
def read(b: Any, flow: str = FLOW) -> tuple[State | None, str | None]:
    data, etag = b.read_bytes(flow)
    return (parse_state(data, b.describe(flow)) if data is not None else None), etag


def write(b: Any, state: State, etag: str | None, flow: str = FLOW) -> str:
    new = b.write_bytes(flow, state.to_json().encode(), etag, serial=state.serial, lineage=state.lineage)
    if new is None:
        raise StateError("the state changed since it was read")
    return new


def read_version(b: Any, version_id: str) -> State:
    return parse_state(*b.read_version_bytes(FLOW, version_id))


def record(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def records(b: Any, flow: str = FLOW) -> list[dict[str, Any]]:
    return [json.loads(r) for r in b.journal_read(flow)]


def poll(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    wait_until(condition, timeout, interval=0.02)


def bump(state: State) -> State:
    return state.model_copy(update={"serial": state.serial + 1})


# -- state: read, write, compare-and-swap -----------------------------------------------------------
def test_read_missing_then_create_and_read_back(kit: Kit) -> None:
    b = kit.make()
    assert read(b) == (None, None)
    etag = write(b, State(flow=FLOW, serial=1), None)
    state, etag2 = read(kit.make())
    assert state is not None and state.serial == 1 and state.flow == FLOW
    assert etag2 == etag


def test_write_against_a_stale_etag_is_refused_and_nothing_is_lost(kit: Kit) -> None:
    a, b = kit.make(), kit.make()
    write(a, State(flow=FLOW, serial=1), None)
    state_a, etag_a = read(a)
    state_b, etag_b = read(b)
    assert state_a and state_b
    write(b, bump(state_b), etag_b)  # b wins the race
    with pytest.raises(StateError, match="changed since it was read"):
        write(a, bump(state_a).model_copy(update={"runs": {}}), etag_a)
    assert read(a)[0].serial == 2  # b's update is intact


def test_creating_a_state_that_exists_is_refused(kit: Kit) -> None:
    b = kit.make()
    write(b, State(flow=FLOW, serial=1), None)
    with pytest.raises(StateError, match="changed since it was read"):
        write(kit.make(), State(flow=FLOW, serial=1), None)


@pytest.mark.parametrize("data, message", [
    (b"{not json", "not valid JSON"),
    (json.dumps({"version": STATE_VERSION + 1, "tool_version": "9.0", "flow": FLOW}).encode(), "newer flows"),
    (json.dumps({"version": STATE_VERSION, "flow": FLOW, "serial": "many"}).encode(), "serial"),
])
def test_corrupt_or_future_state_is_a_clear_error_naming_where(kit: Kit, data: bytes, message: str) -> None:
    kit.put_raw(FLOW, data, "state")
    b = kit.make()
    with pytest.raises(StateError, match=message) as err:
        read(b)
    assert b.describe(FLOW) in str(err.value)
    assert gc.isenabled(), "parsing switches the cyclic GC off for a moment, never for good"


def test_flow_names_are_checked(kit: Kit) -> None:
    with pytest.raises(StateError, match="not a valid flow name"):
        read(kit.make(), "../escape")


def test_list_flows_shows_states_not_locks_or_journals(kit: Kit) -> None:
    b = kit.make()
    for flow in ("alpha", "beta"):
        write(b, State(flow=flow), None, flow)
    b.lock("alpha", LockInfo())
    b.journal_append("beta", record({"type": "x"}))
    b.lock("gamma", LockInfo())  # locked but no state yet
    assert b.list_flows() == ["alpha", "beta"]


# -- lock and lease ------------------------------------------------------------------------------
def test_a_held_lock_is_refused_with_the_holders_info(kit: Kit) -> None:
    holder = kit.make().lock(FLOW, LockInfo(operation="apply", run_id="run-1"))
    assert holder.expires is not None
    with pytest.raises(LockHeldError) as err:
        kit.make().lock(FLOW, LockInfo(operation="apply"))
    text = str(err.value)
    for part in (holder.id, holder.who, holder.host, "run-1", f"flows state unlock {holder.id}"):
        assert part in text
    assert kit.make().read_lock(FLOW) == holder


def test_lock_with_timeout_waits_for_the_release(kit: Kit) -> None:
    a, b = kit.make(), kit.make()
    held = a.lock(FLOW, LockInfo())
    release = threading.Timer(0.3, a.unlock, args=(FLOW, held.id))  # the holder finishes a bit later
    release.start()
    try:
        mine = b.lock(FLOW, LockInfo(operation="second"), timeout=10)
    finally:
        release.join()
    assert b.read_lock(FLOW).id == mine.id


def test_lock_with_timeout_gives_up_at_the_deadline(kit: Kit) -> None:
    kit.make().lock(FLOW, LockInfo())
    start = time.monotonic()
    with pytest.raises(LockHeldError):
        kit.make().lock(FLOW, LockInfo(), timeout=0.4)
    assert 0.4 <= time.monotonic() - start < 5


def test_a_live_lease_is_not_taken_over(kit: Kit) -> None:
    held = kit.make(lease_seconds=30).lock(FLOW, LockInfo())
    with pytest.raises(LockHeldError):
        kit.make().lock(FLOW, LockInfo(), break_expired=True)
    assert kit.make().read_lock(FLOW).id == held.id


def test_an_expired_lease_is_taken_over_and_says_whose(kit: Kit) -> None:
    a = kit.make(lease_seconds=0.5)
    first = a.lock(FLOW, LockInfo(operation="apply"))
    with pytest.raises(LockHeldError):  # expired or not, nobody takes over without asking
        kit.make().lock(FLOW, LockInfo(), timeout=1.0)
    b = kit.make()
    taken = b.lock(FLOW, LockInfo(operation="apply"), timeout=10, break_expired=True)  # polls until it expires
    assert first.expired()
    assert "broke" in taken.operation and first.id in taken.operation
    assert b.read_lock(FLOW).id == taken.id
    with pytest.raises(StateError, match="lost the state lock"):  # the old holder learns it lost the lock
        a.renew(FLOW, first)
    with pytest.raises(StateError, match="does not match"):
        a.unlock(FLOW, first.id)
    assert b.read_lock(FLOW).id == taken.id


def test_of_many_breakers_exactly_one_wins(kit: Kit) -> None:
    first = kit.make(lease_seconds=0.3).lock(FLOW, LockInfo())
    poll(first.expired)
    backends = [kit.make() for _ in range(8)]
    start = threading.Barrier(len(backends))
    won: list[LockInfo] = []
    refused: list[LockHeldError] = []

    def breaker(b: Any) -> None:
        start.wait()
        try:
            won.append(b.lock(FLOW, LockInfo(), break_expired=True))
        except LockHeldError as e:
            refused.append(e)

    threads = [threading.Thread(target=breaker, args=(b,)) for b in backends]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 7
    assert kit.make().read_lock(FLOW).id == won[0].id


def test_renew_extends_the_lease_past_the_original_end(kit: Kit) -> None:
    first = kit.make(lease_seconds=0.3).lock(FLOW, LockInfo())
    renewed = kit.make(lease_seconds=30).renew(FLOW, first)  # the holder's heartbeat
    assert renewed.id == first.id and renewed.expires > first.expires
    poll(first.expired)  # the original lease is over, the renewed one is not
    with pytest.raises(LockHeldError):
        kit.make().lock(FLOW, LockInfo(), break_expired=True)
    assert kit.make().read_lock(FLOW).expires == renewed.expires


def test_unlock_checks_the_id(kit: Kit) -> None:
    b = kit.make()
    held = b.lock(FLOW, LockInfo())
    with pytest.raises(StateError, match="does not match"):
        b.unlock(FLOW, "someone-else")
    assert b.read_lock(FLOW).id == held.id
    b.unlock(FLOW, held.id)
    assert b.read_lock(FLOW) is None
    with pytest.raises(StateError, match="not locked"):
        b.unlock(FLOW, held.id)
    b.lock(FLOW, LockInfo())  # free again


def test_an_unreadable_lock_is_held_until_force_unlocked(kit: Kit) -> None:
    kit.put_raw(FLOW, b"garbage", "lock")
    b = kit.make()
    with pytest.raises(LockHeldError, match="unreadable"):
        b.lock(FLOW, LockInfo(), break_expired=True)
    b.unlock(FLOW, "unreadable")
    b.lock(FLOW, LockInfo())


# -- history -------------------------------------------------------------------------------------
def test_history_lists_versions_and_reads_an_old_one(kit: Kit) -> None:
    b = kit.make()
    etag = write(b, State(flow=FLOW, serial=1), None)
    state = read(b)[0]
    for _ in range(2):
        state = bump(state)
        etag = write(b, state, etag)
    entries = b.history(FLOW)
    assert [e.serial for e in entries] == [3, 2, 1]
    assert entries[0].latest and not any(e.latest for e in entries[1:])
    assert all(e.lineage == state.lineage and e.modified for e in entries)
    old = read_version(b, entries[-1].version_id)
    assert old.serial == 1 and old.lineage == state.lineage
    assert read_version(b, "latest").serial == 3
    with pytest.raises(StateError, match="no version"):
        read_version(b, "no-such-version")


# -- journal -------------------------------------------------------------------------------------
def test_a_flow_with_only_a_journal_is_listed(kit: Kit) -> None:
    b = kit.make()
    write(b, State(flow="other"), None, "other")
    b.journal_append(FLOW, record({"type": "run_started"}))  # its first apply crashed before writing any state
    assert b.list_flows() == sorted({"other", FLOW})


def test_journal_append_read_in_order_and_clear(kit: Kit) -> None:
    b = kit.make()
    etag = write(b, State(flow=FLOW), None)
    wanted = [{"type": "node_finished", "n": i} for i in range(12)]  # > 10: order is numeric, not textual
    for r in wanted:
        b.journal_append(FLOW, record(r))
    assert records(kit.make()) == wanted
    assert read(b)[1] == etag  # appending never rewrites the state
    b.journal_clear(FLOW)
    assert records(b) == []
    b.journal_append(FLOW, record({"type": "again"}))
    assert records(kit.make()) == [{"type": "again"}]


def test_journal_clear_for_a_lock_no_longer_held_deletes_nothing(kit: Kit) -> None:
    b = kit.make()
    old = b.lock(FLOW, LockInfo())
    b.unlock(FLOW, old.id)
    b.lock(FLOW, LockInfo())  # taken by another holder, who journals
    b.journal_append(FLOW, record({"type": "run_started"}))
    b.journal_clear(FLOW, lock_id=old.id)
    assert records(b) == [{"type": "run_started"}]
    b.journal_clear(FLOW, lock_id=b.read_lock(FLOW).id)  # type: ignore[union-attr]
    assert records(b) == []


def test_a_journal_cleared_by_another_holder_is_appended_to_anew(kit: Kit) -> None:
    """(The local backend keeps its journal open between records.) Another backend of the same flow, as another
    process would, clears the journal; this one's next record starts the new journal, not a removed file."""
    b, other = kit.make(), kit.make()
    b.journal_append(FLOW, record({"n": 1}))
    other.journal_clear(FLOW)
    b.journal_append(FLOW, record({"n": 2}))
    assert records(kit.make()) == [{"n": 2}]
    b.journal_clear(FLOW)
    other.journal_append(FLOW, record({"n": 3}))
    b.journal_append(FLOW, record({"n": 4}))
    assert records(kit.make()) == [{"n": 3}, {"n": 4}]


def test_records_written_while_one_fsync_runs_share_the_next(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Group commit of the local journal: 8 workers record at once; the first fsync is held until all 8 have
    written, so the records share at most two fsyncs (the first may have started before the others wrote), and
    no append returns before an fsync that started after its record."""
    import state.local as local_module

    backend = LocalBackend(tmp_path / "state")
    real_fsync, calls = os.fsync, []

    def fsync(fd: int) -> None:
        calls.append(len(calls))
        if len(calls) == 1:  # hold the first until every worker's record is in the file
            deadline = time.monotonic() + 10
            while backend._syncs[FLOW].written < 8 and time.monotonic() < deadline:
                time.sleep(0.001)  # poll: until every worker has written, with a deadline
        real_fsync(fd)

    monkeypatch.setattr(local_module.os, "fsync", fsync)
    returned: list[int] = []
    threads = [threading.Thread(target=lambda i=i: (backend.journal_append(FLOW, record({"n": i})),
                                                    returned.append(len(calls))))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(r["n"] for r in records(backend)) == list(range(8))
    assert 1 <= len(calls) <= 2, calls
    assert len(returned) == 8 and all(n >= 1 for n in returned)  # none returned before an fsync


def test_a_new_process_appends_after_existing_records(kit: Kit) -> None:
    kit.make().journal_append(FLOW, record({"n": 1}))
    later = kit.make()  # e.g. `flows recover` after a crash
    later.journal_append(FLOW, record({"n": 2}))
    assert records(later) == [{"n": 1}, {"n": 2}]


# -- 8 processes on one flow -----------------------------------------------------------------------
def _child_backend(spec: tuple[str, ...]) -> Any:
    if spec[0] == "local":
        return LocalBackend(spec[1])
    from state.s3 import S3Backend
    os.environ.update(aws_env())  # forkserver children have the environment of the forkserver, not ours
    return S3Backend(bucket=spec[2], region="us-east-1", endpoint_url=spec[1], poll_seconds=0.05, max_attempts=3)


def _add_run(backend: Any, run_id: str) -> None:
    """Read-modify-write: one more run in the state (serial + 1)."""
    state, etag = read(backend)
    state = state or State(flow=FLOW)
    state.runs[run_id] = RunRecord(id=run_id, flow=FLOW)
    write(backend, bump(state), etag)


def _locked_worker(spec: tuple[str, ...], n: int, rounds: int, holders: Any, peak: Any, out: Any) -> None:
    backend, done = _child_backend(spec), []
    for i in range(rounds):
        lock = backend.lock(FLOW, LockInfo(operation=f"worker {n}"), timeout=60)
        with holders.get_lock():
            holders.value += 1
            peak.value = max(peak.value, holders.value)
        _add_run(backend, f"w{n}-{i}")
        done.append(f"w{n}-{i}")
        with holders.get_lock():
            holders.value -= 1
        backend.unlock(FLOW, lock.id)
    out.put((n, done, None))


def _fail_fast_worker(spec: tuple[str, ...], n: int, start: Any, tried: Any, out: Any) -> None:
    backend = _child_backend(spec)
    start.wait()
    try:
        lock = backend.lock(FLOW, LockInfo(operation=f"worker {n}"))
    except LockHeldError as e:
        with tried.get_lock():
            tried.value += 1
        out.put((n, [], str(e)))
        return
    with tried.get_lock():
        tried.value += 1
    _add_run(backend, f"w{n}")
    deadline = time.monotonic() + 60
    while tried.value < 8 and time.monotonic() < deadline:  # hold the lock until everyone has tried
        time.sleep(0.01)  # poll interval, under the deadline above
    backend.unlock(FLOW, lock.id)
    out.put((n, [f"w{n}"], None))


def _cas_worker(spec: tuple[str, ...], n: int, rounds: int, out: Any) -> None:
    backend, done = _child_backend(spec), []
    for i in range(rounds):
        for _ in range(500):  # no lock: lose the race, read again, retry
            try:
                _add_run(backend, f"w{n}-{i}")
                done.append(f"w{n}-{i}")
                break
            except StateError:
                continue
    out.put((n, done, None))


def _mp() -> Any:
    """forkserver: children fork from a clean, thread-free process (this one runs server threads) that has
    imported boto3 and pydantic once, so 8 workers start in milliseconds, not seconds."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["boto3", "state.s3", "state.local", __name__])
    return ctx


def _guarded(target: Callable[..., None], *args: Any) -> None:
    """Run a worker; a crash is reported at once instead of leaving the parent waiting for a result."""
    try:
        target(*args)
    except BaseException as e:
        args[-1].put((args[1], [], f"crashed: {e!r}"))
        raise


def _run_workers(target: Callable[..., None], args: Callable[[int], tuple[Any, ...]], out: Any) -> list[Any]:
    ctx = _mp()
    procs = [ctx.Process(target=_guarded, args=(target, *args(n))) for n in range(8)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    assert not [r for r in results if r[2] and r[2].startswith("crashed")], results
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return results


def _final_runs(kit: Kit) -> tuple[set[str], int]:
    state, _ = read(kit.make())
    assert state is not None
    return set(state.runs), state.serial


def test_eight_processes_fail_fast_while_one_holds_the_lock(kit: Kit) -> None:
    ctx = _mp()
    start, tried, out = ctx.Barrier(8), ctx.Value("i", 0), ctx.Queue()
    results = _run_workers(_fail_fast_worker, lambda n: (kit.spec, n, start, tried, out), out)
    winners = [r for r in results if r[1]]
    assert len(winners) == 1
    winner = winners[0][0]
    assert all(f"worker {winner}" in r[2] for r in results if not r[1])  # each refusal names the holder
    assert _final_runs(kit) == ({f"w{winner}"}, 1)
    assert kit.make().read_lock(FLOW) is None


def test_eight_processes_take_turns_and_no_update_is_lost(kit: Kit) -> None:
    ctx = _mp()
    holders, peak, out = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Queue()
    results = _run_workers(_locked_worker, lambda n: (kit.spec, n, 2, holders, peak, out), out)
    reported = {run for r in results for run in r[1]}
    assert len(reported) == 16
    assert peak.value == 1  # never two holders at once
    assert _final_runs(kit) == (reported, 16)


def test_eight_processes_without_lock_compare_and_swap_loses_nothing(kit: Kit) -> None:
    out = _mp().Queue()
    results = _run_workers(_cas_worker, lambda n: (kit.spec, n, 2, out), out)
    reported = {run for r in results for run in r[1]}
    assert len(reported) == 16
    assert _final_runs(kit) == (reported, 16)


# -- S3 only: clear errors, retries, encryption ----------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed on exit: nothing listens there


def test_s3_missing_bucket_is_a_config_error_naming_bucket_and_key(s3: S3Env) -> None:
    from state.s3 import S3Backend

    b = S3Backend(bucket="no-such-bucket-here", key="teams/{flow}.json", region="us-east-1",
                  endpoint_url=s3.endpoint, max_attempts=1)
    for call in (lambda: read(b), lambda: b.lock(FLOW, LockInfo()), lambda: b.list_flows()):
        with pytest.raises(ConfigError, match="bucket 'no-such-bucket-here' does not exist") as err:
            call()
        assert "s3://no-such-bucket-here/teams/" in str(err.value) and "\n" not in str(err.value)


def test_s3_endpoint_down_fails_quickly_and_clearly(s3: S3Env) -> None:
    from state.s3 import S3Backend

    endpoint = f"http://127.0.0.1:{_closed_port()}"
    b = S3Backend(bucket=s3.bucket, region="us-east-1", endpoint_url=endpoint, max_attempts=2, connect_timeout=1)
    start = time.monotonic()
    with pytest.raises(StateError, match="cannot reach S3") as err:
        read(b)
    assert time.monotonic() - start < 5
    assert endpoint in str(err.value) and f"s3://{s3.bucket}/flows/{FLOW}.json" in str(err.value)


def test_s3_access_denied_is_clear_and_shows_no_secret(moto_with_auth: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from state.s3 import S3Backend

    key_id, secret = moto_with_auth.denied_key
    for kid, sec in ((key_id, secret), ("AKIANOTAREALKEY00000", FAKE_SECRET)):  # no permission; unknown key
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", kid)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", sec)
        b = S3Backend(bucket=moto_with_auth.bucket, region="us-east-1", endpoint_url=moto_with_auth.endpoint,
                      max_attempts=1)
        with pytest.raises(ConfigError, match="access denied") as err:
            read(b)
        assert moto_with_auth.bucket in str(err.value) and sec not in str(err.value)


def test_s3_wrong_region_names_the_right_one(s3: S3Env, fault_proxy: Any) -> None:
    from state.s3 import S3Backend

    # What S3 answers a request signed for the wrong region (moto ignores regions).
    fault_proxy.always = Canned(301, "PermanentRedirect", {"x-amz-bucket-region": "eu-west-1"})
    b = S3Backend(bucket=s3.bucket, region="us-east-1", endpoint_url=fault_proxy.endpoint, max_attempts=1)
    with pytest.raises(ConfigError, match="not in region 'us-east-1'.*'eu-west-1'") as err:
        read(b)
    assert f"s3://{s3.bucket}/flows/{FLOW}.json" in str(err.value)


def test_s3_throttling_and_5xx_are_retried_by_botocore(s3: S3Env, fault_proxy: Any) -> None:
    from state.s3 import S3Backend

    write(s3.backend(), State(flow=FLOW, serial=7), None)
    fault_proxy.queue = [Canned(503, "SlowDown"), Canned(500, "InternalError")]
    b = S3Backend(bucket=s3.bucket, region="us-east-1", endpoint_url=fault_proxy.endpoint, max_attempts=3)
    assert read(b)[0].serial == 7
    assert fault_proxy.requests == 3
    fault_proxy.queue = [Canned(503, "SlowDown")]
    once = S3Backend(bucket=s3.bucket, region="us-east-1", endpoint_url=fault_proxy.endpoint, max_attempts=1)
    with pytest.raises(StateError, match="SlowDown"):
        read(once)


def test_s3_no_credentials_or_unknown_profile_is_a_config_error(s3: S3Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from state.s3 import S3Backend

    with pytest.raises(ConfigError, match="nosuchprofile"):
        S3Backend(bucket=s3.bucket, profile="nosuchprofile", endpoint_url=s3.endpoint)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    b = S3Backend(bucket=s3.bucket, region="us-east-1", endpoint_url=s3.endpoint, max_attempts=1)
    with pytest.raises(ConfigError, match="no AWS credentials"):
        read(b)


def test_s3_key_template_needs_the_flow(s3: S3Env) -> None:
    with pytest.raises(ConfigError, match=r"must contain \{flow\}"):
        s3.backend(key="state.json")


@pytest.mark.parametrize("options, expected", [
    ({"encrypt": True}, {"ServerSideEncryption": "AES256"}),
    ({"kms_key_id": "alias/flows"}, {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/flows"}),
])
def test_s3_encryption_applies_to_state_lock_and_journal(s3: S3Env, options: dict[str, Any],
                                                         expected: dict[str, str]) -> None:
    b = s3.backend(**options)
    write(b, State(flow=FLOW), None)
    b.lock(FLOW, LockInfo())
    b.journal_append(FLOW, record({"n": 1}))
    keys = s3.keys()
    assert len(keys) == 3
    for key in keys:
        head = s3.client.head_object(Bucket=s3.bucket, Key=key)
        assert {k: head.get(k) for k in expected} == expected, key


def test_s3_backend_is_built_from_the_project_config(s3: S3Env, tmp_path: Path) -> None:
    from reconcile.config import load_config, make_backend

    (tmp_path / "flows.toml").write_text(
        f'[tool.flows.backend]\ntype = "s3"\nbucket = "{s3.bucket}"\nkey = "p/{{flow}}.json"\n'
        f'region = "us-east-1"\nendpoint_url = "{s3.endpoint}"\nlease_seconds = 5\n')
    b = make_backend(load_config(tmp_path))
    write(b, State(flow=FLOW), None)
    assert s3.keys() == [f"p/{FLOW}.json"] and b.lease_seconds == 5
    assert b.describe(FLOW) == f"s3://{s3.bucket}/p/{FLOW}.json"


def test_s3_history_without_versioning_is_the_current_state(s3: S3Env) -> None:
    from state.s3 import S3Backend

    bucket = s3.bucket + "-plain"
    s3.client.create_bucket(Bucket=bucket)  # versioning never turned on
    try:
        b = S3Backend(bucket=bucket, region="us-east-1", endpoint_url=s3.endpoint, max_attempts=1)
        etag = write(b, State(flow=FLOW, serial=1), None)
        write(b, State(flow=FLOW, serial=2), etag)
        entries = b.history(FLOW)
        assert [(e.serial, e.latest) for e in entries] == [(2, True)]
        assert read_version(b, entries[0].version_id).serial == 2
    finally:
        s3.client.delete_object(Bucket=bucket, Key=f"flows/{FLOW}.json")
        s3.client.delete_bucket(Bucket=bucket)


def test_s3_history_reads_versions_written_by_other_tools(s3: S3Env) -> None:
    raw = State(flow=FLOW, serial=41).to_json().encode()
    s3.client.put_object(Bucket=s3.bucket, Key=f"flows/{FLOW}.json", Body=raw)  # e.g. `aws s3 cp`, no metadata
    entries = s3.backend().history(FLOW)
    assert [e.serial for e in entries] == [41] and entries[0].who is None

