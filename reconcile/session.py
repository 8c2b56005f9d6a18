"""The use cases behind the commands: load a flow, plan it, apply it (recover: `reconcile.recovery`).

The CLI parses arguments, calls these, and renders what they return; everything that decides anything lives
here or below. What a use case needs from the person running it (confirm a plan, watch progress, Ctrl-C) it
asks through `ApplyUI`, which the CLI implements.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from pathlib import Path
from typing import Any, Callable, Protocol

from providers.base import StartQueue
from reconcile.apply import ApplyOptions, NodeOutcome, Reporter, execute_plan, start_run, take_lock
from reconcile.fingerprint import upgrade_keys
from reconcile.gates import AskApproval
from reconcile.graph import FlowGraph
from reconcile.plan import NodeKeyer
from reconcile.plan_model import NodeChange, Plan
from reconcile.workspace import Workspace
from state.model import NodeRecord, RunRecord, State
from state.store import Lease, StateView
from vocab.errors import InputError, StalePlanError


class LoadedFlow:
    """A flow file loaded, its inputs resolved, in its project's workspace: what plan and apply start from."""

    def __init__(self, flow_file: Path, workflow: str | None, input_args: list[str], inputs_file: str | None,
                 inputs: dict[str, Any] | None = None, *, warn: Callable[[str], None] | None = None) -> None:
        """`inputs`: a saved plan's (checked like an inputs file: it may have been edited by hand). `warn` hears
        what loads but is probably not what was meant, before anything is planned."""
        from reconcile.inputs import read_inputs_file, resolve_inputs, split_cli_args
        from reconcile.loader import load_flow
        from vocab.digest import file_digest

        self.graph: FlowGraph = load_flow(flow_file, workflow)
        self.workflow_arg = workflow  # as given (None: the file's one workflow): the graph cache's key
        self.planner: Any = None      # the last plan's, for the no-op receipt (reconcile/noop_plan.py)
        for text in self.graph.warnings:
            if warn is not None:
                warn(text)
        if inputs is not None:
            defaults = {n: fi.default for n, fi in self.graph.inputs.items() if not fi.required}
            given = {n: v for n, v in inputs.items() if n not in defaults or v != defaults[n]}
            self.inputs: dict[str, Any] = {**inputs, **resolve_inputs(self.graph, {}, given)}
        else:
            from_file = read_inputs_file(inputs_file) if inputs_file else None
            self.inputs = resolve_inputs(self.graph, split_cli_args(input_args), from_file)
        self.flow_digest = file_digest(self.graph.file)
        self.ws = Workspace(Path(self.graph.project_root))
        self._keyer: NodeKeyer | None = None

    def keyer(self) -> NodeKeyer:
        """One per command: what it computes per node (resolved config, code identity, the fixed part of the
        fingerprint) is then computed, and held, once for the plan and the apply."""
        if self._keyer is None:
            self._keyer = NodeKeyer(self.graph, self.inputs, self.ws.provider, self.ws.digests, self.ws.remote_digest)
        return self._keyer

    def plan(self, targets: list[str], replace: list[str]) -> tuple[Plan, StateView]:
        """The plan against the stored state, read without locking (a leftover journal folded in memory)."""
        view = self.ws.read_state(self.graph.workflow)
        stored = view.stored
        return self.make_plan(view.state, stored.serial if stored else None, stored.lineage if stored else None,
                              targets, replace), view

    def make_plan(self, state: State, stored_serial: int | None, stored_lineage: str | None,
                  targets: list[str], replace: list[str], save_digests: bool = True) -> Plan:
        from reconcile import graph_cache
        from reconcile.plan import Planner
        planner = self.planner = Planner(self.graph, state, self.keyer(), self.ws.blobs, targets=targets,
                                         replace=replace)
        plan = planner.plan(self.flow_digest, self.inputs, self.ws.backend.kind, self.ws.provider.name,
                            stored_serial, stored_lineage)
        if save_digests:
            self.ws.digests.save()
            graph_cache.save_pending()
        return plan


