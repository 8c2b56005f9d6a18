"""A no-op plan without loading the flow or importing the rest of flows: the receipt of the last plan that found
nothing to do, checked again.

A no-op `flows plan` spent its time importing libraries (pydantic, rich, typer), loading the flow and
fingerprinting every node, to conclude what it concluded last time. When a plan finds nothing to do (every
node reused, nothing to say about any of them), it leaves a receipt, `.flows/plans/<digest>.json`, keyed by its
command line and working folder, listing everything that conclusion rested on. The next `flows plan` with the
same command line checks each of them and, when every one is unchanged, prints the same plan (exit 0):

- flows itself (the stat of every .py of its packages) and the receipt's schema;
- the content of an `--inputs` file;
- the configuration as written (`flows.toml` / `pyproject.toml` bytes) and the environment variables that change
  a plan or how it is printed: FLOWS_*, AWS_*, DOMINO_*, the colour/terminal ones, and every variable whose value
  masking would hide;
- the flow: every dependency its load read (reconcile/graph_cache.py: the flow file and project modules by
  content, installed modules by stat, files it opened, folders it listed, variables it read);
- every input file or directory and every code file a command names, by digest (the stat cache: a file whose
  stat signature is unchanged is not read again; any write moves its ctime);
- the state: its etag (local: BLAKE3 of its bytes; S3: the object's ETag), with no journal waiting to be folded;
- every output the plan reuses is still in the blob store (local: intact, by the stat cache; S3: listed).

On S3 the state's HEAD + LIST and the blobs' LISTs go out at once, through a plain botocore client made from the
connection settings (bucket, key, region, endpoint, profile: nothing secret) the full plan's validated
configuration had; the configuration is shown unchanged before they are used.

A plan that changes anything, says anything about a node, has warnings or notes, uses the Domino provider (its
project defaults live in Domino), reads `s3://` inputs, or is asked for --json, --out, --target or --replace
never leaves a receipt; any doubt (a receipt that does not parse, a file that cannot be read) runs the full plan.
`FLOWS_PLAN_SHORTCUT=0` turns it off. Only light modules are imported here (no pydantic, no rich off a terminal).
"""
from __future__ import annotations

import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from reconcile import graph_cache
from reconcile.project_root import project_root_for
from reconcile.settings import env_overrides, flows_dir_of, raw_settings
from vocab.digest import StatCache, bytes_digest, file_digest, path_kind
from vocab.masking import SECRET_ENV_NAME, redact

SCHEMA = 2
_PACKAGES = ("reconcile", "providers", "state", "vocab")
_ROOT = Path(__file__).resolve().parent.parent
REFUSED_FLAGS = ("--out", "--json", "--target", "--replace", "--help", "-h")
_ENV_PREFIXES = ("FLOWS_", "AWS_", "DOMINO_")
_ENV_OUTPUT = {"FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "TERM", "COLUMNS", "LINES",
               "JUPYTER_COLUMNS", "JUPYTER_LINES"}


def enabled() -> bool:
    return os.environ.get("FLOWS_PLAN_SHORTCUT", "1").strip().lower() not in ("0", "false", "no", "off")


def code_version() -> str:
    """flows itself: the stat signature of every .py of its packages (an edit moves its ctime)."""
    sigs = []
    for pkg in _PACKAGES:
        for folder, dirs, files in os.walk(_ROOT / pkg):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(".py"):
                    st = os.stat(os.path.join(folder, name))
                    sigs.append(f"{folder}/{name} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {st.st_ino}")
    return bytes_digest(f"schema {SCHEMA}\n{chr(10).join(sigs)}".encode())


def config_identity(project_root: Path) -> str:
    """The configuration file's bytes and the environment variables that change a plan or its output."""
    _, source = raw_settings(project_root)
    text = Path(source).read_bytes() if source else b""
    env = sorted((k, v) for k, v in os.environ.items()
                 if k.startswith(_ENV_PREFIXES) or k in _ENV_OUTPUT or SECRET_ENV_NAME.search(k))
    return bytes_digest(json.dumps([str(project_root), source, bytes_digest(text), env]).encode())


