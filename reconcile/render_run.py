"""`flows runs show RUN --html FILE`: one self-contained page (no network) picturing a run.

A Gantt timeline, one bar per node from queued to finished (the queued part lighter), coloured by outcome;
reused nodes as a marker naming the run they were reused from; the critical path (the chain of nodes, each
waiting on the one before, that ended last) outlined; a node's reasons, job id, attempts and log tail in a
panel on click. The SVG is drawn here; a few lines of vanilla JS only show the panel.
"""
from __future__ import annotations

import datetime as dt
import html
from typing import Any

from reconcile.html_page import DETAILS_STYLE, DOM_HELPERS, END, HEAD, fill, json_for_script
from vocab.masking import redact, redact_obj

COLOURS = {"succeeded": "#2da44e", "recovered": "#2da44e", "failed": "#cf222e", "reused": "#8c959f",
           "cancelled": "#bf8700", "skipped": "#d0d7de", "running": "#0969da", "started": "#0969da",
           "waiting": "#d0d7de"}
LABEL_W, CHART_W, ROW_H, TOP = 300, 860, 26, 34
RIGHT = 220  # room for the note after the last bar


def _t(text: str | None) -> float | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()


def _span(n: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    """(queued, started, finished) as epoch seconds; a reused node is one instant."""
    q, s, f = _t(n.get("queued_at")), _t(n.get("started_at")), _t(n.get("finished_at"))
    q = q if q is not None else s
    if n.get("result") == "reused":
        at = q if q is not None else f
        return at, at, at
    return q, s, f


def critical_path(nodes: dict[str, dict[str, Any]]) -> list[str]:
    """From the node that finished last, back through the upstream that finished last before it (the one it
    waited for), to a node that waited for none: the chain that set the run's length."""
    ends = {a: _span(n)[2] for a, n in nodes.items()}
    timed = {a: e for a, e in ends.items() if e is not None and nodes[a].get("result") != "reused"}
    if not timed:
        return []
    current = max(timed, key=lambda a: (timed[a], a))
    path = [current]
    while True:
        ups = [u for u in nodes[current].get("upstreams", []) if u in timed and u not in path]
        if not ups:
            break
        current = max(ups, key=lambda a: (timed[a], a))
        path.append(current)
    return list(reversed(path))


def _fmt_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f}s"
    return f"{int(s // 60)}m{int(s % 60):02d}s"


