"""Warnings found while a flow file loads: things Domino accepts that are probably not what was meant.

The loader collects them for the graph (`FlowGraph.warnings`); each names the file and line.
"""
from __future__ import annotations

import contextlib
import difflib
import functools
import inspect
from typing import Any, Callable, Iterable, Iterator, TypeVar

from vocab.errors import FlowLoadError

_COLLECTORS: list[list[str]] = []


@contextlib.contextmanager
def collecting() -> Iterator[list[str]]:
    found: list[str] = []
    _COLLECTORS.append(found)
    try:
        yield found
    finally:
        _COLLECTORS.pop()


def warn(message: str, src: Any) -> None:
    """Record `file:line: message` once (a call site traced by several workflows warns once)."""
    where = ""
    if src is not None and getattr(src, "file", None):
        where = f"{src.file}:{src.line}: " if src.line else f"{src.file}: "
    text = where + message
    if _COLLECTORS and text not in _COLLECTORS[-1]:
        _COLLECTORS[-1].append(text)


def check_keywords(what: str, given: Iterable[str], known: Iterable[str], src: Any, node: str | None = None) -> None:
    """A keyword the real API does not have is an error naming it, with the closest real one."""
    names = list(known)
    for name in given:
        if name in names:
            continue
        hint = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        raise FlowLoadError(f"{what} has no keyword '{name}'" + (f" (did you mean '{hint[0]}'?)" if hint else ""),
                            file=getattr(src, "file", None), line=getattr(src, "line", None), node=node)


_F = TypeVar("_F", bound=Callable[..., Any])


def strict_call(what: str | None = None, extra: tuple[str, ...] = ()) -> Callable[[_F], _F]:
    """A function whose unknown keyword is reported as `check_keywords` does (Python's own TypeError has no
    hint); `extra` are the names its **kwargs takes. The signature stays the function's own."""
    def wrap(fn: _F) -> _F:
        from reconcile import tracing  # here: tracing is not loaded when this module is
        known = [p.name for p in inspect.signature(fn).parameters.values() if p.kind is not p.VAR_KEYWORD]
        known += list(extra)
        known_set = frozenset(known)

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            if not known_set.issuperset(kwargs):  # (the caller's line is looked up only for the error)
                check_keywords(what or fn.__name__, kwargs, known, tracing.caller_source())
            return fn(*args, **kwargs)
        return call  # type: ignore[return-value]
    return wrap
