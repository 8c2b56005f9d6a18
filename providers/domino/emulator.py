"""A Domino API emulator: a real HTTP server on 127.0.0.1 that speaks the routes flows uses.

It knows a few projects (environments, hardware tiers, commits), checks credentials the way Domino
does (`X-Domino-Api-Key`, `Authorization: Bearer`, or trusts header-less calls as the in-run API
proxy), runs each job's command as a real subprocess (see `emulator_jobs`), records every request,
and injects faults on demand: 5xx answers, dropped connections, lost answers (done, then dropped),
slow queues, and jobs that fail, hang or die. Request bodies are read with Domino's field names
directly (not with the client's models), so a wrong name in the client shows up as a failure here.

    python -m providers.domino.emulator --port 8765 --project-dir . --api-key secret   # try flows offline
"""
from __future__ import annotations

import argparse
import itertools
import os
import json
import random
import re
import shutil
import signal
import socket
import ssl
import struct
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from providers.domino.emulator_jobs import EmulatedJob, JobRunner
from providers.domino.emulator_routes import dispatch
from providers.domino.emulator_world import (EmulatorConfig, EnvironmentSpec, Faults, HardwareTierSpec, JobRule,
                                             ProjectSpec, commit_sha, demo_project)

__all__ = ["DominoEmulator", "EmulatorConfig", "EnvironmentSpec", "Faults", "HardwareTierSpec", "JobRule",
           "ProjectSpec", "RawBody", "RecordedRequest", "demo_project"]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    auth: str                  # "api_key" | "bearer" | "none": the kind of credentials, never their value
    status: int | None         # None: the connection was dropped
    fault: str | None = None   # "error" | "reset" | "lost" | "override"


@dataclass
class _Override:
    method: str
    path: re.Pattern[str]
    status: int
    body: Any
    times: int | None


@dataclass(frozen=True)
class RawBody:
    """An answer that is not JSON (for tests of a misconfigured host)."""

    text: str
    content_type: str = "text/html"


# ------------------------------------------------------------------------------------------ emulator


