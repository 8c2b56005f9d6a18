"""The version of flows: the one place it is written (pyproject.toml reads it from here; `flows --version`
prints it; the state records which flows wrote it)."""

VERSION = "0.1.0"
