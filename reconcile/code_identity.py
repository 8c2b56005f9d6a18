"""Which code a node runs, by content, on every provider (DESIGN decision 3): the digests of the project files
its command names, or the digest of its `@task` function's own source and of the project modules it imports.
Never a commit id: on Domino every job writes one.
"""
from __future__ import annotations

import ast
import inspect
import os
import textwrap
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from providers.code_files import command_files, local_imports
from reconcile.graph import Node
from reconcile.loader import import_flow_module
from vocab.digest import StatCache, bytes_digest
from vocab.errors import FlowLoadError


class CodeIdentity:
    """`{project file: digest}` for a command, `{"<file>::<qualname>": digest}` for a `@task`; each flow file is
    imported once per command."""

    def __init__(self, project_root: Path, digests: StatCache) -> None:
        self.project_root = Path(project_root)
        self.digests = digests
        self._modules: dict[str, ModuleType] = {}
        self._lock = threading.Lock()

    def of(self, node: Node) -> dict[str, str]:
        if node.kind == "domino_job":
            return {rel: self.digests.file(self.project_root / rel)
                    for rel in command_files(node.command, self.project_root, self.digests.path_kind)}
        if node.kind == "python":
            return self.task(node)
        return {}

    def task(self, node: Node) -> dict[str, str]:
        """The digest of the function's own source, decorators, comments and formatting left out, so editing
        a neighbour of the function does not re-run it; and of each project module it imports (at the top of
        its flow file or inside the function, and what those import in turn)."""
        if not node.python:
            raise FlowLoadError("python task without a function reference", node=node.address)
        file, qualname = Path(node.python["file"]), node.python["qualname"]
        with self._lock:
            module = self._modules.get(str(file))
            if module is None:
                module = self._modules[str(file)] = import_flow_module(file)
        obj: Any = module
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                raise FlowLoadError(f"cannot find the task function '{qualname}' in {file}", node=node.address)
        fn = getattr(obj, "fn", obj)
        try:
            source = textwrap.dedent(inspect.getsource(fn))
        except (OSError, TypeError) as e:
            raise FlowLoadError(f"cannot read the source of '{qualname}': {e}", node=node.address) from None
        stmt = ast.parse(source).body[0]
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            stmt.decorator_list = []  # cache/retry settings are keyed (or not) by the fingerprint itself
        # ast.unparse drops comments and formatting: they cannot change results.
        try:
            where = Path(os.path.relpath(file, self.project_root)).as_posix()
        except ValueError:
            where = str(file)
        where = str(file) if where.startswith("../") else where
        identity = {f"{where}::{qualname}": bytes_digest(ast.unparse(stmt).encode())}
        for rel in local_imports(file, self.project_root, stmt):
            identity[rel] = self.digests.file(self.project_root / rel)
        return identity
