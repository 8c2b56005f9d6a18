"""Fault injection: kill `flows apply` with SIGKILL at a random moment, `flows recover`, check the invariants.

Every trial builds a fresh ten-node project (tests/fixtures/recover_kit.py), starts the real `flows apply`
as a subprocess, polls for progress (k marker files, or j journal records, chosen by a seeded RNG) and
kills it the moment that progress is seen (in some trials Ctrl-C instead: SIGINT); in some trials the
first `flows recover` is killed as well.
Then `flows recover` runs to the end, and every time:
  - the state loads and is valid (parse_state), the journal is folded and the lock released;
  - no node whose success was durable at a kill ran again (marker counts), and every job ran on the
    same inputs as in a clean run (marker tokens);
  - the run is finished under its own id and marked "recovered";
  - Domino: no job was started twice for the same node and key (the emulator's started jobs), i.e. a
    job still running at the kill was re-attached, not re-launched;
  - the outputs are byte-identical to a clean run's, and the next plan has no changes.

Pause trials (issue 15, item 7), local and Domino: instead of being killed, apply is paused (SIGSTOP) until its
lease runs out, a second apply takes the lock over (--break-expired-lock) and finishes, and then the first is
resumed (SIGCONT). The pause lands at an exact point chosen by the seed (every job waits at a gate: k nodes
finished, the next ones started and waiting), never inside a start or a write, and the trial asserts what it
relies on before the takeover: the paused apply holds the lock and has not written the state. (A pause that
lands after an apply's final state write tests nothing: that apply finished under its own lock and rightly
exits 0. That is what seed 20261123 once hit when the pause point was "after the last journal record".)
Every time: the resumed apply starts nothing, writes nothing and exits non-zero ("lost the state lock"); the
state is exactly the second run's result (outputs byte-identical to a clean run, the first run interrupted,
no node recorded by the first run after the takeover); the next plan has no changes.

The module is in the slow set (tests/conftest.py: `make test-slow`, CI): a short version of each kind, and
`test_long_*` with FLOWS_HARNESS_TRIALS (25) trials per provider and kind.
Seeds: FLOWS_HARNESS_SEED=<n> picks the base seed; a failing trial names its seed, and
FLOWS_HARNESS_ONLY=<seed> replays just that trial.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import json
import os
import random
import shutil
import signal
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from providers.domino.emulator import DominoEmulator
from providers.domino.emulator_world import EmulatorConfig, demo_project
from tests.fixtures.domino import API_KEY, OWNER, PROJECT, domino_env
from tests.fixtures.s3 import REGION, S3Env, aws_env
from tests.fixtures.recover_kit import (ADDRESSES, APPLY_ARGS, FLOW_NAME, NODES, PLAN_ARGS, domino_toml,
                                        finished_nodes, journal_records, load_state, make_project, markers_of,
                                        open_gate, output_bytes, pause_outside_the_mutex, read_local_blob, run_flows,
                                        start_flows, state_dir, wait_until)

BASE_SEED = int(os.environ.get("FLOWS_HARNESS_SEED", "20261122"))
ONLY = os.environ.get("FLOWS_HARNESS_ONLY")
LONG_TRIALS = int(os.environ.get("FLOWS_HARNESS_TRIALS", "25"))
DOUBLE_FAULT = 0.3  # share of trials in which recover is killed as well
CTRL_C = 0.2        # share of trials in which apply gets SIGINT (Ctrl-C) instead of SIGKILL


@dataclass
class Reference:
    """What a clean, uninterrupted apply produces."""

    outputs: dict[str, bytes]
    tokens: dict[str, str]


@dataclass
class Setup:
    """One provider's way to build a trial project and read its blobs."""

    name: str
    toml: Callable[[str], str]                # blob prefix -> flows.toml text
    env: Callable[[], dict[str, str]]
    read_blob: Callable[[str], bytes]
    start_world: Callable[[Path], Any]        # project root -> emulator (or None), stopped by stop_world
    stop_world: Callable[[Any], None]
    records: int                              # journal records of a whole run (kill points lie before)


