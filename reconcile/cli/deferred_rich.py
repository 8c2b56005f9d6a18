"""Keep `flows --help` quick: typer's help formatter (typer.rich_utils) imports `rich.markdown` (and with it
markdown-it, ~60 ms) and `rich.traceback` (~30 ms) at its top, for a Markdown help mode this app does not use and
for tracebacks that `reconcile.cli.main.run` turns into one line. Until something really uses one of them, each
is a stand-in module: the names typer imports are classes that load the real module when they are called or
asked for an attribute; anything else asked of the module loads it too, and the real module replaces the
stand-in in `sys.modules`."""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any

DEFERRED = {"rich.markdown": ("Markdown",), "rich.traceback": ("Traceback",)}


class _StandIn(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system's own questions (`__path__`: is it a package?)
            raise AttributeError(name)
        return getattr(_real(self.__name__), name)


def _real(module: str) -> types.ModuleType:
    if isinstance(sys.modules.get(module), _StandIn):
        del sys.modules[module]
    return importlib.import_module(module)


class _DeferredClass(type):
    """A class whose instances and attributes are the real class's (loaded on first use)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._real_class()(*args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(cls._real_class(), name)

    def _real_class(cls) -> Any:
        return getattr(_real(cls.__module__), cls.__name__)


def install() -> None:
    """Stand-ins for the modules of DEFERRED not imported yet (before typer.rich_utils is)."""
    for module, names in DEFERRED.items():
        if module in sys.modules:
            continue
        stand_in = _StandIn(module)
        for name in names:
            setattr(stand_in, name, _DeferredClass(name, (), {"__module__": module}))
        sys.modules[module] = stand_in
