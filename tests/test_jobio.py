"""providers.jobio, the contract shared by the local provider and the Domino in-job runtime: real files,
a real local blob store, no job process (the provider tests run real jobs through the same code)."""
from __future__ import annotations

import datetime as dt
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from providers import jobio
from providers.base import InputValue
from providers.blobs.local import LocalBlobStore


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def test_inputs_are_written_in_dominos_formats(tmp_path: Path, blobs: LocalBlobStore) -> None:
    src = tmp_path / "src.csv"
    src.write_text("a,b\n")
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "x.txt").write_text("x")
    stored = blobs.put_file(src)
    stored_dir = blobs.put_dir(folder)
    inputs = {
        "s": InputValue(type="str", value="hello"), "i": InputValue(type="int", value=3),
        "f": InputValue(type="float", value=0.5), "b": InputValue(type="bool", value=True),
        "l": InputValue(type="list[int]", value=[1, 2]), "d": InputValue(type="dict[str, int]", value={"k": 1}),
        "t": InputValue(type="datetime", value=dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)),
        "path": InputValue(type="file", uri=str(src)), "blob": InputValue(type="file[csv]", uri=stored.uri),
        "dir": InputValue(type="dir", uri=stored_dir.uri), "none": InputValue(type="optional[file]"),
    }
    out = tmp_path / "inputs"
    jobio.write_inputs(inputs, out, blobs)
    written = {p.name: p.read_text() for p in out.iterdir() if p.is_file()}
    assert written == {"s": "hello", "i": "3", "f": "0.5", "b": "true", "l": "[1, 2]", "d": '{"k": 1}',
                       "t": "2024-05-01T12:00:00Z", "path": "a,b\n", "blob": "a,b\n"}
    assert (out / "dir" / "sub" / "x.txt").read_text() == "x" and not (out / "none").exists()


@pytest.mark.parametrize("value, message", [
    (InputValue(type="file", uri="/no/such.csv"), "input 'x': no such file: /no/such.csv"),
    (InputValue(type="int", value="many"), "input 'x': 'many' is not an int"),
    (InputValue(type="file", uri="s3://b/k"), "input 'x': s3://b/k is on S3 but the blob store is local"),
])
def test_bad_inputs_raise_inputs_error(tmp_path: Path, blobs: LocalBlobStore, value: InputValue,
                                       message: str) -> None:
    with pytest.raises(jobio.InputsError) as e:
        jobio.write_inputs({"x": value}, tmp_path / "in", blobs)
    assert str(e.value).startswith(message)


def test_outputs_are_checked_parsed_and_stored(tmp_path: Path, blobs: LocalBlobStore) -> None:
    out = tmp_path / "outputs"
    (out / "model").mkdir(parents=True)
    (out / "model" / "w.bin").write_bytes(b"\x00\x01")
    (out / "n").write_text("5\n")
    (out / "data.csv").write_text("1\n")
    records, warnings = jobio.collect_outputs({"n": "int", "data": "file", "model": "dir", "opt": "optional[int]"},
                                              out, blobs)
    assert records["n"].value == 5 and Path(records["n"].uri).read_text() == "5"  # canonical text
    assert Path(records["data"].uri).read_text() == "1\n"
    assert warnings == ["output 'data': the job wrote 'data.csv'; using it as 'data'"]
    assert records["model"].size == 2 and records["opt"].value is None
    restored = tmp_path / "restored"
    blobs.get_dir(records["model"].uri, restored)
    assert (restored / "w.bin").read_bytes() == b"\x00\x01"


@pytest.mark.parametrize("files, declared, message", [
    ({"other": "x"}, {"a": "int", "b": "file"}, "missing outputs 'a', 'b'; the job wrote: other"),
    ({}, {"a": "int"}, "missing output 'a'; the job wrote nothing to /workflow/outputs"),
    ({"n": "abc"}, {"n": "int"}, "output 'n' is not an int: 'abc'"),
    ({"l": "[1, \"x\"]"}, {"l": "list[int]"}, "output 'l' is not a list[int]: '[1, \"x\"]' ("),
])
def test_unusable_outputs_raise_outputs_error(tmp_path: Path, blobs: LocalBlobStore, files: dict[str, str],
                                             declared: dict[str, str], message: str) -> None:
    out = tmp_path / "outputs"
    out.mkdir()
    for name, text in files.items():
        (out / name).write_text(text)
    with pytest.raises(jobio.OutputsError) as e:
        jobio.collect_outputs(declared, out, blobs)
    assert str(e.value).startswith(message)
    assert isinstance(e.value, jobio.JobIOError)


def test_consumed_outputs_are_linked_into_the_store_unless_shared(tmp_path: Path, blobs: LocalBlobStore) -> None:
    out = tmp_path / "outputs"
    out.mkdir()
    (out / "model").write_bytes(b"weights" * 1000)
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("not the job's")
    os.chmod(elsewhere, 0o644)
    os.link(elsewhere, out / "linked")  # a hard link to a file outside: its inode must not be taken or chmodded
    (out / "pointer").symlink_to("model")
    inode = (out / "model").stat().st_ino
    records, _ = jobio.collect_outputs({"model": "file[bin]", "linked": "file[txt]", "pointer": "file[bin]"}, out, blobs,
                                 consume=True)
    assert inode == os.stat(records["model"].uri).st_ino, "linked, not copied"
    assert os.stat(records["model"].uri).st_nlink == 1  # the job folder's name is given up
    assert Path(records["model"].uri).read_bytes() == b"weights" * 1000
    assert Path(records["pointer"].uri).read_bytes() == b"weights" * 1000  # copied through the symlink
    assert (elsewhere.stat().st_mode & 0o777) == 0o644
    assert Path(records["linked"].uri).read_text() == "not the job's"
    assert os.stat(records["model"].uri).st_ino != elsewhere.stat().st_ino
    assert (os.stat(records["model"].uri).st_mode & 0o777) == 0o444


def test_outputs_are_copied_unless_consumed(tmp_path: Path, blobs: LocalBlobStore) -> None:
    out = tmp_path / "outputs"
    out.mkdir()
    (out / "report").write_text("kept")
    records, _ = jobio.collect_outputs({"report": "file[txt]"}, out, blobs)
    assert (out / "report").read_text() == "kept" and Path(records["report"].uri).read_text() == "kept"


def test_the_same_bytes_stored_by_many_threads_at_once(tmp_path: Path, blobs: LocalBlobStore) -> None:
    rounds, threads = 20, 8
    for r in range(rounds):
        files = []
        for t in range(threads):
            f = tmp_path / f"r{r}" / f"t{t}"
            f.parent.mkdir(exist_ok=True)
            f.write_text(f"round {r}: the same bytes from every thread\n")
            files.append(f)
        start = threading.Barrier(threads)

        def put(f: Path) -> str:
            start.wait()
            return blobs.put_file(f, consume=True).digest

        with ThreadPoolExecutor(threads) as pool:
            digests = set(pool.map(put, files))
        assert len(digests) == 1
        assert Path(blobs.put_bytes(f"round {r}: the same bytes from every thread\n".encode()).uri).is_file()
