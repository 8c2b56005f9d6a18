"""`flytekit`: @workflow, @task, WorkflowFailurePolicy, and the constructs we refuse clearly."""
from __future__ import annotations

import enum
import inspect
import typing
from typing import Any, Callable

from reconcile import tracing
from reconcile.authoring.domino_task import _cache_settings, interface_of, timeout_seconds
from reconcile.authoring.load_notes import check_keywords, strict_call, warn
from vocab.errors import FlowLoadError, NotSupportedError
from vocab.flytetypes import UnsupportedType, canonical_value, check_value, type_name
from reconcile.graph import Binding, FlowInput, Node


class WorkflowFailurePolicy(enum.Enum):
    FAIL_IMMEDIATELY = "FAIL_IMMEDIATELY"
    FAIL_AFTER_EXECUTABLE_NODES_COMPLETE = "FAIL_AFTER_EXECUTABLE_NODES_COMPLETE"


def _where(src: Any) -> dict[str, Any]:
    return {"file": src.file if src else None, "line": src.line if src else None}


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception as e:  # an annotation naming something undefined
        src = tracing.SourceRef(file=inspect.getsourcefile(fn) or "?", line=fn.__code__.co_firstlineno)
        raise FlowLoadError(f"cannot read the type annotations of '{fn.__name__}': {e}", **_where(src)) from None


def output_names(ret: Any) -> dict[str, Any]:
    """Flyte's output naming: NamedTuple fields, `o0, o1...` for tuples, `o0` for one value."""
    if ret is inspect.Signature.empty or ret is None or ret is type(None):
        return {}
    if isinstance(ret, type) and issubclass(ret, tuple) and hasattr(ret, "_fields"):
        hints = typing.get_type_hints(ret, include_extras=True)
        return {f: hints.get(f, typing.Any) for f in ret._fields}
    if typing.get_origin(ret) in (tuple, typing.Tuple):
        return {f"o{i}": t for i, t in enumerate(typing.get_args(ret)) if t is not Ellipsis}
    return {"o0": ret}


class WorkflowDef:
    """A `@workflow` function; traced into a FlowGraph by the loader, inlined when called by another."""

    def __init__(self, fn: Callable[..., Any], failure_policy: Any = None, **kwargs: Any) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.failure_policy = getattr(failure_policy, "value", failure_policy) or "FAIL_IMMEDIATELY"
        self.source = tracing.SourceRef(file=inspect.getsourcefile(fn) or "?", line=fn.__code__.co_firstlineno)
        _flytekit_only(f"@workflow '{self.name}'", kwargs, ("failure_policy", *WORKFLOW_IGNORED), self.source)
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__
        self.__wrapped__ = fn

    def interface(self) -> tuple[dict[str, FlowInput], dict[str, Any]]:
        hints = _hints(self.fn)
        sig = inspect.signature(self.fn)
        inputs: dict[str, FlowInput] = {}
        for p in sig.parameters.values():
            tp = hints.get(p.name, inspect.Parameter.empty)
            if tp is inspect.Parameter.empty:
                raise FlowLoadError(f"workflow '{self.name}': input '{p.name}' has no type annotation",
                                    **_where(self.source))
            try:
                t = type_name(tp)
            except UnsupportedType as e:
                raise FlowLoadError(f"workflow '{self.name}': input '{p.name}': {e}", **_where(self.source)) from None
            has_default = p.default is not inspect.Parameter.empty
            default = None
            if has_default and p.default is not None:
                reason = check_value(t, p.default)
                if reason:
                    raise FlowLoadError(f"workflow '{self.name}': default of input '{p.name}': {reason}",
                                        **_where(self.source))
                default = canonical_value(t, p.default)
            inputs[p.name] = FlowInput(name=p.name, type=t, required=not has_default, default=default)
        ret = hints.get("return", inspect.Signature.empty)
        return inputs, output_names(ret)

    def trace_body(self, trace: tracing.Trace, args: dict[str, Any]) -> dict[str, Binding]:
        """Run the body with `args` (promises or literals); return the flow outputs as bindings."""
        result = self.fn(**args)
        _, declared = self.interface()
        return _bind_outputs(self, trace, result, declared)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        trace = tracing.current()
        src = tracing.caller_source()
        if trace is None:
            raise FlowLoadError(f"workflow '{self.name}' is called at import time; flows run it, not the file",
                                **_where(src))
        if args:
            raise FlowLoadError(f"workflow '{self.name}' takes keyword arguments only", **_where(src))
        inputs, _ = self.interface()
        unknown = [k for k in kwargs if k not in inputs]
        if unknown:
            raise FlowLoadError(f"sub-workflow '{self.name}' has no input(s) {', '.join(unknown)}", **_where(src))
        values: dict[str, Any] = {}
        for name, fi in inputs.items():
            if name in kwargs:
                values[name] = kwargs[name]
            elif not fi.required:
                values[name] = fi.default
            else:
                raise FlowLoadError(f"sub-workflow '{self.name}': missing required input '{name}'", **_where(src))
        before = set(trace.nodes)
        with trace.sub_workflow(self.name):
            outputs = self.trace_body(trace, values)
        result = _outputs_object(outputs)
        # `sub(...) >> t` / `t >> sub(...)` order the whole sub-workflow, as Flyte orders its one node.
        result._members = [a for a in trace.nodes if a not in before]
        return result


