"""A job's inputs and outputs, the way Domino hands them to a job: shared by every place a job runs.

The local provider (a job folder on this machine) and the Domino in-job runtime (`/workflow` inside a
Domino Job) do exactly the same thing around the job's command, so they both call this module:

    write_inputs(inputs, inputs_dir, blobs)              # before the command
    outputs, warnings = collect_outputs(declared, outputs_dir, blobs)   # after it exited 0

`write_inputs` materialises each `InputValue` as `<inputs_dir>/<name>` in Domino's format (str as its
bytes, int/float as decimal text, bool as `true`/`false`, list/dict as JSON, datetime as RFC 3339 — see
`providers.pytask.format_value`); a file or directory input is fetched from its location: a blob URI of
`blobs` (local path or `s3://`), or a plain local path (a flow input given on the command line).

`collect_outputs` checks every declared output (`name -> canonical type`) in `outputs_dir`, accepts
`<name>.<ext>` for a missing `<name>` when it is the only such file (with a warning: many real scripts
write `datasetA.csv`), parses primitives to their declared type, and stores everything in `blobs`
(content-addressed; primitives in their canonical text, so `5` and `5\\n` are one output). It returns
`OutputRecord`s ready for the state.

Both raise `JobIOError` (`InputsError` / `OutputsError`) with one message naming the input or output;
they never print, never exit, and know nothing of nodes, runs or providers.
"""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any, Mapping

from providers.base import InputValue
from providers.blobs.base import BlobChangedError, BlobStore, ensure_inside, is_s3
from providers.blobs.local import clone_or_copy
from providers.pytask import ValueFormatError, format_value, inner_type, json_value, parse_value
from vocab.digest import TreeError, tree_files
from vocab.flytetypes import is_blob, is_dir
from vocab.masking import redact
from state.model import OutputRecord, trusted

MAX_VALUE_BYTES = 1 << 20  # a primitive output is a value, not data: bigger ones should be declared files
LISTED_FILES = 20          # how many written names a "missing output" message lists

__all__ = ["JobIOError", "InputsError", "OutputsError", "write_inputs", "fetch", "collect_outputs",
           "MAX_VALUE_BYTES"]


class JobIOError(Exception):
    """An input cannot be materialised or an output is unusable; the message names it."""


class InputsError(JobIOError):
    """An input cannot be written into the job's inputs folder."""


class OutputsError(JobIOError):
    """A declared output is missing, of the wrong kind, or does not parse as its type."""


# ---- inputs ----------------------------------------------------------------------------------------

def write_inputs(inputs: Mapping[str, InputValue], inputs_dir: Path, blobs: BlobStore, made: bool = False) -> set[str]:
    """Write every input as `<inputs_dir>/<name>`, as Domino does. An optional file input that was not
    given writes nothing (as on Domino). Returns the names written. `made`: the caller made the folder."""
    if not made and not inputs_dir.is_dir():  # (a job folder has it already: one stat, not a failed mkdir)
        inputs_dir.mkdir(parents=True, exist_ok=True)
    written: set[str] = set()
    for name, value in inputs.items():
        plain = _plain_name(name)
        try:
            # a plain name is inside by construction (the folder holds only plain files: new, or what
            # providers.job_folders kept of a finished job's)
            dest = inputs_dir / name if plain else ensure_inside(inputs_dir, name)
        except ValueError:
            raise InputsError(f"input name '{name}' would be written outside /workflow/inputs") from None
        if not plain or "/" in name:
            dest.parent.mkdir(parents=True, exist_ok=True)
        if _write_input(name, value, dest, blobs):
            written.add(name)
    return written


def _write_input(name: str, value: InputValue, dest: Path, blobs: BlobStore) -> bool:
    """Whether anything was written (an optional file input not given: nothing)."""
    t = inner_type(value.type)
    if not is_blob(t):
        try:
            dest.write_bytes(format_value(value.type, value.value))
        except (ValueError, TypeError):
            raise InputsError(redact(f"input '{name}': {value.value!r} is not {_article(value.type)} "
                                     f"{value.type}")) from None
        return True
    location = value.uri if value.uri is not None else value.value
    if location is None:
        return False
    fetch(name, t, os.fspath(location), dest, blobs)
    return True


