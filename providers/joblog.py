"""A local job's log, masked as it is written: the raw text of a job never reaches the disk.

The job writes into a pipe; a thread of this process copies it line by line into the log file, with every
secret value masked (the values are taken once, when the job starts). A secret split by the 1 MiB line
limit could pass unmasked; no real log line is that long.
"""
from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import IO, Any

from vocab.masking import MASK, secret_values

LINE_LIMIT = 1 << 20
DRAIN_SECONDS = 2.0  # after the job's leader exits, how long its last lines may take to reach the file


def _masked(line: bytes, values: list[str]) -> bytes:
    if not values:
        return line
    text = line.decode("utf-8", "surrogateescape")
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text.encode("utf-8", "surrogateescape")


def _pump(source: IO[bytes], log_path: Path, values: list[str]) -> None:
    with source, open(log_path, "ab") as log:
        for line in iter(lambda: source.readline(LINE_LIMIT), b""):
            log.write(_masked(line, values))
            log.flush()  # `flows logs` and the provider's tail read it while the job runs


def pump_thread(source: IO[bytes], log_path: Path, values: list[str]) -> threading.Thread:
    """Copy `source` into `log_path`, masked, in a thread of its own (started); join it for a complete log."""
    pump = threading.Thread(target=_pump, args=(source, log_path, values), name="job-log", daemon=True)
    pump.start()
    return pump


class MaskedLogPopen(subprocess.Popen):  # type: ignore[type-arg]
    """A job process whose stdout and stderr reach `log_path` masked; `wait()` returns once the log is
    complete (or DRAIN_SECONDS after the leader exited, when something it left behind holds the pipe)."""

    def __init__(self, argv: list[str], *, log_path: Path, **kw: Any) -> None:
        values = secret_values()
        super().__init__(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
        assert self.stdout is not None
        self._pump = pump_thread(self.stdout, log_path, values)

    def wait(self, timeout: float | None = None) -> int:
        code = super().wait(timeout)
        self._pump.join(DRAIN_SECONDS)
        return code
