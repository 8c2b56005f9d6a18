"""The graph page fits its drawing to the window and allows pan and zoom (issue 17), in headless Chromium."""
from __future__ import annotations

import json

from tests.fixtures.browser import FIND_NODE, PANEL, Chromium, Page

DRAWING = """(() => {
  const pane = document.getElementById('graph').getBoundingClientRect();
  const g = document.querySelector('#graph svg g.graph').getBoundingClientRect();
  return {pw: pane.width, ph: pane.height, gw: g.width, gh: g.height};
})()"""


def test_the_drawing_fills_the_window_and_zooms_and_pans(chromium, graph_page, tmp_path):  # noqa: F811
    page_file, plan = graph_page
    split = "churn_training/prepare_features/Split"
    browser = Chromium(chromium, tmp_path / "profile", tmp_path / "chromium.log")
    try:
        page = Page(browser)
        page.open(page_file.as_uri())
        d = page.js(DRAWING)
        # fitted: the drawing spans (nearly) the whole pane in one direction, in proportion
        assert d["gw"] >= 0.9 * d["pw"] or d["gh"] >= 0.9 * d["ph"], d
        before = page.js(FIND_NODE % json.dumps(split))
        page.send("Input.dispatchMouseEvent", {"type": "mouseWheel", "x": before["x"], "y": before["y"],
                                               "deltaX": 0, "deltaY": -300})
        page.poll(f"({FIND_NODE % json.dumps(split)}).w > {before['w'] * 1.15}", True)
        zoomed = page.js(FIND_NODE % json.dumps(split))
        assert zoomed["w"] > before["w"] * 1.15, (before, zoomed)  # one notch: 1.2 times bigger ...
        assert abs(zoomed["x"] - before["x"]) < 5 and abs(zoomed["y"] - before["y"]) < 5  # ... around the pointer
        # a drag pans the drawing, and is not taken as a click on the node it started on
        x, y = zoomed["x"], zoomed["y"]
        page.send("Input.dispatchMouseEvent", {"type": "mousePressed", "x": x, "y": y, "button": "left", "clickCount": 1})
        for step in range(1, 6):
            page.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x - 20 * step, "y": y + 10 * step,
                                                   "button": "left", "buttons": 1})
        page.send("Input.dispatchMouseEvent", {"type": "mouseReleased", "x": x - 100, "y": y + 50, "button": "left",
                                               "clickCount": 1})
        panned = page.js(FIND_NODE % json.dumps(split))
        assert abs(panned["x"] - (x - 100)) < 6 and abs(panned["y"] - (y + 50)) < 6, (zoomed, panned)
        assert page.js(f"{PANEL}.getAttribute('data-address')") is None
        # Fit shows it all again; a click still opens a node
        page.js("document.getElementById('zoom-fit').click()")
        assert page.js(FIND_NODE % json.dumps(split)) == before
        page.click(before["x"], before["y"])
        assert page.poll(f"{PANEL}.getAttribute('data-address')", split) == split
    finally:
        browser.close()
