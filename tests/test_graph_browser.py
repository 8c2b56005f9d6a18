"""The html graph page in a real headless Chromium: load it from a file, click a node with a real mouse event,
and read the details panel (cache key, reasons). A screenshot is saved to test-artifacts/.

Chromium is driven through the DevTools protocol over a pipe (`--remote-debugging-pipe`: commands on fd 3,
replies on fd 4, NUL-terminated JSON), so no WebDriver or websocket library is needed.
"""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.projects import flows
from tests.fixtures.tools import require_tool

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,900"]
TIMEOUT = 30.0


class Chromium:
    """One headless Chromium with a fresh profile, spoken to over the DevTools pipe."""

    def __init__(self, exe: str, profile: Path, log: Path) -> None:
        cmd_r, self._w = os.pipe()   # our commands -> Chromium's fd 3
        self._r, res_w = os.pipe()   # Chromium's fd 4 -> our replies
        self.log = log
        # bash puts the pipe ends on the fd numbers Chromium expects, then becomes Chromium.
        script = f'exec "$0" "$@" 3<&{cmd_r} 4>&{res_w} {cmd_r}<&- {res_w}>&-'
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(["bash", "-c", script, exe, *FLAGS, f"--user-data-dir={profile}",
                                          "--remote-debugging-pipe", "about:blank"],
                                         pass_fds=(cmd_r, res_w), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)
        os.close(cmd_r)
        os.close(res_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def _messages(self, deadline: float) -> list[dict[str, Any]]:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([self._r], [], [], left)[0]:
            raise TimeoutError("Chromium did not answer in time; its log: " + self.log_tail())
        chunk = os.read(self._r, 1 << 20)
        if not chunk:
            raise RuntimeError("Chromium closed the DevTools pipe; its log: " + self.log_tail())
        *whole, self._buf = (self._buf + chunk).split(b"\0")
        return [json.loads(m) for m in whole]

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            for m in self._messages(deadline):
                if m.get("id") == self._id:
                    if "error" in m:
                        raise RuntimeError(f"{method}: {m['error']}")
                    return m.get("result", {})
                self.events.append(m)

    def wait_event(self, method: str, session: str) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while True:
            for i, m in enumerate(self.events):
                if m.get("method") == method and m.get("sessionId") == session:
                    return self.events.pop(i)
            self.events += self._messages(deadline)

    def pump(self, seconds: float) -> None:
        """Take in whatever Chromium sends within `seconds` (events): a bounded wait between polls."""
        if select.select([self._r], [], [], seconds)[0]:
            self.events += self._messages(time.monotonic() + TIMEOUT)

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)


class Page:
    def __init__(self, browser: Chromium) -> None:
        self.b = browser
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", {"width": 1400, "height": 900, "deviceScaleFactor": 1,
                                                         "mobile": False})

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.b.send(method, params, self.session)

    def open(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})
        self.b.wait_event("Page.loadEventFired", self.session)

    def js(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, x: float, y: float) -> None:
        """A real mouse click, through Chromium's input pipeline (hit testing included)."""
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def poll(self, expression: str, want: Any) -> Any:
        """Evaluate until it returns `want` (or a deadline passes): the page updates asynchronously."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            got = self.js(expression)
            if got == want or time.monotonic() > deadline:
                return got
            self.b.pump(0.05)

    def screenshot(self, path: Path) -> bytes:
        png = base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return png

    def requested_urls(self) -> list[str]:
        return [m["params"]["request"]["url"] for m in self.b.events
                if m.get("method") == "Network.requestWillBeSent" and m.get("sessionId") == self.session]


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_tool("chromium", "chromium")


@pytest.fixture(scope="module")
def graph_page(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """churn_model applied, then its split script edited: Split is `update`, Train/Evaluate `pending`."""
    require_tool("dot", "graphviz")
    root = tmp_path_factory.mktemp("browser") / "churn"
    shutil.copytree(ROOT / "examples" / "churn_model", root, ignore=shutil.ignore_patterns(".flows", "__pycache__"))
    args = ("flow.py", "churn_training", "--inputs", "inputs.json")
    assert flows("apply", *args, "--auto-approve", cwd=root).code == 0
    (root / "scripts" / "split_data.py").write_text((root / "scripts" / "split_data.py").read_text() + "\n# edited\n")
    page = root / "flow.html"
    done = flows("graph", *args, "--format", "html", "-o", str(page), cwd=root)
    assert done.code == 0, done.text
    plan = json.loads(flows("plan", *args, "--json", cwd=root).out)
    mermaid = flows("graph", *args, "--format", "mermaid", cwd=root)
    assert mermaid.code == 0, mermaid.text
    (root / "flow.mmd").write_text(mermaid.out)
    return page, {n["address"]: n for n in plan["nodes"]}


FIND_NODE = """(() => {
  const g = [...document.querySelectorAll('#graph g.node')].find(g => g.querySelector('title').textContent === %s);
  const r = g.getBoundingClientRect();
  return {x: r.x + r.width / 2, y: r.y + r.height / 2, w: r.width, h: r.height};
})()"""
PANEL = "document.getElementById('details')"


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