def fetch(name: str, t: str, location: str, dest: Path, blobs: BlobStore) -> None:
    """Copy one file/directory (`t`) from a blob URI or local path to `dest`.

    A copy, never a link: a job that writes to its input must not change a blob (or a user's file) in
    place. `name` is only used in messages.
    """
    def fail(why: str) -> InputsError:
        return InputsError(redact(f"input '{name}': {why}"))

    if is_s3(location):
        if not is_s3(blobs.url):
            raise fail(f"{location} is on S3 but the blob store is local; configure an s3:// blob store "
                       "to use S3 inputs with the local provider")
        try:
            (blobs.get_dir if is_dir(t) else blobs.get_file)(location, dest)
        except Exception as e:  # any client error: one line naming the input
            raise fail(f"cannot fetch {location}: {e}") from None
        return
    if not is_dir(t) and (owns := getattr(blobs, "owns", None)) is not None and owns(location):
        try:  # a stored output: checked against its digest on the way
            blobs.get_file(location, dest)
        except BlobChangedError as e:
            raise fail(e.message) from None
        except FileNotFoundError:
            if os.path.isfile(location):
                raise
            raise fail(f"{'expected a file, got a directory' if os.path.isdir(location) else 'no such file'}: "
                       f"{location}") from None
        return
    path = Path(location)  # (made only here: a stored output, above, is most inputs of most jobs)
    if is_dir(t):
        if path.is_dir():
            copy_tree(path, dest, name)
        elif path.is_file():  # a stored directory: its manifest blob
            try:
                blobs.get_dir(location, dest)
            except BlobChangedError as e:
                raise fail(e.message) from None
            except (ValueError, KeyError, TypeError, OSError):
                raise fail(f"{location} is neither a directory nor a stored directory") from None
        else:
            raise fail(f"no such directory: {location}")
    elif path.is_file():
        clone_or_copy(location, dest)  # (shutil.copyfile's checks and buffered files cost twice the system calls)
    else:
        raise fail(f"{'expected a file, got a directory' if path.is_dir() else 'no such file'}: {location}")


def copy_tree(src: Path, dest: Path, name: str) -> None:
    """The job's copy of a local directory: exactly the files its digest covers (`tree_files`: links followed
    as what they point to, so the job sees regular files and folders)."""
    try:
        files = tree_files(src)
    except TreeError as e:
        raise InputsError(redact(f"input '{name}': {src / e.rel} {e.reason}")) from None
    dest.mkdir(parents=True, exist_ok=True)
    for rel, path in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


# ---- outputs ---------------------------------------------------------------------------------------

def collect_outputs(declared: Mapping[str, str], outputs_dir: Path, blobs: BlobStore,
                    consume: bool = False) -> tuple[dict[str, OutputRecord], list[str]]:
    """Check, parse and store every declared output; return (records, warnings).

    Every missing output is named at once, with what the job did write. `consume`: the caller deletes
    `outputs_dir` next, so file outputs may be hard-linked into the store instead of copied.
    """
    records: dict[str, OutputRecord] = {}
    warnings: list[str] = []
    missing: list[str] = []
    _check_not_a_link(outputs_dir)
    stored: list[tuple[str, str, str]] = []  # (name, path, type) stored; a consumed one's name is given up at the end
    # a store that can take a job's own file whole (the local one), when the caller deletes the folder next
    take = getattr(blobs, "take_file", None) if consume else None
    settle = getattr(blobs, "settle_taken", None) if consume else None
    taken: list[str] = []  # the job's names of files the store took (removed once every output is stored)
    fresh: list[tuple[str, str]] = []  # (uri, digest) of the blobs they made
    folder = os.fspath(outputs_dir)
    for name, t in declared.items():
        if take is not None and settle is not None and "/" not in name and _plain_name(name):
            path_text = os.path.join(folder, name)
            record = _taken(t, path_text, take, fresh)
            if record is not None:
                records[name] = record
                taken.append(path_text)
                continue
        path = _output_path(outputs_dir, name)
        found = _stat(path)
        if found is None:
            alternative = _single_with_extension(outputs_dir, name)
            if alternative is not None:
                warnings.append(f"output '{name}': the job wrote '{alternative.name}'; using it as '{name}'")
                path = _output_path(outputs_dir, alternative.name)
                found = _stat(path)
        if found is None:
            if t.startswith("optional["):
                records[name] = store_value(t, None, blobs)
            else:
                missing.append(name)
            continue
        records[name] = _store(name, t, path, blobs, consume, found.st_mode)
        stored.append((name, os.fspath(path), t))
    if missing:
        names = ", ".join(f"'{m}'" for m in missing)
        raise OutputsError(f"missing output{'s' if len(missing) > 1 else ''} {names}; {_written(outputs_dir)}")
    if taken and settle is not None:
        settle(taken, fresh)
    if consume and stored:
        _give_up_taken([(path, t) for _, path, t in stored], {name: records[name] for name, _, _ in stored}, blobs)
    return records, warnings


