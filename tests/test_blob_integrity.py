"""A stored blob never changes after it is recorded, and a changed one is never used: the local store keeps
private copies, takes a digest of the bytes it stored, and checks a blob again before each use."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from providers import jobio
from providers.blobs.base import BlobChangedError
from providers.blobs.local import LocalBlobStore
from providers.job_folders import RetiredFolders
from vocab.digest import StatCache, file_digest, stat_signature


def tamper(blob: Path, data: bytes) -> None:
    """What root (or anyone owning the store) can do to a read-only blob: new bytes, old size and times."""
    st = blob.stat()
    assert len(data) == st.st_size
    os.chmod(blob, 0o644)
    blob.write_bytes(data)
    os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.chmod(blob, 0o444)


def test_a_blob_is_a_private_copy(tmp_path: Path) -> None:
    src = tmp_path / "out.txt"
    src.write_text("original\n")
    blob = Path(LocalBlobStore(tmp_path / "blobs").put_file(src).uri)
    with open(src, "a") as f:  # a process still holding the job's file writes on
        f.write("TAMPERED\n")
    assert blob.read_text() == "original\n" and file_digest(blob) == blob.name


def test_a_blob_copied_over_an_existing_file_leaves_exactly_its_bytes(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    short, long_ = store.put_bytes(b"new\n"), store.put_bytes(b"y" * 300_000)
    dest = tmp_path / "inputs" / "a"  # (its folder is made when missing)
    store.get_file(long_.uri, dest)
    inode = dest.stat().st_ino
    store.get_file(short.uri, dest)  # over a longer file: written in place, then cut to size
    assert (dest.read_bytes(), dest.stat().st_ino) == (b"new\n", inode)
    store.get_file(long_.uri, dest)
    assert file_digest(dest) == long_.digest


def test_a_changed_blob_is_not_used_and_the_next_store_replaces_it(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs", StatCache(tmp_path / "statcache.json"))
    src = tmp_path / "out.txt"
    src.write_text("original\n")
    stored = store.put_file(src)
    blob = Path(stored.uri)
    assert store.exists([stored.uri]) == {stored.uri: True}
    tamper(blob, b"TAMPERED\n")
    assert store.exists([stored.uri]) == {stored.uri: False}
    with pytest.raises(BlobChangedError, match="has changed in the blob store since it was stored"):
        store.get_file(stored.uri, tmp_path / "copy")
    with pytest.raises(jobio.InputsError, match="^input 'x': blob .* has changed in the blob store"):
        jobio.fetch("x", "file", stored.uri, tmp_path / "input", store)
    assert store.put_file(src) == stored  # the same bytes again: stored over the changed ones
    assert blob.read_text() == "original\n" and store.exists([stored.uri]) == {stored.uri: True}


def test_a_changed_file_of_a_stored_directory_makes_it_unusable(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "x.txt").write_text("x\n")
    (tmp_path / "d" / "y.txt").write_text("y\n")
    stored = store.put_dir(tmp_path / "d")
    assert store.exists([stored.uri], dirs={stored.uri}) == {stored.uri: True}
    tamper(Path(store.put_bytes(b"x\n").uri), b"z\n")
    assert store.exists([stored.uri], dirs={stored.uri}) == {stored.uri: False}
    with pytest.raises(BlobChangedError):
        store.get_dir(stored.uri, tmp_path / "copy")


def test_a_job_output_becomes_the_blob_only_when_given_up(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    out.mkdir()
    (out / "model").write_text("weights")
    store = LocalBlobStore(tmp_path / "blobs")
    records, _ = jobio.collect_outputs({"model": "file"}, out, store, consume=False)
    assert os.stat(records["model"].uri).st_ino != (out / "model").stat().st_ino  # a copy
    (out / "model").write_text("weights2")
    inode = (out / "model").stat().st_ino
    records, _ = jobio.collect_outputs({"model": "file"}, out, store, consume=True)
    assert os.stat(records["model"].uri).st_ino == inode  # nothing can write it any more: the file itself
    assert not (out / "model").exists()  # its name in the job's folder given up (the store's is the only one)


def test_consumed_outputs_stay_vouched_for_by_the_stat_cache_once_their_job_folder_is_emptied(tmp_path: Path) -> None:
    """A file, a directory and a link to the file, consumed: each blob's stat, once the folder is emptied as the
    local provider empties it, is the one the stat cache holds (a later reader does not hash it again)."""
    folder = tmp_path / "job"
    out = folder / "outputs"
    (out / "tree" / "sub").mkdir(parents=True)
    (folder / "inputs").mkdir()
    (out / "model").write_text("weights")
    (out / "tree" / "a.txt").write_text("a")
    (out / "tree" / "sub" / "b.txt").write_text("b")
    (out / "pointer").symlink_to("model")
    store = LocalBlobStore(tmp_path / "blobs", StatCache(None))
    records, _ = jobio.collect_outputs({"model": "file", "tree": "dir", "pointer": "file"}, out, store,
                                       consume=True)
    assert Path(records["pointer"].uri).read_text() == "weights"
    RetiredFolders().add(folder, reuse=True)
    stored = [Path(records[n].uri) for n in ("model", "tree")] + sorted((tmp_path / "blobs").glob("??/*"))
    for blob in stored:
        assert store.digests.entries[str(blob)][:-1] == stat_signature(os.stat(blob)), blob
