"""The `flows` console script: a no-op `flows plan` is answered from its receipt (reconcile/noop_plan.py)
before typer, rich and pydantic are imported; everything else goes to the typer app (reconcile/cli/main.py), with
pydantic's plugin search answered "none" (reconcile/cli/no_pydantic_plugins.py)."""
from __future__ import annotations

import atexit
import os
import sys
import threading


def run() -> None:
    """Run the command, then end as the interpreter ends a script, less its teardown: freeing every object of the
    command (the graph, the state, the plan) and every module took ~50 ms after a 1,000-node apply, for a process
    that is gone a moment later. Non-daemon threads are waited for and atexit handlers run (the launcher, the job
    folders), and stdout and stderr are flushed, as at a normal exit."""
    code = 0
    try:
        _run()
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:  # (what the interpreter would print and exit 1 for)
        sys.excepthook(*sys.exc_info())
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]  # waits for non-daemon threads, as at exit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _run() -> None:
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
