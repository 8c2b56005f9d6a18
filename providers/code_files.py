"""Which project files a job's shell command names: the local provider's notion of "code version".

`python scripts/train.py`, `Rscript /mnt/code/x.R`, `bash run.sh`, `python -m pkg.mod`: every token
that is an existing file under the project root (with Domino's `/mnt/code` mapped onto the root)
is part of the node's code, so editing that file re-runs the node and editing any other does not.
"""
from __future__ import annotations

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
