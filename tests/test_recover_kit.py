"""Shared by the recover tests (this module has no tests of its own).

A ten-node flow with every shape recovery must get right: a fan-in (three sources into `merge`), a
chain (`chain1` → `chain2` → `chain3`) and a diamond (`left`, `right` → `join`). Every job appends one
line "<address> <token>" to a marker file of its own, in a folder outside the project, the moment it
starts: the token is a digest of the node's name and input bytes (key-ish: the same inputs give the same
token), so the markers say how often each node ran and on what. Outputs are a pure function of the
inputs, so a recovered run must produce exactly the bytes of a clean run.

Knobs per node script: `fail` (exit non-zero before writing the output) and `gate` (wait for
`<markers>/<name>.go` before finishing, so a test controls when a job ends; a gate opened with
"fail-once" makes that job fail and the next one pass).
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, TypeVar

from state.model import State, parse_state
from tests.fixtures import waiting
from tests.fixtures.projects import FLOWS, Result, flows

T = TypeVar("T")

FLOW_NAME = "wf"
NODES: dict[str, list[str]] = {
    "src_a": [], "src_b": [], "src_c": [],
    "merge": ["src_a", "src_b", "src_c"],
    "chain1": ["merge"], "chain2": ["chain1"], "chain3": ["chain2"],
    "left": ["chain3"], "right": ["chain3"],
    "join": ["left", "right"],
}
ADDRESSES = [f"{FLOW_NAME}/{n}" for n in NODES]
APPLY_ARGS = ("apply", "flow.py", FLOW_NAME, "--data", "data/in.csv", "--auto-approve", "--parallelism", "4")
PLAN_ARGS = ("plan", "flow.py", FLOW_NAME, "--data", "data/in.csv")

SCRIPT = '''\
"""Node {name}: leave a marker, then write an output that depends only on the inputs."""
import hashlib
import os
import sys
import time

NAME = {name!r}
FAIL = {fail!r}
GATE = {gate!r}
here = os.path.dirname(os.path.abspath(__file__))
markers = open(os.path.join(here, "..", "marker_dir.txt")).read().strip()
inputs = os.environ.get("FLOWS_INPUTS_DIR", "/workflow/inputs")
outputs = os.environ.get("FLOWS_OUTPUTS_DIR", "/workflow/outputs")
h = hashlib.sha256(NAME.encode())
for entry in sorted(os.listdir(inputs)):
    h.update(entry.encode() + b"\\0" + open(os.path.join(inputs, entry), "rb").read())
token = h.hexdigest()[:16]
with open(os.path.join(markers, NAME), "a") as m:
    m.write("{flow}/" + NAME + " " + token + "\\n")
if GATE:
    go = os.path.join(markers, NAME + ".go")
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit("gate never opened")
        time.sleep(0.02)  # poll for the gate, under the deadline above
    if open(go).read().strip() == "fail-once":
        open(go, "w").close()
        sys.exit("node " + NAME + " failed once, as the test asked")
if FAIL:
    sys.exit("node " + NAME + " is broken")
with open(os.path.join(outputs, "out"), "w") as f:
    f.write(NAME + " " + token + "\\n")
'''


def flow_source(nodes: dict[str, list[str]]) -> str:
    lines = [
        "from typing import TypeVar",
        "from flytekit import workflow",
        "from flytekit.types.file import FlyteFile",
        "from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task",
        "",
        'CSV = FlyteFile[TypeVar("csv")]',
        "",
        "",
        "def step(name, **inputs):",
        "    return run_domino_job_task(",
        '        flyte_task_name=name, command=f"python scripts/{name}.py",',
        "        inputs=[Input(name=k, type=CSV, value=v) for k, v in inputs.items()],",
        '        output_specs=[Output(name="out", type=CSV)])',
        "",
        "",
        "@workflow",
        f"def {FLOW_NAME}(data: CSV) -> CSV:",
    ]
    for name, ups in nodes.items():
        args = ", ".join(f'{u}={u}["out"]' for u in ups) or "data=data"
        lines.append(f'    {name} = step("{name}", {args})')
    lines.append(f'    return {list(nodes)[-1]}["out"]')
    return "\n".join(lines) + "\n"


def write_script(root: Path, name: str, *, fail: bool = False, gate: bool = False) -> None:
    (root / "scripts" / f"{name}.py").write_text(SCRIPT.format(name=name, fail=fail, gate=gate, flow=FLOW_NAME))


def make_project(root: Path, markers: Path, *, toml: str = "[tool.flows]\n",
                 knobs: dict[str, dict[str, bool]] | None = None, nodes: dict[str, list[str]] = NODES) -> Path:
    """The flow project at `root` (the ten-node flow unless `nodes` says otherwise; the last node gives the
    flow's output); its jobs leave their markers in `markers`, outside the project."""
    (root / "scripts").mkdir(parents=True)
    (root / "data").mkdir()
    markers.mkdir(parents=True, exist_ok=True)
    (root / "flows.toml").write_text(toml)
    (root / "flow.py").write_text(flow_source(nodes))
    (root / "data" / "in.csv").write_text("id,value\n1,10\n2,20\n3,30\n")
    (root / "marker_dir.txt").write_text(str(markers))  # not named in a command: not part of any key
    for name in nodes:
        write_script(root, name, **(knobs or {}).get(name, {}))
    return root


def open_gate(markers: Path, name: str, content: str = "") -> None:
    """Let a gated job finish (atomically: the job must never read a half-written gate)."""
    tmp = markers / f".{name}.go.tmp"
    tmp.write_text(content)
    os.replace(tmp, markers / f"{name}.go")


def domino_toml(bucket: str, endpoint: str, region: str, prefix: str) -> str:
    """The Domino provider with the in-job runtime of this interpreter, quick polls, blobs in moto's S3."""
    return "\n".join([
        "[tool.flows.provider]", 'type = "domino"', f"runtime_python = {json.dumps(sys.executable)}",
        "poll_interval = 0.05", "max_poll_interval = 0.2", "retry_backoff = 0.0", "retries = 8", "",
        "[tool.flows.blobs]", f'url = "s3://{bucket}/{prefix}/"', f'endpoint_url = "{endpoint}"',
        f'region = "{region}"', ""])


class HoldingProxy:
    """An HTTP proxy on 127.0.0.1 in front of the Domino emulator that lets one request through to the
    emulator but holds back its answer: the moment a job exists on Domino and its starter does not know
    it yet (the window between `POST /v4/jobs/start` and journaling the job id)."""

    def __init__(self, upstream: str, hold: Callable[[str, str, bytes], bool]) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.hold = hold
        self.held = threading.Event()      # set once the held request was answered by the emulator
        self.released = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                proxy._forward(self)

            do_GET = do_POST = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="holding-proxy", daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def _forward(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        headers = {k: v for k, v in req.headers.items() if k.lower() != "connection"}
        conn.request(req.command, req.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if not self.held.is_set() and self.hold(req.command, req.path, body):
            self.held.set()
            self.released.wait(60)
            req.close_connection = True
            return  # the answer never reaches the caller
        req.send_response(resp.status)
        for name, value in resp.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                req.send_header(name, value)
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


# -- observing a project --------------------------------------------------------------------------
def wait_until(check: Callable[[], T], timeout: float = 60.0) -> T:
    """`tests.fixtures.waiting.wait_until` with a deadline for whole applies."""
    return waiting.wait_until(check, timeout, interval=0.005)


def markers_of(markers: Path, nodes: dict[str, list[str]] = NODES) -> dict[str, list[str]]:
    """address -> the tokens of every start of that node's job, in order."""
    out: dict[str, list[str]] = {f"{FLOW_NAME}/{n}": [] for n in nodes}
    for name in nodes:
        path = markers / name
        if path.is_file():
            for line in path.read_text().splitlines():
                address, token = line.split()
                out[address].append(token)
    return out


def state_dir(root: Path) -> Path:
    return root / ".flows" / "state"


def journal_records(root: Path) -> list[dict[str, Any]]:
    path = state_dir(root) / f"{FLOW_NAME}.journal.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_bytes().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            break  # a torn last line: what a crash mid-append leaves
    return records


def load_state(root: Path) -> State:
    """The stored state, through the same validation every command uses (a broken one raises)."""
    path = state_dir(root) / f"{FLOW_NAME}.json"
    return parse_state(path.read_bytes(), str(path))


def finished_nodes(root: Path) -> set[str]:
    """Nodes whose success is durable (journal or state): recovery must never run them again."""
    done = {r["node"]["address"] for r in journal_records(root)
            if r.get("type") == "node_finished" and r["node"]["status"] == "succeeded"}
    if (state_dir(root) / f"{FLOW_NAME}.json").is_file():
        done |= {a for a, n in load_state(root).nodes.items() if n.status == "succeeded"}
    return done


def output_bytes(state: State, read: Callable[[str], bytes]) -> dict[str, bytes]:
    """address -> the bytes of its `out` blob (read through `read(uri)`)."""
    out = {}
    for address in ADDRESSES:
        rec = state.nodes[address]
        assert rec.status == "succeeded", (address, rec.status, rec.error)
        out[address] = read(rec.outputs["out"].uri or "")
    return out


def read_local_blob(uri: str) -> bytes:
    return Path(uri).read_bytes()


def pause_outside_the_mutex(pid: int, mutex: Path) -> None:
    """SIGSTOP the apply, but not in the moment it holds the local backend's mutex (held for milliseconds to
    write or renew): a process stopped there holds up every other one, which no takeover can help."""
    for _ in range(200):
        os.kill(pid, signal.SIGSTOP)
        if pid not in waiting.lock_holders(mutex):
            return
        os.kill(pid, signal.SIGCONT)
        wait_until(lambda: pid not in waiting.lock_holders(mutex), timeout=10)
    raise AssertionError("the apply never left the state's mutex")



# -- running flows ---------------------------------------------------------------------------------
@dataclass
class Background:
    """A `flows` command running in the background, its output going to a file."""

    proc: subprocess.Popen[bytes]
    log: Path
    args: tuple[str, ...] = field(default_factory=tuple)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.is_file() else ""

    def kill(self) -> None:
        """SIGKILL, as a lost machine or a cancelled CI job would: no handler, no clean-up."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def interrupt(self) -> int:
        """SIGINT, as Ctrl-C: apply cancels its running jobs, records them and exits (130)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=60)

    def finish(self, timeout: float = 120) -> Result:
        code = self.proc.wait(timeout=timeout)
        return Result(code, self.text(), "")


def start_flows(*args: str, cwd: Path, log: Path, env: dict[str, str] | None = None) -> Background:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    with open(log, "wb") as f:
        proc = subprocess.Popen([FLOWS, *args], cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=full_env,
                                stdin=subprocess.DEVNULL)
    return Background(proc, log, args)


def run_flows(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Result:
    return flows(*args, cwd=cwd, env=env, timeout=180)


__all__ = ["ADDRESSES", "APPLY_ARGS", "FLOW_NAME", "NODES", "PLAN_ARGS", "Background", "HoldingProxy", "domino_toml",
           "finished_nodes", "flow_source", "journal_records", "load_state", "make_project", "markers_of", "open_gate",
           "output_bytes", "pause_outside_the_mutex", "read_local_blob", "run_flows", "start_flows", "state_dir", "wait_until", "write_script"]
