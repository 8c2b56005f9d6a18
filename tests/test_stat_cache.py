"""The stat cache answers a file's digest from its stat only when no change can hide behind that stat."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from vocab import digest
from vocab.digest import StatCache, file_digest
from tests.fixtures.waiting import wait_until


def next_tick(after_ns: int, probe: Path) -> None:
    """Wait until the filesystem stamps a change later than `after_ns` (coarse clocks tick every few ms)."""
    def later() -> bool:
        probe.write_text("tick")
        return os.stat(probe).st_ctime_ns > after_ns
    wait_until(later, 5.0, what="the filesystem clock to tick")


def test_new_bytes_with_the_old_size_mtime_and_inode_are_read_again(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digest, "RACY_NS", 0, raising=False)  # remember even a file written just now
    f = tmp_path / "s.csv"
    f.write_text("a,1\n")
    cache_file = tmp_path / "statcache.json"
    cache = StatCache(cache_file)
    first = cache.file(f)
    cache.save()
    before = os.stat(f)
    next_tick(before.st_ctime_ns, tmp_path / "probe")
    with open(f, "r+") as out:  # same inode, same size
        out.write("b,2\n")
    os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))  # touch -r
    after = os.stat(f)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    assert StatCache(cache_file).file(f) == file_digest(f) != first


def test_an_unchanged_file_is_answered_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digest, "RACY_NS", 0, raising=False)
    f = tmp_path / "s.csv"
    f.write_text("a,1\n")
    cache = StatCache(tmp_path / "statcache.json")
    real = cache.file(f)
    cache.save()
    cache = StatCache(tmp_path / "statcache.json")
    monkeypatch.setattr(digest, "file_digest", lambda p: pytest.fail(f"{p} was read again"))
    assert cache.file(f) == real


def test_a_file_changed_just_before_it_was_read_is_not_remembered(tmp_path: Path) -> None:
    f = tmp_path / "s.csv"
    f.write_text("a,1\n")
    cache = StatCache(tmp_path / "statcache.json")
    cache.file(f)
    assert str(f) not in cache.entries  # a change in the same tick would look unchanged: read it next time


def test_entries_of_the_older_format_are_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digest, "RACY_NS", 0, raising=False)
    f = tmp_path / "s.csv"
    f.write_text("a,1\n")
    st = os.stat(f)
    cache = StatCache(None)
    cache.entries[str(f)] = [st.st_size, st.st_mtime_ns, st.st_ino, "0" * 64]  # (size, mtime, inode, digest)
    assert cache.file(f) == file_digest(f)


def test_refresh_takes_a_new_stat_only_when_nothing_but_the_ctime_moved(tmp_path: Path) -> None:
    """`refresh` follows a remembered file whose other name was removed (its ctime moves); a file whose bytes
    changed in any other visible way keeps its old signature, so it is read again."""
    kept, changed = tmp_path / "kept", tmp_path / "changed"
    cache = StatCache(None)
    for f in (kept, changed):
        f.write_text("bytes")
        cache.remember(f, file_digest(f))
        os.link(f, tmp_path / f"{f.name}.other")
    old = dict(cache.entries)
    for f in (kept, changed):
        next_tick(os.stat(f).st_ctime_ns, tmp_path / "probe")
        os.unlink(tmp_path / f"{f.name}.other")
    changed.write_text("other bytes")
    cache.refresh(kept)
    cache.refresh(changed)
    assert cache.entries[str(kept)] == [*digest.stat_signature(os.stat(kept)), old[str(kept)][-1]] != old[str(kept)]
    assert cache.entries[str(changed)] == old[str(changed)]
    assert cache.file(changed) == file_digest(changed)
