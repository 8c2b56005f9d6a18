"""Keep `flows --help` quick: typer's help formatter (typer.rich_utils) imports `rich.markdown` (and with it
markdown-it, ~60 ms) and `rich.traceback` (~30 ms) at its top, for a Markdown help mode this app does not use and
for tracebacks that `reconcile.cli.main.run` turns into one line. Until something really uses one of them, each
is a stand-in module: the names typer imports are classes that load the real module when they are called or
asked for an attribute; anything else asked of the module loads it too, and the real module replaces the
stand-in in `sys.modules`."""
from __future__ import annotations

from typing import Any

from reconcile.cli import stand_ins

DEFERRED = {"rich.markdown": ("Markdown",), "rich.traceback": ("Traceback",)}


class _DeferredClass(type):
    """A class whose instances and attributes are the real class's (loaded on first use)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._real_class()(*args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(cls._real_class(), name)

    def _real_class(cls) -> Any:
        return getattr(stand_ins.real(cls.__module__), cls.__name__)


def install() -> None:
    """Stand-ins for the modules of DEFERRED not imported yet (before typer.rich_utils is)."""
    for module, names in DEFERRED.items():
        stand_ins.install(module, {name: _DeferredClass(name, (), {"__module__": module}) for name in names})
