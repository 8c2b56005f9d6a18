"""Shared pytest setup. Fixtures for real servers live in tests/fixtures/ and are imported by the tests that use them."""