def _inputs_file(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a == "--inputs" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--inputs="):
            return a[len("--inputs="):]
    return None


def command_key(argv: list[str], cwd: str) -> str:
    """The command line (after `plan`), the working folder, and the content of an --inputs file."""
    inputs = _inputs_file(argv)
    content = file_digest(os.path.join(cwd, inputs)) if inputs else None
    return bytes_digest(json.dumps([cwd, argv, content]).encode())[:32]


def receipt_file(flows_dir: Path, key: str) -> Path:
    return flows_dir / "plans" / f"{key}.json"


def shortcut_argv(argv: list[str]) -> bool:
    """Whether this `flows plan` command line may be answered from a receipt."""
    if not argv or argv[0].startswith("-"):
        return False
    return not any(a in REFUSED_FLAGS or a.startswith(tuple(f + "=" for f in REFUSED_FLAGS)) for a in argv)


# ------------------------------------------------------------------------------------------------ reading

def try_noop_plan(argv: list[str]) -> int | None:
    """Print the plan from the receipt and return the exit code, when everything it rests on is unchanged;
    None: run the full plan."""
    if not enabled() or not shortcut_argv(argv):
        return None
    try:
        receipt, digests = _valid_receipt(argv)
    except Exception:  # noqa: BLE001 - any doubt (a damaged receipt, a config error, S3 unreachable): the full
        if os.environ.get("FLOWS_DEBUG"):  # plan runs, and says properly what is wrong
            raise
        return None
    if receipt is None:
        return None
    _print(receipt)
    digests.save()
    return 0


def _valid_receipt(argv: list[str]) -> tuple[dict[str, Any] | None, StatCache]:
    flow_file = Path(argv[0]).resolve()
    if not flow_file.is_file():
        return None, StatCache(None)
    root = project_root_for(flow_file)
    settings = env_overrides(raw_settings(root)[0])
    fdir = flows_dir_of(root, settings)
    path = receipt_file(fdir, command_key(argv, os.getcwd()))
    if not path.is_file():
        return None, StatCache(None)
    receipt = json.loads(path.read_bytes())
    if (receipt.get("schema") != SCHEMA or receipt.get("code") != code_version()
            or receipt.get("config") != config_identity(root) or receipt.get("flow_file") != str(flow_file)):
        return None, StatCache(None)
    if not graph_cache.still_true(receipt["deps"]):
        return None, StatCache(None)
    digests = StatCache(fdir / "statcache.json")
    for p, (kind, want) in receipt["files"].items():
        if kind == "kind":  # a word of a command: whether it names a file decides the node's code identity
            if str(path_kind(p)) != want:
                return None, digests
        elif (digests.directory(p) if kind == "dir" else digests.file(p)) != want:
            return None, digests
    if receipt["state"]["backend"] == "local" and receipt["blobs"]["store"] == "local":
        unchanged = _state_unchanged(receipt) and _blobs_present(receipt, digests)
    else:  # the state's HEAD and LIST go out while the blobs are listed: round trips overlap
        with ThreadPoolExecutor(1) as aside:
            state_looked = aside.submit(_state_unchanged, receipt)
            unchanged = _blobs_present(receipt, digests) and state_looked.result()
    return (receipt if unchanged else None), digests


def _state_unchanged(receipt: dict[str, Any]) -> bool:
    where = receipt["state"]
    if where["backend"] == "local":
        from state.local_layout import peek
        etag, journal = peek(Path(where["dir"]), receipt["flow"])
    elif where["backend"] == "s3":
        from state import s3_layout
        s3 = where["s3"]
        etag, journal = s3_layout.peek(_s3_client(s3), s3["bucket"], s3["key"], receipt["flow"])
    else:
        return False
    return etag == where["etag"] and not journal


def _blobs_present(receipt: dict[str, Any], digests: StatCache) -> bool:
    blobs = receipt["blobs"]
    uris, dirs = blobs["uris"], set(blobs["dirs"])
    if blobs["store"] == "local":
        from providers.blobs.local_presence import usable
        store = Path(blobs["root"])
        return all(usable(digests, store, Path(u), u in dirs) for u in uris)
    if blobs["store"] == "s3":
        from providers.blobs import s3_presence
        s3 = blobs["s3"]
        return all(s3_presence.exists(_s3_client(s3), s3["bucket"], s3["prefix"], uris).values())
    return False


_CLIENTS: dict[tuple[Any, ...], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _s3_client(where: dict[str, Any]) -> Any:
    """A plain botocore client (no boto3, no transfer manager: only HEADs and LISTs here), one per connection:
    the state and the blobs share it when they connect alike. The receipt's settings are those of the
    validated configuration, which `config_identity` shows unchanged."""
    from state.s3_client import make_client

    settings = {k: where[k] for k in ("region", "endpoint_url", "profile", "max_attempts", "connect_timeout")}
    with _CLIENTS_LOCK:
        key = tuple(sorted(settings.items()))
        if key not in _CLIENTS:
            _CLIENTS[key] = make_client(**settings, transfers=False)
        return _CLIENTS[key]


def _print(receipt: dict[str, Any]) -> None:
    isatty = getattr(sys.stdout, "isatty", None)
    if callable(isatty) and isatty():  # a person: the same console the full plan prints to
        from rich.console import Console
        console = Console(highlight=False)
        for line in receipt["lines"]:
            console.print(line)
    else:
        sys.stdout.write(receipt["plain"])
        sys.stdout.flush()


# ------------------------------------------------------------------------------------------------ writing

def write_receipt(*, argv: list[str], cwd: str, flow_file: Path, workflow: str | None, flow: str,
                  project_root: Path, flows_dir: Path, files: dict[str, tuple[str, str]],
                  state: dict[str, Any], blobs: dict[str, Any], lines: list[str], plain: str) -> bool:
    """Leave the receipt of a plan that found nothing to do (see the module's docstring for when the caller may).
    `files`: every input and code file the plan digested, {path: ("file" | "dir", digest)}. False when it
    cannot be written or the flow's load is not known (its graph was not cacheable)."""
    deps = graph_cache.deps_of(flow_file, workflow)
    if not enabled() or deps is None or not shortcut_argv(argv):
        return False
    receipt = {"schema": SCHEMA, "code": code_version(), "config": config_identity(project_root),
               "flow_file": str(flow_file), "workflow": workflow, "flow": flow, "deps": deps,
               "files": {p: list(v) for p, v in sorted(files.items())}, "state": state, "blobs": blobs,
               "lines": lines, "plain": plain}
    text = json.dumps(receipt, separators=(",", ":"))
    if redact(text) != text:  # a secret's value in a path, a setting or an output line: not written down
        return False
    path = receipt_file(flows_dir, command_key(argv, cwd))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True


def leave_receipt(loaded: Any, view: Any, plan: Any, lines: list[str], plain: str) -> bool:
    """After a full `flows plan` (`loaded`: its `reconcile.session.LoadedFlow`, `view`: the state it read): the
    receipt of the plan when it found nothing to do and rests only on what `try_noop_plan` can check. `lines`:
    what it printed (Rich markup, replayed on a terminal); `plain`: the same as a pipe gets it."""
    from reconcile.plan import _blob_uris, _dir_uris
    from state.store import _any_running
    from vocab.flytetypes import is_dir

    argv = sys.argv[2:] if sys.argv[1:2] == ["plan"] else None
    graph, ws, state, planner = loaded.graph, loaded.ws, view.state, loaded.planner
    if (argv is None or planner is None or view.journal or view.rekeyed or graph.warnings or _any_running(state)
            or ws.provider.resolves_remotely  # its answers live on a server: asked every time
            or any(n.kind == "python" for n in graph.nodes.values())
            or any(c.action != "reuse" or c.reasons or c.notes for c in plan.nodes)):
        return False
    files: dict[str, tuple[str, str]] = {}
    for (t, location), digest in planner.keyer.resolver._memo.items():
        if location.startswith("s3://"):
            return False  # its digest is an S3 question (an ETag check): not kept
        files[os.path.abspath(location)] = ("dir" if is_dir(t) else "file", digest)
    root = Path(graph.project_root)
    for _config, code in planner.keyer._static.values():
        for rel, digest in code.items():
            files[str(root / rel)] = ("file", digest)
    for path, kind in ws.digests.kinds_seen().items():  # words of commands that did (not) name a project file
        files.setdefault(os.path.abspath(path), ("kind", str(kind)))
    uris: set[str] = set()
    dirs: set[str] = set()
    for change in plan.nodes:
        entry = state.cache[change.key]
        uris.update(_blob_uris(entry.outputs))
        dirs.update(_dir_uris(entry.outputs))
    blobs: dict[str, Any] = ({"store": "s3", "s3": ws.blobs.connection} if str(ws.blobs.url).startswith("s3://")
                             else {"store": "local", "root": str(ws.blobs.root)})
    state_info: dict[str, Any] = {"backend": ws.backend.kind, "etag": view.etag}
    if ws.backend.kind == "local":
        state_info["dir"] = str(ws.backend.root)
    elif ws.backend.kind == "s3":
        state_info["s3"] = ws.backend.connection
    return write_receipt(argv=argv, cwd=os.getcwd(), flow_file=Path(graph.file), workflow=loaded.workflow_arg,
                         flow=graph.workflow, project_root=root, flows_dir=ws.config.dir, files=files,
                         state=state_info, blobs={**blobs, "uris": sorted(uris), "dirs": sorted(dirs)},
                         lines=lines, plain=plain)
