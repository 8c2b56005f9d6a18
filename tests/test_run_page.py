"""`flows runs show RUN --html FILE`: a timeline of the run in a real headless Chromium. Click a bar, read the
panel (reasons, job id, attempts, log tail); reused nodes name their run; the critical path is outlined.
A screenshot is kept in test-artifacts/ (the README's picture is docs/run-page.png)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from reconcile.render_run import critical_path
from tests.fixtures.projects import flows
from tests.fixtures.browser import ARTIFACTS, ROOT, Chromium, Page

FLOW = "model_training"
ARGS = ("flow.py", FLOW, "--data_path_a", "data/a.csv", "--data_path_b", "data/b.csv")
PANEL = "document.getElementById('details')"
FIND_BAR = """(() => {
  const g = [...document.querySelectorAll('#gantt .bar')].find(g => g.getAttribute('data-address') === %s);
  const r = g.querySelector('.run, .mark').getBoundingClientRect();
  return {x: r.x + r.width / 2, y: r.y + r.height / 2, w: r.width, h: r.height};
})()"""


def runs(root: Path) -> list[dict[str, Any]]:
    r = flows("runs", "list", "--flow", FLOW, "--json", cwd=root)
    assert r.code == 0, r.text
    return json.loads(r.out)


@pytest.fixture(scope="module")
def run_page(tmp_path_factory) -> tuple[Path, str, str]:
    """ai_training applied, then process_data.py edited (its output changes) and applied again: in the second
    run Load A/B and Merge are reused from the first, Process Data and Train Model run."""
    root = tmp_path_factory.mktemp("runpage") / "ai"
    shutil.copytree(ROOT / "examples" / "ai_training", root, ignore=shutil.ignore_patterns(".flows", "__pycache__"))
    assert flows("apply", *ARGS, "--auto-approve", cwd=root).code == 0
    script = root / "scripts" / "process_data.py"
    script.write_text(script.read_text() + "\nprint('processed again')\n")
    done = flows("apply", *ARGS, "--auto-approve", "--learning_rate", "0.05", cwd=root)
    assert done.code == 0, done.text
    first, second = (r["id"] for r in runs(root))
    page = root / "run.html"
    r = flows("runs", "show", second, "--html", str(page), cwd=root)
    assert r.code == 0 and r.out.strip() == f"Wrote {page}", r.text
    return page, first, second


def test_the_page_is_self_contained_and_marks_reuse_and_the_critical_path(run_page):
    page, first, second = run_page
    text = page.read_text()
    assert "<script src" not in text and "<link" not in text and "http://" not in text.replace(
        "http://www.w3.org/2000/svg", "")
    data = json.loads(text.split('id="run-data">', 1)[1].split("</script>", 1)[0])
    nodes = data["nodes"]
    assert {a.split("/")[1]: n["result"] for a, n in nodes.items()} == {
        "Load Data A": "reused", "Load Data B": "reused", "Merge Data": "reused", "Process Data": "succeeded",
        "Train Model": "succeeded"}
    assert {n["reused_from"] for n in nodes.values() if n["result"] == "reused"} == {first}
    assert f"reused from {first}" in text
    assert [a for a, n in nodes.items() if n["critical"]] == [f"{FLOW}/Process Data", f"{FLOW}/Train Model"]


def test_critical_path_follows_the_upstream_each_node_waited_for():
    def node(q: str, f: str, ups: list[str], result: str = "succeeded") -> dict[str, Any]:
        return {"queued_at": f"2026-01-01T00:00:{q}+00:00", "started_at": f"2026-01-01T00:00:{q}+00:00",
                "finished_at": f"2026-01-01T00:00:{f}+00:00", "upstreams": ups, "result": result}
    nodes = {"a": node("00", "02", []), "b": node("02", "09", ["a"]), "c": node("02", "04", ["a"]),
             "d": node("09", "10", ["b", "c"]), "e": node("00", "05", []), "r": node("00", "00", [], "reused")}
    assert critical_path(nodes) == ["a", "b", "d"]


def test_clicking_a_bar_shows_reasons_job_attempts_and_log(chromium, run_page, tmp_path):  # noqa: F811
    page_file, first, second = run_page
    browser = Chromium(chromium, tmp_path / "profile", tmp_path / "chromium.log")
    try:
        page = Page(browser)
        page.open(page_file.as_uri())
        address = f"{FLOW}/Process Data"
        box = page.js(FIND_BAR % json.dumps(address))
        assert box["w"] > 20 and box["h"] > 5, box  # a bar, laid out and visible
        page.click(box["x"], box["y"])
        assert page.poll(f"{PANEL}.getAttribute('data-address')", address) == address
        reasons = page.js(f"[...{PANEL}.querySelectorAll('[data-field=reasons] li')].map(li => li.textContent)")
        assert "code: scripts/process_data.py changed" in reasons, reasons
        assert page.js(f"{PANEL}.querySelector('[data-field=\"job id\"]').textContent").startswith("local-")
        assert page.js(f"{PANEL}.querySelector('[data-field=attempts]').textContent") == "1"
        assert "processed again" in page.js(f"{PANEL}.querySelector('[data-field=log] pre').textContent")
        assert "on the critical path" in page.js(f"{PANEL}.querySelector('[data-field=result]').textContent")
        shot = page.screenshot(ARTIFACTS / "run-html-click.png")
        assert shot.startswith(b"\x89PNG") and len(shot) > 10_000

        reused = f"{FLOW}/Merge Data"
        box = page.js(FIND_BAR % json.dumps(reused))
        page.click(box["x"], box["y"])
        assert page.poll(f"{PANEL}.getAttribute('data-address')", reused) == reused
        assert f"reused from run {first}" in page.js(f"{PANEL}.querySelector('[data-field=reasons]').textContent")
        assert all(u.startswith(("file:", "data:", "about:")) for u in page.requested_urls()), page.requested_urls()
    finally:
        browser.close()


def test_a_run_without_its_timeline_file_is_drawn_from_the_state(run_page, tmp_path):
    page_file, first, second = run_page
    root = page_file.parent
    for f in (root / ".flows" / "logs").rglob("timeline.json"):
        f.unlink()
    out = tmp_path / "from-state.html"
    assert flows("runs", "show", first, "--html", str(out), cwd=root).code == 0
    text = out.read_text()
    assert "drawn from the state" in text and f"{FLOW}/Load Data A" in text


def test_a_page_to_a_missing_folder_is_one_line(run_page):
    page_file, first, _ = run_page
    r = flows("runs", "show", first, "--html", "/nonexistent/x.html", cwd=page_file.parent)
    assert r.code == 1 and r.err == "Error: /nonexistent/x.html: cannot write the page: No such file or directory\n"
