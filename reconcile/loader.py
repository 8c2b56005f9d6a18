"""Load a flow file (unmodified Domino/Flyte Python) and trace one workflow into a FlowGraph."""
from __future__ import annotations

import contextlib
import hashlib
import heapq
import importlib.abc
import importlib.machinery
import importlib.util
import marshal
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from types import CodeType, ModuleType
from typing import Iterator, Sequence

from reconcile import graph_cache, tracing
from reconcile.authoring import load_notes
from reconcile.authoring.workflow import WorkflowDef
from reconcile.authoring_imports import shimmed
from vocab.errors import FlowLoadError, FlowsError
from reconcile.graph import Binding, FlowGraph, Node
from reconcile.project_root import PROJECT_MARKERS, project_root_for

__all__ = ["PROJECT_MARKERS", "FlowGraph", "load_flow", "load_every_workflow", "import_flow_module",
           "project_root_for", "project_sources"]


def _short_error(e: BaseException, path: Path) -> FlowLoadError:
    """The Python error and the line of user code it came from, without a traceback.

    The innermost frame in the flow file or in a module from its folder / project (a helper it
    imports) is named; frames of this package, the standard library and installed packages are not.
    """
    if isinstance(e, SyntaxError):
        return FlowLoadError(f"syntax error: {e.msg}", file=e.filename or str(path), line=e.lineno)
    user_roots = [str(path.parent) + os.sep, str(project_root_for(path)) + os.sep]
    package_dir = os.path.dirname(os.path.abspath(__file__)) + os.sep
    where, line = str(path), None
    for frame in traceback.extract_tb(e.__traceback__):
        fname = os.path.abspath(frame.filename)
        if fname == str(path) or (any(fname.startswith(r) for r in user_roots)
                                  and not fname.startswith(package_dir) and "site-packages" not in fname):
            where, line = fname, frame.lineno
    text = str(e).splitlines()[0] if str(e) else ""
    errors = getattr(e, "errors", None)
    if type(e).__name__ == "ValidationError" and callable(errors):  # pydantic: its first line names only the model
        with contextlib.suppress(Exception):
            first = errors()[0]
            text = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']} (got {first.get('input')!r})"
    if len(text) > 200:
        text = text[:200] + "…"
    return FlowLoadError(f"failed to load: {type(e).__name__}: {text}".rstrip(": "), file=where, line=line)


_CHECKED_HASH_FLAGS = (0b11).to_bytes(4, "little")  # PEP 552: hash-based, checked against the source


class _HashCheckedLoader(importlib.machinery.SourceFileLoader):
    """A module of the flow's own, run as its source says: its .pyc is trusted only by the hash of the source.

    Python trusts a timestamp .pyc whose recorded source mtime (whole seconds) and size match the file. An edit in
    the same second that keeps the size (a commit id, a default, a file name of the same length) would be traced as
    the old code while the plan keys the new content: a wrong cache hit. So only a checked-hash .pyc (PEP 552) is
    used, and the one written is one (where bytecode is written at all); Python's own import validates it the same
    way, so a job importing the module later cannot run it stale either."""

    def get_code(self, fullname: str) -> CodeType:
        source = self.get_data(self.path)
        digest = importlib.util.source_hash(source)
        cache = importlib.util.cache_from_source(self.path)
        header = importlib.util.MAGIC_NUMBER + _CHECKED_HASH_FLAGS + digest
        with contextlib.suppress(OSError):
            data = self.get_data(cache)
            if data[:16] == header:
                with contextlib.suppress(ValueError, EOFError, TypeError):
                    code = marshal.loads(data[16:])
                    if isinstance(code, CodeType):
                        return code
        code = self.source_to_code(source, self.path)
        if not sys.dont_write_bytecode:
            with contextlib.suppress(OSError, NotImplementedError):  # an unwritable folder: as Python, no cache
                self.set_data(cache, header + marshal.dumps(code))
        return code


