"""The one rule for symbolic links in directories (`vocab.digest.tree_files`), obeyed by a directory
input's digest, the job's copy of that input and a stored directory output, on the local and S3 stores."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from providers import jobio
from providers.blobs.local import LocalBlobStore
from vocab.digest import TreeError, dir_digest, tree_files
from tests.fixtures.s3 import S3Env


def linked_tree(root: Path) -> Path:
    """indir/{a.txt, sub/b.txt, ext -> ../ext, b.link -> sub/b.txt} and ext/data.txt beside it."""
    (root / "indir" / "sub").mkdir(parents=True)
    (root / "ext").mkdir()
    (root / "indir" / "a.txt").write_text("a")
    (root / "indir" / "sub" / "b.txt").write_text("b")
    (root / "ext" / "data.txt").write_text("one")
    os.symlink("../ext", root / "indir" / "ext")
    os.symlink("sub/b.txt", root / "indir" / "b.link")
    return root / "indir"


def test_links_are_followed_as_what_they_point_to(tmp_path: Path) -> None:
    indir = linked_tree(tmp_path)
    assert [rel for rel, _ in tree_files(indir)] == ["a.txt", "b.link", "ext/data.txt", "sub/b.txt"]
    before = dir_digest(indir)
    (tmp_path / "ext" / "data.txt").write_text("two")
    assert dir_digest(indir) != before


def test_the_jobs_copy_of_a_directory_input_is_what_its_digest_covers(tmp_path: Path) -> None:
    indir = linked_tree(tmp_path)
    blobs = LocalBlobStore(tmp_path / "blobs")
    jobio.fetch("indir", "dir", str(indir), tmp_path / "copy", blobs)
    copied = sorted(p.relative_to(tmp_path / "copy").as_posix() for p in (tmp_path / "copy").rglob("*") if p.is_file())
    assert copied == [rel for rel, _ in tree_files(indir)]
    assert not any(p.is_symlink() for p in (tmp_path / "copy").rglob("*"))
    assert dir_digest(tmp_path / "copy") == dir_digest(indir) == blobs.put_dir(indir).digest


@pytest.mark.parametrize("make, message", [
    (lambda d: os.symlink("../nowhere", d / "gone"), "gone is a broken symbolic link (to ../nowhere)"),
    (lambda d: os.symlink("..", d / "sub" / "up"), "sub/up is a symbolic link loop (back to {d})"),
    (lambda d: os.mkfifo(d / "pipe"), "pipe is neither a file nor a folder"),
], ids=["broken", "loop", "fifo"])
def test_what_cannot_be_followed_is_an_error_naming_it(tmp_path: Path, make, message: str) -> None:
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    make(d)
    with pytest.raises(TreeError) as e:
        tree_files(d)
    assert str(e.value) == message.format(d=d)
    with pytest.raises(jobio.InputsError, match="^input 'd': "):
        jobio.fetch("d", "dir", str(d), tmp_path / "copy", LocalBlobStore(tmp_path / "blobs"))


def test_an_output_may_link_only_inside_its_folder(tmp_path: Path) -> None:
    out = tmp_path / "outputs" / "d"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "x").write_text("x")
    (tmp_path / "secret").write_text("s")
    os.symlink("sub", out / "alias")
    assert [rel for rel, _ in tree_files(out, confine=True)] == ["alias/x", "sub/x"]
    os.symlink("../../../secret", out / "sub" / "leak")  # reached through a followed folder link, too
    with pytest.raises(TreeError, match=f"^alias/leak is a link to {tmp_path / 'secret'}, outside the outputs folder$"):
        tree_files(out, confine=True)
    blobs = LocalBlobStore(tmp_path / "blobs")
    with pytest.raises(jobio.OutputsError) as e:
        jobio.collect_outputs({"d": "dir"}, tmp_path / "outputs", blobs)
    assert str(e.value) == f"output 'd': d/alias/leak is a link to {tmp_path / 'secret'}, outside the outputs folder"
    assert blobs.list_digests() == set()  # nothing stored


def test_the_s3_store_obeys_the_same_rule(s3: S3Env, tmp_path: Path) -> None:
    indir = linked_tree(tmp_path)
    store = s3.blobs()
    assert store.put_dir(indir).digest == dir_digest(indir)
    with pytest.raises(TreeError, match="^ext is a link to .*, outside the outputs folder$"):
        store.put_dir(indir, confine=True)


def test_the_domino_provider_uploads_a_directory_input_under_the_same_rule(tmp_path: Path) -> None:
    from providers.base import InputValue
    from providers.domino.provider import DominoProvider
    from vocab.errors import ProviderError

    indir = linked_tree(tmp_path)
    provider = object.__new__(DominoProvider)  # only its blob store is used to upload an input
    provider.blobs = LocalBlobStore(tmp_path / "blobs")
    uploaded = provider._upload_input("indir", InputValue(type="dir", uri=str(indir)), "wf/x")
    assert uploaded.digest == dir_digest(indir)
    os.symlink("../nowhere", indir / "gone")  # broken between the plan and the start
    with pytest.raises(ProviderError) as e:
        provider._upload_input("indir", InputValue(type="dir", uri=str(indir)), "wf/x")
    assert str(e.value) == f"node 'wf/x': input 'indir': {indir / 'gone'} is a broken symbolic link (to ../nowhere)"
