"""`flows graph --format html`: one self-contained page (no network) showing the flow coloured by plan action.

The graph is Graphviz's own SVG inlined; each node's details (inputs, outputs, cache key, reasons, last run,
job id, log tail) are embedded as JSON, and a few lines of vanilla JS show them when a node is clicked.
Graphviz writes each node's DOT name (its address) as the SVG `<title>`, which is how the script finds a
node's data without any ids of our own in the DOT.
"""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from reconcile.fingerprint import PENDING
from reconcile.graph import FlowGraph
from reconcile.plan_model import SYMBOLS, Plan
from reconcile.render_graph import FILLS, describe_binding, forgotten, short
from reconcile.html_page import DETAILS_STYLE, DOM_HELPERS, END, HEAD, fill, json_for_script
from vocab.masking import redact, redact_obj
from state.model import NodeRecord, State

LOG_TAIL_LINES = 40
_LOG_TAIL_BYTES = 16_384  # enough for 40 lines of any sane log; never read a huge log whole


def log_tail(path: str | None, lines: int = LOG_TAIL_LINES) -> str:
    if not path:
        return ""
    p = Path(path)
    try:
        with p.open("rb") as f:
            f.seek(max(0, p.stat().st_size - _LOG_TAIL_BYTES))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _last_run(state: State | None, rec: NodeRecord | None) -> dict[str, Any] | None:
    if rec is None:
        return None
    run = state.runs.get(rec.run_id or "") if state is not None else None
    return {"run_id": rec.run_id, "status": rec.status, "started_at": rec.started_at, "finished_at": rec.finished_at,
            "attempts": rec.attempts, "error": rec.error, "reused_from": rec.reused_from, "key": rec.key,
            "run_outcome": run.outcome if run is not None else None}


def _outputs(declared: dict[str, str], rec: NodeRecord | None, artifacts: dict[str, Any]) -> list[dict[str, Any]]:
    made = rec.outputs if rec is not None and rec.status == "succeeded" else {}
    rows = []
    for name in list(declared) + [n for n in made if n not in declared]:
        out = made.get(name)
        row: dict[str, Any] = {"name": name, "type": declared.get(name) or (out.type if out else "")}
        if out is not None:
            row.update(digest=out.digest, size=out.size, value=out.value)
        if name in artifacts:
            row["artifact"] = f"{artifacts[name].artifact} ({artifacts[name].artifact_type}, {artifacts[name].file_name})"
        rows.append(row)
    return rows


def details(graph: FlowGraph, plan: Plan | None, state: State | None) -> dict[str, Any]:
    """Everything the page shows per clickable element, keyed by the DOT node name (= the SVG <title>)."""
    nodes: dict[str, Any] = {}
    for address, node in graph.nodes.items():
        change = plan.node(address) if plan is not None else None
        rec = state.nodes.get(address) if state is not None else None
        fp_inputs = (change.fingerprint or {}).get("inputs", {}) if change is not None else {}
        inputs = []
        for name, b in node.bindings.items():
            row: dict[str, Any] = {"name": name, "type": node.inputs.get(name, b.type), "from": describe_binding(graph, b)}
            entry = fp_inputs.get(name)
            if name in node.cache_ignore_input_vars:
                row["note"] = "not part of the cache key (cache_ignore_input_vars)"
            elif entry and entry.get(PENDING):
                row["note"] = "known after apply"
            elif entry:
                row.update({k: entry[k] for k in ("digest", "value") if k in entry})
            inputs.append(row)
        nodes[address] = {
            "kind": "node", "address": address, "name": short(graph, address), "task": node.task_name,
            "type": node.kind, "command": node.command,
            "action": change.action if change else None,
            "key": change.key if change else None, "previous_key": change.previous_key if change else None,
            "reasons": [r.message for r in change.reasons] if change else [],
            "notes": [r.message for r in change.notes] if change else [],
            "reused_from_run": change.reused_from_run if change else None,
            "pending_on": change.pending_on if change else [],
            "inputs": inputs, "outputs": _outputs(node.outputs, rec, node.output_artifacts),
            "last_run": _last_run(state, rec), "job_id": rec.job_id if rec else None,
            "log_tail": log_tail(rec.log if rec else None),
        }
    for address in forgotten(graph, {c.address: c.action for c in plan.nodes} if plan else None):
        change = plan.node(address) if plan else None
        rec = state.nodes.get(address) if state is not None else None
        nodes[address] = {"kind": "node", "address": address, "name": short(graph, address), "action": "forget",
                          "task": rec.task_name if rec else "", "key": rec.key if rec else None,
                          "reasons": [r.message for r in change.reasons] if change else [], "notes": [],
                          "inputs": [], "outputs": _outputs({}, rec, {}), "last_run": _last_run(state, rec),
                          "job_id": rec.job_id if rec else None, "log_tail": log_tail(rec.log if rec else None)}
    values = plan.inputs if plan is not None else {}
    for name, fi in graph.inputs.items():
        nodes["input:" + name] = {"kind": "flow_input", "address": "input:" + name, "name": name, "type": fi.type,
                                  "value": values.get(name, fi.default if not fi.required else None),
                                  "required": fi.required}
    for name, b in graph.outputs.items():
        nodes["output:" + name] = {"kind": "flow_output", "address": "output:" + name, "name": name, "type": b.type,
                                   "from": describe_binding(graph, b)}
    return redact_obj(nodes)


