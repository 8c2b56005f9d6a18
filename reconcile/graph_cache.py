"""The traced graph of a flow, cached by the content of everything its loading read.

Loading a flow runs its Python: at 1,000 nodes that is most of a no-op plan. While a flow loads, a recorder
notes what the load read: the flow file and every module it imported (project files by content, installed
modules by their stat signature), every other file it opened (content, or absent), every folder it listed
(the import system lists the folders of `sys.path` too, so a new module file that would shadow an import
counts), every environment variable it read (by a digest of its value, or absent). The cache entry keeps
those with the graph, and it is used only when every one of them is still the same, under the same flows
code (the digest of the loader, tracer and authoring shims) and entry schema.

What is never cached (the flow is loaded every time): a load that started a process, opened a socket, read
the whole environment or a variable whose name says KEY/TOKEN/SECRET/PASSWORD, produced warnings, or whose
graph would be masked (a secret in it: the cache file must not hold one). `FLOWS_GRAPH_CACHE=0` turns it off.
A damaged or unreadable entry is ignored and replaced. What a load could read that no recorder sees (the
clock, random numbers) is not part of the key: a flow whose shape depends on them has no stable plan anyway.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

from vocab.digest import bytes_digest, file_digest
from vocab.masking import redact

SCHEMA = 1
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent   # the folder holding reconcile/ and vocab/
_CODE_DIRS = ("reconcile", "vocab")
# Audit events that make a load depend on something outside its files: never cached.
_UNCACHEABLE_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                       "socket.connect", "socket.getaddrinfo", "urllib.Request", "ctypes.dlopen"}
_SECRET_NAME = ("KEY", "TOKEN", "SECRET", "PASSWORD")


def enabled() -> bool:
    return os.environ.get("FLOWS_GRAPH_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


def _system_prefixes() -> tuple[str, ...]:
    """Folders whose files a flow load reads as Python itself (stdlib, site-packages, bytecode caches) and
    this package: covered by the stat signatures of the modules imported and by `code_version`."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, str(_PACKAGE_ROOT / "reconcile"),
             str(_PACKAGE_ROOT / "vocab")}
    return tuple(os.path.realpath(r) + os.sep for r in roots if r)


_code_version: str | None = None


def code_version() -> str:
    """The digest of flows' own loader, tracer and authoring shims (every .py under reconcile/ and vocab/), and
    the cache schema: a new flows, or an edited one, traces again."""
    global _code_version
    if _code_version is None:
        parts = [f"schema {SCHEMA}"]
        for d in _CODE_DIRS:
            for p in sorted((_PACKAGE_ROOT / d).rglob("*.py")):
                with contextlib.suppress(OSError):
                    parts.append(f"{p.relative_to(_PACKAGE_ROOT)} {file_digest(p)}")
        _code_version = bytes_digest("\n".join(parts).encode())
    return _code_version