def trial_seeds(provider: str, n: int) -> list[int]:
    offset = {"local": 0, "domino": 500_000}[provider]
    seeds = [BASE_SEED + offset + i for i in range(n)]
    if ONLY is not None:
        seeds = [s for s in seeds if s == int(ONLY)]
    return seeds


def kill_point(rng: random.Random, records: int) -> tuple[str, int]:
    """When to kill: after k nodes' jobs started (markers), or after j journal records became durable."""
    if rng.random() < 0.5:
        return "markers", rng.randint(1, len(NODES) - 1)
    return "journal", rng.randint(1, records - 1)


def progress(root: Path, markers: Path, mode: str) -> int:
    if mode == "markers":
        return sum(1 for n in NODES if (markers / n).is_file())
    return len(journal_records(root))


def clean_run(base: Path, setup: Setup) -> Reference:
    root = make_project(base / "clean" / "project", base / "clean" / "markers", toml=setup.toml("clean"))
    world = setup.start_world(root)
    try:
        r = run_flows(*APPLY_ARGS, cwd=root, env={**setup.env(), **_world_env(world)})
        assert r.code == 0, r.text
    finally:
        setup.stop_world(world)
    tokens = {a: t[0] for a, t in markers_of(base / "clean" / "markers").items()}
    return Reference(outputs=output_bytes(load_state(root), setup.read_blob), tokens=tokens)


def _world_env(world: Any) -> dict[str, str]:
    return domino_env(world) if isinstance(world, DominoEmulator) else {}


def run_trial(base: Path, setup: Setup, seed: int, ref: Reference) -> str:
    """One kill-and-recover trial; returns a one-line summary. Any broken invariant raises."""
    rng = random.Random(seed)
    mode, threshold = kill_point(rng, setup.records)
    # Sometimes recover dies too (a second fault): after this many more jobs started.
    second = rng.randint(1, 3) if rng.random() < DOUBLE_FAULT else None
    ctrl_c = rng.random() < CTRL_C  # Ctrl-C instead of SIGKILL: apply cancels and records its running jobs
    folder = base / f"{setup.name}-{seed}"
    markers = folder / "markers"
    root = make_project(folder / "project", markers, toml=setup.toml(f"trial-{seed}"))
    world = setup.start_world(root)
    env = {**setup.env(), **_world_env(world)}
    recover_args = ("recover", "--flow", FLOW_NAME)
    try:
        apply = start_flows(*APPLY_ARGS, cwd=root, log=folder / "apply.log", env=env)
        wait_until(lambda: progress(root, markers, mode) >= threshold or apply.proc.poll() is not None)
        if ctrl_c:
            code = apply.interrupt()
            assert code in (0, 130), f"apply exited {code} on Ctrl-C:\n{apply.text()}"
            outcome = runs_outcomes(root, env)
            assert outcome == (["interrupted"] if code == 130 else ["succeeded"]), outcome
        else:
            apply.kill()
        run_ids = recorded_runs(root)
        frozen = freeze(root, markers, {})
        in_flight = {a for a, t in markers_of(markers).items() if t} - set(frozen)  # started, not durable
        first_durable, found = len(frozen), 0
        if second is not None:
            before = marker_lines(markers)
            dying = start_flows(*recover_args, cwd=root, log=folder / "recover1.log", env=env)
            wait_until(lambda: marker_lines(markers) >= before + second or dying.proc.poll() is not None)
            dying.kill()
            frozen = freeze(root, markers, frozen)
            found += dying.text().count("Found job")
        recover = run_flows(*recover_args, cwd=root, env=env)
        found += recover.text.count("Found job")  # started but not journaled: found on Domino
        assert recover.code == 0, f"recover failed:\n{recover.text}\napply log:\n{apply.text()}"
        assert "Traceback" not in recover.text, recover.text
        _check_state(root, run_ids, recover.text)
        # Ctrl-C stops the running Domino jobs on purpose, so recover starts those again.
        _check_markers(markers, frozen, ref, kills=1 + (second is not None),
                       exact=setup.name == "domino" and not ctrl_c)
        if isinstance(world, DominoEmulator):
            _check_domino_starts(world)
        assert output_bytes(load_state(root), setup.read_blob) == ref.outputs, "outputs differ from a clean run"
        dest = folder / "fetched"
        r = run_flows("outputs", f"{FLOW_NAME}/join", "--dest", str(dest), cwd=root, env=env)
        assert r.code == 0, r.text
        assert (dest / "out").read_bytes() == ref.outputs[f"{FLOW_NAME}/join"]
        r = run_flows(*PLAN_ARGS, "--detailed-exitcode", cwd=root, env=env)
        assert r.code == 0, f"a plan after recovery still has changes:\n{r.text}"
    finally:
        setup.stop_world(world)
    shutil.rmtree(folder, ignore_errors=True)  # kept only when a trial fails, for a post-mortem
    also = f"; recover killed too after +{second} jobs ({len(frozen)} durable then)" if second else ""
    how = "interrupted (Ctrl-C)" if ctrl_c else "killed"
    return (f"seed {seed}: apply {how} after {threshold} {mode} ({first_durable} durable, "
            f"{len(in_flight)} in flight){also}" + (f"; {found} unjournaled job(s) found" if found else ""))


