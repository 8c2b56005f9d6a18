"""The apply side of a Domino job's data: presigned URLs out, verified outputs in.

A job holds no credentials. For each start flows writes a manifest under a staging prefix of the blob
store (`<blobs>/staging/<tag>/`, the tag being the attempt's marker and a per-start nonce), and the job's
command is a short bootstrap (`bootstrap_command`) carrying one presigned GET URL: the manifest's. The
manifest names the in-job runtime (a presigned GET of `runtime.py`, stored content-addressed, with its
sha256), presigned GETs of every input, and one presigned PUT per declared output, to
`<staging>/out/<name>`. URLs expire after the node's timeout plus
a margin. After the job, `collect` checks each staged object against the size and sha256 the job
reported, hands the files to `providers.jobio` (which parses values and stores everything
content-addressed), and `clear` deletes the attempt's staging keys, kept or not.

No URL leaves this module except inside the job's command and the manifest: never in a log line, an
error, the plan, the state or a run record.
"""
from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import tarfile
import threading
from pathlib import Path
from typing import Any

from providers import jobio, launcher, pytask
from providers.base import InputValue, JobSpec
from providers.blobs.base import ensure_inside
from providers.code_files import command_files, task_files
from vocab.errors import ProviderError
from vocab.flytetypes import is_blob, is_dir
from state.model import OutputRecord
from state.s3_client import make_client

RUNTIME_FILE = Path(__file__).with_name("runtime.py")
DEFAULT_TIMEOUT = 24 * 3600.0   # a node without a timeout: its URLs still expire
URL_MARGIN = 3600.0             # queueing and start-up on top of the node's own time limit
MAX_EXPIRY = 7 * 24 * 3600      # the longest a SigV4 presigned URL may live
# Domino documents no limit for commandToRun; we keep ours well below what proxies take in a JSON body.
MAX_COMMAND_BYTES = 8192

# What the job runs first: python3 (else python) fetches the manifest and the runtime, checks the
# runtime's sha256 and calls its main(), then removes the runtime's folder (a machine that keeps /tmp would
# gather one per job). Python 3.8 syntax only; no quote characters of the shell's.
BOOTSTRAP = (
    "import sys\n"
    "if sys.version_info<(3,8):sys.exit('flows: the job needs Python 3.8 or newer, '+sys.executable+"
    "' is '+sys.version.split()[0])\n"
    "import json,hashlib,os,tempfile,urllib.request as u\n"
    "m=json.load(u.urlopen(sys.argv[1],timeout=300))\n"
    "c=u.urlopen(m['runtime']['url'],timeout=300).read()\n"
    "if hashlib.sha256(c).hexdigest()!=m['runtime']['sha256']:sys.exit('flows: the runtime this job "
    "downloaded is not the one flows sent')\n"
    "d=tempfile.mkdtemp(prefix='flows-runtime-');f=os.path.join(d,'flows_runtime.py')\n"
    "try:\n"
    " with open(f,'wb') as o:o.write(c)\n"
    " g={'__name__':'flows_runtime','__file__':f};exec(compile(c,f,'exec'),g);r=g['main'](m,f)\n"
    "finally:\n"
    " import shutil;shutil.rmtree(d,True)\n"
    "sys.exit(r)\n")
NO_PYTHON = ("flows: this job has no python3 or python on its PATH ($PATH); the environment needs a "
             "Python 3.8 or newer for the flows runtime")


def attempt_marker(run_id: str, address: str, attempt: int) -> str:
    """The attempt's marker: with a per-start nonce it tags the job's title (which Domino keeps verbatim) and
    names its staging prefix, so recover finds the job from (run, node, attempt) alone."""
    return "flows-" + hashlib.sha256(f"{run_id}\0{address}\0{attempt}".encode()).hexdigest()[:16]


def bootstrap_command(manifest_url: str, pythons: list[str]) -> str:
    """`sh -c` (Domino may or may not run the command through a shell; this works either way)."""
    loop = (f"for p in {' '.join(shlex.quote(p) for p in pythons)}; do "
            'if command -v "$p" >/dev/null 2>&1; then exec "$p" -c "$0" "$1"; fi; done; '
            f'echo "{NO_PYTHON}"; exit 127')
    return " ".join(["sh", "-c", shlex.quote(loop), shlex.quote(BOOTSTRAP), shlex.quote(manifest_url)])