class Recorder:
    """What one load read. Filled by the audit hook, the environment proxy and the loader (modules)."""

    def __init__(self, project_roots: list[str]) -> None:
        self.thread = threading.get_ident()
        self.roots = tuple(os.path.realpath(r) + os.sep for r in project_roots)
        self.system = _system_prefixes()
        self.files: dict[str, str | None] = {}      # project / opened files: content digest (None: absent)
        self.stats: dict[str, list[int]] = {}       # installed modules: stat signature
        self.dirs: dict[str, str | None] = {}       # listed folders: digest of the sorted names (None: absent)
        self.import_dirs: dict[str, str | None] = {}  # folders searched for modules: digest of the module names
        self.env: dict[str, str | None] = {}        # variables read: digest of the value (None: unset)
        self.uncacheable: str | None = None
        self.busy = False

    def _skip(self, path: str) -> bool:
        return path.startswith(self.system) or f"{os.sep}__pycache__{os.sep}" in path

    def opened(self, path: Any, mode: Any) -> None:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return  # a file descriptor
        p = os.path.realpath(os.fsdecode(path))
        if p in self.files or self._skip(p):
            return
        if isinstance(mode, str) and any(c in mode for c in "wax+"):
            return  # written, not read
        self.files[p] = _file_identity(p)

    def listed(self, path: Any, by_import: bool) -> None:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return
        p = os.path.realpath(os.fsdecode(path) or ".")
        if self._skip(p):
            return
        if by_import:  # the import system looking for modules: only names it could import count
            if p not in self.import_dirs:
                self.import_dirs[p] = _dir_identity(p, importable_only=True)
        elif p not in self.dirs:
            self.dirs[p] = _dir_identity(p)

    def module(self, file: str) -> None:
        p = os.path.realpath(file)
        if p.startswith(self.roots) and not self._skip(p):
            self.files.setdefault(p, _file_identity(p))
        elif p not in self.files:
            with contextlib.suppress(OSError):
                self.stats.setdefault(p, _stat_identity(p))

    def env_read(self, name: str, value: str | None) -> None:
        if any(w in name.upper() for w in _SECRET_NAME):
            self.refuse(f"it read the environment variable {name}")
        self.env.setdefault(name, None if value is None else bytes_digest(value.encode("utf-8", "surrogateescape")))

    def refuse(self, why: str) -> None:
        if self.uncacheable is None:
            self.uncacheable = why

    def deps(self) -> dict[str, Any]:
        return {"files": self.files, "stats": self.stats, "dirs": self.dirs, "import_dirs": self.import_dirs,
                "env": self.env}


def _file_identity(path: str) -> str | None:
    try:
        return file_digest(path) if os.path.isfile(path) else None
    except OSError:
        return None


def _stat_identity(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev]


_MODULE_SUFFIXES = ("", ".py", ".pyc", ".pyw", ".so", ".pyd", ".pth")


def _importable(name: str) -> bool:
    stem, dot, suffix = name.partition(".")
    return stem.isidentifier() and (not dot or "." + suffix.rsplit(".", 1)[-1] in _MODULE_SUFFIXES)


def _dir_identity(path: str, importable_only: bool = False) -> str | None:
    try:
        names = os.listdir(path)
    except OSError:
        return None
    if importable_only:  # (`.flows/`, `data.csv`, `loads.log` cannot shadow a module)
        names = [n for n in names if _importable(n)]
    return bytes_digest("\0".join(sorted(names)).encode("utf-8", "surrogateescape"))


# ---------------------------------------------------------------------------------------------- recording

_active: Recorder | None = None
_hook_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    rec = _active
    if rec is None or rec.busy or threading.get_ident() != rec.thread:
        return
    rec.busy = True  # the recorder's own reads (digests, listings) are not the load's
    try:
        if event == "open":
            rec.opened(args[0], args[1] if len(args) > 1 else None)
        elif event in ("os.listdir", "os.scandir"):
            caller = sys._getframe(1).f_code.co_filename
            rec.listed(args[0] if args else ".", by_import="importlib" in caller)
        elif event in _UNCACHEABLE_EVENTS:
            rec.refuse(f"it ran {event}")
    finally:
        rec.busy = False


class _RecordingEnviron(type(os.environ)):  # type: ignore[misc]
    """os.environ while a flow loads: the same variables; every read is noted."""

    def __getitem__(self, key: str) -> str:
        try:
            value = super().__getitem__(key)
        except KeyError:
            if _active is not None and threading.get_ident() == _active.thread:
                _active.env_read(key, None)
            raise
        if _active is not None and threading.get_ident() == _active.thread:
            _active.env_read(key, value)
        return value

    def __iter__(self) -> Iterator[str]:
        if _active is not None and threading.get_ident() == _active.thread:
            _active.refuse("it read the whole environment")
        return super().__iter__()

    def copy(self) -> dict[str, str]:
        return dict(self)


@contextlib.contextmanager
def recording(project_roots: list[str]) -> Iterator[Recorder]:
    """Record what the load inside reads (one load at a time; other threads are not recorded)."""
    global _active, _hook_installed
    rec = Recorder(project_roots)
    if not _hook_installed:
        sys.addaudithook(_audit)  # (cannot be removed: it does nothing while no load is recorded)
        _hook_installed = True
    real = os.environ
    proxy = _RecordingEnviron(real._data, real.encodekey, real.decodekey,  # type: ignore[attr-defined]
                              real.encodevalue, real.decodevalue)  # type: ignore[attr-defined]
    previous, _active = _active, rec
    os.environ = proxy
    try:
        yield rec
    finally:
        os.environ = real
        _active = previous


