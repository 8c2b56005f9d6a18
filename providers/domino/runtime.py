"""The in-job runtime: what runs inside a Domino Job that flows started. One file, Python standard library
only, Python 3.8 and newer (tests/test_domino_runtime.py proves both with `vermin` and a bare interpreter):
a Domino environment has neither this project nor a recent Python, and the job holds no cloud credentials.

The job's command is a short bootstrap (`providers.domino.staging.bootstrap_command`) that downloads the
job's manifest and this file through time-limited presigned URLs, checks this file's sha256, and calls
`main(manifest)`. The runtime then

1. checks that every code file the node uses has the planned sha256 in the job's working directory
   (`DOMINO_WORKING_DIR`), so a project that was not pushed or synced fails before running anything;
2. makes `/workflow/inputs` and `/workflow/outputs` as the job's (non-root) user: create, else `sudo -n`,
   else an unprivileged user+mount namespace with a private folder at /workflow, else one clear line;
3. writes the inputs in Domino's format (values as text, files and folders fetched by presigned GET);
4. runs the command with `bash -c` in the working directory, with `DOMINO_IS_WORKFLOW_JOB=true`;
5. uploads each declared output (a folder as one tar) to its per-attempt staging key by presigned PUT;
6. prints one result line (`::flows-result::` + base64 JSON: size and sha256 of each upload, or an error).

The apply side verifies each staged object against that line, moves it into the content-addressed store
and deletes the staging keys. No URL is ever printed: errors say what failed, never where.

`python3 runtime.py --task SPEC` runs a `@task` function (see `run_task`): the flow file is imported with
small stand-ins for flytekit and the Domino plugin, so neither needs to be installed in the job.
"""
import base64
import datetime
import decimal
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import types
import urllib.error
import urllib.request

RESULT_MARKER = "::flows-result::"
WORKFLOW = "/workflow"
CHUNK = 1 << 20
_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


class JobError(Exception):
    """A problem the runtime reports as the job's one-line error."""


def _clean(text):
    """No URL (presigned URLs carry signatures) ever reaches the log."""
    return _URL.sub("<url>", str(text))


def say(text):
    print("flows: " + _clean(text), flush=True)


def result_line(payload):
    return RESULT_MARKER + base64.b64encode(json.dumps(payload).encode()).decode()


# ---- HTTP through presigned URLs ------------------------------------------------------------------

def _open(request, what):
    try:
        return urllib.request.urlopen(request, timeout=300)
    except urllib.error.HTTPError as e:
        raise JobError("{}: the storage answered HTTP {} (has the node's time limit passed?)".format(what, e.code))
    except urllib.error.URLError as e:
        raise JobError("{}: cannot reach the storage ({}); does the job have network access to it?".format(
            what, _clean(getattr(e, "reason", e))))
    except OSError as e:
        raise JobError("{}: {}".format(what, _clean(e)))


def download(url, dest, what):
    with _open(urllib.request.Request(url), what) as answer, open(dest, "wb") as f:
        shutil.copyfileobj(answer, f, CHUNK)


def upload(url, path, what):
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        request = urllib.request.Request(url, data=f, method="PUT",
                                         headers={"Content-Length": str(size),
                                                  "Content-Type": "application/octet-stream"})
        with _open(request, what) as answer:
            answer.read()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


# ---- 1. the code is the planned code ----------------------------------------------------------------

def verify_code(code, workdir):
    for rel, digest in sorted(code.items()):
        path = os.path.join(workdir, rel)
        if not os.path.isfile(path):
            raise JobError("{} is not in this job's project (working directory {}): push or sync the "
                           "project".format(rel, workdir))
        if sha256_file(path) != digest:
            raise JobError("{} on Domino differs from the planned one: push or sync the project".format(rel))


# ---- 2. /workflow as the job's user -----------------------------------------------------------------

def _writable_workflow(base):
    try:
        for sub in ("inputs", "outputs"):
            os.makedirs(os.path.join(base, sub), exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=os.path.join(base, "outputs"), delete=True)
        probe.close()
        return True
    except OSError:
        return False


def _quiet(argv):
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    return done.returncode == 0, done.stdout.decode(errors="replace").strip().splitlines()[-1:] or [""]