def load_for_apply(path: Path, args: list[str], inputs_file: str | None,
                   warn: Callable[[str], None]) -> tuple[LoadedFlow, Plan | None]:
    """`flows apply PATH [WORKFLOW] [--<input> V ...]`: PATH is a flow file, or a plan saved with `flows plan
    --out` (then its flow, inputs, targets and replaces are the plan's). Returns the flow and the saved plan."""
    if not is_saved_plan(path):
        workflow, input_args = split_workflow(args)
        return LoadedFlow(path, workflow, input_args, inputs_file, warn=warn), None
    saved = read_saved_plan(path)
    if args:
        raise InputError("a saved plan takes no workflow or inputs (they are in the plan)")
    try:
        loaded = LoadedFlow(Path(saved.flow_file), saved.flow, [], None, inputs=saved.inputs, warn=warn)
    except InputError as e:
        raise StalePlanError(f"saved plan input {e.field or ''}: {e.message}".replace("input : ", "input: "),
                             file=str(path)) from None
    return loaded, saved


def split_workflow(args: list[str]) -> tuple[str | None, list[str]]:
    """`[WORKFLOW] [--<input> VALUE ...]`: the workflow name, when given, comes first."""
    if args and not args[0].startswith("--"):
        return args[0], args[1:]
    return None, args


# ---- saved plans ---------------------------------------------------------------------------------------

def is_saved_plan(path: Path) -> bool:
    """A saved plan is recognised by its content, whatever its name (`flows plan --out tfplan`): a JSON object
    (a flow file is Python, which never starts with `{`). A .json file is taken as a plan too, so a broken one
    is refused as a plan, not as Python."""
    if not path.is_file():
        return False
    if path.suffix == ".json":
        return True
    try:
        with path.open("rb") as f:
            head = f.read(64).lstrip()
    except OSError:
        return False
    return head.startswith(b"{")


def read_saved_plan(path: Path) -> Plan:
    from pydantic import ValidationError

    from reconcile.plan_model import PLAN_SCHEMA_VERSION, READABLE_PLAN_VERSIONS
    try:
        raw = json.loads(path.read_text())
    except ValueError as e:
        raise StalePlanError(f"not a saved plan (invalid JSON: {e})", file=str(path)) from None
    if not isinstance(raw, dict) or "schema_version" not in raw:
        raise StalePlanError("not a saved plan", file=str(path))
    if raw["schema_version"] not in READABLE_PLAN_VERSIONS:  # (version 1: a plan from before approval gates)
        raise StalePlanError(f"saved plan schema {raw['schema_version']} is not {PLAN_SCHEMA_VERSION}", file=str(path))
    try:
        return Plan.model_validate(raw)
    except ValidationError as e:
        raise StalePlanError(f"saved plan is malformed: {e.errors()[0]['loc']}", file=str(path)) from None


def write_saved_plan(plan: Plan, path: Path) -> None:
    """The plan file `flows apply PLAN` reads back; masked like everything that leaves the process."""
    from vocab.masking import redact
    if not path.parent.is_dir():
        raise InputError(f"cannot save the plan: no folder {path.parent}", file=str(path))
    try:
        path.write_text(redact(plan.model_dump_json(indent=1)))
    except OSError as e:
        raise InputError(f"cannot save the plan: {e.strerror or e}", file=str(path)) from None