def gantt_svg(nodes: dict[str, dict[str, Any]], critical: list[str]) -> str:
    spans = {a: _span(n) for a, n in nodes.items()}
    times = [t for sp in spans.values() for t in sp if t is not None]
    t0 = min(times) if times else 0.0
    total = max((max(times) - t0) if times else 0.0, 0.001)
    order = sorted(nodes, key=lambda a: (spans[a][0] if spans[a][0] is not None else float("inf"), a))

    def x(t: float) -> float:
        return LABEL_W + (t - t0) / total * CHART_W

    height = TOP + ROW_H * len(order) + 10
    out = [f'<svg id="gantt" viewBox="0 0 {LABEL_W + CHART_W + RIGHT} {height}" xmlns="http://www.w3.org/2000/svg" '
           f'preserveAspectRatio="xMinYMin meet">']
    for i in range(6):  # the time axis
        t = total * i / 5
        xx = LABEL_W + CHART_W * i / 5
        out.append(f'<line class="tick" x1="{xx:.1f}" y1="{TOP - 6}" x2="{xx:.1f}" y2="{height - 8}"/>'
                   f'<text class="axis" x="{xx:.1f}" y="{TOP - 12}" text-anchor="middle">+{_fmt_seconds(t)}</text>')
    for row, address in enumerate(order):
        n = nodes[address]
        q, s, f = spans[address]
        y = TOP + row * ROW_H
        result = str(n.get("result") or "")
        colour = COLOURS.get(result, "#6e7781")
        crit = " critical" if address in critical else ""
        label = address if len(address) <= 40 else "…" + address[-39:]
        parts = [f'<g class="bar{crit}" data-address="{html.escape(address)}" data-result="{html.escape(result)}">',
                 f'<title>{html.escape(address)}</title>',
                 f'<rect class="row" x="0" y="{y}" width="{LABEL_W + CHART_W + RIGHT}" height="{ROW_H}"/>',
                 f'<text class="label" x="6" y="{y + ROW_H / 2 + 4}">{html.escape(label)}</text>']
        if result == "reused" and q is not None:
            cx, cy = x(q), y + ROW_H / 2
            parts.append(f'<path class="mark" d="M{cx:.1f} {cy - 7} l7 7 l-7 7 l-7 -7 z" fill="{colour}"/>')
            parts.append(f'<text class="note" x="{cx + 12:.1f}" y="{cy + 4}">reused from '
                         f'{html.escape(str(n.get("reused_from") or "an earlier run"))}</text>')
        elif q is not None or s is not None:
            begin = q if q is not None else s
            assert begin is not None  # one of the two is known in this branch
            end = f if f is not None else (s if s is not None else begin)
            if s is not None and q is not None and s > q:  # waiting for a worker or the job to start
                parts.append(f'<rect class="queued" x="{x(q):.1f}" y="{y + 6}" width="{max(x(s) - x(q), 1):.1f}" '
                             f'height="{ROW_H - 12}" fill="{colour}"/>')
            start = s if s is not None else begin
            parts.append(f'<rect class="run" x="{x(start):.1f}" y="{y + 4}" width="{max(x(end) - x(start), 3):.1f}" '
                         f'height="{ROW_H - 8}" rx="3" fill="{colour}"/>')
            if f is not None and begin is not None:
                parts.append(f'<text class="note" x="{x(end) + 6:.1f}" y="{y + ROW_H / 2 + 4}">'
                             f'{html.escape(result)} {_fmt_seconds(f - start)}</text>')
        else:
            parts.append(f'<text class="note" x="{LABEL_W + 4}" y="{y + ROW_H / 2 + 4}">'
                         f'{html.escape(result)}{(": " + html.escape(str(n.get("detail")))) if n.get("detail") else ""}'
                         f'</text>')
        parts.append("</g>")
        out.append("".join(parts))
    out.append("</svg>")
    return "\n".join(out)


def page(run: Any, timeline: dict[str, Any]) -> str:
    nodes = timeline["nodes"]
    critical = critical_path(nodes)
    for a, n in nodes.items():
        n["critical"] = a in critical
    used = sorted({str(n.get("result")) for n in nodes.values()})
    legend = "".join(f'<span class="key"><i style="background:{COLOURS.get(r, "#6e7781")}"></i>{html.escape(r)}</span>'
                     for r in used)
    legend += '<span class="key crit"><i></i>critical path</span>'
    spans = [t for n in nodes.values() for t in _span(n) if t is not None]
    length = _fmt_seconds(max(spans) - min(spans)) if spans else "-"
    summary = (f"{run.outcome} · started {run.started_at} · {len(nodes)} nodes · {length} · "
               f"critical path: {' → '.join(critical) or '-'}")
    partial = ("<p class=\"dim\">This run's timeline file is not on this machine: drawn from the state's records "
               "(no plan reasons, no queued times).</p>" if timeline.get("partial") else "")
    parts = {"TITLE": html.escape(redact(f"run {run.id} — {run.flow}")), "RUN": html.escape(redact(run.id)),
             "FLOW": html.escape(redact(run.flow)), "SUMMARY": html.escape(redact(summary)), "LEGEND": legend,
             "PARTIAL": partial, "SVG": redact(gantt_svg(nodes, critical)),
             "DATA": json_for_script(redact_obj({"run": run.id, "nodes": nodes}))}
    return fill(_TEMPLATE, parts)


