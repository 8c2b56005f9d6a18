"""The `flows` console script: a no-op `flows plan` is answered from its receipt (reconcile/noop_plan.py)
before typer, rich and pydantic are imported; everything else goes to the typer app (reconcile/cli/main.py), with
pydantic's plugin search answered "none" (reconcile/cli/no_pydantic_plugins.py)."""
from __future__ import annotations

import sys


def run() -> None:
    if sys.argv[1:2] == ["plan"]:
        from reconcile.noop_plan import try_noop_plan
        code = try_noop_plan(sys.argv[2:])
        if code is not None:
            sys.exit(code)
    from reconcile.cli import no_pydantic_plugins
    no_pydantic_plugins.install()  # before pydantic builds a validator (the module says why)
    from reconcile.cli.main import run as run_app
    run_app()


if __name__ == "__main__":
    run()