def check_not_stale(saved: Plan, fresh: Plan, stored: State | None, flow_digest: str,
                    graph: FlowGraph | None = None) -> None:
    """A saved plan is applied only if planning now gives the same plan against the same state."""
    if saved.flow_digest != flow_digest:
        raise StalePlanError("saved plan is stale: the flow file changed since it was planned", file=saved.flow_file)
    serial = stored.serial if stored else None
    lineage = stored.lineage if stored else None
    if (saved.state_serial, saved.state_lineage) != (serial, lineage):
        raise StalePlanError(f"saved plan is stale: it was made against state serial {saved.state_serial}, "
                             f"the state is now at serial {serial}" +
                             (" of another lineage" if saved.state_lineage != lineage else "") +
                             "; run `flows plan` again")
    before = [(n.address, n.action, n.key) for n in saved.nodes]
    after = [(n.address, n.action, n.key) for n in fresh.nodes]
    if before != after:
        moved = next((_what_moved(a, b, graph, saved.inputs) for a, b in zip(saved.nodes, fresh.nodes)
                      if (a.address, a.action, a.key) != (b.address, b.action, b.key)), None)
        if moved is None:
            gone = sorted({n.address for n in saved.nodes} ^ {n.address for n in fresh.nodes})
            moved = "the set of nodes changed" + (f" ({', '.join(gone[:3])})" if gone else "")
        raise StalePlanError(f"saved plan is stale: {moved}; run `flows plan` again")


def _what_moved(saved: NodeChange, fresh: NodeChange, graph: FlowGraph | None, inputs: dict[str, Any]) -> str:
    """`wf/A: input data (file[csv]): digest 1a2b… → 3c4d… (key 5e6f7a8b9c0d → 0d9c8b7a6f5e)`: the first thing
    that changed between the node as planned and as it would be planned now."""
    from reconcile.reasons import fingerprint_reasons
    if saved.address != fresh.address:
        return f"node {saved.address} is now {fresh.address}"
    why = fingerprint_reasons(saved.fingerprint or {}, fresh.fingerprint or {}) if saved.fingerprint else []
    node = graph.nodes.get(fresh.address) if graph is not None else None

    def with_file(r: Any) -> str:  # name the file behind a changed input digest
        b = node.bindings.get(r.field[len("input "):]) if node is not None and r.field.startswith("input ") else None
        where = (inputs.get(str(b.name)) if b is not None and b.kind == "flow_input" else
                 b.value if b is not None and b.kind == "literal" else None)
        return f"{r.message} ({where})" if isinstance(where, str) and "digest" in r.message else r.message
    what = "; ".join(with_file(r) for r in why[:2]) or (f"planned as {saved.action}, now {fresh.action}"
                                                      if saved.action != fresh.action else "its key changed")
    keys = f" (key {(saved.key or 'known after apply')[:12]} → {(fresh.key or 'known after apply')[:12]})"
    return f"{saved.address}: {what}{keys if saved.key != fresh.key else ''}"


def drop_fingerprints(plan: Plan) -> None:
    """A plan shown, approved and checked against a saved one needs its fingerprints no more: the walk fingerprints
    each node again as its inputs become known, and the timeline keeps only actions and reasons. (10,000 of them
    were ~10 MB held for the whole walk.)"""
    for change in plan.nodes:
        change.fingerprint = None


def older_hits(plan: Plan, state: State) -> list[str]:
    """Reused nodes whose record points at another result (e.g. after reverting an input): the state must be
    updated to the cache hit even though no job runs, or outputs and the next plan would show the old one."""
    out = []
    for change in plan.nodes:
        rec = state.nodes.get(change.address)
        if change.action == "reuse" and (rec is None or rec.key != change.key or rec.status != "succeeded"):
            out.append(change.address)
    return out


# ---- the project around the current folder --------------------------------------------------------------

def open_project(flow: str | None, none_ok: bool = False) -> tuple[Workspace, str | None]:
    """The workspace of the project around the current folder, and the flow to act on (`none_ok`: None when
    no flow has any state here, instead of an error)."""
    from reconcile.loader import project_root_for
    ws = Workspace(project_root_for(Path.cwd() / "flows.toml"))
    flows = ws.backend.list_flows()
    if flow is None and not flows and none_ok:
        return ws, None
    if flow is None:
        if len(flows) != 1:
            raise InputError("name the flow with --flow" + (f" (flows: {', '.join(flows)})" if flows else
                                                             " (no state found here)"))
        flow = flows[0]
    return ws, flow