class DominoEmulator:
    """Start with `with DominoEmulator(config) as emu:` (or `.start()` / `.stop()`); `emu.url` is the host."""

    def __init__(self, config: EmulatorConfig, *, port: int = 0, tls: tuple[Path, Path] | None = None,
                 isolate: bool | None = None) -> None:
        self.config = config
        self.requests: list[RecordedRequest] = []
        self.jobs: dict[str, EmulatedJob] = {}
        self.started_jobs: list[str] = []
        self.stop_calls: list[str] = []
        self.lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._overrides: list[_Override] = []
        self._rng = random.Random(config.faults.seed)
        self._own_work_dir = config.work_dir is None
        self.work_dir = Path(config.work_dir or tempfile.mkdtemp(prefix="domino-emulator-"))
        self.bin_dir = Path(tempfile.mkdtemp(prefix="domino-emulator-bin-")) if config.realistic else None
        if self.bin_dir is not None:  # the environment's `python`: the system Python 3, nothing of ours
            os.chmod(self.bin_dir, 0o755)
            system = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"
            (self.bin_dir / "python").symlink_to(system)
        self.runner = JobRunner(isolate=isolate, realistic=config.realistic, job_user=config.job_user,
                                bin_dir=self.bin_dir)
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _RequestHandler)
        self._server.daemon_threads = True
        self._server.emulator = self  # type: ignore[attr-defined]
        scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.port = self._server.server_address[1]
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> DominoEmulator:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="domino-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.runner.shutdown()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(10)
            self._thread = None
        self._server.server_close()
        if self.bin_dir is not None:
            shutil.rmtree(self.bin_dir, ignore_errors=True)
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> DominoEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"DominoEmulator({self.url!r}, projects={[p.owner + '/' + p.name for p in self.config.projects]})"

    # knobs and views for tests
    @property
    def project(self) -> ProjectSpec:
        return self.config.projects[0]

    def set_faults(self, **changes: Any) -> None:
        """Change fault injection on the fly (re-seeds the random draws)."""
        with self.lock:
            self.config.faults = self.config.faults.model_copy(update=changes)
            self._rng = random.Random(self.config.faults.seed)

    def override(self, method: str, path_regex: str, status: int, body: Any, times: int | None = None) -> None:
        """Answer matching requests with `status` and `body` (JSON, or `RawBody`) instead of the real route."""
        with self.lock:
            self._overrides.append(_Override(method, re.compile(path_regex), status, body, times))

    def commit_results(self, project: ProjectSpec) -> str:
        """A finished job's results become a new commit of the project (Domino's DFS does this)."""
        return self.new_commit(project)

    def new_commit(self, project: ProjectSpec | None = None) -> str:
        """Push a new commit to the project (and its git head, for a git project); returns it."""
        p = project or self.project
        with self.lock:
            sha = commit_sha(p.owner, p.name, len(p.commits) + 1)
            p.commits.append(sha)
            if p.git_head is not None:
                p.git_head = commit_sha(p.owner, p.name, "git", len(p.commits))
        return sha

    def calls(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, filtered by method and path prefix."""
        with self.lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and (path is None or r.path.startswith(path))]

    def job(self, job_id: str) -> EmulatedJob:
        return self.jobs[job_id]

    # request handling (called from the server's threads)
    def auth_kind(self, headers: Any) -> tuple[str, bool]:
        key = headers.get("X-Domino-Api-Key")
        if key is not None:
            expected = self.config.api_key
            return "api_key", expected is not None and key == expected.get_secret_value()
        authz = headers.get("Authorization")
        if authz is not None:
            token = authz[7:] if authz.startswith("Bearer ") else None
            return "bearer", token is not None and token in {t.get_secret_value() for t in self.config.tokens}
        return "none", self.config.trust_proxy

    def draw_fault(self, path: str) -> tuple[str | None, int]:
        faults = self.config.faults
        if faults.paths and not any(path.startswith(p) for p in faults.paths):
            return None, 0
        with self.lock:
            x, status = self._rng.random(), self._rng.choice((500, 502, 503, 504))
        if x < faults.error_rate:
            return "error", status
        x -= faults.error_rate
        if x < faults.reset_rate:
            return "reset", 0
        x -= faults.reset_rate
        if x < faults.lost_response_rate:
            return "lost", 0
        return None, 0

    def take_override(self, method: str, path: str) -> _Override | None:
        with self.lock:
            for o in self._overrides:
                if o.method == method and o.path.search(path) and (o.times is None or o.times > 0):
                    if o.times is not None:
                        o.times -= 1
                    return o
        return None

    def next_number(self) -> int:
        with self.lock:
            return next(self._numbers)

    def record(self, entry: RecordedRequest) -> None:
        with self.lock:
            self.requests.append(entry)


# ---------------------------------------------------------------------------------------- HTTP layer


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"     # keep-alive, like a real gateway (so dropped connections matter)
    timeout = 10                      # idle keep-alive connections end, so their threads do too
    server_version = "DominoEmulator/1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: requests are recorded
        return

    def _serve(self, method: str) -> None:
        emu: DominoEmulator = self.server.emulator  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        kind, authorized = emu.auth_kind(self.headers)
        if emu.config.latency_seconds:
            time.sleep(emu.config.latency_seconds)  # a slow gateway: every answer is late

        def record(status: int | None, body: Any, fault: str | None = None) -> None:
            emu.record(RecordedRequest(method, url.path, query, body, kind, status, fault))

        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            record(400, raw.decode(errors="replace"))
            self._send(400, {"message": "Malformed JSON in request body"})
            return
        fault, fault_status = emu.draw_fault(url.path)
        if fault == "reset":
            record(None, body, fault)
            self._drop()
            return
        if fault == "error":
            record(fault_status, body, fault)
            self._send(fault_status, {"message": "emulated server error"})
            return
        override = emu.take_override(method, url.path)
        if override is not None:
            record(override.status, body, "override")
            self._send(override.status, override.body)
            return
        status, answer = dispatch(emu, method, url.path, query, body, authorized)
        if fault == "lost":
            record(None, body, fault)
            self._drop()
            return
        record(status, body)
        self._send(status, answer)

    def _send(self, status: int, answer: Any) -> None:
        if isinstance(answer, RawBody):
            data, ctype = answer.text.encode(), answer.content_type
        else:
            data, ctype = json.dumps(answer).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        """Close with a TCP reset and no answer: what a crashed gateway or a cut network looks like."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass


# ----------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m providers.domino.emulator",
                                 description="A local Domino API emulator: try flows' domino provider offline.")
    ap.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port)")
    ap.add_argument("--project-dir", type=Path, required=True, help="the project folder jobs run in")
    ap.add_argument("--api-key", help="the API key clients must send (X-Domino-Api-Key)")
    ap.add_argument("--token", action="append", default=[], help="a bearer token clients may send (repeatable)")
    ap.add_argument("--trust-proxy", action="store_true", help="accept calls without credentials (API proxy mode)")
    ap.add_argument("--owner", default="flows-user")
    ap.add_argument("--project", default="demo")
    ap.add_argument("--queue-seconds", type=float, default=0.0)
    ap.add_argument("--error-rate", type=float, default=0.0)
    ap.add_argument("--reset-rate", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work-dir", type=Path, help="keep job folders here (default: a temporary folder)")
    ap.add_argument("--realistic", action="store_true",
                    help="run jobs as Domino does: non-root user, system Python only, no credentials (needs root)")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds every answer is delayed")
    args = ap.parse_args(argv)
    if not args.project_dir.is_dir():
        ap.error(f"--project-dir {args.project_dir} is not a folder")
    if not (args.api_key or args.token or args.trust_proxy):
        ap.error("give --api-key, --token or --trust-proxy")
    config = EmulatorConfig(
        projects=[demo_project(args.project_dir.resolve(), args.owner, args.project)],
        api_key=args.api_key, tokens=args.token, trust_proxy=args.trust_proxy, work_dir=args.work_dir,
        realistic=args.realistic, latency_seconds=args.latency,
        faults=Faults(queue_seconds=args.queue_seconds, error_rate=args.error_rate, reset_rate=args.reset_rate,
                      seed=args.seed))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with DominoEmulator(config, port=args.port) as emu:
        print(f"Domino emulator on {emu.url}", flush=True)
        print(f"  export DOMINO_API_HOST={emu.url} DOMINO_PROJECT_OWNER={args.owner} "
              f"DOMINO_PROJECT_NAME={args.project}" + (" DOMINO_USER_API_KEY=<your --api-key>" if args.api_key else ""),
              flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
