"""flows' own models take no pydantic plugins, and the CLI does not look for any.

pydantic looks for plugins (the `pydantic` entry-point group) when it builds its first validator: that imports
`importlib.metadata` (and `email` with it) and reads the metadata of every installed distribution, ~40 ms of every
command that builds a model (`apply`, a plan that changed, the state commands). A plugin installed beside flows
(an observability one, say) has no business instrumenting the CLI's state and plan models, so the console script
answers "none" before pydantic asks: the module pydantic imports for the question (`pydantic.plugin._loader`, of
which it uses only `get_plugins`, in `pydantic/plugin/_schema_validator.py`) is a stand-in. A process that loaded
the real one already keeps it; a name other than `get_plugins` asked of the stand-in (a later pydantic's) loads the
real module, which then replaces it. typer does the same for its own validators (it sets PYDANTIC_DISABLE_PLUGINS
while it builds them); an environment variable would reach the jobs, a module does not.
"""
from __future__ import annotations

from typing import Any

from reconcile.cli import stand_ins

LOADER = "pydantic.plugin._loader"


def _no_plugins() -> tuple[Any, ...]:
    return ()


def install() -> None:
    stand_ins.install(LOADER, {"get_plugins": _no_plugins},
                      "flows: no pydantic plugins (reconcile/cli/no_pydantic_plugins.py)")