def _namespace_prefix(private):
    """argv that runs a command with `private` mounted at /workflow, in an unprivileged user+mount
    namespace; None when the kernel or the container does not allow it."""
    if not shutil.which("unshare"):
        return None, "unshare: not installed"
    script = 'mount --bind "$0" ' + WORKFLOW + ' || exit 125; exec "$@"'
    prefix = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, private]
    ok, why = _quiet(prefix + ["true"])
    return (prefix, "") if ok else (None, "unshare: " + " ".join(why if isinstance(why, list) else [why]))


def prepare_workflow(base=WORKFLOW):
    """(folder the runtime reads and writes, argv prefix for the command or []): /workflow itself when
    the job's user can have it, else a private folder the command sees at /workflow."""
    tried = []
    if _writable_workflow(base):
        return base, []
    tried.append("mkdir: permission denied")
    if base == WORKFLOW and shutil.which("sudo"):
        ok, why = _quiet(["sudo", "-n", "sh", "-c", 'mkdir -p "$0" && chown "$1:$2" "$0"', base,
                          str(os.getuid()), str(os.getgid())])
        if ok and _writable_workflow(base):
            return base, []
        tried.append("sudo -n: not allowed")
    elif base == WORKFLOW:
        tried.append("sudo: not installed")
    if base == WORKFLOW and os.path.isdir(base):
        private = tempfile.mkdtemp(prefix="flows-workflow-")
        prefix, why = _namespace_prefix(private)
        if prefix is not None and _writable_workflow(private):
            return private, prefix
        tried.append(why or "user namespace: not allowed")
    elif base == WORKFLOW:
        tried.append("user namespace: no /workflow to mount on")
    user = os.environ.get("USER") or str(os.getuid())
    raise JobError("cannot create {} as user {} (uid {}); tried {}. Give the job's user passwordless sudo "
                   "or a writable /workflow in the environment".format(base, user, os.getuid(), "; ".join(tried)))


def _clear(folder):
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


# ---- 3. inputs --------------------------------------------------------------------------------------

def _inside(root, rel):
    path = os.path.normpath(os.path.join(root, rel))
    if not (path + os.sep).startswith(os.path.normpath(root) + os.sep) or path == os.path.normpath(root):
        raise JobError("the name '{}' would be written outside {}".format(rel, root))
    return path