def recorded_runs(root: Path) -> list[str]:
    """Run ids durable at a kill: in the journal, or already in the state (Ctrl-C writes the state)."""
    ids = [r["run"]["id"] for r in journal_records(root) if r.get("type") == "run_started"]
    if (state_dir(root) / f"{FLOW_NAME}.json").is_file():
        ids += [i for i in load_state(root).runs if i not in ids]
    return ids


def runs_outcomes(root: Path, env: dict[str, str]) -> list[str]:
    r = run_flows("runs", "list", "--flow", FLOW_NAME, "--json", cwd=root, env=env)
    assert r.code == 0, r.text
    return [run["outcome"] for run in json.loads(r.out)]


def marker_lines(markers: Path) -> int:
    return sum(len(t) for t in markers_of(markers).values())


def freeze(root: Path, markers: Path, frozen: dict[str, int]) -> dict[str, int]:
    """At a kill: how often each node whose success is durable has run. Those counts must never grow."""
    counts = {a: len(t) for a, t in markers_of(markers).items()}
    return {**{a: counts[a] for a in finished_nodes(root)}, **frozen}


def _check_state(root: Path, run_ids: list[str], recover_out: str) -> None:
    state = load_state(root)  # valid JSON, known version, matches the schema
    assert not (state_dir(root) / f"{FLOW_NAME}.journal.jsonl").exists(), "the journal was not folded"
    assert not (state_dir(root) / f"{FLOW_NAME}.lock").exists(), "the dead run's lock is still held"
    assert set(state.nodes) == set(ADDRESSES)
    assert all(n.status == "succeeded" for n in state.nodes.values())
    assert run_ids, "apply was killed before it recorded its run (kill points start after that)"
    assert list(state.runs) == run_ids[:1], "recover must finish the run under its own id"
    run = state.runs[run_ids[0]]
    if f"Recovering run {run.id}" in recover_out:
        assert run.outcome == "recovered", run.outcome
    else:  # the run (or a recover killed late) had finished before
        assert "Nothing to recover" in recover_out and run.outcome in ("succeeded", "recovered"), recover_out


