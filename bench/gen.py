"""Generate one synthetic ML-shaped DAG of N nodes as four equivalent projects.

The same DAG and the same shell work become:
- a flows project (flows.toml + flow.py with `run_domino_job_task`, FlyteFile inputs/outputs),
- a DVC pipeline (dvc.yaml, one stage per node; `git init` + `dvc init`),
- a Snakefile (one rule, one rule instance per node),
- the floor: the bare commands grouped into topological waves for `xargs -P2`.

The DAG is built from 10-node units that look like a small training flow: two loads that read
raw sources (fan-in into a merge), a chain (clean -> features), a diamond (left/right -> join),
a train step that also reads the previous unit's features (cross-unit edge), and an eval.
Depth stays constant (8 waves) whatever N is, so the floor parallelises well.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

SOURCES = 4           # raw source files (flow inputs for flows, plain files for the peers)
FLOW_NAME = "bench"   # the @workflow function name, so flows addresses are "bench/<node>"
UNIT = ("load_a", "load_b", "merge", "clean", "feat", "left", "right", "join", "train", "eval")


@dataclasses.dataclass(frozen=True)
class Node:
    name: str
    deps: tuple[str, ...]     # upstream node names
    source: int | None        # raw source index, for loads
    depth: int                # topological wave (0 = reads only raw sources)


def build_dag(n: int) -> list[Node]:
    """Nodes in topological order; the last unit is cut short to give exactly n nodes."""
    nodes: list[Node] = []
    depth: dict[str, int] = {}

    def add(name: str, deps: tuple[str, ...], source: int | None = None) -> None:
        d = 1 + max((depth[x] for x in deps), default=-1)
        depth[name] = d
        nodes.append(Node(name, deps, source, d))

    u = 0
    while len(nodes) < n:
        p = f"u{u:05d}_"
        prev_feat = f"u{u - 1:05d}_feat" if u and f"u{u - 1:05d}_feat" in depth else None
        steps: list[tuple[str, tuple[str, ...], int | None]] = [
            ("load_a", (), u % SOURCES),
            ("load_b", (), (u + 1) % SOURCES),
            ("merge", (p + "load_a", p + "load_b"), None),
            ("clean", (p + "merge",), None),
            ("feat", (p + "clean",), None),
            ("left", (p + "feat",), None),
            ("right", (p + "feat",), None),
            ("join", (p + "left", p + "right"), None),
            ("train", (p + "join",) + ((prev_feat,) if prev_feat else ()), None),
            ("eval", (p + "train",), None),
        ]
        for kind, deps, src in steps:
            if len(nodes) == n:
                break
            add(p + kind, deps, src)
        u += 1
    return nodes


def downstream(nodes: list[Node], name: str) -> set[str]:
    """Every node that (transitively) reads `name`'s output."""
    children: dict[str, list[str]] = {}
    for node in nodes:
        for d in node.deps:
            children.setdefault(d, []).append(node.name)
    seen: set[str] = set()
    stack = [name]
    while stack:
        for c in children.get(stack.pop(), []):
            if c not in seen:
                seen.add(c)
                stack.append(c)
    return seen


