"""A finished job's folder gives its space back at once without freeing inodes, never through a link, and is removed
at the end (providers/job_folders.py)."""
from __future__ import annotations

import os
from pathlib import Path

from providers.job_folders import RetiredFolders, give_back_space
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
