"""A finished job's folder gives its space back at once without freeing inodes, never through a link, and is removed
at the end (providers/job_folders.py)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from providers.job_folders import KEEP_BYTES, RetiredFolders, empty_for_reuse, give_back_space
from tests.fixtures.projects import flows, write_project


def _job_folder(root: Path) -> Path:
    folder = root / "jobs" / "run-1" / "abc.1.x"
    (folder / "inputs" / "deep").mkdir(parents=True)
    (folder / "outputs").mkdir()
    (folder / "inputs" / "data").write_bytes(b"x" * 100_000)
    (folder / "inputs" / "deep" / "more").write_bytes(b"y" * 5_000)
    return folder


def test_files_are_truncated_keeping_their_inodes(tmp_path: Path) -> None:
    folder = _job_folder(tmp_path)
    before = os.stat(folder / "inputs" / "data").st_ino
    give_back_space(folder)
    after = os.stat(folder / "inputs" / "data")
    assert (after.st_size, after.st_ino) == (0, before)
    assert os.stat(folder / "inputs" / "deep" / "more").st_size == 0


def test_a_name_sharing_its_file_is_unlinked_not_truncated(tmp_path: Path) -> None:
    folder = _job_folder(tmp_path)
    blob = tmp_path / "blob"
    (folder / "outputs" / "model").write_bytes(b"weights")
    os.link(folder / "outputs" / "model", blob)  # as the blob store takes a consumed output
    give_back_space(folder)
    assert blob.read_bytes() == b"weights"
    assert not (folder / "outputs" / "model").exists()


def test_links_are_not_followed(tmp_path: Path) -> None:
    folder = _job_folder(tmp_path)
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "also").write_text("keep me too")
    (folder / "outputs" / "link").symlink_to(precious)
    (folder / "outputs" / "dirlink").symlink_to(outside, target_is_directory=True)
    give_back_space(folder)
    assert precious.read_text() == "keep me" and (outside / "also").read_text() == "keep me too"
    assert (folder / "outputs" / "link").is_symlink()


def test_remove_all_removes_the_folders_and_the_emptied_run_folder(tmp_path: Path) -> None:
    retired = RetiredFolders()
    first, second = _job_folder(tmp_path), tmp_path / "jobs" / "run-1" / "def.1.y"
    (second / "inputs").mkdir(parents=True)
    retired.add(first)
    assert first.is_dir()  # still there until the end
    retired.add(second)
    retired.remove_all()
    assert not (tmp_path / "jobs" / "run-1").exists() and (tmp_path / "jobs").is_dir()


def test_after_an_apply_no_job_folder_is_left(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    done = flows("apply", "flow.py", "wf", "--data", "data/in.csv", "--auto-approve", cwd=root)
    assert done.code == 0, done.text
    jobs = root / ".flows" / "jobs"
    assert not jobs.exists() or not any(jobs.iterdir())


def test_removal_never_enters_a_link_and_handles_deeper_folders(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep me")
    linked = tmp_path / "jobs" / "run-1" / "a.1.x"
    (linked / "inputs").mkdir(parents=True)
    (linked / "outputs").symlink_to(outside, target_is_directory=True)  # a job replaced its outputs with a link
    deep = _job_folder(tmp_path)  # inputs/deep/more: a folder inside
    retired = RetiredFolders()
    retired.add(linked)
    retired.add(deep)
    retired.remove_all()
    assert not linked.exists() and not deep.exists()
    assert (outside / "keep").read_text() == "keep me"


def _flat_job_folder(root: Path, name: str = "abc.1.x", inputs: tuple[str, ...] = ("a", "b")) -> Path:
    folder = root / "jobs" / "run-1" / name
    (folder / "inputs").mkdir(parents=True)
    (folder / "outputs").mkdir()
    for input_name in inputs:
        (folder / "inputs" / input_name).write_bytes(b"data")
    return folder


def test_a_folder_emptied_for_reuse_keeps_its_input_files_and_an_empty_outputs(tmp_path: Path) -> None:
    folder = _flat_job_folder(tmp_path)
    inode = os.stat(folder / "inputs" / "a").st_ino
    blob = tmp_path / "blob"
    (folder / "outputs" / "out").write_bytes(b"result")
    os.link(folder / "outputs" / "out", blob)  # a consumed output
    (folder / "outputs" / "stray").write_bytes(b"undeclared")
    (folder / "inputs" / "big").write_bytes(b"x" * (KEEP_BYTES + 1))
    assert empty_for_reuse(folder) == {"a", "b", "big"}
    assert not any((folder / "outputs").iterdir()) and blob.read_bytes() == b"result"
    # the same files; a big one gives its space back now, a small one is written over by the next job
    assert os.stat(folder / "inputs" / "big").st_size == 0
    assert (os.stat(folder / "inputs" / "a").st_ino, (folder / "inputs" / "a").read_bytes()) == (inode, b"data")


def test_a_folder_with_anything_but_plain_files_is_not_reused(tmp_path: Path) -> None:
    outside = tmp_path / "precious"
    outside.write_text("keep me")
    linked = _flat_job_folder(tmp_path, "l.1.x")
    (linked / "inputs" / "link").symlink_to(outside)  # a job swapped a link in
    second_name = _flat_job_folder(tmp_path, "n.1.x")
    os.link(second_name / "inputs" / "a", tmp_path / "other-name")
    deep = _flat_job_folder(tmp_path, "d.1.x")
    (deep / "outputs" / "sub").mkdir()
    extra = _flat_job_folder(tmp_path, "e.1.x")
    (extra / "more").mkdir()
    elsewhere = tmp_path / "elsewhere"  # a whole folder of the job's swapped for a link to one outside
    elsewhere.mkdir()
    (elsewhere / "big").write_bytes(b"y" * (KEEP_BYTES + 1))
    (elsewhere / "out").write_bytes(b"keep")
    swapped_inputs, swapped_outputs = _flat_job_folder(tmp_path, "i.1.x"), _flat_job_folder(tmp_path, "o.1.x")
    for folder, name in ((swapped_inputs, "inputs"), (swapped_outputs, "outputs")):
        shutil.rmtree(folder / name)
        (folder / name).symlink_to(elsewhere)
    for folder in (linked, second_name, deep, extra, swapped_inputs, swapped_outputs):
        assert empty_for_reuse(folder) is None, folder
    assert outside.read_text() == "keep me" and (tmp_path / "other-name").read_bytes() == b"data"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["big", "out"]
    assert os.path.getsize(elsewhere / "big") == KEEP_BYTES + 1


def test_take_hands_out_a_folder_keeping_no_input_name_the_job_lacks(tmp_path: Path) -> None:
    retired = RetiredFolders()
    pair, single = _flat_job_folder(tmp_path, "p.1.x"), _flat_job_folder(tmp_path, "s.1.x", ("a",))
    retired.add(pair, reuse=True)
    retired.add(single, reuse=True)
    assert retired.take(["c"]) is None
    assert retired.take(["a", "c"]) == (single, {"a"})  # fewer names: the job's inputs make the rest
    assert retired.take(["a"]) is None  # never one with a name more (`b` would be a stale input)
    assert retired.take(["b", "a"]) == (pair, {"a", "b"})
    assert retired.take(["a", "b"]) is None  # each folder to one job at a time
    unused = _flat_job_folder(tmp_path, "u.1.x")
    retired.add(unused)  # not reusable (its job may have left a process behind): only removed at the end
    assert retired.take(["a", "b"]) is None
    retired.remove_all()
    assert not (tmp_path / "jobs" / "run-1").exists()