def note_modules(files: list[str]) -> None:
    """The loader tells which module files the load imported (before it forgets the project ones)."""
    rec = _active
    if rec is not None and not rec.busy:
        rec.busy = True
        try:
            for f in files:
                rec.module(f)
        finally:
            rec.busy = False


# --------------------------------------------------------------------------------------------- the cache

def entry_path(cache_dir: Path, flow_file: Path, workflow: str | None) -> Path:
    name = bytes_digest(f"{flow_file}\0{workflow or ''}".encode("utf-8", "surrogateescape"))[:32]
    return cache_dir / f"{name}.json"


def _still_true(deps: dict[str, Any]) -> bool:
    for p, want in deps.get("files", {}).items():
        if _file_identity(p) != want:
            return False
    for p, want in deps.get("dirs", {}).items():
        if _dir_identity(p) != want:
            return False
    for p, want in deps.get("import_dirs", {}).items():
        if _dir_identity(p, importable_only=True) != want:
            return False
    for p, want in deps.get("stats", {}).items():
        try:
            if _stat_identity(p) != want:
                return False
        except OSError:
            return False
    env = os.environ
    for name, want in deps.get("env", {}).items():
        value = env.get(name)
        if (None if value is None else bytes_digest(value.encode("utf-8", "surrogateescape"))) != want:
            return False
    return True


def lookup(cache_dir: Path, flow_file: Path, workflow: str | None, project_root: Path) -> dict[str, Any] | None:
    """The cached graph (as JSON data) when every dependency of the load that made it is unchanged; None
    otherwise, also for a damaged entry (it only costs a load)."""
    try:
        entry = json.loads(entry_path(cache_dir, flow_file, workflow).read_bytes())
        if (not isinstance(entry, dict) or entry.get("schema") != SCHEMA or entry.get("code") != code_version()
                or entry.get("flow") != str(flow_file) or entry.get("workflow") != workflow
                or entry.get("root") != str(project_root)):
            return None
        if not _still_true(entry["deps"]):
            return None
        graph = entry["graph"]
        if not isinstance(graph, dict):
            return None
        _deps[(str(flow_file), workflow)] = entry["deps"]
        return graph
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


_pending: dict[Path, str] = {}
_deps: dict[tuple[str, str | None], dict[str, Any]] = {}


def deps_of(flow_file: Path, workflow: str | None) -> dict[str, Any] | None:
    """What the graph of this command's load of `flow_file` rests on (None: not known, or not cacheable)."""
    return _deps.get((str(flow_file), workflow))


def still_true(deps: dict[str, Any]) -> bool:
    """Every dependency recorded by a load is unchanged (a damaged record counts as changed)."""
    try:
        return _still_true(deps)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def store(cache_dir: Path, flow_file: Path, workflow: str | None, project_root: Path, rec: Recorder,
          graph_json: str) -> None:
    """Keep the entry until the command saves what it learnt (`save_pending`): a command refused for a bad
    input writes nothing under .flows/."""
    if rec.uncacheable is not None or redact(graph_json) != graph_json:  # never a secret in a cache file
        return
    _deps[(str(flow_file), workflow)] = rec.deps()
    text = json.dumps({"schema": SCHEMA, "code": code_version(), "flow": str(flow_file), "workflow": workflow,
                       "root": str(project_root), "deps": rec.deps(), "graph": "@GRAPH@"}, separators=(",", ":"))
    _pending[entry_path(cache_dir, flow_file, workflow)] = text.replace('"@GRAPH@"', graph_json, 1)


def save_pending() -> None:
    """Write the entries of the loads of this command (atomically); a project folder that cannot be written
    simply has no cache."""
    while _pending:
        path, data = _pending.popitem()
        _write(path, data)


def _write(path: Path, data: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(data)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