class _SubWorkflowOutputs(tracing.NodeOutputs):
    """A sub-workflow's result: same access patterns as a node's."""

    def __init__(self, outputs: dict[str, Binding]) -> None:  # noqa: D107 - deliberately no super()
        self._node = Node(address="(sub-workflow)", task_name="", kind="python",
                          outputs={k: b.type for k, b in outputs.items()})
        self.outputs = {k: tracing.Promise(b) for k, b in outputs.items()}


def _outputs_object(outputs: dict[str, Binding]) -> Any:
    if len(outputs) == 1:
        return tracing.Promise(next(iter(outputs.values())))
    return _SubWorkflowOutputs(outputs)


def _as_binding(value: Any, where: dict[str, Any], what: str) -> Binding:
    if isinstance(value, tracing.NodeOutputs):
        if len(value) != 1:
            raise FlowLoadError(f"{what} is the whole result of a task with {len(value)} outputs; pick one", **where)
        value = next(iter(value))
    if isinstance(value, tracing.Promise):
        return value.binding
    try:
        t = type_name(type(value))
    except UnsupportedType as e:
        raise FlowLoadError(f"{what}: {e}", **where) from None
    return Binding(kind="literal", type=t, value=canonical_value(t, value))


def _bind_outputs(wf: WorkflowDef, trace: tracing.Trace, result: Any, declared: dict[str, Any]) -> dict[str, Binding]:
    where = _where(wf.source)
    if result is None:
        return {}
    if isinstance(result, tracing.NodeOutputs) and len(result) == 0:
        return {}
    if isinstance(result, tuple) and not isinstance(result, tracing.NodeOutputs):
        values = list(result)
    elif isinstance(result, tracing.NodeOutputs) and len(result) > 1:
        values = list(result)  # `return task(...)`: a multi-output result returned whole
    else:
        values = [result]
    if declared and len(declared) != len(values):
        raise FlowLoadError(f"workflow '{wf.name}' returns {len(values)} value(s) but its annotation declares "
                            f"{len(declared)}", **where)
    names = list(declared) or [f"o{i}" for i in range(len(values))]
    out: dict[str, Binding] = {}
    for name, value in zip(names, values):
        b = _as_binding(value, where, f"workflow '{wf.name}' output '{name}'")
        tp = declared.get(name)
        if tp is not None:
            want = type_name(tp)
            from vocab.flytetypes import assignable
            if not assignable(b.type, want):
                raise FlowLoadError(f"workflow '{wf.name}' output '{name}' is declared {want} but "
                                    f"{b.describe()} is {b.type}", **where)
            ref = getattr(tp, "__flows_artifact__", None)
            if ref is not None and b.kind == "node_output":
                trace.add_artifact_file(ref[0], ref[1], ref[2], b.node, b.output, **where)  # type: ignore[arg-type]
        out[name] = b
    return out