class _ProjectSources(importlib.abc.MetaPathFinder):
    """The flow's own modules, loaded by `_HashCheckedLoader`: a top-level module found in the flow's folder or project
    (not one found elsewhere on `sys.path`, such as a virtualenv kept inside the project), and the submodules of
    such a package. Sits just before the path finder, so built-in and frozen modules come first as usual."""

    def __init__(self, roots: list[str]) -> None:
        self.roots = roots

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        parent_name = fullname.rpartition(".")[0]
        if parent_name:
            parent_spec = getattr(sys.modules.get(parent_name), "__spec__", None)
            if not isinstance(getattr(parent_spec, "loader", None), _HashCheckedLoader):
                return None
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        else:
            spec = importlib.machinery.PathFinder.find_spec(fullname, self.roots)
        origin = spec.origin if spec is not None else None
        if spec is None or origin is None or type(spec.loader) is not importlib.machinery.SourceFileLoader:
            return None  # not ours (or a namespace package): the path finder, next in line, finds it as usual
        spec.loader = _HashCheckedLoader(fullname, origin)
        return spec


@contextlib.contextmanager
def project_sources(roots: list[str]) -> Iterator[None]:
    """While inside: the flow's own modules (found in these folders) run as their source says (`_HashCheckedLoader`)."""
    finder = _ProjectSources(roots)
    at = next((i for i, f in enumerate(sys.meta_path) if f is importlib.machinery.PathFinder), len(sys.meta_path))
    sys.meta_path.insert(at, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def import_flow_module(path: Path) -> ModuleType:
    """Execute the flow file with the flytekit/Domino shims in place (its `__main__` block does not run)."""
    if not path.is_file():
        what = ("a directory, not a flow file" if path.is_dir() else
                "not a regular file (a FIFO, socket or device)" if path.exists() else "no such flow file")
        raise FlowLoadError(what, file=str(path))
    name = "flows_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path, loader=_HashCheckedLoader(name, str(path)))
    if spec is None or spec.loader is None:
        raise FlowLoadError("not a Python file", file=str(path))
    module = importlib.util.module_from_spec(spec)
    extra_paths = [str(path.parent), str(project_root_for(path))]
    before_modules = set(sys.modules)
    with project_sources(extra_paths), shimmed(), stdout_to_stderr():
        sys.path[:0] = extra_paths
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except (FlowsError, LoadStopped, KeyboardInterrupt):
            raise
        except BaseException as e:  # user code: report it as one line, never a traceback
            raise _short_error(e, path) from None
        finally:
            for p in extra_paths:
                if p in sys.path:
                    sys.path.remove(p)
            new_modules = set(sys.modules) - before_modules
            graph_cache.note_modules([f for m in new_modules if (f := getattr(sys.modules.get(m), "__file__", None))])
            # Modules the flow imported from its own folder are traced with the shims; do not keep them.
            for mod_name in new_modules:
                mod_file = getattr(sys.modules.get(mod_name), "__file__", None) or ""
                if mod_name != name and any(mod_file.startswith(p + os.sep) for p in extra_paths):
                    sys.modules.pop(mod_name, None)
    return module


def workflows_in(module: ModuleType) -> dict[str, WorkflowDef]:
    found: dict[str, WorkflowDef] = {}
    for value in vars(module).values():
        if isinstance(value, WorkflowDef) and value.name not in found:
            found[value.name] = value
    return found


def trace_workflow(wf: WorkflowDef, path: Path) -> tuple[FlowGraph, set[str]]:
    """Trace one workflow; also return the names of the workflows it calls (its sub-workflows)."""
    inputs, _ = wf.interface()
    called: set[str] = set()
    with shimmed(), tracing.tracing(wf.name) as trace:
        args = {n: tracing.Promise(Binding(kind="flow_input", type=fi.type, name=n)) for n, fi in inputs.items()}
        try:
            outputs = wf.trace_body(trace, args)
        except (FlowsError, LoadStopped):
            raise
        except Exception as e:
            raise _short_error(e, path) from None
        called = {p.split("#")[0] for a in trace.nodes for p in a.split("/")[1:-1]}
    root = project_root_for(path)
    graph = FlowGraph(workflow=wf.name, file=str(path), project_root=str(root), inputs=inputs, outputs=outputs,
                      nodes=_toposorted(trace.nodes, str(path)), artifacts=trace.artifacts,
                      failure_policy=wf.failure_policy)
    return graph, called


def _toposorted(nodes: dict[str, Node], file: str) -> dict[str, Node]:
    """Kahn's algorithm, stable in call order; a cycle (only possible through `>>`) is an error."""
    indegree = {a: 0 for a in nodes}
    children: dict[str, list[str]] = {a: [] for a in nodes}
    for a, n in nodes.items():
        for up in n.upstreams():
            if up in nodes:
                indegree[a] += 1
                children[up].append(a)
    position = {a: i for i, a in enumerate(nodes)}
    ready = [position[a] for a in nodes if indegree[a] == 0]  # a heap of call positions: earliest call first
    order = list(nodes)
    out: dict[str, Node] = {}
    while ready:
        a = order[heapq.heappop(ready)]
        out[a] = nodes[a]
        for c in children[a]:
            indegree[c] -= 1
            if indegree[c] == 0:
                heapq.heappush(ready, position[c])
    if len(out) != len(nodes):
        cycle = _find_cycle(nodes, {a for a in nodes if a not in out})
        first = nodes[cycle[0]].source
        raise FlowLoadError(f"the flow has a cycle: {' -> '.join(cycle + cycle[:1])} (check the `>>` orderings)",
                            file=file, line=first.line if first else None, node=cycle[0])
    return out


def _find_cycle(nodes: dict[str, Node], stuck: set[str]) -> list[str]:
    """One cycle among the nodes Kahn's algorithm could not order, in run order.

    Every stuck node has a stuck upstream, so walking upstream must revisit a node.
    """
    path: list[str] = []
    index: dict[str, int] = {}
    current = min(stuck, key=list(nodes).index)
    while current not in index:
        index[current] = len(path)
        path.append(current)
        current = next(u for u in nodes[current].upstreams() if u in stuck)
    cycle = list(reversed(path[index[current]:]))
    start = cycle.index(min(cycle, key=list(nodes).index))  # begin at the node called first
    return cycle[start:] + cycle[:start]


class LoadStopped(BaseException):
    """Raised inside the flow's code by the load timer or a signal (a BaseException: `except Exception` in a
    flow must not swallow it)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class LoadInterrupted(FlowLoadError):
    exit_code = 130


@contextlib.contextmanager
def _guarded_load(path: Path, timeout: float | None) -> Iterator[None]:
    """While a flow file is imported and traced: what it prints goes to stderr (stdout is for --json, dot and
    mermaid); a load that runs longer than `timeout` seconds, Ctrl-C and SIGTERM stop it with one line naming
    the file and the line it was at. Signals and timers exist only in the main thread; elsewhere only the
    output is redirected."""
    restore: list[tuple[int, object]] = []
    main = threading.current_thread() is threading.main_thread()
    if main:
        def stop(signum: int, frame: object) -> None:
            names: dict[int, str] = {signal.SIGALRM: "timeout", signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
            raise LoadStopped(names.get(signum, str(signum)))
        sigs: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM) + ((signal.SIGALRM,) if timeout else ())
        for sig in sigs:
            restore.append((sig, signal.signal(sig, stop)))
        if timeout:
            signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with stdout_to_stderr():
            yield
    except LoadStopped as e:
        where = _short_error(e, path)  # the innermost line of user code it was running
        if e.why == "timeout":
            raise FlowLoadError(f"loading took longer than {timeout:g}s and was stopped here (a loop or a wait at "
                                "import time?); raise the limit with load_timeout in [tool.flows] or "
                                "FLOWS_LOAD_TIMEOUT", file=where.file, line=where.line) from None
        raise LoadInterrupted(f"loading was interrupted ({e.why}); nothing was run or written",
                              file=where.file, line=where.line) from None
    finally:
        if main:
            if timeout:
                signal.setitimer(signal.ITIMER_REAL, 0)
            for sig, handler in restore:
                signal.signal(sig, handler)  # type: ignore[arg-type]


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """What user code prints (and what a subprocess it starts prints) goes to stderr: stdout carries --json,
    dot and mermaid. Used around every import of a flow file in the flows process."""
    with contextlib.suppress(ValueError, OSError):
        sys.stdout.flush()
    saved_fd = None
    with contextlib.suppress(OSError, ValueError):
        saved_fd = os.dup(1)
        os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        with contextlib.suppress(ValueError, OSError):
            sys.stderr.flush()
        if saved_fd is not None:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)


def load_flow(flow_file: str | os.PathLike[str], workflow: str | None = None,
              timeout: float | None = None) -> FlowGraph:
    """Load `flow_file` and trace the named workflow (or the only top-level one); the graph comes from the
    cache (`graph_cache`) when nothing the last load read has changed.

    `timeout`: seconds the import and tracing may take (default: the project's `load_timeout`)."""
    path = Path(flow_file).resolve()
    timeout = _timeout_for(path, timeout)
    cache_dir = _graph_cache_dir(path)
    root = project_root_for(path)
    if cache_dir is not None:
        cached = graph_cache.lookup(cache_dir, path, workflow, root)
        if cached is not None:
            with contextlib.suppress(ValueError):  # (pydantic's ValidationError): a damaged entry is a miss
                return FlowGraph.model_validate(cached)
    roots = [str(path.parent), str(root)]
    with _guarded_load(path, timeout), load_notes.collecting() as notes, graph_cache.recording(roots) as rec:
        before = set(sys.modules)
        graph = _load(path, workflow)
        graph_cache.note_modules([f for m in set(sys.modules) - before
                                  if (f := getattr(sys.modules.get(m), "__file__", None))])
    graph.warnings = notes
    if cache_dir is not None and not notes:  # warnings are said at every load: such a graph is not kept
        graph_cache.store(cache_dir, path, workflow, root, rec, graph.model_dump_json())
    return graph


def _graph_cache_dir(path: Path) -> Path | None:
    """`.flows/graphs` of the flow's project; None when the cache is off or the flow is not a file."""
    if not graph_cache.enabled() or not path.is_file():
        return None
    from reconcile.config import flows_dir
    return flows_dir(project_root_for(path)) / "graphs"


def _timeout_for(path: Path, timeout: float | None) -> float | None:
    if timeout is None and path.is_file():
        from reconcile.config import load_timeout
        timeout = load_timeout(project_root_for(path))
    return timeout


def _load(path: Path, workflow: str | None) -> FlowGraph:
    module = import_flow_module(path)
    found = workflows_in(module)
    if not found:
        raise FlowLoadError("no @workflow found in this file", file=str(path))
    if workflow is not None:
        if workflow not in found:
            raise FlowLoadError(f"no workflow named '{workflow}' (workflows: {', '.join(sorted(found))})",
                                file=str(path))
        graph, _ = trace_workflow(found[workflow], path)
    else:
        traced = {name: trace_workflow(wf, path) for name, wf in found.items()}
        used_as_sub = set().union(*(called for _, called in traced.values()))
        roots = [n for n in found if n not in used_as_sub]
        if len(roots) != 1:
            raise FlowLoadError(f"the file defines several workflows; name one of: {', '.join(sorted(roots or found))}",
                                file=str(path))
        graph = traced[roots[0]][0]
    graph.workflows = sorted(found)
    return graph


def load_every_workflow(flow_file: str | os.PathLike[str],
                        timeout: float | None = None) -> list[tuple[str, FlowGraph | FlowsError]]:
    """Load the file once and trace each of its workflows, in the order the file defines them.

    A workflow that fails to trace is its error in the list; a file that fails to import raises.
    """
    path = Path(flow_file).resolve()
    with _guarded_load(path, _timeout_for(path, timeout)):
        with load_notes.collecting() as import_notes:
            module = import_flow_module(path)
        found = workflows_in(module)
        if not found:
            raise FlowLoadError("no @workflow found in this file", file=str(path))
        results: list[tuple[str, FlowGraph | FlowsError]] = []
        for name, wf in found.items():
            with load_notes.collecting() as notes:
                try:
                    graph, _ = trace_workflow(wf, path)
                except FlowsError as e:
                    results.append((name, e))
                    continue
            graph.workflows = sorted(found)
            graph.warnings = import_notes + [n for n in notes if n not in import_notes]
            results.append((name, graph))
    return results
