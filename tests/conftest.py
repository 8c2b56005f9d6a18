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