_TEMPLATE = HEAD + """\
  .dim { color: #656d76; }
  .key { display: inline-block; margin: 4px 10px 0 0; font-size: 12px; }
  .key i { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
  .key.crit i { border: 2px solid #8250df; width: 10px; height: 10px; }
  main { display: flex; height: calc(100vh - 84px); }
  #timeline { flex: 1; overflow: auto; padding: 8px 12px; }
  #gantt { width: 100%; height: auto; font-size: 12px; }
  #gantt .tick { stroke: #eaeef2; }
  #gantt .axis, #gantt .note { fill: #656d76; }
  #gantt .label { fill: #1f2328; }
  #gantt .row { fill: transparent; }
  #gantt .bar { cursor: pointer; }
  #gantt .bar:hover .row { fill: #f6f8fa; }
  #gantt .bar.selected .row { fill: #ddf4ff; }
  #gantt .queued { opacity: .35; }
  #gantt .bar.critical .run, #gantt .bar.critical .mark { stroke: #8250df; stroke-width: 3px; }
  #gantt .bar.critical .label { font-weight: 600; }
""" + DETAILS_STYLE + """\
  #details td { border-top: 1px solid #d0d7de; padding: 3px 4px; vertical-align: top; word-break: break-all; }
  #details pre { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; background: #fff; border: 1px solid #d0d7de;
                 padding: 6px; max-height: 300px; overflow: auto; white-space: pre-wrap; }
</style>
</head>
<body>
<header>
  <h1>run @@RUN@@</h1><span class="dim">@@FLOW@@</span>
  <div><span class="dim">@@SUMMARY@@</span></div>
  <div>@@LEGEND@@</div>
</header>
<main>
  <div id="timeline">@@PARTIAL@@@@SVG@@</div>
  <aside id="details"><p class="dim">Click a bar to see the node's reasons, job id, attempts and log.</p></aside>
</main>
<script type="application/json" id="run-data">@@DATA@@</script>
<script>
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("run-data").textContent);
  var panel = document.getElementById("details");
""" + DOM_HELPERS + """\
  function show(address) {
    var n = data.nodes[address];
    if (!n) return;
    document.querySelectorAll("#gantt .bar").forEach(function (g) {
      g.classList.toggle("selected", g.getAttribute("data-address") === address);
    });
    panel.textContent = "";
    panel.setAttribute("data-address", address);
    panel.appendChild(el("h2", n.address));
    panel.appendChild(el("p", n.result + (n.action ? " (planned: " + n.action + ")" : "") +
                               (n.critical ? " · on the critical path" : ""), {"data-field": "result"}));
    var why = section("Reasons", "reasons"), ul = el("ul");
    (n.reasons || []).forEach(function (m) { ul.appendChild(el("li", m)); });
    if (n.reused_from) ul.appendChild(el("li", "reused from run " + n.reused_from));
    if (n.detail) ul.appendChild(el("li", n.detail));
    if (!ul.children.length) ul.appendChild(el("li", "—"));
    why.appendChild(ul);
    var t = el("table");
    [["job id", n.job_id || "—"], ["attempts", n.attempts || 0], ["queued", n.queued_at || "—"],
     ["started", n.started_at || "—"], ["finished", n.finished_at || "—"]].forEach(function (p) {
      var tr = el("tr"); tr.appendChild(el("td", p[0])); tr.appendChild(el("td", p[1], {"data-field": p[0]}));
      t.appendChild(tr);
    });
    section("Job", "job").appendChild(t);
    section("Log tail", "log").appendChild(el("pre", n.log_tail || "(no log)"));
  }
  document.querySelectorAll("#gantt .bar").forEach(function (g) {
    var address = g.getAttribute("data-address");
    g.addEventListener("click", function () { show(address); history.replaceState(null, "", "#" + encodeURIComponent(address)); });
  });
""" + END