def open_flow(flow: str | None) -> tuple[Workspace, str]:
    """As `open_project`, for commands that need a flow: no state here is an error."""
    ws, name = open_project(flow)
    assert name is not None  # open_project raises instead when none_ok is False
    return ws, name


def flow_of_address(address: str, flow: str | None) -> str | None:
    """`--flow`, or the flow named by an address's first part (`wf/node`)."""
    return flow or (address.split("/", 1)[0] if "/" in address else None)


def find_node(state: State, address: str) -> NodeRecord:
    rec = state.nodes.get(address)
    if rec is None:
        import difflib
        hint = difflib.get_close_matches(address, list(state.nodes), n=1)
        raise InputError(f"no node '{address}' in the state" + (f" (did you mean '{hint[0]}'?)" if hint else ""))
    return rec


def copy_output(ws: Workspace, name: str, out: Any, dest: Path) -> str:
    """Copy one output out of the blob store to DEST/<name>; one clear error for a missing blob or a bad DEST."""
    from providers.blobs.base import BlobChangedError, ensure_inside
    from vocab.flytetypes import is_dir
    try:
        target = ensure_inside(dest, name)
    except ValueError:
        raise InputError(f"output name '{name}' would be written outside {dest}") from None
    try:
        (ws.blobs.get_dir if is_dir(out.type) else ws.blobs.get_file)(out.uri, target)
    except BlobChangedError:
        raise InputError(f"output '{name}' has changed in the blob store since it was stored (its bytes no longer "
                         "match its digest); the next `flows apply` runs its node again") from None
    except OSError as e:
        if not ws.blobs.exists([out.uri]).get(out.uri, False):
            raise InputError(f"output '{name}' is no longer in the blob store (deleted by `flows cache gc`?); "
                             "run the node again with `flows apply ... --replace ADDR`") from None
        raise InputError(f"cannot copy output '{name}' to {target}: {e.strerror or e}") from None
    return str(target)


def node_log(ws: Workspace, address: str, rec: NodeRecord) -> str:
    """The log of a node's last job (unmasked: the caller masks what it shows)."""
    if rec.log and Path(rec.log).is_file():
        return Path(rec.log).read_text(errors="replace")
    if rec.job_id:
        return str(ws.provider.logs(rec.job_id))
    if rec.status != "succeeded":
        raise InputError(f"node '{address}' has no log: it {rec.status} before a job started" +
                         (f" ({rec.error})" if rec.error else ""))
    raise InputError(f"node '{address}' has no log (it was reused from the cache: see its run "
                     f"{rec.reused_from or rec.run_id})")


# ---- apply -------------------------------------------------------------------------------------------------

class ReporterContext(Reporter, Protocol):
    """A `reconcile.apply.Reporter` that is also a context (a live view starts and stops with the run)."""

    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: Any) -> Any: ...


class ApplyUI(Protocol):
    """What an apply asks of the person running it; the CLI implements it."""

    def show_plan(self, plan: Plan) -> None: ...

    def nothing_to_do(self, state: State) -> None:
        """Nothing runs and nothing changes: the apply ends here."""

    def repointing(self, nodes: list[str]) -> None:
        """Nothing runs, but these nodes go back to an earlier result from the cache."""

    def approve(self, plan: Plan) -> bool:
        """Whether to go on with this plan (asked only when it was not approved beforehand)."""
        ...

    def warn(self, text: str) -> None: ...

    def reporter(self) -> ReporterContext:
        """Hears the scheduler's events while the plan runs."""
        ...

    def interruptible(self, cancel: threading.Event) -> None:
        """From now until the UI has shown the outcome: Ctrl-C sets `cancel` (running jobs are cancelled and
        recorded), so the exit code always matches the outcome recorded in the state."""

    def ask_approval(self) -> AskApproval | None:
        """How an approval gate nobody approved in advance (`--approve`) is put to a person, once nothing else can
        run; None when there is nobody to ask (no terminal): the run then ends `waiting`."""
        ...


