"""Profile one flows command on a generated project with pyinstrument (from bench/.venv).

    .venv/bin/python bench/profile.py plan  1000      # no-op plan at N=1000 (applies first if needed)
    .venv/bin/python bench/profile.py apply 1000      # full apply from clean at N=1000
    .venv/bin/python bench/profile.py state 10000     # parse_state of a 10,000-node state
    .venv/bin/python bench/profile.py help            # `flows --help` start-up (imports)

Writes bench/profiles/<what>-<N>.txt (text tree) and prints its top. pyinstrument runs in
bench/.venv's interpreter with the project and its venv's packages on the path (same Python).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

import gen  # noqa: E402
from tools import PEER_BIN, Flows  # noqa: E402

ENTRY = "import sys; sys.argv[0] = 'flows'; from reconcile.cli.main import run; run()"


def profiled(argv: list[str], cwd: Path, out: Path, interval: float = 0.001) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"]])
    cmd = [str(PEER_BIN / "pyinstrument"), "-i", str(interval), "-r", "text", "-o", str(out),
           "-p", "show_all=false", "-c", ENTRY, *argv]
    subprocess.run(cmd, cwd=cwd, env=env, check=False, stdout=subprocess.DEVNULL)


def spied(argv: list[str], cwd: Path, out: Path, env: dict[str, str]) -> None:
    """py-spy over every thread (apply's work happens in its node threads, which pyinstrument does not
    see), as collapsed stacks; then a summary of where the non-idle samples are."""
    raw = out.with_suffix(".collapsed")
    subprocess.run([str(PEER_BIN / "py-spy"), "record", "-r", "250", "-f", "raw", "-o", str(raw), "--subprocesses",
                    "--", *argv], cwd=cwd, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if raw.exists():
        out.write_text(summarize(raw))
        raw.unlink()  # ~1 MB of stacks; the summary is what goes in the repo


def summarize(raw: Path, top: int = 30) -> str:
    """Inclusive and self sample counts per function (project frames only for inclusive) from collapsed stacks."""
    incl: dict[str, int] = {}
    self_: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  for f in stack.split(";")]
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
        self_[frames[-1]] = self_.get(frames[-1], 0) + n
    lines = [f"{total} samples (all threads, not idle)", "", "inclusive:"]
    lines += [f"{100 * c / total:5.1f}%  {f}" for f, c in sorted(incl.items(), key=lambda x: -x[1])[:top]]
    lines += ["", "self:"]
    lines += [f"{100 * c / total:5.1f}%  {f}" for f, c in sorted(self_.items(), key=lambda x: -x[1])[:top]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("plan", "apply", "state", "help"))
    ap.add_argument("n", type=int, nargs="?", default=1000)
    a = ap.parse_args()
    outdir = BENCH / "profiles"
    outdir.mkdir(exist_ok=True)
    out = outdir / f"{a.what}-{a.n}.txt"
    with tempfile.TemporaryDirectory(prefix="flows-prof-") as tmp:
        root = Path(tmp)
        if a.what == "help":
            profiled(["--help"], root, out)
        elif a.what == "state":
            import extras
            from state.model import parse_state  # noqa: F401 - imported here for the profile's script
            path = root / "state.json"
            path.write_bytes(extras.synthetic_state(a.n).to_json_bytes())
            script = root / "load.py"
            script.write_text(f"from state.model import parse_state\nparse_state(open({str(path)!r}).read(), 'x')\n")
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"]]))
            subprocess.run([str(PEER_BIN / "pyinstrument"), "-i", "0.001", "-r", "text", "-o", str(out),
                            str(script)], cwd=root, env=env, check=False, stdout=subprocess.DEVNULL)
        else:
            p = gen.generate(a.n, root / "p", None)
            shutil.rmtree(p.dvc, ignore_errors=True)
            flows = Flows(p)
            if a.what == "plan":
                flows.run(flows.apply_argv(), timeout=1800)
                argv = flows.plan_argv()
            else:
                argv = flows.apply_argv()
            if a.what == "apply":
                spied(argv, p.flows, out, flows.env)
            else:
                profiled(argv[len(flows.exe):], p.flows, out)
    text = out.read_text() if out.exists() else "(no profile written)"
    print("\n".join(text.splitlines()[:60]))
    print(f"... full profile: {out}")


if __name__ == "__main__":
    main()
