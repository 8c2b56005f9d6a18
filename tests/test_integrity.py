"""A "no changes" plan never lies (issue 15, items 1-4): the attacks of a careful, hostile user, end to end.

Each test is an attack as it was reproduced, run with the real `flows` on real jobs and files: an edit that
keeps size and mtime, a symlinked folder in a directory input, links out of a directory output, a process
a job leaves behind, a job writing into the project's `.flows/`, a blob changed in the store. Each one
made a plan reuse a result that did not match its inputs (or stored a file from outside the job) before.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_apply_common import ISOLATED, Project, kill_pids, make_project

needs_isolation = pytest.mark.skipif(not ISOLATED, reason="jobs get no namespaces of their own here")


def output_uri(p: Project, address: str, name: str) -> Path:
    return Path(p.state()["nodes"][address]["outputs"][name]["uri"])


# ---- 1. content changed, same size, same mtime ---------------------------------------------------------

COPY_FLOW = '''
@workflow
def wf(data: CSV) -> CSV:
    copy = run_domino_job_task(flyte_task_name="copy", command="python scripts/copy.py",
                               inputs=[Input(name="data", type=CSV, value=data)],
                               output_specs=[Output(name="out", type=CSV)])
    return copy["out"]
'''
COPY = {"copy": 'mark("start")\nwrite("out", read("data"))\n'}
DATA = ("--data", "data/s.csv")


def test_an_edit_that_keeps_size_and_mtime_is_seen(tmp_path: Path) -> None:
    p = make_project(tmp_path / "proj", COPY_FLOW, COPY, files={"data/s.csv": "a,1\n"})
    p.apply(*DATA)
    orig = tmp_path / "orig.csv"
    shutil.copy2(p.root / "data" / "s.csv", orig)  # cp -p
    # What `cp -p`, `rsync -t` and `tar x` do: new bytes, the old size and mtime (and inode).
    subprocess.run(f"printf 'b,2\\n' > data/s.csv && touch -r {orig} data/s.csv", shell=True, cwd=p.root, check=True)
    now, before = os.stat(p.root / "data" / "s.csv"), os.stat(orig)
    assert (now.st_size, now.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert p.actions(*DATA) == {"wf/copy": "update"}
    p.apply(*DATA)
    assert output_uri(p, "wf/copy", "out").read_text() == "b,2\n"


# ---- 2. symlinks in directory inputs and outputs -------------------------------------------------------

DIR_IN_FLOW = '''
@workflow
def wf(indir: FlyteDirectory) -> TXT:
    cat = run_domino_job_task(flyte_task_name="cat", command="python scripts/cat.py",
                              inputs=[Input(name="indir", type=FlyteDirectory, value=indir)],
                              output_specs=[Output(name="all", type=TXT)])
    return cat["all"]
'''
CAT = {"cat": '''
    mark("start")
    top = os.path.join(os.environ["FLOWS_INPUTS_DIR"], "indir")
    lines = []
    for d, dirs, files in os.walk(top):
        dirs.sort()
        lines += [os.path.relpath(os.path.join(d, f), top) + ":" + open(os.path.join(d, f)).read() for f in sorted(files)]
    write("all", "".join(lines))
'''}


def test_a_symlinked_folder_in_a_directory_input_is_part_of_its_digest(tmp_path: Path) -> None:
    p = make_project(tmp_path / "proj", DIR_IN_FLOW, CAT, files={"indir/a.txt": "a\n", "ext/data.txt": "one\n"})
    os.symlink("../ext", p.root / "indir" / "ext")  # indir/ext -> ../ext
    p.apply("--indir", "indir")
    assert output_uri(p, "wf/cat", "all").read_text() == "a.txt:a\next/data.txt:one\n"
    (p.root / "ext" / "data.txt").write_text("two\n")
    assert p.actions("--indir", "indir") == {"wf/cat": "update"}
    p.apply("--indir", "indir")
    assert output_uri(p, "wf/cat", "all").read_text() == "a.txt:a\next/data.txt:two\n"
    assert p.actions("--indir", "indir") == {"wf/cat": "reuse"}


def test_a_broken_link_in_a_directory_input_is_a_clear_error(tmp_path: Path) -> None:
    p = make_project(tmp_path / "proj", DIR_IN_FLOW, CAT, files={"indir/a.txt": "a\n"})
    os.symlink("../nowhere", p.root / "indir" / "gone")
    r = p.run("plan", "flow.py", "wf", "--indir", "indir")
    assert r.code == 1 and "Traceback" not in r.text, r.text
    assert "input indir" in r.err and "indir/gone is a broken symbolic link (to ../nowhere)" in r.err, r.err


DIR_OUT_FLOW = '''
@workflow
def wf() -> None:
    run_domino_job_task(flyte_task_name="leak_file", command="python scripts/leak_file.py",
                        output_specs=[Output(name="d", type=FlyteDirectory)])
    run_domino_job_task(flyte_task_name="leak_dir", command="python scripts/leak_dir.py",
                        output_specs=[Output(name="d", type=FlyteDirectory)])
    run_domino_job_task(flyte_task_name="inside", command="python scripts/inside.py",
                        output_specs=[Output(name="d", type=FlyteDirectory)])
'''
MAKE_D = '''
mark("start")
d = os.path.join(os.environ["FLOWS_OUTPUTS_DIR"], "d")
os.makedirs(os.path.join(d, "sub"))
open(os.path.join(d, "sub", "x.txt"), "w").write("x\\n")
'''
DIR_OUT = {
    "leak_file": MAKE_D + 'os.symlink("/etc/passwd", os.path.join(d, "pw"))\n',
    "leak_dir": MAKE_D + 'os.symlink("/etc", os.path.join(d, "etc"))\n',
    "inside": MAKE_D + 'os.symlink("sub", os.path.join(d, "alias"))\nos.symlink("sub/x.txt", os.path.join(d, "copy.txt"))\n',
}


def test_links_that_leave_a_directory_output_are_refused_and_links_inside_are_kept(tmp_path: Path) -> None:
    p = make_project(tmp_path / "proj", DIR_OUT_FLOW, DIR_OUT)
    r = p.apply("--keep-going", code=1)
    nodes = p.state()["nodes"]
    assert nodes["wf/leak_file"]["status"] == "failed" and nodes["wf/leak_dir"]["status"] == "failed", r.text
    assert nodes["wf/leak_file"]["error"] == "output 'd': d/pw is a link to /etc/passwd, outside the outputs folder"
    assert nodes["wf/leak_dir"]["error"] == "output 'd': d/etc is a link to /etc, outside the outputs folder"
    passwd = Path("/etc/passwd").read_bytes()
    assert not [b for b in (p.root / ".flows" / "blobs").glob("??/*") if b.read_bytes() == passwd]
    assert nodes["wf/inside"]["status"] == "succeeded"
    out = tmp_path / "out"
    assert p.run("outputs", "wf/inside", "--dest", str(out)).code == 0
    files = sorted(f.relative_to(out).as_posix() for f in out.rglob("*") if f.is_file())
    assert files == ["d/alias/x.txt", "d/copy.txt", "d/sub/x.txt"]  # followed inside the folder, stored as files