def _inline_svg(svg: str) -> str:
    """Graphviz's SVG without its XML prolog/doctype, scaled by CSS instead of fixed point sizes."""
    start = svg.find("<svg")
    body = svg[start:] if start >= 0 else svg
    return re.sub(r'<svg width="[^"]*" height="[^"]*"', '<svg', body, count=1)


def page(graph: FlowGraph, svg: str, data: dict[str, Any], summary: str) -> str:
    used = sorted({n.get("action") for n in data.values() if n.get("action")},
                  key=lambda a: list(FILLS).index(a) if a in FILLS else 99)
    legend = "".join(f'<span class="key" style="background:{FILLS.get(a, "#fff")}">{html.escape(SYMBOLS.get(a, "?"))} '
                     f"{html.escape(a)}</span>" for a in used)
    meta = {"flow": graph.workflow, "file": graph.file, "summary": summary}
    parts = {"TITLE": html.escape(redact(f"{graph.workflow} — flows graph")), "FLOW": html.escape(redact(graph.workflow)),
             "FILE": html.escape(redact(graph.file)), "SUMMARY": html.escape(redact(summary)), "LEGEND": legend,
             "DATA": json_for_script({"meta": redact_obj(meta), "nodes": data}), "SVG": redact(_inline_svg(svg))}
    return fill(_TEMPLATE, parts)