def _check_markers(markers: Path, frozen: dict[str, int], ref: Reference, kills: int, exact: bool) -> None:
    runs = markers_of(markers)
    for address, tokens in runs.items():
        assert tokens, f"{address} never ran"
        assert set(tokens) == {ref.tokens[address]}, f"{address} ran on other inputs than a clean run: {tokens}"
        if address in frozen:
            assert len(tokens) == frozen[address], \
                f"{address} had finished before a kill but ran again ({frozen[address]} -> {len(tokens)} runs)"
        else:  # in flight at each kill: a local job dies with its apply and runs once more; never more than that
            assert len(tokens) <= kills + 1, f"{address} ran {len(tokens)} times"
    if exact:  # Domino: jobs outlive apply; recover re-attaches, so every node ran exactly once
        more = {a: len(t) for a, t in runs.items() if len(t) != 1}
        assert not more, f"Domino nodes ran more than once (re-launched, not re-attached): {more}"


def _check_domino_starts(emu: DominoEmulator) -> None:
    """Each node's job started once; a second start only after its first job was stopped (by Ctrl-C)."""
    jobs: dict[str, list[str]] = collections.defaultdict(list)
    for job_id in emu.started_jobs:
        jobs[(emu.job(job_id).title or "").rsplit(" [flows-", 1)[0]].append(job_id)  # less the attempt marker
    assert set(jobs) == {f"flows: {a}" for a in ADDRESSES}
    twice = {t: ids for t, ids in jobs.items() if any(j not in emu.stop_calls for j in ids[:-1])}
    assert not twice, f"Domino jobs started twice for the same node and key: {twice}"


def run_trials(base: Path, setup: Setup, seeds: list[int], ref: Reference, at_once: int,
               trial: Callable[[Path, Setup, int, Reference], str] | None = None) -> None:
    """Run the trials (`run_trial`, or `trial`), `at_once` at a time (each has its own project, markers and
    emulator)."""
    if not seeds:
        pytest.skip("FLOWS_HARNESS_ONLY names a seed this test does not run")
    print(f"{setup.name}: base seed {BASE_SEED}, trials {seeds}")
    failures: list[str] = []
    with cf.ThreadPoolExecutor(max_workers=at_once) as pool:
        futures = {pool.submit(trial or run_trial, base, setup, seed, ref): seed for seed in seeds}
        for fut in cf.as_completed(futures):
            seed = futures[fut]
            try:
                print(fut.result())
            except Exception as e:  # every trial runs; all failures are reported together, with their seeds
                where = "".join(traceback.format_exception(e)[-3:]) if not isinstance(e, AssertionError) else str(e)
                kind = "pause trial" if trial is run_pause_trial else "trial"
                failures.append(f"[{setup.name} {kind} seed {seed}; replay: FLOWS_HARNESS_SEED={BASE_SEED} "
                                f"FLOWS_HARNESS_ONLY={seed}] {where}")
    assert not failures, "\n\n".join(sorted(failures))


