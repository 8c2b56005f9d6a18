"""Which project files a job's shell command names: the local provider's notion of "code version".

`python scripts/train.py`, `Rscript /mnt/code/x.R`, `bash run.sh`, `python -m pkg.mod`: every token
that is an existing file under the project root (with Domino's `/mnt/code` mapped onto the root)
is part of the node's code, so editing that file re-runs the node and editing any other does not.
"""
from __future__ import annotations

import ast
import functools
import inspect
import os
import re
import shlex
import textwrap
import threading
from pathlib import Path
from typing import Any, Callable

from reconcile.digest import bytes_digest, path_kind

PathKind = Callable[[str], str | None]  # "file", "dir" or None (missing)


CODE_MOUNT = "/mnt/code"  # where Domino mounts the project; the local provider mounts the root there too


_PLAIN = re.compile(r"[^'\"\\]*")          # no quoting or escapes: a regex split gives shlex's words
_WORDS = re.compile(r"[;&|()<>]+|[^\s;&|()<>]+")


def _tokens(command: str) -> list[str]:
    """Shell words, with `;`, `&&`, `|`, `(` split off; unbalanced quotes fall back to whitespace."""
    if _PLAIN.fullmatch(command):  # the common case, and shlex is slow on thousands of commands
        return _WORDS.findall(command)
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:
        return command.split()


def _inside(root: str, path: str) -> str | None:
    """`path` relative to `root` (posix), or None when it lies outside."""
    path = os.path.normpath(path)
    if not path.startswith(root + os.sep):
        return None
    return path[len(root) + 1:].replace(os.sep, "/")


def _candidates(token: str, root: str, cwd: str) -> list[str]:
    """Absolute paths a token may name: itself (with /mnt/code mapped), or relative to the root / a `cd`."""
    if not token or "$" in token or token.startswith("~"):
        return []  # expanded by the shell at run time: not knowable here
    if token == CODE_MOUNT or token.startswith(CODE_MOUNT + "/"):
        return [root + token[len(CODE_MOUNT):]]
    if os.path.isabs(token):
        return [token]
    return list(dict.fromkeys([os.path.join(cwd, token), os.path.join(root, token)]))


def _module_files(module: str, root: str, cwd: str) -> list[str]:
    """`python -m a.b` runs `a/b.py` or `a/b/__main__.py`."""
    rel = module.replace(".", "/")
    return [os.path.join(base, rel + suffix) for base in dict.fromkeys([cwd, root])
            for suffix in (".py", "/__main__.py")]


@functools.lru_cache(maxsize=1 << 16)
def _places(token: str, after_dash_m: bool, root: str, cwd: str) -> tuple[tuple[str, str | None], ...]:
    """(absolute path, project-relative path or None) for each place `token` may name: pure string work,
    remembered because thousands of generated commands repeat the same words."""
    paths = _candidates(token, root, cwd)
    if after_dash_m:
        paths += _module_files(token, root, cwd)
    if "=" in token and not token.startswith("="):  # `--config=conf/x.yaml`
        paths += _candidates(token.split("=", 1)[1], root, cwd)
    return tuple((path, _inside(root, path)) for path in paths)


def command_files(command: str, project_root: Path, kind: PathKind = path_kind) -> list[str]:
    """Sorted project-relative paths of the existing project files named in `command`."""
    root = os.path.normpath(os.path.abspath(project_root))
    cwd = root
    found: set[str] = set()
    tokens = _tokens(command)
    for i, token in enumerate(tokens):
        previous = tokens[i - 1] if i else ""
        places = _places(token, previous == "-m", root, cwd)
        if previous == "cd":  # later relative paths may be relative to this folder
            target = next((path for path, rel in places if rel is not None and kind(path) == "dir"), None)
            cwd = os.path.normpath(target) if target else cwd
            continue
        for path, rel in places:
            if rel is not None and kind(path) == "file":
                found.add(rel)
                break
    return sorted(found)


def function_identity(node: Any, project_root: Path, modules: dict[str, Any], lock: threading.Lock) -> dict[str, str]:
    """A `@task`'s code: the digest of the function's own source (decorators and comments left out), so
    editing its neighbours does not re-run it. `modules` remembers imported flow files (under `lock`)."""
    from reconcile.errors import ProviderError  # noqa: PLC0415
    from reconcile.loader import import_flow_module  # noqa: PLC0415 - heavy: only for @task nodes

    if not node.python:
        raise ProviderError("python task without a function reference", node=node.address)
    file, qualname = Path(node.python["file"]), node.python["qualname"]
    with lock:
        module = modules.get(str(file))
        if module is None:
            module = modules[str(file)] = import_flow_module(file)
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ProviderError(f"cannot find the task function '{qualname}' in {file}", node=node.address)
    fn = getattr(obj, "fn", obj)
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as e:
        raise ProviderError(f"cannot read the source of '{qualname}': {e}", node=node.address) from None
    stmt = ast.parse(source).body[0]
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
        stmt.decorator_list = []  # cache/retry settings are keyed (or not) by the fingerprint itself
    try:
        where = Path(os.path.relpath(file, project_root)).as_posix()
    except ValueError:
        where = str(file)
    where = str(file) if where.startswith("../") else where
    return {f"{where}::{qualname}": bytes_digest(ast.unparse(stmt).encode())}


def node_code_identity(node: Any, project_root: Path, digests: Any, modules: dict[str, Any],
                       lock: threading.Lock) -> dict[str, str]:
    """A node's code identity on every provider: the digests of the project files its command names, or its
    function's source. Never a commit id (on Domino every job writes one)."""
    if node.kind == "domino_job":
        return {rel: digests.file(project_root / rel)
                for rel in command_files(node.command, project_root, digests.path_kind)}
    if node.kind == "python":
        return function_identity(node, project_root, modules, lock)
    return {}