def change_target(nodes: list[Node]) -> str:
    """The node whose command the one-change scenario edits: a `clean` in the middle of the DAG."""
    cleans = [x.name for x in nodes if x.name.endswith("_clean")]
    return cleans[len(cleans) // 2]


# --- the shell work, identical in every tool; only the paths differ ------------------------------

def shell(tag: str, inputs: list[str], output: str) -> str:
    """Read 1-2 small files, write one small file whose content depends on the inputs and the node."""
    return "{ echo " + tag + "; cat " + " ".join(inputs) + "; } | cksum > " + output


def edited(command: str, tag: str) -> str:
    """The one-change scenario's edit of a command (the same text change in every tool)."""
    old = "echo " + tag + ";"
    assert old in command, (tag, command)
    return command.replace(old, "echo " + tag + " v2;", 1)


def input_names(node: Node) -> list[str]:
    return ["a", "b"][: max(1, len(node.deps))]


def peer_paths(node: Node) -> list[str]:
    if node.source is not None:
        return [f"data/src{node.source}.csv"]
    return [f"out/{d}.txt" for d in node.deps]


def peer_command(node: Node) -> str:
    return shell(node.name, peer_paths(node), f"out/{node.name}.txt")


def flows_command(node: Node) -> str:
    ins = [f"/workflow/inputs/{i}" for i in input_names(node)]
    return shell(node.name, ins, "/workflow/outputs/out")


# --- writers -------------------------------------------------------------------------------------

def write_sources(root: Path) -> None:
    (root / "data").mkdir(parents=True, exist_ok=True)
    for i in range(SOURCES):
        lines = "".join(f"{i},{j},{(i * 7 + j * 13) % 101}\n" for j in range(50))
        (root / "data" / f"src{i}.csv").write_text("id,row,value\n" + lines)


FLOW_HEADER = '''"""Synthetic benchmark flow ({n} nodes), generated by bench/gen.py. Do not edit by hand."""
from typing import TypeVar

from flytekit import workflow
from flytekit.types.file import FlyteFile
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task

TXT = FlyteFile[TypeVar("txt")]

# (task name, command, [(input name, upstream node or flow input)])
NODES = [
'''

FLOW_FOOTER = '''
]


@workflow
def {flow}({params}) -> TXT:
    values = {{{values}}}
    for name, command, inputs in NODES:
        produced = run_domino_job_task(
            flyte_task_name=name,
            command=command,
            inputs=[Input(name=i, type=TXT, value=values[src]) for i, src in inputs],
            output_specs=[Output(name="out", type=TXT)],
            environment_name="Domino Standard Environment Py3.10",
            hardware_tier_name="Small",
            use_project_defaults_for_omitted=True,
        )
        values[name] = produced["out"]
    return values[NODES[-1][0]]
'''


def write_flows(root: Path, nodes: list[Node]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    write_sources(root)
    (root / "flows.toml").write_text("# generated by bench/gen.py: defaults (local provider, state in .flows/)\n"
                                     "[tool.flows]\n")
    rows = []
    for node in nodes:
        srcs = [f"src{node.source}"] if node.source is not None else list(node.deps)
        ins = list(zip(input_names(node), srcs))
        rows.append(f"    ({node.name!r}, {flows_command(node)!r}, {ins!r}),\n")
    params = ", ".join(f"src{i}: TXT" for i in range(SOURCES))
    values = ", ".join(f'"src{i}": src{i}' for i in range(SOURCES))
    (root / "flow.py").write_text(FLOW_HEADER.format(n=len(nodes)) + "".join(rows)
                                  + FLOW_FOOTER.format(flow=FLOW_NAME, params=params, values=values))


def flows_input_args() -> list[str]:
    """`--src0 data/src0.csv ...`, as pyflyte takes flow inputs (relative to the project folder)."""
    args: list[str] = []
    for i in range(SOURCES):
        args += [f"--src{i}", f"data/src{i}.csv"]
    return args


def write_dvc(root: Path, nodes: list[Node], dvc: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    write_sources(root)
    (root / "out").mkdir(exist_ok=True)
    stages = {}
    for node in nodes:
        stages[node.name] = {"cmd": peer_command(node), "deps": peer_paths(node),
                             "outs": [f"out/{node.name}.txt"]}
    # JSON is valid YAML and much faster to write for 10,000 stages; DVC reads it the same.
    (root / "dvc.yaml").write_text(json.dumps({"stages": stages}, indent=1) + "\n")
    env = dvc_env()
    run = lambda *a: subprocess.run(list(a), cwd=root, env=env, check=True, capture_output=True)  # noqa: E731
    run("git", "init", "-q")
    run("git", "config", "user.email", "bench@example.invalid")
    run("git", "config", "user.name", "bench")
    run(dvc, "init", "-q")
    # No network (analytics, update checks); keep DVC's site cache (state db) inside the repo so a
    # "from clean" reset really is clean.
    run(dvc, "config", "core.analytics", "false")
    run(dvc, "config", "core.check_update", "false")
    run(dvc, "config", "core.site_cache_dir", str(root / ".dvc" / "site"))


def dvc_env() -> dict[str, str]:
    env = dict(os.environ)
    env["DVC_NO_ANALYTICS"] = "1"
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


SNAKE_RULES = '''

wildcard_constraints:
    n="[A-Za-z0-9_]+"

rule all:
    input: [f"out/{n}.txt" for n in SINKS]

rule node:
    input: lambda w: DEPS[w.n]
    output: "out/{n}.txt"
    params: cmd=lambda w: CMD[w.n]
    shell: "{params.cmd}"
'''


def write_snakemake(root: Path, nodes: list[Node]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    write_sources(root)
    deps = "".join(f"    {x.name!r}: {peer_paths(x)!r},\n" for x in nodes)
    cmds = "".join(f"    {x.name!r}: {peer_command(x)!r},\n" for x in nodes)
    # `all` asks for the sinks only, as a real Snakefile would; every other output is needed by them.
    used = {d for x in nodes for d in x.deps}
    sinks = [x.name for x in nodes if x.name not in used]
    (root / "Snakefile").write_text("# generated by bench/gen.py: one rule instance per node\n"
                                    f"DEPS = {{\n{deps}}}\nCMD = {{\n{cmds}}}\nSINKS = {sinks!r}\n" + SNAKE_RULES)


def write_floor(root: Path, nodes: list[Node]) -> None:
    """Waves of bare commands and a driver script: the least any tool can spend on this DAG."""
    root.mkdir(parents=True, exist_ok=True)
    write_sources(root)
    waves: dict[int, list[str]] = {}
    for node in nodes:
        waves.setdefault(node.depth, []).append(peer_command(node))
    wdir = root / "waves"
    wdir.mkdir(exist_ok=True)
    for d, cmds in sorted(waves.items()):
        (wdir / f"{d:04d}.txt").write_text("\n".join(cmds) + "\n")
    (root / "floor.sh").write_text(
        "#!/bin/bash\n# Run each topological wave with 2 workers; a wave starts when the previous one is done.\n"
        "set -e\nmkdir -p out\nfor w in waves/*.txt; do xargs -d '\\n' -P2 -n1 bash -c < \"$w\"; done\n")
    # The same waves with a bare `sh -c` per job (dash where sh is dash): the cheapest process per job.
    (root / "floor_sh.sh").write_text(
        "#!/bin/bash\n# Each wave's commands with 2 workers, a bare `sh -c` per job.\n"
        "set -e\nmkdir -p out\nfor w in waves/*.txt; do xargs -d '\\n' -P2 -n1 sh -c < \"$w\"; done\n")


@dataclasses.dataclass
class Projects:
    n: int
    root: Path
    nodes: list[Node]
    flows: Path
    dvc: Path
    snakemake: Path
    floor: Path


def generate(n: int, root: Path, dvc: str | None) -> Projects:
    """Write all four projects under `root` (dvc=None skips the DVC one: no dvc executable)."""
    nodes = build_dag(n)
    p = Projects(n, root, nodes, root / "flows", root / "dvc", root / "snakemake", root / "floor")
    write_flows(p.flows, nodes)
    if dvc:
        write_dvc(p.dvc, nodes, dvc)
    write_snakemake(p.snakemake, nodes)
    write_floor(p.floor, nodes)
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description="Write the synthetic flow as flows/DVC/Snakemake/floor projects.")
    ap.add_argument("n", type=int)
    ap.add_argument("dest", type=Path)
    ap.add_argument("--dvc", default=shutil.which("dvc") or str(Path(__file__).parent / ".venv/bin/dvc"))
    a = ap.parse_args()
    if a.dest.exists() and any(a.dest.iterdir()):
        sys.exit(f"{a.dest} is not empty")
    p = generate(a.n, a.dest.resolve(), str(Path(a.dvc).resolve()) if Path(a.dvc).exists() else None)
    print(f"{p.n} nodes, {max(x.depth for x in p.nodes) + 1} waves -> {p.root}")


if __name__ == "__main__":
    main()