def _taken(t: str, path: str, take: Any, fresh: list[tuple[str, str]]) -> OutputRecord | None:
    """A file output that is a plain file of one name, taken by the store whole (`take_file`: linked and hashed,
    with a fraction of the general path's system calls); None when it is anything else, or missing: the general
    path looks at it (and says what is wrong)."""
    inner = inner_type(t)
    if not is_blob(inner) or is_dir(inner):
        return None
    try:
        info = os.lstat(path)
    except (OSError, ValueError):
        return None
    found = take(path, info)
    if found is None:
        return None
    blob, new = found
    if new:
        fresh.append((blob.uri, blob.digest))
    return trusted(OutputRecord, type=t, digest=blob.digest, size=blob.size, uri=blob.uri)


def _stat(path: Path) -> os.stat_result | None:
    """What is at an output's path (links followed), or None: one stat for `exists` and `is_file` both."""
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def _give_up_taken(stored: list[tuple[str, str]], records: Mapping[str, OutputRecord], blobs: BlobStore) -> None:
    """Once every output is stored: the names in the outputs folder of files the store took (a second name of
    each: the caller deletes them anyway) are removed now, and the store is told its blobs' stat moved (ctime,
    with the name count) though their bytes did not: removed later, they left every blob looking changed to the
    stat cache, and the next plan and every job taking one as input hashed it again."""
    for top, t in stored:
        walk = os.walk(top) if is_dir(inner_type(t)) and not os.path.islink(top) else [("", [], [top])]
        for folder, _dirs, files in walk:  # (links to folders are not entered)
            for name in files:
                path = os.path.join(folder, name)
                try:
                    info = os.lstat(path)
                    if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
                        os.unlink(path)
                except OSError:
                    pass  # left for the folder's removal
    refresh = getattr(blobs, "refresh", None)  # (a store whose blobs are copies has nothing to refresh)
    if refresh is not None:
        refresh([r.uri for r in records.values() if r.uri and not is_dir(inner_type(r.type))],
                [r.uri for r in records.values() if r.uri and is_dir(inner_type(r.type))])


def store_value(t: str, value: Any, blobs: BlobStore) -> OutputRecord:
    """A primitive output, stored in its canonical text (so `5` and `5\\n` are the same output)."""
    blob = blobs.put_bytes(format_value(t, value))
    return OutputRecord(type=t, digest=blob.digest, size=blob.size, uri=blob.uri, value=json_value(t, value))


