"""`flows artifacts list|show` and `flows lineage`: what the last apply produced and what it was made from.

Read-only, from the state alone (no flow file needed): the artifact declarations and the input edges are
recorded in each run record by the scheduler; the lineage walk lives in `reconcile.lineage`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from reconcile.cli.lazy import lazy_module
from reconcile.cli.main import app
from reconcile.cli.output import out_console
from vocab.errors import InputError
from vocab.masking import redact, redact_obj

lin = lazy_module("reconcile.lineage")  # the state models load when a command runs, not for `flows --help`

artifacts_app = typer.Typer(no_args_is_help=True, add_completion=False,
                            help="Domino artifacts (DATA / MODEL / REPORT) of the last apply: files, sizes, lineage.")
app.add_typer(artifacts_app, name="artifacts")

FLOW_OPTION = typer.Option(None, "--flow", help="The flow (workflow name), when the project's state has several.")


def _console() -> Console:
    return out_console()


def _states(flow: Optional[str]) -> tuple[Any, dict[str, Any]]:
    """The project's workspace (around the current folder) and the state of each flow (or of `flow`)."""
    from reconcile.loader import project_root_for
    from reconcile.workspace import Workspace

    ws = Workspace(project_root_for(Path.cwd() / "flows.toml"))
    flows = ws.backend.list_flows()
    if flow is not None:
        if flow not in flows:
            raise InputError(f"no state for flow '{flow}' here" + (f" (flows: {', '.join(flows)})" if flows else ""),
                             field="--flow")
        flows = [flow]
    if not flows:
        raise InputError(f"no state found in {ws.project_root}: run `flows apply` first, from the project folder")
    return ws, {f: ws.read_state(f).state for f in flows}


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _file_json(f: Any) -> dict[str, Any]:
    rec, p = f.record, f.producer
    return {"file_name": f.file_name, "node": f.node, "output": f.output, "produced": rec is not None,
            "digest": rec.digest if rec else None, "size": rec.size if rec else None, "uri": rec.uri if rec else None,
            "run_id": p.run_id if p else None, "job_id": p.job_id if p else None}


def _no_declarations(state: Any) -> str:
    run = lin.last_run(state)
    if run is None:
        return "never applied"
    return "the flow declares no artifacts" if run.sources else \
        "applied by an older flows that did not record artifacts: apply again"


# ---------------------------------------------------------------- flows artifacts list

@artifacts_app.command("list")
def list_artifacts(flow: Optional[str] = FLOW_OPTION,
                   as_json: bool = typer.Option(False, "--json", help="Print the artifacts as JSON.")) -> None:
    """The DATA / MODEL / REPORT artifacts of each flow's last apply, with their files, sizes and runs."""
    _, states = _states(flow)
    rows = [{"flow": f, "name": a.name, "type": a.type, "files": [_file_json(x) for x in lin.artifact_files(s, a)]}
            for f, s in states.items() for a in lin.declared_artifacts(s).values()]
    if as_json:
        typer.echo(json.dumps(redact_obj({"artifacts": rows}), indent=2))
        return
    console = _console()
    for flow_name, state in states.items():
        mine = [r for r in rows if r["flow"] == flow_name]
        if not mine:
            console.print(f"[dim]{escape(flow_name)}: no artifacts ({escape(_no_declarations(state))})[/dim]")
            continue
        console.print(_artifact_table(flow_name, mine))


def _artifact_table(flow_name: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"Artifacts of {redact(flow_name)} (last apply)", title_justify="left", title_style="bold")
    for col in ("artifact", "type", "file", "from", "size", "digest", "run"):
        table.add_column(col, overflow="fold", no_wrap=col in ("size", "digest", "run"))
    prefix = flow_name + "/"
    for row in rows:
        for i, f in enumerate(row["files"]):
            node = f["node"][len(prefix):] if f["node"].startswith(prefix) else f["node"]
            table.add_row(escape(redact(row["name"])) if i == 0 else "", row["type"] if i == 0 else "",
                          escape(redact(f["file_name"])), escape(redact(f"{node}.{f['output']}")),
                          _size(f["size"]) if f["produced"] else "not produced", (f["digest"] or "")[:12],
                          escape(f["run_id"] or ""))
    return table


# ---------------------------------------------------------------- flows artifacts show

@artifacts_app.command("show")
def show_artifact(
    name: str = typer.Argument(..., help="The artifact's name, e.g. \"Churn model\"."),
    dest: Optional[Path] = typer.Option(None, "--dest", help="Copy the artifact's files into this folder."),
    flow: Optional[str] = FLOW_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the artifact, its files and their lineage as JSON."),
) -> None:
    """An artifact's files and the lineage of each: node, run, job id, the digests of the inputs it was made
    from, recursively back to the flow inputs."""
    ws, states = _states(flow)
    flow_name, artifact = lin.find_artifact(states, name)
    state = states[flow_name]
    files = lin.artifact_files(state, artifact)
    copied = _copy(ws, files, dest) if dest is not None else {}
    if as_json:
        out = {"flow": flow_name, "name": artifact.name, "type": artifact.type,
               "files": [{**_file_json(f), "lineage": lin.lineage(state, f.producer, f.output) if f.producer else None,
                          **({"copied_to": copied[f.file_name]} if f.file_name in copied else {})} for f in files]}
        typer.echo(json.dumps(redact_obj(out), indent=2, default=str))
        return
    console = _console()
    root = Tree(Text.assemble((redact(artifact.name), "bold"), (f"  {artifact.type}", "magenta"),
                              (f"  ({flow_name}, last apply)", "dim")), guide_style="dim")
    for f in files:
        rec = f.record
        label = Text.assemble((redact(f.file_name), "bold"), "  ",
                              (f"{_size(rec.size)}  {rec.digest[:12]}" if rec else "not produced", "dim"))
        if f.file_name in copied:
            label += Text(f"  → {redact(copied[f.file_name])}", style="green")
        if f.producer is not None:
            tree = lin.lineage(state, f.producer, f.output)
            label += Text(f"  ← {f.node}.{f.output}  ", style="cyan") + _made_by(tree)
            _add_inputs(root.add(_redacted(label)), tree, set())
        else:
            root.add(_redacted(label))
    console.print(root)


