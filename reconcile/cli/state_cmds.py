"""`flows state ...`, `flows runs ...`, `flows cache ...`: inspect and repair the state."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from reconcile.cli.main import app
from reconcile.cli.output import out_console
from vocab.errors import InputError, StateError
from vocab.masking import redact

console = out_console()
state_app = typer.Typer(no_args_is_help=True, help="Inspect and repair the state (like `terraform state`).")
runs_app = typer.Typer(no_args_is_help=True, help="Runs recorded in the state.")
cache_app = typer.Typer(no_args_is_help=True, help="The cache index (key -> outputs) and the blob store.")
app.add_typer(state_app, name="state")
app.add_typer(runs_app, name="runs")
app.add_typer(cache_app, name="cache")

FLOW_OPT = typer.Option(None, "--flow", help="Flow (workflow name); default: the only one in the state.")
JSON_OPT = typer.Option(False, "--json", help="Machine-readable output.")


def _ws(flow: Optional[str]) -> tuple[Any, str]:
    from reconcile.session import open_flow
    return open_flow(flow)


def _state(ws: Any, flow: str) -> Any:
    view = ws.read_state(flow)  # a crashed apply's journal folded in memory, its run shown as interrupted
    if view.stored is None and not view.journal:
        raise StateError(f"flow '{flow}' has no state in {ws.backend.describe(flow)}")
    return view.state


def _echo_json(obj: Any) -> None:
    typer.echo(redact(json.dumps(obj, indent=2, default=str)))


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@state_app.command("list")
def state_list(flow: Optional[str] = FLOW_OPT, as_json: bool = JSON_OPT) -> None:
    """Node addresses with status, key, last run and output sizes."""
    ws, flow = _ws(flow)
    st = _state(ws, flow)
    rows = [{"address": r.address, "status": r.status, "key": r.key, "run_id": r.run_id,
             "finished_at": r.finished_at, "output_bytes": sum(o.size for o in r.outputs.values())}
            for r in st.nodes.values()]
    if as_json:
        _echo_json({"flow": flow, "serial": st.serial, "lineage": st.lineage, "nodes": rows})
        return
    table = Table(title=f"{flow} (serial {st.serial}, lineage {st.lineage[:8]})", title_justify="left")
    for col in ("address", "status", "key", "last run", "outputs"):
        table.add_column(col)
    for r in rows:
        table.add_row(escape(r["address"]), r["status"], (r["key"] or "")[:12], r["run_id"] or "",
                      _size(r["output_bytes"]))
    console.print(table)


@state_app.command("show")
def state_show(address: str, flow: Optional[str] = FLOW_OPT, as_json: bool = JSON_OPT) -> None:
    """The full record of one node: fingerprint, outputs, job id, runs."""
    from reconcile.session import find_node, flow_of_address
    ws, flow = _ws(flow_of_address(address, flow))
    st = _state(ws, flow)
    rec = find_node(st, address)
    runs = [r.id for r in st.runs.values() if address in r.jobs]
    data = {**rec.model_dump(mode="json"), "runs": runs}
    if as_json:
        _echo_json(data)
        return
    from rich.json import JSON
    console.print(f"[bold]{escape(address)}[/bold]")
    console.print(JSON(redact(json.dumps(data, default=str))))


@state_app.command("rm")
def state_rm(addresses: list[str], flow: Optional[str] = FLOW_OPT, as_json: bool = JSON_OPT) -> None:
    """Forget nodes: they plan as create next time (their current cache entries go too; older ones and a
    backup of the state are kept)."""
    from reconcile.state_surgery import remove_nodes
    ws, flow = _ws(flow or (addresses[0].split("/", 1)[0] if "/" in addresses[0] else None))
    evicted: list[str] = []
    st = ws.store(flow).mutate("state rm", lambda s: evicted.extend(remove_nodes(s, addresses)))
    if as_json:
        _echo_json({"flow": flow, "removed": addresses, "evicted_keys": evicted, "serial": st.serial})
        return
    console.print(f"Removed {len(addresses)} node(s); state serial {st.serial}.")


@state_app.command("mv")
def state_mv(old: str, new: str, flow: Optional[str] = FLOW_OPT, as_json: bool = JSON_OPT) -> None:
    """Rename a node (after renaming a task): its record and cache come along, so nothing re-runs."""
    from reconcile.state_surgery import move_node
    ws, flow = _ws(flow or (old.split("/", 1)[0] if "/" in old else None))
    st = ws.store(flow).mutate("state mv", lambda s: move_node(s, old, new))
    if as_json:
        _echo_json({"flow": flow, "old": old, "new": new, "serial": st.serial})
        return
    console.print(f"Moved {escape(old)} -> {escape(new)}; state serial {st.serial}.")


@state_app.command("pull")
def state_pull(flow: Optional[str] = FLOW_OPT,
               version: Optional[str] = typer.Option(None, "--version", help="An earlier version (see history)."),
               as_json: bool = typer.Option(False, "--json", help="Accepted for symmetry: the state is JSON.")) -> None:
    """Print the raw state (or an earlier version of it), as it is stored."""
    ws, flow = _ws(flow)
    st = ws.store(flow).read_version(version) if version else _state(ws, flow)
    typer.echo(redact(st.to_json_bytes().decode()))


@state_app.command("push")
def state_push(file: Path, flow: Optional[str] = FLOW_OPT,
               force: bool = typer.Option(False, "--force", help="Push even an older serial or another lineage."),
               as_json: bool = JSON_OPT) -> None:
    """Replace the state with FILE (refuses an older serial or another lineage unless --force)."""
    from state.model import parse_state
    try:
        pushed = parse_state(file.read_bytes(), str(file))
    except FileNotFoundError:
        raise InputError("no such file", file=str(file)) from None
    ws, flow = _ws(flow or pushed.flow)
    if pushed.flow != flow:
        raise InputError(f"the file holds the state of flow '{pushed.flow}', not '{flow}'", file=str(file))
    with ws.store(flow).locked("state push") as lease:
        current, etag = lease.state, lease.etag
        if etag is not None and not force:
            if pushed.lineage != current.lineage:
                raise StateError(f"refusing to push: lineage {pushed.lineage} differs from the state's "
                                 f"{current.lineage} (use --force)", file=str(file))
            if pushed.serial < current.serial:
                raise StateError(f"refusing to push: serial {pushed.serial} is older than the state's "
                                 f"{current.serial} (use --force)", file=str(file))
        pushed.serial = max(pushed.serial, current.serial if etag else 0)
        lease.commit(pushed)  # serial + 1, fenced like every write
    if as_json:
        _echo_json({"flow": flow, "serial": pushed.serial, "lineage": pushed.lineage})
        return
    console.print(f"Pushed {escape(str(file))}; state serial {pushed.serial}.")


@state_app.command("history")
def state_history(flow: Optional[str] = FLOW_OPT, as_json: bool = JSON_OPT) -> None:
    """Earlier versions of the state (S3 object versions or local backups)."""
    ws, flow = _ws(flow)
    entries = ws.store(flow).history()
    if any(e.version_id == "null" for e in entries):  # S3's id of an object written without versioning
        typer.secho(f"Warning: {ws.backend.describe(flow)} is in a bucket without versioning: the history holds only "
                    "the current state. Enable it to keep every earlier version: aws s3api put-bucket-versioning "
                    "--bucket BUCKET --versioning-configuration Status=Enabled", fg="yellow", err=True)
    if as_json:
        _echo_json([e.model_dump() for e in entries])
        return
    table = Table(title=f"history of {flow}", title_justify="left")
    for col in ("version", "serial", "modified", "size", ""):
        table.add_column(col)
    for e in entries:
        table.add_row(e.version_id, str(e.serial), e.modified or "", str(e.size or ""), "latest" if e.latest else "")
    console.print(table)
    console.print("Read one with: flows state pull --version VERSION   (restore it with state push --force)")


@state_app.command("unlock")
def state_unlock(lock_id: str, flow: Optional[str] = FLOW_OPT, as_json: bool = JSON_OPT) -> None:
    """Force-release a lock left by a process that is gone (like terraform force-unlock)."""
    ws, flow = _ws(flow)
    held = ws.store(flow).force_unlock(lock_id)  # its holder, should it come back, can no longer write
    if as_json:
        _echo_json({"flow": flow, "released": held.model_dump() if held else {"id": lock_id}})
        return
    console.print(f"Released {escape(held.describe()) if held else lock_id}.")


@runs_app.command("list")
def runs_list(flow: Optional[str] = FLOW_OPT, as_json: bool = JSON_OPT) -> None:
    """Every run: id, start, outcome, counts."""
    ws, flow = _ws(flow)
    st = _state(ws, flow)
    runs = sorted(st.runs.values(), key=lambda r: r.started_at)
    if as_json:
        _echo_json([r.model_dump(mode="json", exclude={"jobs"}) for r in runs])
        return
    table = Table(title=f"runs of {flow}", title_justify="left")
    for col in ("run", "started", "finished", "outcome", "counts", "user@host"):
        table.add_column(col)
    for r in runs:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items()))
        table.add_row(r.id, r.started_at, r.finished_at or "", r.outcome, counts, f"{r.user}@{r.host}")
    console.print(table)


@runs_app.command("show")
def runs_show(run_id: str, flow: Optional[str] = FLOW_OPT, as_json: bool = JSON_OPT,
              html_out: Optional[Path] = typer.Option(None, "--html", metavar="FILE",
                                                      help="Write a page of the run: a timeline of its nodes, the "
                                                           "critical path, each node's reasons and log on click.")) -> None:
    """One run: its record and the jobs it launched (--html FILE: a picture of it)."""
    ws, flow = _ws(flow)
    st = _state(ws, flow)
    run = st.runs.get(run_id)
    if run is None:
        raise InputError(f"no run '{run_id}' in the state of '{flow}' (see `flows runs list`)")
    if html_out is not None:
        from reconcile import render_run, run_timeline
        text = render_run.page(run, run_timeline.for_run(ws.logs_dir, st, run))
        try:
            html_out.write_text(text)
        except OSError as e:
            raise InputError(f"cannot write the page: {e.strerror or e}", file=str(html_out)) from None
        console.print(f"Wrote {escape(str(html_out))}")
        return
    if as_json:
        _echo_json(run.model_dump(mode="json"))
        return
    console.print(f"[bold]run {run.id}[/bold]: {run.outcome}, {run.started_at} → {run.finished_at or '…'}, "
                  f"{run.user}@{run.host}, provider {run.provider}")
    if run.error:
        console.print(f"error: {escape(redact(run.error))}")
    for name, approval in run.approvals.items():
        console.print(f"approved: {escape(name)} by {escape(approval.by)} at {approval.at}")
    for name, wait in run.waiting.items():
        deadline = wait.deadline()
        console.print(f"waiting for approval: {escape(name)} ({escape(wait.address)}) since {wait.since}" +
                      (f", times out at {deadline.isoformat(timespec='seconds')}" if deadline else "") +
                      f"; go on with: flows recover {run.id} --approve {escape(name)}", soft_wrap=True)
    table = Table()
    for col in ("node", "status", "job id", "attempt", "started"):
        table.add_column(col)
    for address, job in run.jobs.items():
        table.add_row(escape(address), str(job.get("status")), str(job.get("job_id") or ""),
                      str(job.get("attempt") or ""), str(job.get("started_at") or ""))
    console.print(table)


@cache_app.command("list")
def cache_list(address: Optional[str] = typer.Argument(None), flow: Optional[str] = FLOW_OPT,
               as_json: bool = JSON_OPT) -> None:
    """Cache entries (all, or one node's), newest first."""
    ws, flow = _ws(flow or (address.split("/", 1)[0] if address and "/" in address else None))
    st = _state(ws, flow)
    entries = sorted((e for e in st.cache.values() if address is None or e.address == address),
                     key=lambda e: e.created_at, reverse=True)
    if as_json:
        _echo_json([e.model_dump(mode="json", exclude={"fingerprint"}) for e in entries])
        return
    current = {r.key for r in st.nodes.values()}
    table = Table(title=f"cache of {flow}", title_justify="left")
    for col in ("key", "node", "run", "created", "outputs", ""):
        table.add_column(col)
    for e in entries:
        table.add_row(e.key[:12], escape(e.address), e.run_id or "", e.created_at,
                      _size(sum(o.size for o in e.outputs.values())), "current" if e.key in current else "")
    console.print(table)


@cache_app.command("rm")
def cache_rm(what: str, flow: Optional[str] = FLOW_OPT, as_json: bool = JSON_OPT) -> None:
    """Evict a cache entry by key (or key prefix), or every entry of a node address."""
    ws, flow = _ws(flow or (what.split("/", 1)[0] if "/" in what else None))
    removed: list[str] = []

    def change(st: Any) -> None:
        keys = [k for k, e in st.cache.items() if e.address == what] or \
               [k for k in st.cache if len(what) >= 6 and k.startswith(what)]
        if not keys:
            raise InputError(f"no cache entry for '{what}' (a key, key prefix of 6+ characters, or node address)")
        for k in keys:
            del st.cache[k]
        removed.extend(keys)
    st = ws.store(flow).mutate("cache rm", change)
    if as_json:
        _echo_json({"flow": flow, "evicted": removed, "serial": st.serial})
        return
    console.print(f"Evicted {len(removed)} cache entr{'y' if len(removed) == 1 else 'ies'}; state serial {st.serial}. "
                  "Run `flows cache gc` to delete blobs nothing references any more.")


@cache_app.command("gc")
def cache_gc(keep_last: Optional[int] = typer.Option(None, "--keep-last", min=0,
                                                     help="Keep only the newest N entries per node."),
             dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be deleted."),
             flow: Optional[str] = FLOW_OPT, as_json: bool = JSON_OPT) -> None:
    """Evict old cache entries (--keep-last) and delete blobs that no state using the blob store references.

    Every state registered as a user of the blob store (each apply registers its own) is read under its locks.
    When one of them cannot be read from here, nothing is deleted: gc shows what it would delete (--dry-run).
    """
    from reconcile.gc import collect
    ws, flow = _ws(flow)
    report = collect(ws, flow, keep_last=keep_last, dry_run=dry_run)
    if as_json:
        _echo_json({"flow": flow, "dry_run": report.dry_run, "evicted": report.evicted,
                    "unreferenced": report.unreferenced, "deleted": report.deleted, "kept": report.kept,
                    "states": report.states, "unreadable": report.unreadable})
        return
    for where, why in report.unreadable.items():
        console.print(f"[yellow]Cannot read the state at {escape(where)} ({escape(why)}), which shares this blob "
                      "store: nothing is deleted (dry run).[/yellow]")
    verb = "would evict" if report.dry_run else "evicted"
    gone = f"would delete {len(report.unreferenced)}" if report.dry_run else f"deleted {report.deleted}"
    shared = f" (blob store shared by {len(report.states)} states)" if len(report.states) > 1 else ""
    console.print(f"{verb.capitalize()} {len(report.evicted)} cache entries; {gone} unreferenced blob(s); "
                  f"kept {report.kept}{shared}.")