def _what_is(path: Path) -> str:
    """What a job left at an output's path, in words (a FIFO is not "a directory")."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return "a broken symbolic link" if path.is_symlink() else "nothing"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a regular file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a regular file"
    return "a device, not a regular file"


def _store(name: str, t: str, path: Path, blobs: BlobStore, consume: bool, mode: int) -> OutputRecord:
    """`mode`: what the path holds (its stat's st_mode, links followed)."""
    inner = inner_type(t)
    if is_dir(inner):
        if not stat.S_ISDIR(mode):
            raise OutputsError(f"output '{name}' is declared a directory but the job wrote {_what_is(path)}")
        try:
            blob = blobs.put_dir(path, consume=consume, confine=True)
        except TreeError as e:
            raise OutputsError(redact(f"output '{name}': {name}/{e.rel} {e.reason}")) from None
        return trusted(OutputRecord, type=t, digest=blob.digest, size=blob.size, uri=blob.uri)
    if not stat.S_ISREG(mode):
        raise OutputsError(f"output '{name}' is declared {t} but the job wrote {_what_is(path)}")
    if is_blob(inner):
        blob = blobs.put_file(path, consume=consume)
        return trusted(OutputRecord, type=t, digest=blob.digest, size=blob.size, uri=blob.uri)
    size = path.stat().st_size
    if size > MAX_VALUE_BYTES:
        raise OutputsError(f"output '{name}' is {size} bytes, too big for a {t} value (declare it as a file)")
    data = path.read_bytes()
    try:
        value = parse_value(t, data)
    except ValueFormatError as e:
        shown = data.decode(errors="replace").strip()
        shown = shown if len(shown) <= 60 else shown[:60] + "…"
        # For scalars the value itself says it all; for JSON types the parser's reason helps.
        why = "" if inner in ("int", "float", "bool", "str", "datetime", "date") else f" ({e})"
        why = f" ({e})" if inner.startswith("enum[") else why
        raise OutputsError(redact(f"output '{name}' is not {_article(t)} {t}: {shown!r}{why}")) from None
    return store_value(t, value, blobs)


def _check_not_a_link(outputs_dir: Path) -> None:
    """A job may replace its whole outputs folder (or the folder above it) with a link, say to /etc: the names
    inside would then all be "inside" it. Nothing is read through such a folder."""
    outputs = os.fspath(outputs_dir)
    for folder in (outputs, os.path.dirname(outputs)):  # (strings: this runs for every job)
        if os.path.islink(folder):
            raise OutputsError(f"the job replaced its outputs folder with a link (to {os.readlink(folder)}); "
                               "nothing was read through it")


def _output_path(outputs_dir: Path, name: str) -> Path:
    """`outputs_dir/name`, refusing names (or symlinks) that lead outside the outputs folder."""
    if _plain_name(name) and "/" not in name:
        plain = outputs_dir / name
        if not os.path.islink(plain):  # one lstat instead of resolving every folder above it
            return plain
    try:
        path: Path | None = ensure_inside(outputs_dir, name)
    except ValueError:
        path = None
    if path is None or path == outputs_dir.resolve():
        raise OutputsError(f"output '{name}' points outside the outputs folder")
    return path


def _plain_name(name: str) -> bool:
    """A relative name with no empty, `.` or `..` part (it cannot leave its folder but through a link)."""
    return (bool(name) and "\x00" not in name and not name.startswith("/")
            and all(part not in ("", ".", "..") for part in name.split("/")))


def _single_with_extension(outputs_dir: Path, name: str) -> Path | None:
    """`<name>.<ext>` when it is the only such file (scripts often write `datasetA.csv` for `datasetA`)."""
    if "/" in name or not outputs_dir.is_dir():
        return None
    found = [p for p in outputs_dir.iterdir() if p.name.startswith(name + ".") and len(p.name) > len(name) + 1]
    return found[0] if len(found) == 1 else None


def _written(outputs_dir: Path) -> str:
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in outputs_dir.iterdir()) if outputs_dir.is_dir() else []
    if not entries:
        return "the job wrote nothing to /workflow/outputs"
    more = f", … ({len(entries) - LISTED_FILES} more)" if len(entries) > LISTED_FILES else ""
    return "the job wrote: " + ", ".join(entries[:LISTED_FILES]) + more


def _article(t: str) -> str:
    return "an" if t[:1] in "aeiou" else "a"