@strict_call("@workflow")
def workflow(_workflow_function: Callable[..., Any] | None = None, failure_policy: Any = None,
             interruptible: bool = False, on_failure: Any = None, docs: Any = None, pickle_untyped: bool = False,
             default_options: Any = None) -> Any:
    """`@workflow` and `@workflow(failure_policy=...)`, with flytekit's signature."""
    ignored = {"interruptible": interruptible, "on_failure": on_failure, "docs": docs,
               "pickle_untyped": pickle_untyped, "default_options": default_options}

    def make(fn: Callable[..., Any]) -> WorkflowDef:
        return WorkflowDef(fn, failure_policy=failure_policy, **ignored)
    return make(_workflow_function) if _workflow_function is not None else make


# Keywords of flytekit's @workflow / @task that choose how Flyte runs a thing (its container, resources,
# UI) and that flows has nothing to do with: accepted, with a warning naming them (never silently).
TASK_HONOURED = ("cache", "cache_version", "cache_ignore_input_vars", "retries", "timeout")
TASK_CACHE_KEYWORDS = ("cache_version", "cache_serialize", "cache_ignore_input_vars")  # flytekit's **kwargs
WORKFLOW_IGNORED = ("interruptible", "on_failure", "docs", "pickle_untyped", "default_options")
TASK_IGNORED = ("task_config", "interruptible", "deprecated", "container_image", "environment", "requests",
                "limits", "secret_requests", "execution_mode", "node_dependency_hints", "task_resolver", "docs",
                "disable_deck", "enable_deck", "deck_fields", "pod_template", "pod_template_name", "accelerator",
                "pickle_untyped", "shared_memory", "resources", "labels", "annotations", "cache_serialize")


def _unset(v: Any) -> bool:
    return v is None or v is False or (isinstance(v, (str, tuple, list, dict)) and not v)


def _flytekit_only(what: str, kwargs: dict[str, Any], known: tuple[str, ...], src: Any) -> None:
    check_keywords(what, kwargs, known, src)
    used = [k for k, v in kwargs.items() if not _unset(v)]
    if used:
        warn(f"{what}: {', '.join(used)} ignored (flytekit settings for how Flyte runs it; "
             "flows runs it with its provider)", src)


class PythonTask:
    """A `@task` Python function: one node, run in a subprocess by the provider."""

    def __init__(self, fn: Callable[..., Any], cache: Any = None, cache_version: str = "",
                 cache_ignore_input_vars: tuple[str, ...] = (), retries: int = 0, timeout: Any = None,
                 **kwargs: Any) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.source = tracing.SourceRef(file=inspect.getsourcefile(fn) or "?", line=fn.__code__.co_firstlineno)
        _flytekit_only(f"@task '{self.name}'", kwargs, (*TASK_HONOURED, *TASK_IGNORED), self.source)
        hints = _hints(fn)
        sig = inspect.signature(fn)
        self.inputs, _ = interface_of({p.name: hints.get(p.name, typing.Any) for p in sig.parameters.values()},
                                      "input", self.name)
        self.defaults = {p.name: p.default for p in sig.parameters.values()
                         if p.default is not inspect.Parameter.empty}
        self.outputs, self.output_artifacts = interface_of(
            output_names(hints.get("return", inspect.Signature.empty)), "output", self.name)
        self.cache, self.cache_version = _cache_settings(cache, cache_version)
        self.cache_ignore_input_vars = list(cache_ignore_input_vars or ())
        self.retries = int(retries or 0)
        self.timeout = timeout_seconds(timeout)
        self.__name__ = fn.__name__
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        trace = tracing.current()
        if trace is None:  # plain Python call (e.g. by the task runner): just run the function
            return self.fn(*args, **kwargs)
        src = tracing.caller_source()
        if args:
            raise FlowLoadError(f"task '{self.name}' takes keyword arguments only", **_where(src))
        values = {k: v for k, v in self.defaults.items() if k not in kwargs}
        values.update(kwargs)
        node = Node(address=trace.address_for(self.name), task_name=self.name, kind="python",
                    inputs=dict(self.inputs), outputs=dict(self.outputs), cache=self.cache,
                    cache_version=self.cache_version, cache_ignore_input_vars=self.cache_ignore_input_vars,
                    retries=self.retries, timeout_seconds=self.timeout, source=src,
                    output_artifacts=dict(self.output_artifacts),
                    python={"file": self.source.file, "module": self.fn.__module__, "qualname": self.fn.__qualname__})
        return trace.add_node(node, values)


