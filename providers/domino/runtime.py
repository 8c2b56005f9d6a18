"""The in-job runtime: what runs inside a Domino Job started by the Domino provider.

    python -m providers.domino.runtime --manifest s3://bucket/blobs/ab/<digest> -- <original command>

It reads the manifest from the S3 blob store, writes the inputs to `/workflow/inputs/<name>` in the
formats Domino uses, runs the command with `bash -c`, checks `/workflow/outputs/<name>`, uploads them
content-addressed, and prints one result line (see provider.encode_result) that the provider reads
from the job's log. The environment needs this package installed and S3 access (the usual AWS
credentials of the job, e.g. an instance role); no secret travels in the manifest.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from providers import jobio
from providers.base import InputValue
from providers.domino.provider import encode_result

WORKFLOW = Path(os.environ.get("FLOWS_WORKFLOW_DIR", "/workflow"))


def _blob_store(manifest: dict[str, Any]) -> Any:
    from providers.blobs.s3 import S3BlobStore
    settings = manifest.get("blobs") or {}
    return S3BlobStore(manifest["blobs_url"], region=settings.get("region"), endpoint_url=settings.get("endpoint_url"))


def _read_manifest(uri: str, endpoint_url: str | None) -> dict[str, Any]:
    from providers.blobs.s3 import S3BlobStore
    store = S3BlobStore(uri.rsplit("/", 2)[0] + "/", endpoint_url=endpoint_url)
    return json.loads(store.read_bytes(uri))


def run(manifest_uri: str, command: str, endpoint_url: str | None = None) -> int:
    """Materialise inputs, run, collect outputs; print the result line. Returns the exit code."""
    try:
        manifest = _read_manifest(manifest_uri, endpoint_url)
        blobs = _blob_store(manifest)
        inputs = {k: InputValue.model_validate(v) for k, v in manifest["inputs"].items()}
        inputs_dir, outputs_dir = WORKFLOW / "inputs", WORKFLOW / "outputs"
        inputs_dir.mkdir(parents=True, exist_ok=True)
        outputs_dir.mkdir(parents=True, exist_ok=True)
        jobio.write_inputs(inputs, inputs_dir, blobs)
    except Exception as e:  # the job log is the only channel back: say it in one line
        print(encode_result({"error": f"flows runtime could not prepare the inputs: {e}"}), flush=True)
        return 2
    env = {**os.environ, "FLOWS_INPUTS_DIR": str(inputs_dir), "FLOWS_OUTPUTS_DIR": str(outputs_dir)}
    code = subprocess.run(["bash", "-c", command], env=env).returncode
    if code != 0:
        print(encode_result({"error": f"exit code {code}"}), flush=True)
        return code
    try:
        records, warnings = jobio.collect_outputs(manifest["outputs"], outputs_dir, blobs)
    except Exception as e:
        print(encode_result({"error": str(e)}), flush=True)
        return 3
    print(encode_result({"outputs": {k: r.model_dump(mode="json") for k, r in records.items()},
                         "warnings": warnings}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m providers.domino.runtime",
                                     description="flows in-job runtime for Domino Jobs")
    parser.add_argument("--manifest", required=True, help="s3:// URI of the job manifest")
    parser.add_argument("--endpoint-url", default=None, help="S3 endpoint (only for S3-compatible stores)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the job's own command, as one argument")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command after --")
    # The provider passes the command quoted as one argument; joining keeps older callers working.
    return run(args.manifest, " ".join(command), args.endpoint_url)


if __name__ == "__main__":
    sys.exit(main())
