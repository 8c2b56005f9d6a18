"""Shared pytest setup, and every shared fixture: the kits live in tests/fixtures/ (moto's S3 server and a fault
proxy, the Domino API emulator, headless Chromium), and are made available to every test here."""

import logging

from tests.fixtures.browser import chromium, graph_page  # noqa: F401 - fixtures, found by name
from tests.fixtures.domino import client, emulator, make_emulator, project_dir  # noqa: F401 - fixtures
from tests.fixtures.s3 import fault_proxy, moto_endpoint, moto_with_auth, s3  # noqa: F401 - fixtures

# moto's server logs every request; failures are easier to read without them.
logging.getLogger("werkzeug").setLevel(logging.WARNING)


def pytest_configure(config) -> None:  # type: ignore[no-untyped-def]
    """Byte-compile the product code once. Every test starts `flows` and job processes, and a machine that sets
    PYTHONDONTWRITEBYTECODE (this one does) would otherwise compile reconcile/ providers/ state/ vocab/ from
    source in each of them: a third of a small `flows plan`'s CPU. Python still checks each .pyc against its
    source, so an edited module is never run stale."""
    import compileall
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for package in ("reconcile", "providers", "state", "vocab"):
        compileall.compile_dir(str(root / package), quiet=2, workers=1)


def pytest_collection_modifyitems(config, items) -> None:  # type: ignore[no-untyped-def]
    """`unit`: the in-process tests in tests/unit/ (seconds); `e2e`: every other test (real subprocesses and
    servers). `pytest -m unit` is the quick loop while working on the planner or the scheduler."""
    import pytest
    from pathlib import Path

    unit_dir = Path(__file__).parent / "unit"
    for item in items:
        item.add_marker(pytest.mark.unit if unit_dir in Path(str(item.fspath)).parents else pytest.mark.e2e)
        if any(item.nodeid.startswith(prefix) for prefix in SLOW):
            item.add_marker(pytest.mark.slow)
        if any(item.nodeid.startswith(prefix) for prefix in SOAK):
            item.add_marker(pytest.mark.soak)


# The slow set: soak runs, kill/pause harnesses, the malformed-input matrix across every command, whole-scenario
# replays and the headless-browser pages. `make test` leaves them out to stay within a few minutes on 2 cores;
# `make test-slow` runs them, and CI runs both. What each guards is also covered, faster, in the default set
# (tests/unit, test_bad_input.py, test_recover.py, test_lock_guarantees.py, test_domino_provider.py, ...).
SLOW = (
    "tests/test_recover_harness.py::",
    "tests/test_malformed_everywhere.py::",
    "tests/test_graph_browser.py::",
    "tests/test_graph_page_zoom.py::",
    "tests/test_run_page.py::",
    "tests/test_s3_cli.py::test_eight_concurrent_applies_exactly_one_runs",
    "tests/test_state_backends.py::test_eight_processes_",
    "tests/test_domino_realistic.py::test_mixed_flow_on_a_realistic_dfs_project",
    "tests/test_domino_realistic.py::test_ai_training_killed_mid_apply_recovers_without_starting_a_job_twice",
    "tests/test_gc_guarantees.py::test_gc_in_one_project_keeps_the_blobs_of_another_sharing_the_store",
)
# The soak runs: 25 random trials per provider and kind (`make soak`, by hand; a failing trial prints the seed
# that replays it). Part of the slow set, but not of CI's run of it: they hunt for races, so they may find one.
SOAK = ("tests/test_recover_harness.py::test_long_",)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _secrets_registered_by_one_test_stay_in_it():  # type: ignore[no-untyped-def]
    """A secret registered in-process (an API key read by a client under test) is masked for the rest of the
    process; without this, a worker that ran a client test masks, say, every 'kkkk' in a later test's state."""
    from vocab import masking

    before = set(masking._registered)
    yield
    masking._registered.clear()
    masking._registered.update(before)
    masking._cache = None