_TEMPLATE = HEAD + """\
  header .file, .dim { color: #656d76; }
  .key { display: inline-block; padding: 1px 8px; margin: 4px 4px 0 0; border: 1px solid #d0d7de; border-radius: 10px;
         font-size: 12px; }
  main { display: flex; height: calc(100vh - 78px); }
  #graph { flex: 1; overflow: hidden; position: relative; }
  #graph svg { width: 100%; height: 100%; display: block; cursor: grab; touch-action: none; }
  #graph svg.dragging { cursor: grabbing; }
  #zoom { position: absolute; right: 10px; top: 10px; }
  #zoom button { font-size: 13px; margin-left: 4px; padding: 2px 8px; border: 1px solid #d0d7de; border-radius: 6px;
                 background: #fff; cursor: pointer; }
  #graph g.node { cursor: pointer; }
  #graph g.node.selected > path, #graph g.node.selected > polygon, #graph g.node.selected > ellipse {
    stroke: #0969da; stroke-width: 3px; }
""" + DETAILS_STYLE + """\
  #details td, #details th { border-top: 1px solid #d0d7de; padding: 3px 4px; text-align: left; vertical-align: top;
                             word-break: break-all; }
  #details code, #details pre { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
  #details pre { background: #fff; border: 1px solid #d0d7de; padding: 6px; max-height: 260px; overflow: auto;
                 white-space: pre-wrap; }
</style>
</head>
<body>
<header>
  <h1>@@FLOW@@</h1><span class="file">@@FILE@@</span>
  <div><span class="dim">@@SUMMARY@@</span> @@LEGEND@@</div>
</header>
<main>
  <div id="graph">@@SVG@@<div id="zoom"><button id="zoom-in" title="Zoom in">+</button><button id="zoom-out"
    title="Zoom out">−</button><button id="zoom-fit" title="Fit the drawing to the window (or double-click)">Fit</button>
  </div></div>
  <aside id="details"><p class="dim">Click a node to see its inputs, outputs, cache key, reasons, last run,
    job id and log.</p></aside>
</main>
<script type="application/json" id="flow-data">@@DATA@@</script>
<script>
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("flow-data").textContent);
  var panel = document.getElementById("details");
  var byAddress = {};

""" + DOM_HELPERS + """\
  function fmt(v) { return typeof v === "string" ? v : JSON.stringify(v); }
  function table(rows, cols) {
    var t = el("table"), head = el("tr");
    cols.forEach(function (c) { head.appendChild(el("th", c[1])); });
    t.appendChild(head);
    rows.forEach(function (r) {
      var tr = el("tr");
      cols.forEach(function (c) { tr.appendChild(el("td", c[2] ? c[2](r) : (r[c[0]] == null ? "" : fmt(r[c[0]])))); });
      t.appendChild(tr);
    });
    return t;
  }
  function content(r) {
    if (r.note) return r.note;
    if (r.digest) return r.digest.slice(0, 16) + "…" + (r.size != null ? " (" + r.size + " B)" : "");
    return r.value === undefined ? "" : fmt(r.value);
  }

  function show(address) {
    var n = data.nodes[address];
    if (!n) return;
    Object.keys(byAddress).forEach(function (a) { byAddress[a].classList.toggle("selected", a === address); });
    panel.textContent = "";
    panel.setAttribute("data-address", address);
    panel.appendChild(el("h2", n.address));
    if (n.kind === "flow_input") {
      panel.appendChild(el("p", "Flow input " + n.name + ": " + n.type + (n.required ? " (required)" : "")));
      section("Value", "value").appendChild(el("code", n.value === null ? "(not given)" : fmt(n.value)));
      return;
    }
    if (n.kind === "flow_output") {
      panel.appendChild(el("p", "Flow output " + n.name + ": " + n.type + " ← " + n.from));
      return;
    }
    panel.appendChild(el("p", n.action ? "Plan: " + n.action : "No plan (inputs not given)", {"data-field": "action"}));
    if (n.command) section("Command", "command").appendChild(el("code", n.command));
    var key = section("Cache key", "key");
    key.appendChild(el("code", n.key || (n.action === "pending" || n.action === "create" ? "known after apply" : "—")));
    if (n.previous_key && n.previous_key !== n.key) key.appendChild(el("div", "was " + n.previous_key, {"class": "dim"}));
    var reasons = section("Reasons", "reasons"), ul = el("ul");
    var why = (n.reasons || []).slice();
    if (!why.length && n.action === "reuse") why.push("cache hit" + (n.reused_from_run ? " from run " + n.reused_from_run : ""));
    if (n.pending_on && n.pending_on.length) why.push("waits for: " + n.pending_on.join(", "));
    why.forEach(function (m) { ul.appendChild(el("li", m)); });
    (n.notes || []).forEach(function (m) { ul.appendChild(el("li", m, {"class": "dim"})); });
    if (!ul.children.length) ul.appendChild(el("li", "—"));
    reasons.appendChild(ul);
    if (n.inputs && n.inputs.length) {
      section("Inputs", "inputs").appendChild(table(n.inputs, [["name", "name"], ["type", "type"], ["from", "from"],
                                                               ["digest", "digest / value", content]]));
    }
    if (n.outputs && n.outputs.length) {
      section("Outputs (last apply)", "outputs").appendChild(table(n.outputs, [["name", "name"], ["type", "type"],
          ["digest", "digest / value", function (r) { return r.digest ? content(r) : "not produced yet"; }],
          ["artifact", "artifact"]]));
    }
    var run = section("Last run", "last_run");
    if (n.last_run) {
      var r = n.last_run;
      run.appendChild(table([
        ["run", r.run_id + (r.run_outcome ? " (" + r.run_outcome + ")" : "")], ["status", r.status],
        ["job id", n.job_id || "—"], ["started", r.started_at || "—"], ["finished", r.finished_at || "—"],
        ["attempts", r.attempts], ["reused from run", r.reused_from || "—"], ["error", r.error || "—"]
      ].map(function (p) { return {k: p[0], v: p[1]}; }), [["k", ""], ["v", ""]]));
    } else {
      run.appendChild(el("p", "never applied", {"class": "dim"}));
    }
    section("Log tail", "log").appendChild(el("pre", n.log_tail || "(no log)"));
  }

  document.querySelectorAll("#graph g.node").forEach(function (g) {
    var title = g.querySelector("title");
    var address = title ? title.textContent : "";
    if (!data.nodes[address]) return;
    byAddress[address] = g;
    g.addEventListener("click", function () { show(address); history.replaceState(null, "", "#" + encodeURIComponent(address)); });
  });
  // Fit and pan/zoom: the drawing fills the pane (the SVG's viewBox, kept in proportion); the wheel zooms
  // around the pointer, a drag pans, a double-click or "Fit" shows it all again. A drag is not a click.
  var svg = document.querySelector("#graph svg");
  if (svg) {
    var vb0 = svg.viewBox.baseVal, home = [vb0.x, vb0.y, vb0.width, vb0.height], view = home.slice();
    svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
    var apply = function () { svg.setAttribute("viewBox", view.join(" ")); };
    var toSvg = function (cx, cy) {
      var p = svg.createSVGPoint(); p.x = cx; p.y = cy;
      return p.matrixTransform(svg.getScreenCTM().inverse());
    };
    var zoom = function (factor, cx, cy) {
      var r = svg.getBoundingClientRect();
      var at = toSvg(cx === undefined ? r.left + r.width / 2 : cx, cy === undefined ? r.top + r.height / 2 : cy);
      var w = Math.min(Math.max(view[2] / factor, home[2] / 40), home[2] * 4), k = w / view[2];
      view = [at.x - (at.x - view[0]) * k, at.y - (at.y - view[1]) * k, w, view[3] * k];
      apply();
    };
    svg.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      zoom(ev.deltaY < 0 ? 1.2 : 1 / 1.2, ev.clientX, ev.clientY);
    }, {passive: false});
    var drag = null, moved = false;
    svg.addEventListener("pointerdown", function (ev) {
      drag = {x: ev.clientX, y: ev.clientY, view: view.slice(), scale: view[2] / svg.getBoundingClientRect().width};
      moved = false;
    });
    window.addEventListener("pointermove", function (ev) {
      if (!drag) return;
      var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (!moved && Math.abs(dx) + Math.abs(dy) < 4) return;
      moved = true;
      svg.classList.add("dragging");
      var s = Math.max(drag.scale, view[3] / svg.getBoundingClientRect().height);
      view = [drag.view[0] - dx * s, drag.view[1] - dy * s, view[2], view[3]];
      apply();
    });
    window.addEventListener("pointerup", function () { drag = null; svg.classList.remove("dragging"); });
    svg.addEventListener("click", function (ev) { if (moved) { ev.stopPropagation(); moved = false; } }, true);
    svg.addEventListener("dblclick", function () { view = home.slice(); apply(); });
    document.getElementById("zoom-in").addEventListener("click", function () { zoom(1.25); });
    document.getElementById("zoom-out").addEventListener("click", function () { zoom(1 / 1.25); });
    document.getElementById("zoom-fit").addEventListener("click", function () { view = home.slice(); apply(); });
  }

""" + END