@dataclasses.dataclass
class ApplyResult:
    run_id: str
    # the run's recorded outcome: succeeded | recovered | failed | interrupted | waiting (an unanswered gate)
    outcome: str
    outcomes: dict[str, NodeOutcome]
    state: State
    lease_error: Exception | None = None


class PlanDeclined(Exception):
    """The person declined the plan; nothing was run."""


def begin_apply(loaded: LoadedFlow, opts: ApplyOptions) -> tuple[RunRecord, Lease]:
    """A new run of the loaded flow, and the state lock it runs under (waiting or breaking as `opts` say)."""
    ws, graph = loaded.ws, loaded.graph
    run = start_run(graph.workflow, graph, loaded.flow_digest, ws.provider.name, loaded.inputs)
    return run, take_lock(ws.store(graph.workflow), "apply", run.id, opts)


def apply_plan(loaded: LoadedFlow, opts: ApplyOptions, run: RunRecord, lease: Lease, ui: ApplyUI, *,
               target: list[str], replace: list[str], saved: Plan | None = None, auto_approve: bool = True,
               attach: dict[str, Any] | None = None, resumed: bool = False) -> ApplyResult | None:
    """Under `lease` (released at the end; what a dead holder left is already folded): plan, confirm, execute.
    None when there was nothing to do; `PlanDeclined` when the person said no."""
    from reconcile import graph_cache
    from reconcile.gc import register as register_blob_user

    ws, graph = loaded.ws, loaded.graph
    cancel = threading.Event()
    with contextlib.ExitStack() as stack:
        # Registered first, so it runs last: the lock is released on every way out.
        stack.callback(lease.release)
        with lease.keep_alive():
            stored_before = lease.stored
            state, etag = lease.state, lease.etag
            upgrade_keys(state)
            if resumed:
                run = state.runs[run.id]
            if isinstance(ws.provider, StartQueue):
                ws.provider.get_ready()  # (local: its job launcher boots on the other core while this plans)
            the_plan = loaded.make_plan(state, state.serial if etag else None, state.lineage if etag else None,
                                        target, replace, save_digests=False)
            if saved is not None:
                check_not_stale(saved, the_plan, stored_before, loaded.flow_digest, graph)
            ws.digests.save()  # only now: a refused saved plan writes nothing under .flows/
            graph_cache.save_pending()
            ui.show_plan(the_plan)
            repoint = older_hits(the_plan, state)
            if not the_plan.has_changes() and not repoint and not resumed:
                ui.nothing_to_do(state)
                return None
            if not the_plan.has_changes() and repoint:
                ui.repointing(repoint)
            if saved is None and not auto_approve and not ui.approve(the_plan):
                raise PlanDeclined
            for w in ws.provider.warnings:
                ui.warn(w)
            drop_fingerprints(the_plan)
            # Before the first blob is stored, never for a plan refused above (a stale plan writes nothing):
            # `flows cache gc` of any project sharing the blob store reads this state too.
            register_blob_user(ws)
            reporter = ui.reporter()
            ui.interruptible(cancel)
            with reporter:
                outcomes, final = execute_plan(
                    graph=graph, plan=the_plan, state=state, keyer=loaded.keyer(), provider=ws.provider,
                    blobs=ws.blobs, lease=lease, run=run, logs_dir=ws.logs_dir, opts=opts,
                    reporter=reporter, cancel=cancel, attach=attach, resumed=resumed, ask=ui.ask_approval())
            ws.digests.save()
        lease.release()  # before the summary: the next apply need not wait for it
        return ApplyResult(run_id=run.id, outcome=final.runs[run.id].outcome, outcomes=outcomes, state=final,
                           lease_error=lease.renew_error)