@strict_call("@task", extra=TASK_CACHE_KEYWORDS)
def task(_task_function: Callable[..., Any] | None = None, task_config: Any = None, cache: Any = None,
         retries: int = 0, interruptible: bool | None = None, deprecated: str = "", timeout: Any = 0,
         container_image: Any = None, environment: dict[str, str] | None = None, requests: Any = None,
         limits: Any = None, secret_requests: Any = None, execution_mode: Any = None,
         node_dependency_hints: Any = None, task_resolver: Any = None, docs: Any = None,
         disable_deck: bool | None = None, enable_deck: bool | None = None, deck_fields: Any = None,
         pod_template: Any = None, pod_template_name: str | None = None, accelerator: Any = None,
         pickle_untyped: bool = False, shared_memory: Any = None, resources: Any = None,
         labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None, **kwargs: Any) -> Any:
    """`@task` and `@task(cache=True, cache_version="1", ...)`, with flytekit's signature.

    `cache`, `retries`, `timeout` and (through **kwargs, as flytekit takes them) `cache_version`,
    `cache_serialize`, `cache_ignore_input_vars` are honoured; the settings of how Flyte runs the task
    are accepted with a warning.
    """
    ignored = {"task_config": task_config, "interruptible": interruptible, "deprecated": deprecated,
               "container_image": container_image, "environment": environment, "requests": requests,
               "limits": limits, "secret_requests": secret_requests, "execution_mode": execution_mode,
               "node_dependency_hints": node_dependency_hints, "task_resolver": task_resolver, "docs": docs,
               "disable_deck": disable_deck, "enable_deck": enable_deck, "deck_fields": deck_fields,
               "pod_template": pod_template, "pod_template_name": pod_template_name, "accelerator": accelerator,
               "pickle_untyped": pickle_untyped, "shared_memory": shared_memory, "resources": resources,
               "labels": labels, "annotations": annotations, "cache_serialize": kwargs.pop("cache_serialize", None)}

    def make(fn: Callable[..., Any]) -> PythonTask:
        return PythonTask(fn, cache=cache, retries=retries, timeout=timeout or None, **kwargs, **ignored)
    return make(_task_function) if _task_function is not None else make


class Unsupported:
    """A flytekit name we load but do not reconcile: any use inside a workflow is a clear error.

    Outside a traced workflow (module level, a helper's import, a decorator) it is inert: calls and
    attributes give more placeholders, so files that use flytekit at run time still load.
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return f"<flytekit name {self._name} (no static meaning)>"

    def __instancecheck__(self, obj: Any) -> bool:
        if tracing.current() is not None:
            raise self._refuse()
        return False

    def _refuse(self) -> NotSupportedError:
        src = tracing.caller_source()
        if self._name.startswith("domino."):  # python-domino: a REST client, for a task's own code
            why = "python-domino talks to Domino when the flow runs; call it in a task's script, not while " \
                  "the workflow is traced"
        else:
            why = "it has no meaning before the flow runs; flows reconciles static DAGs of tasks"
        return NotSupportedError(f"not supported: {self._name} ({why})", **_where(src))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if tracing.current() is not None:
            raise self._refuse()
        if len(args) == 1 and callable(args[0]) and not kwargs:  # used as a bare decorator
            return Unsupported(f"{self._name} ({getattr(args[0], '__name__', '?')})")
        return Unsupported(self._name)

    def __getattr__(self, item: str) -> Any:
        if item.startswith("__"):
            raise AttributeError(item)
        if tracing.current() is not None:
            raise self._refuse()
        return Unsupported(f"{self._name}.{item}")


dynamic = Unsupported("@dynamic")
eager = Unsupported("@eager")
map_task = Unsupported("map_task")
conditional = Unsupported("conditional")


@strict_call("approve")
def approve(upstream_item: Any, name: str, timeout: Any) -> Any:
    """flytekit's `approve(value, "name", timeout=timedelta(...))`: an approval gate. Inside a workflow it is a
    node of kind gate that passes `value` through once a person approves (`flows apply --approve NAME`).
    Outside one (plain Python) it is the value itself, as flytekit's local execution passes it on."""
    trace = tracing.current()
    if trace is None:
        return upstream_item
    return trace.add_gate(upstream_item, name, timeout, tracing.caller_source())
