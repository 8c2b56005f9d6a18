"""S3 messages (issue 17): a bucket without versioning is said once, where it matters (`state history`); an
invalid bucket name is one line, not botocore's multi-line regex."""
from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures.projects import flows
from tests.fixtures.s3 import S3Env, aws_env
from tests.test_s3_cli import INPUTS, _s3_project


def test_state_history_on_a_bucket_without_versioning_warns_once(tmp_path: Path, s3: S3Env) -> None:
    s3.client.put_bucket_versioning(Bucket=s3.bucket, VersioningConfiguration={"Status": "Suspended"})
    root = _s3_project(tmp_path / "p", s3)
    assert flows("apply", "flow.py", "wf", *INPUTS, "--auto-approve", cwd=root, env=aws_env()).code == 0
    r = flows("state", "history", "--json", cwd=root, env=aws_env())
    assert r.code == 0, r.text
    assert [e["version_id"] for e in json.loads(r.out)] == ["null"]
    warning = [line for line in r.err.splitlines() if line.startswith("Warning:")]
    assert len(warning) == 1 and "without versioning" in warning[0] and "put-bucket-versioning" in warning[0]


def test_state_history_on_a_versioned_bucket_says_nothing_more(tmp_path: Path, s3: S3Env) -> None:
    root = _s3_project(tmp_path / "p", s3)
    assert flows("apply", "flow.py", "wf", *INPUTS, "--auto-approve", cwd=root, env=aws_env()).code == 0
    r = flows("state", "history", cwd=root, env=aws_env())
    assert r.code == 0 and r.err == "", r.text


def test_an_invalid_bucket_name_is_one_line(tmp_path: Path, s3: S3Env) -> None:
    root = _s3_project(tmp_path / "p", s3)
    toml = root / "flows.toml"
    toml.write_text(toml.read_text().replace(f'bucket = "{s3.bucket}"', 'bucket = "no such/bucket!"', 1))
    r = flows("plan", "flow.py", "wf", *INPUTS, cwd=root, env=aws_env())
    assert r.code == 1 and "Traceback" not in r.text
    assert r.err == (f"Error: {toml}: [tool.flows] backend.bucket: 'no such/bucket!' is not an S3 bucket name "
                     "(letters, digits, '.', '-', '_'; AWS wants 3-63 lowercase letters, digits, '.' and '-')\n")
