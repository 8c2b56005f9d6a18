"""Module stand-ins for the console script's start-up: a module put in `sys.modules` before anything imports the real
one, holding only the names given; anything else asked of it imports the real module, which then replaces it
(used by `deferred_rich` and `no_pydantic_plugins`)."""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class _StandIn(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system's own questions (`__path__`: is it a package?)
            raise AttributeError(name)
        return getattr(real(self.__name__), name)


def real(module: str) -> types.ModuleType:
    """The real module, imported in place of its stand-in."""
    if isinstance(sys.modules.get(module), _StandIn):
        del sys.modules[module]
    return importlib.import_module(module)


def install(module: str, names: dict[str, Any], doc: str | None = None) -> None:
    """A stand-in for `module` holding `names`, unless `module` is imported already."""
    if module in sys.modules:
        return
    stand_in = _StandIn(module, doc)
    for name, value in names.items():
        setattr(stand_in, name, value)
    sys.modules[module] = stand_in
