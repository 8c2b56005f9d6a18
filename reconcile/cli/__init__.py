"""The `flows` command line: thin typer commands over the reconcile core."""
