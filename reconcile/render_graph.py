"""Render a FlowGraph for people (a rich tree, tables) and for tools (JSON, Graphviz DOT, Mermaid).

Every renderer takes an optional `{address: action}` mapping (plan actions: create, update, reuse, ...)
so a plan can colour the same pictures. Callers pass an already redacted graph (see `redacted`):
rich may wrap a long value across lines, and a secret split in two would escape a later redaction.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any, Mapping

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from vocab.errors import FlowsError
from reconcile.graph import Binding, FlowGraph, Node
from reconcile.plan_model import COLOURS, SYMBOLS
from vocab.masking import redact_obj

Actions = Mapping[str, str] | None

# Fill colours for DOT / Mermaid, one per plan action (the terminal colours of plan_model, lightened).
FILLS: dict[str, str] = {"create": "#d4f7d4", "update": "#fff3c4", "run": "#f3d4f7", "pending": "#d4f1f7",
                         "approve": "#ffe0b3", "reuse": "#eeeeee", "forget": "#f7d4d4"}


def forgotten(graph: FlowGraph, actions: Actions) -> list[str]:
    """Addresses a plan marks `forget`: in the state, gone from the flow, so drawn apart, without edges."""
    return [a for a, act in (actions or {}).items() if a not in graph.nodes and act == "forget"]


def redacted(graph: FlowGraph) -> FlowGraph:
    """A copy of the graph with every secret value masked (API keys, secret-named env values)."""
    return FlowGraph.model_validate(redact_obj(graph.model_dump(mode="json")))


def short(graph: FlowGraph, address: str) -> str:
    """An address without the leading `<workflow>/`: what people read in a picture of one flow."""
    prefix = graph.workflow + "/"
    return address[len(prefix):] if address.startswith(prefix) else address


def describe_binding(graph: FlowGraph, b: Binding) -> str:
    if b.kind == "literal":
        return json.dumps(b.value, ensure_ascii=False)
    fields = "".join(f".{p}" for p in b.path)
    if b.kind == "flow_input":
        return f"input {b.name}{fields}"
    gates = [graph.nodes[g].gate if g in graph.nodes else short(graph, g) for g in b.after]
    through = f" (once {', '.join(repr(g) for g in gates)} {'is' if len(gates) == 1 else 'are'} approved)" if gates else ""
    return f"{short(graph, b.node or '')}.{b.output}{fields}{through}"


def _edges(node: Node) -> list[tuple[str, Binding]]:
    """(input name, binding) per data edge into `node`: a list/dict of flow values gives one per element."""
    return [(name, leaf) for name, b in node.bindings.items() for leaf in b.leaves()]


def _ordering(node: Node) -> list[str]:
    """Ordering-only upstreams drawn dashed: `a >> b`, and the approval gates a value passed through."""
    return list(dict.fromkeys([*node.after, *(g for b in node.bindings.values() for g in b.gates())]))


def _styled(label: str, action: str | None) -> Text:
    if action is None:
        return Text(label, style="bold")
    colour = COLOURS.get(action, "white")
    return Text(f"{SYMBOLS.get(action, '?')} {label}", style=f"bold {colour}") + Text(f"  ({action})", style=colour)


def _node_text(graph: FlowGraph, node: Node, action: str | None) -> Text:
    text = _styled(short(graph, node.address), action)
    if node.outputs:
        text += Text("  → " + ", ".join(f"{k}: {t}" for k, t in node.outputs.items()), style="dim")
    if node.kind == "gate" and action is None:  # (with a plan, its action says it: ⏸ approve, or = reuse)
        text += Text(f"  ⏸ waits for approval (--approve {node.gate})", style="bright_yellow")
    return text


# ---------------------------------------------------------------- text tree (flows graph)

def tree(graph: FlowGraph, actions: Actions = None) -> Tree:
    """The DAG as a tree: each node sits under its last upstream (so everything it needs is drawn above
    it); its other upstreams show a one-line reference instead of repeating the subtree."""
    actions = actions or {}
    order = graph.order()
    position = {a: i for i, a in enumerate(order)}
    home = {a: max(n.upstreams(), key=position.__getitem__) for a, n in graph.nodes.items() if n.upstreams()}
    root = Tree(Text.assemble((graph.workflow, "bold"), ("  " + graph.file, "dim")), guide_style="dim")
    if graph.inputs:
        root.add(Text("inputs: " + ", ".join(f"{n}: {i.type}" + ("" if i.required else f" = {json.dumps(i.default)}")
                                             for n, i in graph.inputs.items()), style="cyan"))

    def add(parent: Tree, address: str, ordering_only: bool = False) -> None:
        node = graph.nodes[address]
        label = _node_text(graph, node, actions.get(address))
        branch = parent.add(label + Text("  (ordering only)", style="dim") if ordering_only else label)
        for child in order:
            child_node = graph.nodes[child]
            if address not in child_node.upstreams():
                continue
            if home[child] == address:
                add(branch, child, ordering_only=address not in child_node.data_upstreams())
            else:
                why = "ordering only" if address not in child_node.data_upstreams() else "also needs this"
                branch.add(Text(f"↓ {short(graph, child)}  ({why}; drawn under {short(graph, home[child])})",
                                style="dim"))

    for address in order:
        if address not in home:
            add(root, address)
    if graph.outputs:
        root.add(Text("outputs: " + ", ".join(f"{n} ← {describe_binding(graph, b)}" for n, b in graph.outputs.items()),
                      style="cyan"))
    gone = forgotten(graph, actions)
    if gone:
        branch = root.add(Text("in the state, gone from the flow:", style="dim"))
        for address in gone:
            branch.add(_styled(short(graph, address), "forget"))
    return root


# ---------------------------------------------------------------- validate report

def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", show_lines=False, expand=False)
    for c in columns:
        table.add_column(c, overflow="fold")
    return table


def _node_what(node: Node) -> str:
    if node.kind == "domino_job":
        return node.command
    if node.kind == "python" and node.python:
        return f"@task {node.python['qualname']} ({os.path.basename(node.python['file'])})"
    if node.kind == "gate":
        from reconcile.plan import fmt_seconds
        return (f"⏸ apply stops here until '{node.gate}' is approved (--approve {node.gate})" +
                (f"; times out after {fmt_seconds(node.timeout_seconds)}" if node.timeout_seconds else ""))
    return "; ".join(f"{s.get('kind', '?')}: {s.get('artifact', '?')}" for s in node.export_specs)


def report(graph: FlowGraph, actions: Actions = None) -> RenderableType:
    """`flows validate`: the flow inputs, every node with its bindings and outputs, flow outputs, artifacts."""
    actions = actions or {}
    parts: list[RenderableType] = []
    inputs = _table("Flow inputs", "name", "type", "default")
    for name, fi in graph.inputs.items():
        inputs.add_row(escape(name), escape(fi.type), "(required)" if fi.required else escape(json.dumps(fi.default)))
    parts.append(inputs if graph.inputs else Text("Flow inputs: none", style="bold"))

    nodes = Tree(Text("Nodes (in run order)", style="bold"), guide_style="dim")
    for address, node in graph.nodes.items():
        branch = nodes.add(_styled(short(graph, address), actions.get(address))
                           + Text(f"  {_node_what(node)}", style="dim"))
        for k, b in node.bindings.items():
            branch.add(Text(f"in   {k}: {node.inputs.get(k, b.type)} ← {describe_binding(graph, b)}"))
        if node.after:
            branch.add(Text("after " + ", ".join(short(graph, a) for a in node.after)))
        for k, t in node.outputs.items():
            art = node.output_artifacts.get(k)
            branch.add(Text(f"out  {k}: {t}") + (Text(f"  → artifact {art.artifact} ({art.file_name})", style="magenta")
                                                  if art else Text("")))
    parts.append(nodes)

    if graph.outputs:
        outputs = _table("Flow outputs", "name", "type", "from")
        for name, b in graph.outputs.items():
            outputs.add_row(escape(name), escape(b.type), escape(describe_binding(graph, b)))
        parts.append(outputs)
    if graph.artifacts:
        arts = _table("Artifacts", "artifact", "type", "files")
        for spec in graph.artifacts.values():
            arts.add_row(escape(spec.name), spec.type, escape("\n".join(
                f"{f.file_name} ← {short(graph, f.node)}.{f.output}" for f in spec.files)))
        parts.append(arts)
    return Group(*parts)


def summary_line(graph: FlowGraph) -> str:
    n = len(graph.nodes)
    return (f"{graph.workflow}: {n} node{'s' * (n != 1)}, {len(graph.inputs)} input(s), "
            f"{len(graph.outputs)} output(s), {len(graph.artifacts)} artifact(s)")


def as_json(graph: FlowGraph, actions: Actions = None) -> dict[str, Any]:
    """The machine-readable form of `flows validate --json`."""
    data = graph.model_dump(mode="json")
    data["nodes"] = [{**n, "upstreams": graph.nodes[a].upstreams(), **({"action": actions[a]} if actions and a in actions
                                                                       else {})}
                     for a, n in data["nodes"].items()]
    return {"valid": True, **data}


# ---------------------------------------------------------------- Graphviz DOT

def _dot_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: FlowGraph, actions: Actions = None, legend: bool = False) -> str:
    """Graphviz DOT; `legend` adds a key of the plan actions used (for pictures that travel without the text)."""
    actions = actions or {}
    lines = [f"digraph {_dot_str(graph.workflow)} {{", "  rankdir=LR;",
             '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];']
    for name, fi in graph.inputs.items():
        lines.append(f"  {_dot_str('input:' + name)} [label={_dot_str(f'{name}: {fi.type}')}, shape=ellipse, "
                     'fillcolor="#e8f0ff"];')
    for address, node in graph.nodes.items():
        action = actions.get(address)
        label = short(graph, address) + (f"\n({action})" if action else "")
        fill = f', fillcolor="{FILLS[action]}"' if action in FILLS else ""
        lines.append(f"  {_dot_str(address)} [label={_dot_str(label)}{fill}];")
    for address, node in graph.nodes.items():
        for name, b in _edges(node):
            if b.kind == "flow_input":
                lines.append(f"  {_dot_str('input:' + (b.name or ''))} -> {_dot_str(address)} [label={_dot_str(name)}];")
            elif b.kind == "node_output":
                edge = name if name == b.output else f"{b.output} → {name}"
                lines.append(f"  {_dot_str(b.node or '')} -> {_dot_str(address)} [label={_dot_str(edge)}];")
        for up in _ordering(node):
            lines.append(f"  {_dot_str(up)} -> {_dot_str(address)} [style=dashed];")
    for name, b in graph.outputs.items():
        lines.append(f"  {_dot_str('output:' + name)} [label={_dot_str(f'{name}: {b.type}')}, shape=ellipse, "
                     'fillcolor="#e8ffe8"];')
        if b.kind == "node_output":
            lines.append(f"  {_dot_str(b.node or '')} -> {_dot_str('output:' + name)} [label={_dot_str(b.output or '')}];")
    for address in forgotten(graph, actions):
        label = short(graph, address) + "\n(forget)"
        lines.append(f'  {_dot_str(address)} [label={_dot_str(label)}, style="rounded,filled,dashed", '
                     f'fillcolor="{FILLS["forget"]}"];')
    used = [a for a in FILLS if a in set(actions.values())]
    if legend and used:
        # A key under the picture, as the graph's own label: it takes no part in the layout of the flow.
        cells = "".join(f'<td bgcolor="{FILLS[a]}" border="1">&nbsp;{SYMBOLS[a]} {a}&nbsp;</td>' for a in used)
        lines.append(f'  label=<<table border="0" cellspacing="6"><tr><td>plan:</td>{cells}</tr></table>>; '
                     'labelloc=b; labeljust=l; fontname="Helvetica"; fontsize=11;')
    lines.append("}")
    return "\n".join(lines) + "\n"


DOT_MISSING = ("Graphviz `dot` is not installed; the svg and html formats need it. Install it with "
               "`apt-get install graphviz` (Debian/Ubuntu; `make test` and `make demo` do it when run as root) or "
               "`brew install graphviz` (macOS). The text, dot and mermaid formats work without it.")


def run_dot(dot_text: str, fmt: str = "svg", timeout: float = 120) -> str:
    """Lay out DOT with the real Graphviz `dot` and return its `fmt` output (svg)."""
    exe = shutil.which("dot")
    if exe is None:
        raise FlowsError(DOT_MISSING)
    try:
        done = subprocess.run([exe, f"-T{fmt}"], input=dot_text, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FlowsError(f"Graphviz `dot` could not run: {e}") from None
    if done.returncode != 0:
        raise FlowsError(f"Graphviz `dot` failed: {done.stderr.strip()[:500]}")
    return done.stdout


# ---------------------------------------------------------------- Mermaid

def _mm(s: str) -> str:
    # Inside a quoted Mermaid label only the double quote needs an entity.
    return '"' + s.replace('"', "#quot;") + '"'


def to_mermaid(graph: FlowGraph, actions: Actions = None) -> str:
    actions = actions or {}
    ids = {a: f"n{i}" for i, a in enumerate(graph.nodes)}
    in_ids = {n: f"i{i}" for i, n in enumerate(graph.inputs)}
    lines = ["flowchart LR"]
    for name, fi in graph.inputs.items():
        lines.append(f"  {in_ids[name]}([{_mm(f'{name}: {fi.type}')}])")
    for address in graph.nodes:
        lines.append(f"  {ids[address]}[{_mm(short(graph, address))}]")
    for address, node in graph.nodes.items():
        for name, b in _edges(node):
            if b.kind == "flow_input" and b.name in in_ids:
                lines.append(f"  {in_ids[b.name]} -->|{_mm(name)}| {ids[address]}")
            elif b.kind == "node_output" and b.node in ids:
                edge = name if name == b.output else f"{b.output} → {name}"
                lines.append(f"  {ids[b.node]} -->|{_mm(edge)}| {ids[address]}")
        for up in _ordering(node):
            lines.append(f"  {ids[up]} -.-> {ids[address]}")
    for i, (name, b) in enumerate(graph.outputs.items()):
        lines.append(f"  o{i}([{_mm(f'{name}: {b.type}')}])")
        if b.kind == "node_output" and b.node in ids:
            lines.append(f"  {ids[b.node]} --> o{i}")
    for i, address in enumerate(forgotten(graph, actions)):
        ids[address] = f"f{i}"
        lines.append(f"  f{i}[{_mm(short(graph, address))}]")
    used = sorted({a for a in actions.values() if a in FILLS})
    for action in used:
        lines.append(f"  classDef {action} fill:{FILLS[action]}")
    for address, action in actions.items():
        if address in ids and action in FILLS:
            lines.append(f"  class {ids[address]} {action}")
    return "\n".join(lines) + "\n"