def run_pause_trial(base: Path, setup: Setup, seed: int, ref: Reference) -> str:
    """One pause-takeover-resume trial (a 1 s lease); returns a one-line summary. Any broken invariant raises.

    The pause lands at an exact point, never inside a start or a write: every job waits at its gate, so the
    trial lets `done` nodes finish (chosen by the seed), waits until the apply has started every node it can
    start then, and pauses it there. Before the takeover it asserts what the trial relies on: the paused apply
    holds the lock, has not written the state and has exactly `done` results in the journal (a pause after its
    final state write would test nothing: that apply had finished under its own lock)."""
    rng = random.Random(seed)
    done = rng.randint(0, len(NODES) - 1)
    folder = base / f"pause-{setup.name}-{seed}"
    markers = folder / "markers"
    toml = setup.toml(f"pause-{seed}") + "\n[tool.flows.backend]\nlease_seconds = 1\n"
    root = make_project(folder / "project", markers, toml=toml, knobs={n: {"gate": True} for n in NODES})
    world = setup.start_world(root)
    env = {**setup.env(), **_world_env(world)}
    first = start_flows(*APPLY_ARGS, cwd=root, log=folder / "first.log", env=env)
    try:
        while len(finished_nodes(root)) < done:
            running = wait_until(lambda: sorted(set(journal_started(root)) - finished_nodes(root))
                                 or first.proc.poll() is not None)
            assert first.proc.poll() is None, f"apply ended early:\n{first.text()}"
            before = len(finished_nodes(root))
            open_gate(markers, rng.choice(running).split("/", 1)[1])
            wait_until(lambda: len(finished_nodes(root)) > before or first.proc.poll() is not None)
        wait_until(lambda: _settled(root) or first.proc.poll() is not None)
        assert first.proc.poll() is None, f"apply ended early:\n{first.text()}"
        pause_outside_the_mutex(first.proc.pid, state_dir(root) / f"{FLOW_NAME}.mutex")
        # What the trial relies on, now that the apply cannot move:
        lock = json.loads((state_dir(root) / f"{FLOW_NAME}.lock").read_text())
        first_run = next(r["run"]["id"] for r in journal_records(root) if r.get("type") == "run_started")
        assert lock["run_id"] == first_run, "the paused apply does not hold the lock"
        assert not (state_dir(root) / f"{FLOW_NAME}.json").exists(), "the paused apply had written its state"
        frozen = freeze(root, markers, {})
        assert len(frozen) == done, (sorted(frozen), done)
        in_flight = set(journal_started(root)) - set(frozen)
        for name in NODES:  # its jobs in flight may finish during the pause; the next apply's must
            open_gate(markers, name)
        wait_until(lambda: _lease_over(lock["expires"]))
        second = run_flows(*APPLY_ARGS, "--break-expired-lock", cwd=root, env=env)
        assert second.code == 0, f"the takeover failed:\n{second.text}"
        assert "Took over an expired lock" in second.text, second.text
        taken = load_state(root)
        assert taken.fence == 1, "the takeover did not fence the paused apply out"
        after_second = marker_lines(markers)
        starts = len(world.started_jobs) if isinstance(world, DominoEmulator) else 0
        os.kill(first.proc.pid, signal.SIGCONT)
        resumed = first.finish()
        if isinstance(world, DominoEmulator):
            assert len(world.started_jobs) == starts, "the resumed apply started a Domino job after losing its lock"
        assert resumed.code != 0, f"the resumed apply went on as if it held the lock:\n{resumed.text}"
        assert "lost the state lock" in resumed.text and "Traceback" not in resumed.text, resumed.text
        assert marker_lines(markers) == after_second, "the resumed apply started a job after losing its lock"
        state = load_state(root)
        assert state.model_dump(exclude={"cache"}) == taken.model_dump(exclude={"cache"}), \
            "the resumed apply changed the state"
        assert list(state.runs)[0] == first_run and [r.outcome for r in state.runs.values()] == ["interrupted", "succeeded"], \
            state.runs
        late = {a for a, n in state.nodes.items() if n.run_id == first_run} - set(frozen)
        assert not late, f"nodes of the paused run recorded after the takeover: {late}"
        assert output_bytes(state, setup.read_blob) == ref.outputs, "outputs differ from a clean run"
        r = run_flows(*PLAN_ARGS, "--detailed-exitcode", cwd=root, env=env)
        assert r.code == 0, f"a plan after the takeover has changes:\n{r.text}"
    finally:
        if first.proc.poll() is None:
            os.kill(first.proc.pid, signal.SIGCONT)
            first.kill()
        setup.stop_world(world)
    shutil.rmtree(folder, ignore_errors=True)
    return (f"seed {seed}: {setup.name} apply paused after {done} node(s) finished ({len(in_flight)} in flight), "
            "taken over, resumed: fenced out")


def journal_started(root: Path) -> list[str]:
    """Nodes whose job the apply has started (its start is in the journal)."""
    return [r["address"] for r in journal_records(root) if r.get("type") == "node_started"]


