"""Domino's launcher rules: a command whose first word is a script file runs with that file type's program.

On Domino, `utils/load.py --day 3` runs as `python -u utils/load.py --day 3` and `run.sh` as `bash run.sh`
(Domino's "Supported Job types" table). Both providers apply the same rules here, so a command behaves the
same locally and on Domino (where the flows runtime runs the node's command, after its own bootstrap).
"""
from __future__ import annotations

import re

# extension (lower case) -> (program words before the file, words after the file and before its arguments)
RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    ".py": (("python", "-u"), ()),
    ".r": (("R", "--no-save", "--no-environ", "--no-site-file", "--no-restore", "--max-ppsize=100000", "-f"),
           ("--args",)),
    ".sh": (("bash",), ()),
    ".sas": (("sas",), ("-stdio",)),
    ".ipynb": (("jupyter", "nbconvert", "--to", "notebook", "--execute"), ()),
    ".pl": (("perl",), ()),
    ".jl": (("julia",), ()),
    ".do": (("stata", "-b", "do"), ()),
}
_FIRST = re.compile(r"^\s*([^\s'\"\\;&|<>()$`]+)(.*)$", re.DOTALL)


def launch(command: str) -> str:
    """The shell command Domino runs for `command`: unchanged unless its first word is a script file."""
    match = _FIRST.match(command)
    if not match or "=" in match.group(1):  # `X=1 python ...` sets a variable: a shell command
        return command
    word, rest = match.group(1), match.group(2)
    dot = word.rfind(".")
    rule = RULES.get(word[dot:].lower()) if dot > word.rfind("/") else None
    if rule is None:
        return command
    before, after = rule
    if word.lower().endswith(".ipynb"):
        after = ("--output", word.rsplit("/", 1)[-1])  # executed in place, as Domino does
    return " ".join([*before, word, *after]) + rest
