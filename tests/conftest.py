"""Shared pytest setup. Fixtures for real servers live in tests/fixtures/ and are imported by the tests that use them."""

import logging

# moto's server logs every request; failures are easier to read without them.
logging.getLogger("werkzeug").setLevel(logging.WARNING)