def url_lifetime(timeout_seconds: float | None) -> int:
    return int(min(MAX_EXPIRY, (timeout_seconds or DEFAULT_TIMEOUT) + URL_MARGIN))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def code_files_of(job: JobSpec) -> list[str]:
    """Project-relative paths of the code a job runs: the files its command names, or a @task's flow file and
    the project modules it imports."""
    root = Path(job.project_root)
    if job.kind == "python" and job.python:
        return task_files(Path(job.python["file"]), job.python["qualname"], root)
    return command_files(job.command, root)


class Staging:
    """Presigned URLs over an S3 blob store (`providers.blobs.s3.S3BlobStore`)."""

    def __init__(self, blobs: Any) -> None:
        self.blobs = blobs
        self.s3 = blobs.s3
        self.bucket = blobs.bucket
        self._presigner: Any = None
        self.workflow_dir: str | None = None  # tests: the job's /workflow elsewhere (a job uses /workflow)
        self._runtime: tuple[str, str] | None = None
        self._lock = threading.Lock()
        self._lister: Any = None

    def _prefix(self, tag: str) -> str:
        return f"{self.blobs.prefix}staging/{tag}/"

    def _listing(self, tag: str) -> Any:
        """The pages of the attempt's staging keys, through one paginator made once (clears run on two threads: a
        client's first paginator loads botocore's paginator model, and two at once each loaded it)."""
        with self._lock:
            if self._lister is None:
                self._lister = self.s3.get_paginator("list_objects_v2")
        return self._lister.paginate(Bucket=self.bucket, Prefix=self._prefix(tag))

    def _signer(self) -> Any:
        """A client that signs URLs with SigV4 (what every region takes; a SigV2 URL may be refused)."""
        with self._lock:
            if self._presigner is None:  # (no region anywhere: boto3 signs for us-east-1)
                settings = getattr(self.blobs, "settings", {})
                self._presigner = make_client(region=settings.get("region"), endpoint_url=settings.get("endpoint_url"),
                                              profile=settings.get("profile"), signature_version="s3v4",
                                              transfers=False)
            return self._presigner

    def _get(self, key: str, expires: int, bucket: str | None = None) -> str:
        return str(self._signer().generate_presigned_url("get_object", Params={"Bucket": bucket or self.bucket, "Key": key},
                                                  ExpiresIn=expires))

    def _put(self, key: str, expires: int) -> str:
        return str(self._signer().generate_presigned_url("put_object", Params={"Bucket": self.bucket, "Key": key},
                                                  ExpiresIn=expires))

    def _key_of(self, uri: str) -> tuple[str, str]:
        bucket, _, key = uri[len("s3://"):].partition("/")
        return bucket, key

    def _runtime_blob(self) -> tuple[str, str]:
        with self._lock:
            if self._runtime is None:
                data = RUNTIME_FILE.read_bytes()
                stored = self.blobs.put_bytes(data)
                self._runtime = (stored.uri, hashlib.sha256(data).hexdigest())
            return self._runtime

    # -- before the job ------------------------------------------------------------------------------
    def _input(self, name: str, value: InputValue, expires: int) -> dict[str, Any]:
        t = pytask.inner_type(value.type)
        if not is_blob(t):
            return {"name": name, "kind": "value", "text": pytask.format_value(value.type, value.value).decode()}
        if not value.uri:
            return {"name": name, "kind": "none"}
        bucket, key = self._key_of(value.uri)
        if not is_dir(t):
            return {"name": name, "kind": "file", "url": self._get(key, expires, bucket)}
        files = json.loads(self.blobs.read_bytes(value.uri))["files"]
        return {"name": name, "kind": "dir",
                "files": [{"path": rel, "url": self._get(self.blobs._key(str(meta["digest"])), expires)}
                          for rel, meta in sorted(files.items())]}

    def prepare(self, job: JobSpec, inputs: dict[str, InputValue], tag: str, pythons: list[str],
                env: dict[str, str]) -> str:
        """Write the attempt's manifest; return the job's command (the bootstrap with its one URL)."""
        expires = url_lifetime(job.timeout_seconds)
        root = Path(job.project_root)
        code = {}
        for rel in code_files_of(job):
            try:
                code[rel] = _sha256(root / rel)
            except OSError as e:
                raise ProviderError(f"cannot read {rel}: {e.strerror}", node=job.address) from None
        runtime_uri, runtime_sha = self._runtime_blob()
        outputs = {name: {"type": t, "optional": t.startswith("optional["),
                          "kind": "dir" if is_dir(pytask.inner_type(t)) else
                          "file" if is_blob(pytask.inner_type(t)) else "value"}
                   for name, t in job.outputs.items()}
        prefix = self._prefix(tag)
        manifest: dict[str, Any] = {
            "version": 1, "address": job.address, "tag": tag, "env": env, "code": code,
            "runtime": {"url": self._get(self._key_of(runtime_uri)[1], expires), "sha256": runtime_sha},
            "inputs": [self._input(n, v, expires) for n, v in inputs.items()],
            "outputs": outputs, "max_value_bytes": jobio.MAX_VALUE_BYTES,
            "uploads": {name: self._put(prefix + "out/" + name, expires) for name in outputs},
            "command": launcher.launch(job.command) if job.kind != "python" else "",
        }
        if self.workflow_dir:
            manifest["workflow_dir"] = self.workflow_dir
        if job.kind == "python" and job.python:
            manifest["task"] = {"file": code_files_of(job)[0], "qualname": job.python["qualname"],
                                "inputs": {n: v.type for n, v in inputs.items()}, "outputs": dict(job.outputs)}
        key = prefix + "manifest.json"
        command = bootstrap_command(self._get(key, expires), pythons)
        if len(command.encode()) > MAX_COMMAND_BYTES:
            raise ProviderError(f"the job's command would be {len(command.encode())} bytes, over the "
                                f"{MAX_COMMAND_BYTES} flows sends to Domino", node=job.address)
        with self.blobs._errors(f"s3://{self.bucket}/{key}", "writing the job's manifest"):
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(manifest).encode())
        return command

    # -- after the job -------------------------------------------------------------------------------
    def collect(self, job: JobSpec, tag: str, result: dict[str, Any],
                scratch: Path) -> tuple[dict[str, OutputRecord], list[str]]:
        """Verify each staged output against the job's report, then store it content-addressed."""
        reported = result.get("outputs") or {}
        unknown = sorted(set(reported) - set(job.outputs))
        if unknown:
            raise ProviderError(f"the job reported outputs it does not declare: {', '.join(unknown)}", node=job.address)
        outputs_dir = scratch / "outputs"
        outputs_dir.mkdir(parents=True, exist_ok=True)
        prefix = self._prefix(tag)
        for name, info in reported.items():
            if info.get("missing"):
                continue
            staged = scratch / "staged" / name
            staged.parent.mkdir(parents=True, exist_ok=True)
            key = prefix + "out/" + name
            with self.blobs._errors(f"s3://{self.bucket}/{key}", f"fetching the staged output '{name}'"):
                self.blobs.fetch(key, staged, expected_size=info.get("size"))
            size, digest = staged.stat().st_size, _sha256(staged)
            if size != info.get("size") or digest != info.get("sha256"):
                raise ProviderError(f"output '{name}': the staged upload ({size} bytes) is not what the job sent "
                                    f"({info.get('size')} bytes, sha256 {str(info.get('sha256'))[:12]}…); not kept",
                                    node=job.address)
            target = ensure_inside(outputs_dir, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            if is_dir(pytask.inner_type(job.outputs[name])):
                _untar(staged, target, name)
            else:
                shutil.move(str(staged), target)
        try:
            return jobio.collect_outputs(job.outputs, outputs_dir, self.blobs, consume=True)
        except jobio.OutputsError as e:
            raise ProviderError(str(e), node=job.address) from None

    def clear(self, tag: str) -> None:
        """Delete every staging key of the attempt: what was kept is in the store by now."""
        prefix = self._prefix(tag)
        with self.blobs._errors(f"s3://{self.bucket}/{prefix}", "deleting the job's staging keys"):
            pages = self._listing(tag)
            keys = [{"Key": o["Key"]} for page in pages for o in page.get("Contents", [])]
            for i in range(0, len(keys), 1000):
                self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys[i:i + 1000], "Quiet": True})

    def staged_keys(self, tag: str) -> list[str]:
        return [o["Key"] for page in self._listing(tag) for o in page.get("Contents", [])]


def _untar(archive: Path, dest: Path, name: str) -> None:
    """A folder output, from the job's tar: regular files only, every name inside `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for member in tar:
            if not member.isfile():
                continue
            try:
                target = ensure_inside(dest, member.name)
            except ValueError:
                raise ProviderError(f"output '{name}': the job's folder names '{member.name}', outside the "
                                    "folder; not kept") from None
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            with source, open(target, "wb") as f:
                shutil.copyfileobj(source, f)
