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

from tests.fixtures.apply_kit import ISOLATED, Project, kill_pids, make_project

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
    # named by its flag before anything is hashed (issue 17), with the tree_files rule's words
    assert r.err.startswith("Error: --indir: ") and "indir/gone is a broken symbolic link (to ../nowhere)" in r.err, r.err


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



OUTPUTS_LINK_FLOW = '''
@workflow
def wf() -> None:
    run_domino_job_task(flyte_task_name="swap", command="python scripts/swap.py",
                        output_specs=[Output(name="passwd", type=str), Output(name="group", type=FlyteFile)])
'''
SWAP = {"swap": '''
import shutil
mark("start")
outputs = os.environ["FLOWS_OUTPUTS_DIR"]
shutil.rmtree(outputs)
os.symlink("/etc", outputs)  # the whole outputs folder becomes a link: /etc/passwd would be "an output"
'''}


def test_an_outputs_folder_replaced_by_a_link_is_refused(tmp_path: Path) -> None:
    p = make_project(tmp_path / "proj", OUTPUTS_LINK_FLOW, SWAP)
    p.apply(code=1)
    node = p.state()["nodes"]["wf/swap"]
    assert node["status"] == "failed" and "outputs folder" in node["error"] and "link" in node["error"], node
    for secret in (Path("/etc/passwd").read_bytes(), Path("/etc/group").read_bytes()):
        assert not [b for b in (p.root / ".flows" / "blobs").glob("??/*") if b.read_bytes() == secret]

# ---- 3. a process the job leaves behind ----------------------------------------------------------------

DETACH_FLOW = '''
@workflow
def wf() -> TXT:
    detach = run_domino_job_task(flyte_task_name="detach", command="python scripts/detach.py",
                                 output_specs=[Output(name="o", type=TXT)])
    run_domino_job_task(flyte_task_name="slow", command="python scripts/slow.py",
                        timeout=datetime.timedelta(seconds=2))
    return detach["o"]
'''
# `setsid sh -c 'exec 3>>/workflow/outputs/o; sleep 3; echo TAMPERED >&3' &`, made to wait for the test's
# signal (marks/go) instead of a time, and to hold marks/<node>-left.lock while it lives.
LEAVE_BEHIND = '''
import subprocess, sys
LEFT = """
import fcntl, os, sys, time
out = open(sys.argv[1], "a") if sys.argv[1] else None
lock = open(os.path.join(os.environ["MARKS"], sys.argv[2] + "-left.lock"), "a")
fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
open(os.path.join(os.environ["MARKS"], sys.argv[2] + "-left.ready"), "w").close()
while not os.path.exists(os.path.join(os.environ["MARKS"], "go")):
    time.sleep(0.05)  # poll for the test's signal
if out:
    out.write("TAMPERED\\\\n")
"""


def leave_behind(output):
    subprocess.Popen(["setsid", sys.executable, "-c", LEFT, output, NODE], stdin=subprocess.DEVNULL)
    wait_for(exists(NODE + "-left.ready"))
'''
DETACH = {
    "detach": LEAVE_BEHIND + '''
mark("start")
leave_behind(os.path.join(os.environ["FLOWS_OUTPUTS_DIR"], "o"))
write("o", "original\\n")
''',
    "slow": LEAVE_BEHIND + '''
mark("start")
leave_behind("")
time.sleep(120)  # timed out after 2s
''',
}


@needs_isolation
def test_every_process_a_job_starts_ends_with_the_job(tmp_path: Path) -> None:
    p = make_project(tmp_path / "proj", DETACH_FLOW, DETACH)
    try:
        r = p.apply("--keep-going", code=1)
        assert "wf/slow: failed: timed out after 2s" in r.out
        assert not p.holders("detach-left"), "a process the job detached outlived it"
        assert not p.holders("slow-left"), "a process the job detached outlived its timeout"
    finally:
        (p.marks / "go").touch()  # what is left (if anything) may write now, and ends
        kill_pids(p.holders("slow-left"))
    blob = output_uri(p, "wf/detach", "o")
    assert blob.read_text() == "original\n"
    out = tmp_path / "out"
    assert p.run("outputs", "wf/detach", "--dest", str(out)).code == 0
    assert (out / "o").read_text() == "original\n"
    assert p.actions()["wf/detach"] == "reuse"


# ---- 4. a job writing into the project's .flows/ ------------------------------------------------------

TWO_FLOW = '''
@workflow
def wf() -> TXT:
    a = run_domino_job_task(flyte_task_name="a", command="python scripts/a.py",
                            output_specs=[Output(name="o", type=TXT)])
    b = run_domino_job_task(flyte_task_name="b", command="python scripts/b.py",
                            inputs=[Input(name="x", type=TXT, value=a["o"])],
                            output_specs=[Output(name="o", type=TXT)])
    return b["o"]
'''
TWO = {
    "a": 'mark("start")\nwrite("o", "from a\\n")\n',
    # As root, modes do not stop it: every blob it can find under any name of the project is overwritten.
    "b": '''
        import glob
        mark("start")
        found = []
        for top in {os.getcwd(), "/mnt/code", os.environ.get("FLOWS_PROJECT_ROOT", "")}:
            for blob in sorted(glob.glob(os.path.join(top, ".flows", "blobs", "??", "*"))):
                os.chmod(blob, 0o644)
                size = os.path.getsize(blob)
                open(blob, "r+b").write(b"X" * size)
                found.append(blob)
        for top in {os.getcwd(), "/mnt/code"}:
            try:
                open(os.path.join(top, ".flows", "planted"), "w").write("x")
                found.append(top + "/.flows/planted")
            except OSError:
                pass
        open(os.path.join(MARKS, "b.found"), "w").write("\\n".join(found))
        write("o", read("x").upper())
    ''',
}


@needs_isolation
def test_a_job_cannot_reach_the_projects_flows_folder(tmp_path: Path) -> None:
    p = make_project(tmp_path / "proj", TWO_FLOW, TWO)
    p.apply()
    assert (p.marks / "b.found").read_text() == ""  # .flows is an empty folder in the job's world
    assert not (p.root / ".flows" / "planted").exists()
    assert output_uri(p, "wf/a", "o").read_text() == "from a\n"
    assert output_uri(p, "wf/b", "o").read_text() == "FROM A\n"
    assert p.actions() == {"wf/a": "reuse", "wf/b": "reuse"}


def test_a_blob_changed_in_the_store_is_not_reused(tmp_path: Path) -> None:
    p = make_project(tmp_path / "proj", COPY_FLOW, COPY, files={"data/s.csv": "a,1\n"})
    p.apply(*DATA)
    blob = output_uri(p, "wf/copy", "out")
    st = blob.stat()
    # What a root job (or anyone) can do to a read-only file: same size, same times.
    os.chmod(blob, 0o644)
    blob.write_text("b,2\n")
    os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.chmod(blob, 0o444)
    plan = p.plan(*DATA)
    [node] = plan["nodes"]
    assert node["action"] == "run", node
    assert [r["message"] for r in node["reasons"]] == ["outputs missing from the blob store, or changed in it"]
    r = p.run("outputs", "wf/copy", "--dest", str(tmp_path / "out"))
    assert r.code == 1 and "Traceback" not in r.text, r.text
    assert "output 'out' has changed in the blob store since it was stored" in r.err, r.err
    p.apply(*DATA)
    assert p.starts("copy") == 2 and blob.read_text() == "a,1\n"  # stored again, over the changed bytes
    assert p.actions(*DATA) == {"wf/copy": "reuse"}
