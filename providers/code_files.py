"""Which project files a job's shell command names: the local provider's notion of "code version".

`python scripts/train.py`, `Rscript /mnt/code/x.R`, `bash run.sh`, `python -m pkg.mod`: every token
that is an existing file under the project root (with Domino's `/mnt/code` mapped onto the root)
is part of the node's code, so editing that file re-runs the node and editing any other does not.
"""
from __future__ import annotations

import ast
import functools
import os
import re
import shlex
from pathlib import Path
from typing import Callable

from vocab.digest import path_kind

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


def _module_paths(module: str, bases: list[Path]) -> list[Path]:
    """`a.b` -> a/b.py or a/b/__init__.py, and a/__init__.py (importing a.b runs its package first)."""
    parts = module.split(".")
    packages = ["/".join(parts[:i]) + "/__init__.py" for i in range(1, len(parts))]
    rel = "/".join(parts)
    return [base / p for base in bases for p in (f"{rel}.py", f"{rel}/__init__.py", *packages)]


def _imported(tree: ast.AST, here: Path, bases: list[Path]) -> list[Path]:
    """Files the imports of `tree` may name (`import a.b`, `from a import b`, `from . import x`)."""
    found: list[Path] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found += _module_paths(alias.name, bases)
        elif isinstance(node, ast.ImportFrom):
            base = [here.parents[node.level - 1]] if node.level else bases
            if node.module:
                found += _module_paths(node.module, base)
            for alias in node.names:
                found += _module_paths(f"{node.module}.{alias.name}" if node.module else alias.name, base)
    return found


def local_imports(file: Path, project_root: Path, function: ast.AST | None = None) -> list[str]:
    """Project-relative paths of the project's own modules a `@task` uses: imported by its flow file or inside
    the function, and what those import in turn. The flow file itself is not listed (its function is)."""
    root = Path(os.path.normpath(os.path.abspath(project_root)))
    file = Path(os.path.abspath(file))
    bases = list(dict.fromkeys([file.parent, root]))
    try:
        module_tree = ast.parse(file.read_text())
    except (OSError, SyntaxError, ValueError):
        return []
    # The flow file's own imports, but not those inside other functions (they are not this task's).
    top = ast.Module(body=[n for n in module_tree.body if isinstance(n, (ast.Import, ast.ImportFrom))],
                     type_ignores=[])
    todo = _imported(top, file, bases) + (_imported(function, file, bases) if function is not None else [])
    seen: set[Path] = {file}
    out: list[str] = []
    while todo:
        path = Path(os.path.normpath(todo.pop()))
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        rel = _inside(str(root), str(path))
        if rel is None:
            continue
        out.append(rel)
        try:
            todo += _imported(ast.parse(path.read_text()), path, list(dict.fromkeys([path.parent, root])))
        except (OSError, SyntaxError, ValueError):
            continue
    return sorted(out)


def task_files(file: Path, qualname: str, project_root: Path) -> list[str]:
    """The project files a `@task` job runs: its flow file and the project modules it imports."""
    rel = _inside(os.path.normpath(os.path.abspath(project_root)), os.path.abspath(file))
    if rel is None:
        return []
    function: ast.AST | None = None
    try:
        scope: list[ast.stmt] = ast.parse(Path(file).read_text()).body
    except (OSError, SyntaxError, ValueError):
        scope = []
    for part in qualname.split("."):
        function = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                         and n.name == part), None)
        if function is None:
            break
        scope = function.body  # type: ignore[attr-defined]
    return [rel, *local_imports(Path(file), project_root, function)]