def _settled(root: Path) -> bool:
    """The apply has started every node it can start now (up to its parallelism, 4), and each start is
    journaled: it only waits on its jobs' gates, so a pause cannot land inside a start."""
    fin = finished_nodes(root)
    ready = [a for a in ADDRESSES if a not in fin and all(f"{FLOW_NAME}/{u}" in fin for u in NODES[a.split("/", 1)[1]])]
    running = set(journal_started(root)) - fin
    return running <= set(ready) and len(running) == min(4, len(ready))


def _lease_over(expires: str) -> bool:
    import datetime as dt
    return dt.datetime.fromisoformat(expires) < dt.datetime.now(dt.timezone.utc)


# -- providers --------------------------------------------------------------------------------------
def local_setup() -> Setup:
    # Journal: run_started, per node a start and a finish, run_finished.
    return Setup(name="local", toml=lambda _: "[tool.flows]\n", env=dict, read_blob=read_local_blob,
                 start_world=lambda root: None, stop_world=lambda world: None, records=2 + 2 * len(NODES))


def domino_setup(s3env: S3Env) -> Setup:
    def toml(prefix: str) -> str:
        return domino_toml(s3env.bucket, s3env.endpoint, REGION, prefix)

    def read_blob(uri: str) -> bytes:
        bucket, key = uri[len("s3://"):].split("/", 1)
        return s3env.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def start_world(root: Path) -> DominoEmulator:
        # The emulator outlives every `flows` process of the trial, as Domino outlives a lost laptop.
        config = EmulatorConfig(projects=[demo_project(root, OWNER, PROJECT)], api_key=API_KEY,
                                work_dir=root.parent / "emulator")
        return DominoEmulator(config).start()

    # Journal: as local, plus per node the intent to start a job (journaled before the job exists).
    return Setup(name="domino", toml=toml, env=aws_env, read_blob=read_blob, start_world=start_world,
                 stop_world=lambda emu: emu.stop() if emu is not None else None, records=2 + 3 * len(NODES))


# -- the trials ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """One clean local apply. Both providers run the same scripts on the same inputs, so a recovered
    Domino run must match it byte for byte as well (a stronger check than a Domino-only reference)."""
    return clean_run(tmp_path_factory.mktemp("reference"), local_setup())


def test_kill_and_recover_local(tmp_path: Path, reference: Reference) -> None:
    run_trials(tmp_path, local_setup(), trial_seeds("local", 5), reference, at_once=5)


def test_kill_and_recover_domino(tmp_path: Path, s3: S3Env, reference: Reference) -> None:
    run_trials(tmp_path, domino_setup(s3), trial_seeds("domino", 2), reference, at_once=2)


def test_pause_takeover_and_resume_local(tmp_path: Path, reference: Reference) -> None:
    run_trials(tmp_path, local_setup(), trial_seeds("local", 2), reference, at_once=2, trial=run_pause_trial)


def test_pause_takeover_and_resume_domino(tmp_path: Path, s3: S3Env, reference: Reference) -> None:
    run_trials(tmp_path, domino_setup(s3), trial_seeds("domino", 1), reference, at_once=1, trial=run_pause_trial)


@pytest.mark.slow
@pytest.mark.parametrize("trial", [run_trial, run_pause_trial], ids=["kill", "pause"])
def test_long_local(tmp_path: Path, reference: Reference, trial: Callable[[Path, Setup, int, Reference], str]) -> None:
    run_trials(tmp_path, local_setup(), trial_seeds("local", LONG_TRIALS), reference, at_once=3, trial=trial)


@pytest.mark.slow
@pytest.mark.parametrize("trial", [run_trial, run_pause_trial], ids=["kill", "pause"])
def test_long_domino(tmp_path: Path, s3: S3Env, reference: Reference,
                     trial: Callable[[Path, Setup, int, Reference], str]) -> None:
    run_trials(tmp_path, domino_setup(s3), trial_seeds("domino", LONG_TRIALS), reference, at_once=3, trial=trial)
