"""`flows` entry point: the typer app, command groups, and the one place errors become messages."""
from __future__ import annotations

import gc
import os
import sys

from reconcile.cli import deferred_rich

deferred_rich.install()  # before typer's help formatter is imported (reconcile/cli/deferred_rich.py says why)

import typer  # noqa: E402

from reconcile import __version__  # noqa: E402

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
                  help="Terraform-style plan/apply for Domino Flows: run only what changed, never lose a result.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"flows {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Show the version and exit.")) -> None:
    """Plan and apply Domino Flows against a state file."""


def _register() -> None:
    # Each module adds its commands to `app` (or a sub-app); imported here so `--help` lists them.
    from reconcile.cli import flow_cmds  # noqa: F401
    for optional in ("state_cmds", "graph_cmds", "artifact_cmds", "recover_cmds"):
        try:
            __import__(f"reconcile.cli.{optional}")
        except ModuleNotFoundError as e:
            if e.name != f"reconcile.cli.{optional}":
                raise


def run() -> None:
    """Console script: every FlowsError is one clean line on stderr and a non-zero exit, never a traceback."""
    from vocab.errors import FlowsError
    from vocab.masking import redact

    # A command builds hundreds of thousands of small objects (graph, state, plan) and frees few cycles:
    # the default thresholds made the cyclic GC take a third of a 10,000-node plan.
    gc.set_threshold(10_000, 50, 100)
    _register()
    try:
        rc = app(standalone_mode=False)  # click returns the code of a typer.Exit here instead of raising
        sys.exit(rc if isinstance(rc, int) else 0)
    except FlowsError as e:
        # backslashreplace: a path or value that is not UTF-8 must not turn the message into a traceback
        message = redact(e.render()).encode("utf-8", "backslashreplace").decode("utf-8")
        typer.secho(f"Error: {message}", fg="red", err=True)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.secho("Aborted.", fg="red", err=True)
        sys.exit(130)
    except Exception as e:  # usage errors: typer ships its own copy of click, so match by shape
        if hasattr(e, "format_message") and hasattr(e, "exit_code") and type(e).__module__.endswith("exceptions"):
            # One line, like every other error (click's usage box is several): what is wrong and where to look.
            ctx = getattr(e, "ctx", None)
            where = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
            typer.secho(f"Error: {redact(e.format_message())}{where}", fg="red", err=True)
            sys.exit(e.exit_code)
        if os.environ.get("FLOWS_DEBUG"):
            raise
        # A bug of ours, not the user's input: still one line (FLOWS_DEBUG=1 shows the traceback).
        text = redact(f"{type(e).__name__}: {e}".splitlines()[0])[:300].encode("utf-8", "backslashreplace").decode()
        typer.secho(f"Error: internal error: {text} (run again with FLOWS_DEBUG=1 for the traceback, "
                    "and please report it)", fg="red", err=True)
        sys.exit(1)


if __name__ == "__main__":
    run()