def _copy(ws: Any, files: list[Any], dest: Path) -> dict[str, str]:
    from providers.blobs.base import ensure_inside
    from vocab.flytetypes import is_dir

    missing = [f.file_name for f in files if f.record is None or not f.record.uri]
    if missing:
        raise InputError(f"not produced by the last apply, nothing copied: {', '.join(missing)}", field="--dest")
    dest.mkdir(parents=True, exist_ok=True)
    copied = {}
    for f in files:
        rec = f.record
        assert rec is not None and rec.uri
        try:
            target = ensure_inside(dest, f.file_name)
        except ValueError as e:
            raise InputError(str(e), field="--dest") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        (ws.blobs.get_dir if is_dir(rec.type) else ws.blobs.get_file)(rec.uri, target)
        copied[f.file_name] = str(target)
    return copied


# ---------------------------------------------------------------- the lineage tree (rich)

def _value(item: dict[str, Any]) -> str:
    if "digest" in item:
        return item["digest"][:12]
    if "value" in item:
        return "= " + json.dumps(item["value"], ensure_ascii=False, default=str)
    return ""


def _made_by(node: dict[str, Any]) -> Text:
    """Which job made an output: its run, job id and cache key."""
    text = Text.assemble(("run ", "dim"), str(node.get("run_id") or "-"), ("  job ", "dim"),
                         str(node.get("job_id") or "-"), ("  key ", "dim"), (node.get("key") or "-")[:12])
    if not node.get("current"):
        text += Text("  (an earlier result, kept in the cache index)", style="dim")
    return text


def _add_inputs(branch: Tree, node: dict[str, Any], seen: set[str]) -> None:
    """Under `branch` (an output), each input it was made from; an input made by a node gets its own inputs."""
    seen.add(f"{node['address']}\0{node['digest']}")
    for item in node["inputs"]:
        src = item["from"]
        label = Text.assemble((item["name"], "bold"), (f": {item.get('type')}  ", "dim"), _value(item))
        if src["kind"] == "flow_input":
            shown = json.dumps(src.get("value"), ensure_ascii=False, default=str)
            branch.add(_redacted(label + Text(f"  ← flow input {src['name']} = {shown}", style="green")))
        elif src["kind"] == "literal":
            branch.add(_redacted(label + Text("  ← literal in the flow", style="dim")))
        elif src["kind"] == "unknown":
            where = f" {src['address']}.{src['output']}" if src.get("address") else ""
            branch.add(_redacted(label + Text(f"  ←{where} ({src['why']})", style="yellow")))
        else:
            child = branch.add(_redacted(label + Text(f"  ← {src['address']}.{src['output']}  ", style="cyan")
                                         + _made_by(src)))
            if f"{src['address']}\0{src['digest']}" in seen:
                child.add(Text("(its lineage is shown above)", style="dim"))
            else:
                _add_inputs(child, src, seen)


def _redacted(text: Text) -> Text:
    # Masks secrets in the plain text; styles are kept only where the text did not change length.
    masked = redact(text.plain)
    return text if masked == text.plain else Text(masked)


# ---------------------------------------------------------------- flows lineage

@app.command("lineage")
def lineage_cmd(
    what: str = typer.Argument(..., metavar="ADDR|DIGEST",
                               help="A node address (e.g. 'churn_training/Train') or an output digest (a prefix "
                                    "of at least 6 hex digits)."),
    output: Optional[str] = typer.Option(None, "--output", help="Only this output of the node."),
    flow: Optional[str] = FLOW_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the lineage tree as JSON."),
) -> None:
    """What produced an output and from what: node, run, job id, and each input's digest, back to the flow inputs."""
    _, states = _states(flow)
    target = lin.resolve(states, what, output)
    state = states[target.flow]
    trees = {name: lin.lineage(state, target.producer, name) for name in target.outputs}
    if as_json:
        typer.echo(json.dumps(redact_obj({"flow": target.flow, "outputs": trees, "note": target.note or None}),
                              indent=2, default=str))
        return
    console = _console()
    for name, tree in trees.items():
        head = Text.assemble((f"{tree['address']}.{name}", "bold"), (f"  {tree['type']}  ", "dim"), _value(tree),
                             (f"  {_size(tree['size'])}", "dim"), ("\nmade by ", "dim"), _made_by(tree))
        root = Tree(_redacted(head), guide_style="dim")
        _add_inputs(root, tree, set())
        console.print(root)
    if target.note:
        console.print(f"[dim]{escape(redact(target.note))}[/dim]")
