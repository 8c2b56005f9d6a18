"""vocab.files.write_atomic: the one atomic writer."""
from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path

import pytest

from vocab.files import write_atomic


def test_threads_writing_one_file_never_trip_over_each_others_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "statcache.json"
    payloads = [bytes([i]) * 4096 for i in range(32)]
    with cf.ThreadPoolExecutor(8) as pool:  # (a temp name per process alone made one replace fail here)
        list(pool.map(lambda p: write_atomic(target, p, durable=p[0] % 2 == 0), payloads))
    assert target.read_bytes() in payloads  # whole: one writer's bytes, never a mix
    assert [p.name for p in tmp_path.iterdir()] == ["statcache.json"]  # no temp file left behind


def test_a_failed_write_leaves_the_old_bytes_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
