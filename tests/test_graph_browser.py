"""The html graph page in a real headless Chromium: load it from a file, click a node with a real mouse event,
and read the details panel (cache key, reasons). A screenshot is saved to test-artifacts/ (the browser kit:
tests/fixtures/browser.py)."""
from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.fixtures.browser import ARTIFACTS, FIND_NODE, PANEL, Chromium, Page

def test_clicking_a_node_shows_its_cache_key_and_reasons(chromium, graph_page, tmp_path):
    page_file, plan = graph_page
    split = plan["churn_training/prepare_features/Split"]
    assert split["action"] == "update" and split["reasons"]
    browser = Chromium(chromium, tmp_path / "profile", tmp_path / "chromium.log")
    try:
        page = Page(browser)
        page.open(page_file.as_uri())
        box = page.js(FIND_NODE % json.dumps(split["address"]))
        assert box["w"] > 20 and box["h"] > 10, box  # laid out and visible
        page.click(box["x"], box["y"])
        assert page.poll(f"{PANEL}.getAttribute('data-address')", split["address"]) == split["address"]
        key = page.js(f"{PANEL}.querySelector('[data-field=key] code').textContent")
        reasons = page.js(f"[...{PANEL}.querySelectorAll('[data-field=reasons] li')].map(li => li.textContent)")
        assert key == split["key"]
        assert reasons == [r["message"] for r in split["reasons"]]
        assert "code: scripts/split_data.py changed" in reasons
        assert page.js(f"{PANEL}.querySelector('[data-field=action]').textContent") == "Plan: update"
        shot = page.screenshot(ARTIFACTS / "graph-html-click.png")
        assert shot.startswith(b"\x89PNG") and len(shot) > 10_000

        # another node: a pending one has no key yet, and says what it waits for
        train = plan["churn_training/Train"]
        box = page.js(FIND_NODE % json.dumps(train["address"]))
        page.click(box["x"], box["y"])
        assert page.poll(f"{PANEL}.getAttribute('data-address')", train["address"]) == train["address"]
        assert page.js(f"{PANEL}.querySelector('[data-field=key] code').textContent") == "known after apply"
        assert "waits for" in page.js(f"{PANEL}.querySelector('[data-field=reasons]').textContent")
        # a node's details carry its last run: the job id and its log tail
        assert page.js(f"{PANEL}.querySelector('[data-field=last_run]').textContent").count("local-") == 1

        # no network: everything the page loaded came from the file itself
        assert all(u.startswith(("file:", "data:", "about:")) for u in page.requested_urls()), page.requested_urls()
    finally:
        browser.close()


def test_a_link_to_a_node_opens_with_its_details(chromium, graph_page, tmp_path):
    page_file, plan = graph_page
    join = plan["churn_training/prepare_features/Join Events"]
    browser = Chromium(chromium, tmp_path / "profile", tmp_path / "chromium.log")
    try:
        page = Page(browser)
        page.open(page_file.as_uri() + "#" + join["address"].replace(" ", "%20"))
        assert page.poll(f"{PANEL}.getAttribute('data-address')", join["address"]) == join["address"]
        assert page.js(f"{PANEL}.querySelector('[data-field=key] code').textContent") == join["key"]
        assert "cache hit" in page.js(f"{PANEL}.querySelector('[data-field=reasons]').textContent")
    finally:
        browser.close()


# ---------------------------------------------------------------- Mermaid, rendered by Mermaid itself

@pytest.fixture(scope="module")
def mermaid_js(tmp_path_factory) -> Path:
    """The Mermaid library GitHub renders with (its npm package's browser bundle), fetched with npm."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed (apt-get install npm): cannot fetch the Mermaid library to render with")
    folder = tmp_path_factory.mktemp("mermaid")
    done = subprocess.run([npm, "pack", "mermaid@11", "--silent", "--pack-destination", str(folder)],
                          capture_output=True, text=True, timeout=300, cwd=folder)
    tarballs = list(folder.glob("mermaid-*.tgz"))
    if done.returncode != 0 or not tarballs:
        pytest.skip(f"npm could not fetch mermaid: {(done.stderr or done.stdout).strip()[-300:]}")
    with tarfile.open(tarballs[0]) as tar:
        member = tar.getmember("package/dist/mermaid.min.js")
        (folder / "mermaid.min.js").write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
    return folder / "mermaid.min.js"


RENDER = """(async () => {
  mermaid.initialize({startOnLoad: false});
  const {svg} = await mermaid.render('flowgraph', %s);
  document.body.innerHTML = svg;
  const nodes = [...document.querySelectorAll('g.node')];
  return nodes.map(g => ({label: g.textContent.trim(), classes: g.getAttribute('class'),
                          fill: getComputedStyle(g.querySelector('rect, path, polygon')).fill}));
})()"""


def test_mermaid_renders_with_mermaid_itself(chromium, mermaid_js, graph_page, tmp_path):
    page_file, plan = graph_page
    text = (page_file.parent / "flow.mmd").read_text()
    shutil.copy(mermaid_js, tmp_path / "mermaid.min.js")
    host = tmp_path / "mermaid.html"
    host.write_text('<!DOCTYPE html><html><head><script src="mermaid.min.js"></script></head><body></body></html>')
    browser = Chromium(chromium, tmp_path / "profile", tmp_path / "chromium.log")
    try:
        page = Page(browser)
        page.open(host.as_uri())
        result = page.send("Runtime.evaluate", {"expression": RENDER % json.dumps(text), "awaitPromise": True,
                                                 "returnByValue": True})
        assert "exceptionDetails" not in result, result.get("exceptionDetails")  # Mermaid parsed and drew it
        drawn = {n["label"]: n for n in result["result"]["value"]}
        page.screenshot(ARTIFACTS / "graph-mermaid.png")
    finally:
        browser.close()
    rgb = {"update": "rgb(255, 243, 196)", "pending": "rgb(212, 241, 247)", "reuse": "rgb(238, 238, 238)"}
    for address, change in plan.items():
        label = address.removeprefix("churn_training/")
        assert label in drawn, (label, list(drawn))
        assert change["action"] in drawn[label]["classes"].split()
        assert drawn[label]["fill"] == rgb[change["action"]], (label, drawn[label])
