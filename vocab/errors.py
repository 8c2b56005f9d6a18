"""User-facing errors: one message naming the file, line, node or field; the CLI prints it and exits 1."""
from __future__ import annotations


class FlowsError(Exception):
    """Base of every error the CLI reports as a clean one-line message (no traceback)."""

    exit_code = 1

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 node: str | None = None, field: str | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.node = node
        self.field = field
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        prefix = ""
        if self.node:
            prefix += f"node '{self.node}': "
        if self.field:
            prefix += f"{self.field}: "
        return f"{where}{prefix}{self.message}"


class FlowLoadError(FlowsError):
    """The flow file could not be loaded, traced or validated."""


class NotSupportedError(FlowLoadError):
    """A Flyte construct this tool does not reconcile (dynamic, map_task, ...)."""


class StateError(FlowsError):
    """The state is unreadable, from the future, locked, or was changed underneath us."""


class LockHeldError(StateError):
    """Another process holds the state lock."""


class StalePlanError(FlowsError):
    """A saved plan no longer matches the state or the flow."""


class InputError(FlowsError):
    """A flow input given on the command line or in an inputs file is wrong."""


class ConfigError(FlowsError):
    """`[tool.flows]` / flows.toml / environment configuration is wrong."""


class ProviderError(FlowsError):
    """A provider (local or Domino) could not do what was asked."""


class NotStartedError(ProviderError):
    """A start the provider held back for good because the apply stops (`StartQueue.hold`): the node never
    started; the message is why (the scheduler's own reason, e.g. stopped after a failure)."""