def write_inputs(inputs, folder):
    for item in inputs:
        name, kind = item["name"], item["kind"]
        dest = _inside(folder, name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if kind == "value":
            with open(dest, "wb") as f:
                f.write(item["text"].encode())
        elif kind == "file":
            download(item["url"], dest, "input '{}'".format(name))
        elif kind == "dir":
            os.makedirs(dest, exist_ok=True)
            for entry in item["files"]:
                target = _inside(dest, entry["path"])
                os.makedirs(os.path.dirname(target), exist_ok=True)
                download(entry["url"], target, "input '{}'".format(name))


# ---- 5. outputs -------------------------------------------------------------------------------------

def _find_output(folder, name, warnings):
    path = _inside(folder, name)
    if os.path.lexists(path) or "/" in name:
        return path
    found = [n for n in os.listdir(folder) if n.startswith(name + ".") and len(n) > len(name) + 1]
    if len(found) == 1:
        warnings.append("output '{}': the job wrote '{}'; using it as '{}'".format(name, found[0], name))
        return os.path.join(folder, found[0])
    return path


def _written(folder):
    names = sorted(n + ("/" if os.path.isdir(os.path.join(folder, n)) else "") for n in os.listdir(folder))
    return "the job wrote: " + ", ".join(names[:20]) if names else "the job wrote nothing to /workflow/outputs"


def _within(path, root):
    return path == root or path.startswith(root + os.sep)


def _tar(name, path, scratch, outputs_root):
    """A folder output as one tar of its files. Links are followed when they stay in the outputs folder (as
    the local stores do); a link leading out of it fails the node."""
    root = os.path.realpath(outputs_root)
    target = os.path.join(scratch, "dir-{}.tar".format(len(os.listdir(scratch))))
    seen = set()
    with tarfile.open(target, "w") as tar:
        for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
            real_dir = os.path.realpath(dirpath)
            rel_dir = os.path.relpath(dirpath, path)
            if not _within(real_dir, root):
                raise JobError("output '{}': {} is a link to {}, outside the outputs folder".format(
                    name, os.path.normpath(os.path.join(name, rel_dir)), real_dir))
            if real_dir in seen:  # a link back up the tree: its files are there already
                dirnames[:] = []
                continue
            seen.add(real_dir)
            dirnames.sort()
            for fname in sorted(filenames):
                full = os.path.join(dirpath, fname)
                real = os.path.realpath(full)
                rel = os.path.relpath(full, path)
                if not _within(real, root):
                    raise JobError("output '{}': {}/{} is a link to {}, outside the outputs folder".format(
                        name, name, rel, real))
                if os.path.isfile(real):
                    tar.add(real, arcname=rel, recursive=False)
    return target


def upload_outputs(declared, uploads, folder, scratch, max_value_bytes):
    records, warnings, missing = {}, [], []
    for name, spec in declared.items():
        path = _find_output(folder, name, warnings)
        if not os.path.lexists(path):
            if spec.get("optional"):
                records[name] = {"missing": True}
            else:
                missing.append(name)
            continue
        if os.path.realpath(path) != path and not os.path.realpath(path).startswith(os.path.realpath(folder) + os.sep):
            raise JobError("output '{}' points outside the outputs folder".format(name))
        kind = spec["kind"]
        if kind == "dir":
            if not os.path.isdir(path):
                raise JobError("output '{}' is declared a directory but the job wrote a file".format(name))
            source = _tar(name, path, scratch, folder)
        else:
            if not os.path.isfile(path):
                raise JobError("output '{}' is declared {} but the job wrote a directory".format(name, spec["type"]))
            if kind == "value" and os.path.getsize(path) > max_value_bytes:
                raise JobError("output '{}' is {} bytes, too big for a {} value (declare it as a file)".format(
                    name, os.path.getsize(path), spec["type"]))
            source = path
        upload(uploads[name], source, "output '{}'".format(name))
        records[name] = {"size": os.path.getsize(source), "sha256": sha256_file(source),
                         "written_as": os.path.basename(path)}
    if missing:
        names = ", ".join("'{}'".format(m) for m in missing)
        raise JobError("missing output{} {}; {}".format("s" if len(missing) > 1 else "", names, _written(folder)))
    return records, warnings


# ---- the job ----------------------------------------------------------------------------------------

def main(manifest, runtime_file=None):
    """Run one node's job from its manifest; print the result line; return the exit code."""
    workdir = os.environ.get("DOMINO_WORKING_DIR") or os.getcwd()
    say("node {} (Python {}, working directory {})".format(manifest.get("address"), sys.version.split()[0],
                                                           workdir))
    try:
        verify_code(manifest.get("code") or {}, workdir)
        folder, prefix = prepare_workflow(manifest.get("workflow_dir") or WORKFLOW)
        if prefix:
            say("/workflow is a private folder in a user namespace (uid {} cannot create it)".format(os.getuid()))
        inputs_dir, outputs_dir = os.path.join(folder, "inputs"), os.path.join(folder, "outputs")
        _clear(inputs_dir)
        _clear(outputs_dir)
        write_inputs(manifest.get("inputs") or [], inputs_dir)
    except JobError as e:
        print(result_line({"error": str(e)}), flush=True)
        return 2
    seen = manifest.get("workflow_dir") or WORKFLOW
    env = dict(os.environ)
    env.update(manifest.get("env") or {})
    env.update({"FLOWS_INPUTS_DIR": seen + "/inputs", "FLOWS_OUTPUTS_DIR": seen + "/outputs",
                "DOMINO_IS_WORKFLOW_JOB": "true", "PYTHONUNBUFFERED": "1"})
    command = manifest["command"]
    task = manifest.get("task")
    if task is not None:
        if runtime_file is None:
            print(result_line({"error": "a @task job needs the runtime as a file"}), flush=True)
            return 2
        command = "{} -u {} --task {}".format(_sh(sys.executable), _sh(runtime_file), _sh(json.dumps(task)))
    code = subprocess.run(prefix + ["bash", "-c", command], cwd=workdir, env=env).returncode
    sys.stdout.flush()
    if code != 0:
        why = "exit code {}".format(code) if code > 0 else "killed by signal {}".format(-code)
        if prefix and code == 125:
            why = "could not mount a private /workflow in the job's namespace"
        print(result_line({"error": why}), flush=True)
        return code if code > 0 else 1
    scratch = tempfile.mkdtemp(prefix="flows-upload-")
    try:
        records, warnings = upload_outputs(manifest.get("outputs") or {}, manifest.get("uploads") or {},
                                           outputs_dir, scratch, int(manifest.get("max_value_bytes") or 1 << 20))
    except (JobError, OSError) as e:
        print(result_line({"error": _clean(e)}), flush=True)
        return 3
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(result_line({"outputs": records, "warnings": warnings}), flush=True)
    return 0


def _sh(word):
    return "'" + word.replace("'", "'\"'\"'") + "'"


# ---- @task functions without flytekit -----------------------------------------------------------------

class _Anything:
    """Whatever a flow file builds at import time that a task body does not need (DominoJobTask, Artifact,
    DominoJobConfig, ...): callable, indexable, with any attribute."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Anything()

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()

    def __getitem__(self, key):
        return _Anything()

    def __iter__(self):
        return iter(())

    def __mro_entries__(self, bases):
        return (object,)


def _decorator(*args, **kwargs):
    """`@task`, `@task(...)`, `@workflow`: the function itself."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda fn: fn


class FlyteFile(str):
    def __class_getitem__(cls, item):
        return cls

    def __new__(cls, path="", *args, **kwargs):
        return str.__new__(cls, os.fspath(path))

    @property
    def path(self):
        return str(self)

    def download(self):
        return str(self)

    def __fspath__(self):
        return str(self)


class FlyteDirectory(FlyteFile):
    pass


class _Shim(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()


_SHIMMED = ("flytekit", "flytekit.types", "flytekit.types.file", "flytekit.types.directory", "flytekitplugins",
            "flytekitplugins.domino", "flytekitplugins.domino.helpers", "flytekitplugins.domino.task",
            "flytekitplugins.domino.artifact", "domino", "domino.flyte", "domino.flyte.task", "reconcile")


def install_shims():
    for name in _SHIMMED:
        module = _Shim(name)
        module.__path__ = []
        for attr in ("task", "workflow", "dynamic", "eager", "map_task", "reference_task"):
            setattr(module, attr, _decorator)
        module.FlyteFile, module.FlyteDirectory = FlyteFile, FlyteDirectory
        sys.modules[name] = module


_GO = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(text):
    try:
        return datetime.timedelta(seconds=float(text))
    except ValueError:
        pass
    sign = -1 if text.startswith("-") else 1
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|ms|s|m|h)", text.lstrip("+-"))
    return sign * datetime.timedelta(seconds=sum(float(n) * _GO[u] for n, u in parts))


def _datetime(text):
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return datetime.datetime.fromisoformat(text)


def _inner(t):
    return t[len("optional["):-1] if t.startswith("optional[") else t


def _is_file(t):
    return t == "file" or t.startswith("file[")


def _is_dir(t):
    return t == "dir" or t.startswith("dir[")


def read_value(t, path):
    inner = _inner(t)
    if not os.path.exists(path):
        if t.startswith("optional["):
            return None
        raise JobError("input '{}' is missing".format(os.path.basename(path)))
    if _is_dir(inner):
        return FlyteDirectory(path)
    if _is_file(inner):
        return FlyteFile(path)
    with open(path, "rb") as f:
        text = f.read().decode()
    if t.startswith("optional[") and text.strip() in ("", "null"):
        return None
    if inner == "str":
        return text
    if inner.startswith("enum["):  # Flyte's string enum: one of its values, as text
        return text.strip()
    text = text.strip()
    if inner == "bool":
        return text in ("1", "t", "T", "TRUE", "true", "True")
    if inner == "int":
        return int(text)
    if inner == "float":
        return float(text)
    if inner == "datetime":
        return _datetime(text)
    if inner == "date":
        return datetime.date.fromisoformat(text)
    if inner == "timedelta":
        return _duration(text)
    return json.loads(text)


def _go_float(x):
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "+Inf" if x > 0 else "-Inf"
    text = format(decimal.Decimal(repr(float(x))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _go_duration(td):
    micro = (td.days * 86400 + td.seconds) * 10 ** 6 + td.microseconds
    if micro == 0:
        return "0s"
    sign, micro = ("-" if micro < 0 else ""), abs(micro)
    if micro < 10 ** 6:
        return sign + (_frac(micro, 1000) + "ms" if micro >= 1000 else str(micro) + "\u00b5s")
    hours, rest = divmod(micro, 3600 * 10 ** 6)
    minutes, rest = divmod(rest, 60 * 10 ** 6)
    return sign + ("{}h".format(hours) if hours else "") + ("{}m".format(minutes) if hours or minutes else "") + \
        _frac(rest, 10 ** 6) + "s"


def _frac(value, unit):
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    return "{}.{}".format(whole, str(rest).rjust(len(str(unit)) - 1, "0").rstrip("0"))


def _jsonable(value):
    if hasattr(value, "__dataclass_fields__"):
        return {k: _jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def format_value(t, value):
    """Domino's text for a value (the same bytes as providers.pytask.format_value)."""
    if value is None:
        return b"null"
    inner = _inner(t)
    if inner == "str":
        return str(value).encode()
    if inner.startswith("enum["):
        return str(getattr(value, "value", value)).encode()
    if inner == "bool":
        return b"true" if value else b"false"
    if inner == "int":
        return str(int(value)).encode()
    if inner == "float":
        return _go_float(float(value)).encode()
    if inner == "datetime":
        when = value if isinstance(value, datetime.datetime) else _datetime(str(value))
        when = when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)
        return when.isoformat().replace("+00:00", "Z").encode()
    if inner == "date":
        return (value if isinstance(value, str) else value.isoformat()).encode()
    if inner == "timedelta":
        td = value if isinstance(value, datetime.timedelta) else datetime.timedelta(seconds=float(value))
        return _go_duration(td).encode()
    return json.dumps(_jsonable(value), ensure_ascii=False).encode()


def write_value(name, t, value, outputs_dir):
    target = os.path.join(outputs_dir, name)
    if value is None and not t.startswith("optional["):
        raise JobError("output '{}' is None but is declared {}".format(name, t))
    if value is not None and (_is_file(_inner(t)) or _is_dir(_inner(t))):
        source = os.fspath(value)
        if not os.path.exists(source):
            raise JobError("output '{}': the task returned '{}', which does not exist".format(name, source))
        if os.path.abspath(source) == os.path.abspath(target):
            return
        if _is_dir(_inner(t)):
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
        return
    with open(target, "wb") as f:
        f.write(format_value(t, value))


def run_task(spec):
    """Import the flow file (relative to the working directory) and call the task function with the inputs
    of /workflow/inputs; write its outputs to /workflow/outputs (`o0, o1, ...` or the NamedTuple's fields)."""
    workdir = os.getcwd()
    flow_file = os.path.join(workdir, spec["file"])
    install_shims()
    sys.path[:0] = [os.path.dirname(flow_file), workdir]
    module_spec = importlib.util.spec_from_file_location("flows_task_module", flow_file)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules["flows_task_module"] = module
    module_spec.loader.exec_module(module)
    fn = module
    for part in spec["qualname"].split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise JobError("no function '{}' in {}".format(spec["qualname"], spec["file"]))
    fn = getattr(fn, "fn", fn)
    inputs_dir, outputs_dir = os.environ["FLOWS_INPUTS_DIR"], os.environ["FLOWS_OUTPUTS_DIR"]
    try:
        kwargs = {n: read_value(t, os.path.join(inputs_dir, n)) for n, t in spec["inputs"].items()}
    except (ValueError, UnicodeDecodeError) as e:
        raise JobError("an input does not parse: {}".format(e))
    result = fn(**kwargs)
    names = list(spec["outputs"])
    if not names:
        return
    fields = getattr(result, "_fields", None)
    if fields is not None and all(n in fields for n in names):
        values = {n: getattr(result, n) for n in names}
    elif len(names) == 1:
        values = {names[0]: result}
    elif isinstance(result, tuple) and len(result) == len(names):
        values = dict(zip(names, result))
    else:
        raise JobError("task '{}' returned {} values but declares {} outputs".format(
            spec["qualname"], len(result) if isinstance(result, tuple) else 1, len(names)))
    for name, value in values.items():
        write_value(name, spec["outputs"][name], value, outputs_dir)


def _cli(argv):
    if len(argv) == 2 and argv[0] == "--task":
        try:
            run_task(json.loads(argv[1]))
        except JobError as e:
            print("flows: " + _clean(e), file=sys.stderr)
            return 2
        return 0
    if len(argv) == 2 and argv[0] == "--manifest":
        with open(argv[1]) as f:
            return main(json.load(f), os.path.abspath(__file__))
    print("usage: runtime.py --manifest FILE | --task SPEC", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_cli(sys.argv[1:]))
