"""The S3 blob store against moto's S3 server: content addressing, dedup, directories, batch checks, gc, errors."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from providers.blobs import s3 as s3_blobs
from providers.blobs.local import LocalBlobStore
from vocab.digest import dir_digest, file_digest, manifest_bytes
from vocab.errors import ConfigError, ProviderError
from tests.fixtures.s3 import Canned, FaultProxy, S3Env


def versions(env: S3Env, key: str) -> int:
    resp = env.client.list_object_versions(Bucket=env.bucket, Prefix=key)
    return len([v for v in resp.get("Versions", []) if v["Key"] == key])


def make_tree(root: Path) -> Path:
    for rel, text in {"a.csv": "1,2\n", "sub/b.txt": "bee", "sub/deeper/c.bin": "c" * 1000, "dup.csv": "1,2\n"}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_put_and_get_a_file_under_its_digest(s3: S3Env, tmp_path: Path) -> None:
    src = tmp_path / "out.csv"
    src.write_text("x,y\n1,2\n")
    store = s3.blobs()
    blob = store.put_file(src)
    digest = file_digest(src)
    assert blob.digest == digest and blob.size == src.stat().st_size
    assert blob.uri == f"s3://{s3.bucket}/blobs/{digest[:2]}/{digest}"
    assert s3.keys() == [f"blobs/{digest[:2]}/{digest}"]
    store.get_file(blob.uri, tmp_path / "back" / "out.csv")
    assert (tmp_path / "back" / "out.csv").read_bytes() == src.read_bytes()
    assert store.read_bytes(blob.uri) == src.read_bytes()


def test_an_existing_blob_is_not_uploaded_again(s3: S3Env, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"same bytes")
    store = s3.blobs()
    first = store.put_file(src)
    again = s3.blobs().put_file(src)  # another process, same content
    assert first == again
    assert store.put_bytes(b"same bytes") == first
    assert versions(s3, first.uri.split("/", 3)[3]) == 1  # the bucket is versioned: a second PUT would show


def test_a_small_blob_is_one_create_only_request_and_falls_back_where_that_is_refused(
        s3: S3Env, fault_proxy: FaultProxy, tmp_path: Path) -> None:
    """A small blob: one PUT with If-None-Match: * (a HEAD and a PUT before); an existing key answers 412 and
    nothing is written again. A store that refuses conditional writes (501), or a concurrent conditional write
    (409), is asked with a HEAD and written the old way."""
    store = s3_blobs.S3BlobStore(f"s3://{s3.bucket}/blobs/", region="us-east-1", endpoint_url=fault_proxy.endpoint,
                                 max_attempts=1)
    src = tmp_path / "f"
    src.write_bytes(b"one request")
    before = fault_proxy.requests
    blob = store.put_file(src)
    assert fault_proxy.requests - before == 1
    assert store.put_file(src) == blob and store.put_bytes(b"one request") == blob
    assert fault_proxy.requests - before == 3 and versions(s3, blob.uri.split("/", 3)[3]) == 1
    for refusal in (Canned(501, "NotImplemented"), Canned(409, "ConditionalRequestConflict")):
        data = f"refused by {refusal.code}".encode()
        fault_proxy.queue.append(refusal)
        before = fault_proxy.requests
        stored = store.put_bytes(data)
        assert fault_proxy.requests - before == 3  # the refused PUT, a HEAD (404), the PUT
        assert store.read_bytes(stored.uri) == data


def test_big_files_go_multipart(s3: S3Env, tmp_path: Path) -> None:
    src = tmp_path / "big"
    src.write_bytes(os.urandom(11 * s3_blobs.MB))
    store = s3.blobs(multipart_threshold=5 * s3_blobs.MB, multipart_chunksize=5 * s3_blobs.MB)
    blob = store.put_file(src)
    etag = s3.client.head_object(Bucket=s3.bucket, Key=blob.uri.split("/", 3)[3])["ETag"]
    assert etag.strip('"').endswith("-3")  # S3 marks a multipart object's ETag with its part count
    store.get_file(blob.uri, tmp_path / "big.back")
    assert file_digest(tmp_path / "big.back") == blob.digest


def test_a_directory_is_file_blobs_plus_the_local_stores_manifest(s3: S3Env, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    store = s3.blobs()
    blob = store.put_dir(tree)
    assert blob.digest == dir_digest(tree) == LocalBlobStore(tmp_path / "local").put_dir(tree).digest
    assert blob.size == sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    assert len(s3.keys()) == 4  # 3 distinct contents (dup.csv = a.csv) + the manifest
    store.get_dir(blob.uri, tmp_path / "back")
    got = {p.relative_to(tmp_path / "back").as_posix(): p.read_bytes()
           for p in (tmp_path / "back").rglob("*") if p.is_file()}
    want = {p.relative_to(tree).as_posix(): p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    assert got == want


def test_exists_checks_many_blobs_at_once(s3: S3Env, tmp_path: Path) -> None:
    store = s3.blobs()
    present = [store.put_bytes(f"blob {i}".encode()).uri for i in range(20)]
    absent = [f"s3://{s3.bucket}/blobs/ab/ab{'0' * 62}{i}" for i in range(20)]
    answer = store.exists(present + absent + ["/some/local/path"])
    assert answer == {**{u: True for u in present}, **{u: False for u in absent}, "/some/local/path": False}
    assert store.exists([]) == {}


def test_many_blobs_are_listed_and_others_headed_with_the_same_answer(s3: S3Env) -> None:
    """Past LIST_FROM blobs of the store, `exists` lists the store instead of one HEAD each; blobs of another
    store (another prefix) are still HEADed; a plain botocore client (the no-op plan's) answers the same."""
    from providers.blobs import s3_presence
    from state.s3_client import make_client

    store, other = s3.blobs(), s3.blobs("elsewhere/")
    n = s3_presence.LIST_FROM + 6
    present = [store.put_bytes(f"blob {i}".encode()).uri for i in range(n)]
    absent = [f"s3://{s3.bucket}/blobs/{h}{h}/{h * 64}" for h in "0123456789abcdef"]
    foreign = [other.put_bytes(b"kept elsewhere").uri, f"s3://{s3.bucket}/elsewhere/00/{'0' * 64}"]
    s3.client.delete_object(Bucket=s3.bucket, Key=present[0][len(f"s3://{s3.bucket}/"):])  # a delete marker
    asked = present + absent + foreign + ["/some/local/path"]
    want = {**{u: True for u in present[1:]}, present[0]: False, **{u: False for u in absent},
            foreign[0]: True, foreign[1]: False, "/some/local/path": False}
    assert store.exists(asked) == want
    plain = make_client(region=store.settings["region"], endpoint_url=s3.endpoint, profile=None, transfers=False)
    assert not hasattr(plain, "upload_file")  # botocore's own client: boto3 was not needed
    assert s3_presence.exists(plain, s3.bucket, "blobs/", asked) == want


class _PaginatorsCounted:
    """A client that counts `get_paginator` calls and passes everything else through."""

    def __init__(self, client: Any) -> None:
        self.client, self.paginators = client, 0

    def get_paginator(self, name: str) -> Any:
        self.paginators += 1
        return self.client.get_paginator(name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_listing_the_store_makes_one_paginator_for_its_parallel_lists(s3: S3Env) -> None:
    """The 16 parallel LISTs share one paginator, made before they start: a fresh client's first paginator loads
    botocore's paginator model (after walking its data folders), and 16 threads each asking for one at once all
    loaded it (about a CPU-second on a slow machine: half of a 200-node no-op plan on Domino)."""
    from providers.blobs import s3_presence
    from state.s3_client import make_client

    store = s3.blobs()
    uris = [store.put_bytes(f"blob {i}".encode()).uri for i in range(s3_presence.LIST_FROM)]
    plain = make_client(region=store.settings["region"], endpoint_url=s3.endpoint, profile=None, transfers=False)
    counted = _PaginatorsCounted(plain)
    assert s3_presence.exists(counted, s3.bucket, "blobs/", uris) == {u: True for u in uris}
    assert counted.paginators == 1


def test_the_domino_staging_clears_share_one_paginator(s3: S3Env) -> None:
    """The Domino provider clears each finished job's staging keys on two threads: each clear asked the client for
    a paginator, and the first two (one per thread, at once) each loaded botocore's paginator model."""
    from providers.domino.staging import Staging

    staging = Staging(s3.blobs())
    counted = _PaginatorsCounted(staging.s3)
    staging.s3 = counted
    for tag in ("flows-a", "flows-b"):
        s3.client.put_object(Bucket=s3.bucket, Key=f"blobs/staging/{tag}/out/x", Body=b"x")
        staging.clear(tag)
    assert counted.paginators == 1
    assert staging.staged_keys("flows-a") == [] and staging.staged_keys("flows-b") == []


def test_list_and_delete_only_touch_blobs(s3: S3Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_blobs, "DELETE_BATCH", 2)  # several DeleteObjects requests
    store = s3.blobs()
    blobs = [store.put_bytes(f"blob {i}".encode()) for i in range(5)]
    s3.client.put_object(Bucket=s3.bucket, Key="flows/wf.json", Body=b"{}")   # not a blob
    s3.client.put_object(Bucket=s3.bucket, Key="blobs/README", Body=b"hello")  # not a blob either
    assert store.list_digests() == {b.digest for b in blobs}
    doomed = {b.digest for b in blobs[:4]} | {"f" * 64}  # one that is not there
    assert store.delete(doomed) == 4
    assert store.list_digests() == {blobs[4].digest}
    assert "flows/wf.json" in s3.keys() and "blobs/README" in s3.keys()


def test_a_manifest_naming_a_path_outside_its_folder_is_refused(s3: S3Env, tmp_path: Path) -> None:
    store = s3.blobs()
    inner = store.put_bytes(b"payload")
    for name in ("../escaped.txt", "/etc/evil", "ok/../../escaped.txt"):
        manifest = store.put_bytes(manifest_bytes({"fine.txt": {"digest": inner.digest, "size": 7},
                                                   name: {"digest": inner.digest, "size": 7}}))
        dest = tmp_path / "dest"
        with pytest.raises(ProviderError, match="escapes") as err:
            store.get_dir(manifest.uri, dest)
        assert manifest.uri in str(err.value)
        assert not (tmp_path / "escaped.txt").exists() and not list(dest.rglob("*"))  # nothing written at all


def test_a_malformed_manifest_or_missing_blob_is_a_clear_error(s3: S3Env, tmp_path: Path) -> None:
    store = s3.blobs()
    not_manifest = store.put_bytes(b"just bytes")
    with pytest.raises(ProviderError, match="not a directory manifest"):
        store.get_dir(not_manifest.uri, tmp_path / "d")
    bad_digest = store.put_bytes(json.dumps({"files": {"a": {"digest": "../../x", "size": 1}}}).encode())
    with pytest.raises(ProviderError, match="malformed digest"):
        store.get_dir(bad_digest.uri, tmp_path / "d")
    gone = f"s3://{s3.bucket}/blobs/ff/{'f' * 64}"
    for call in (lambda: store.get_file(gone, tmp_path / "x"), lambda: store.read_bytes(gone)):
        with pytest.raises(ProviderError, match="blob not found") as err:
            call()
        assert gone in str(err.value)


@pytest.mark.parametrize("url, bucket, prefix", [
    ("s3://team/blobs/", "team", "blobs/"), ("s3://team/a/b", "team", "a/b/"), ("s3://team", "team", ""),
])
def test_store_urls(url: str, bucket: str, prefix: str) -> None:
    assert s3_blobs.parse_s3_url(url) == (bucket, prefix)


def test_a_bad_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no bucket"):
        s3_blobs.parse_s3_url("s3:///blobs")


def test_a_missing_bucket_is_a_clear_error(s3: S3Env) -> None:
    from providers.blobs.s3 import S3BlobStore

    store = S3BlobStore("s3://no-such-blob-bucket/blobs/", region="us-east-1", endpoint_url=s3.endpoint,
                        max_attempts=1)
    with pytest.raises(ConfigError, match="bucket 'no-such-blob-bucket' does not exist"):
        store.exists([f"s3://no-such-blob-bucket/blobs/ab/ab{'0' * 62}"])
    with pytest.raises(ConfigError, match="does not exist"):
        store.put_bytes(b"x")


def test_an_unreachable_endpoint_fails_quickly(s3: S3Env) -> None:
    import socket

    from providers.blobs.s3 import S3BlobStore

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = S3BlobStore(f"s3://{s3.bucket}/blobs/", region="us-east-1", endpoint_url=f"http://127.0.0.1:{port}",
                        max_attempts=2, connect_timeout=1)
    start = time.monotonic()
    with pytest.raises(ProviderError, match="cannot reach S3") as err:
        store.put_bytes(b"x")
    assert time.monotonic() - start < 5 and s3.bucket in str(err.value)


def test_the_store_is_built_from_the_project_config(s3: S3Env, tmp_path: Path, monkeypatch: Any) -> None:
    from reconcile.config import load_config, make_blob_store

    (tmp_path / "flows.toml").write_text(f'[tool.flows.blobs]\nurl = "s3://{s3.bucket}/team/blobs"\n'
                                         f'region = "us-east-1"\nendpoint_url = "{s3.endpoint}"\n')
    store = make_blob_store(load_config(tmp_path))
    blob = store.put_bytes(b"configured")
    assert store.url == f"s3://{s3.bucket}/team/blobs/" and blob.uri.startswith(store.url)
