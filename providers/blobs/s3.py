"""Content-addressed blobs under an S3 prefix (`s3://bucket/prefix/<2>/<digest>`): uploaded once, read-only.

Same layout and manifest format as the local store, so the two are interchangeable. Existence checks list the
store (or HEAD a few blobs: providers/blobs/s3_presence.py); a small blob is one create-only PUT; big files go
multipart through boto3's transfer manager.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Collection

from providers.blobs.base import StoredBlob, ensure_inside, shard
from vocab.digest import bytes_digest, file_digest, manifest_bytes, tree_files
from vocab.errors import ConfigError, ProviderError
from providers.blobs.s3_presence import exists, has
from state.s3_client import NOT_FOUND as _MISSING, WORKERS, error_code, make_client, s3_errors

MB = 1 << 20
DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes
DIGEST = re.compile(r"^[0-9a-f]{16,128}$")
_EXISTS = {"PreconditionFailed", "412"}  # If-None-Match: * on a key that is there
# a store without conditional writes, or a concurrent conditional write of the same key: ask with a HEAD
_NO_CONDITION = {"NotImplemented", "501", "ConditionalRequestConflict", "409", "InvalidArgument", "400"}


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> (bucket, 'some/prefix/'); the prefix may be empty."""
    if not url.startswith("s3://"):
        raise ConfigError(f"not an s3:// URL: {url}")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not bucket:
        raise ConfigError(f"no bucket in {url} (expected s3://bucket/prefix/)")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


class S3BlobStore:
    def __init__(self, url: str, region: str | None = None, endpoint_url: str | None = None,
                 profile: str | None = None, *, max_attempts: int | None = None, connect_timeout: float = 10.0,
                 multipart_threshold: int = 64 * MB, multipart_chunksize: int = 16 * MB) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}"
        self.settings = {"region": region, "endpoint_url": endpoint_url, "profile": profile}  # for presigning
        # where and how it connects, nothing secret: what the no-op plan shortcut needs to look again
        self.connection: dict[str, Any] = {"bucket": self.bucket, "prefix": self.prefix, **self.settings,
                                           "max_attempts": max_attempts, "connect_timeout": connect_timeout}
        # HEAD, LIST, GET, PUT, DELETE: botocore's client; boto3 (its transfer manager) only once a file moves
        self.s3 = make_client(region=region, endpoint_url=endpoint_url, profile=profile,
                              max_attempts=max_attempts, connect_timeout=connect_timeout, transfers=False)
        self._multipart = {"multipart_threshold": multipart_threshold, "multipart_chunksize": multipart_chunksize}
        self._transfers: tuple[Any, Any] | None = None
        self._transfers_lock = threading.Lock()
        self._bucket_ok = False

    def transfers(self) -> tuple[Any, Any]:
        """(a boto3 client, its TransferConfig) for files: multipart uploads and downloads by boto3's transfer
        manager. Made on first use: importing boto3 costs a plan that moves no file ~0.15 s."""
        with self._transfers_lock:
            if self._transfers is None:
                from boto3.s3.transfer import TransferConfig

                c = self.connection
                client = make_client(region=c["region"], endpoint_url=c["endpoint_url"], profile=c["profile"],
                                     max_attempts=c["max_attempts"], connect_timeout=c["connect_timeout"])
                self._transfers = client, TransferConfig(**self._multipart, max_concurrency=8)
            return self._transfers

    # -- names ---------------------------------------------------------------------------------
    def _key(self, digest: str) -> str:
        return self.prefix + shard(digest)

    def _uri(self, key: str, bucket: str | None = None) -> str:
        return f"s3://{bucket or self.bucket}/{key}"

    def _split(self, uri: str) -> tuple[str, str]:
        bucket, _, key = uri[len("s3://"):].partition("/")
        if not uri.startswith("s3://") or not bucket or not key:
            raise ProviderError(f"not a blob in an S3 store: {uri}")
        return bucket, key

    def _errors(self, uri: str, doing: str) -> Any:
        return s3_errors(self.s3, uri, doing, default=ProviderError)

    # -- writing -------------------------------------------------------------------------------
    def _has(self, bucket: str, key: str) -> bool:
        with self._errors(self._uri(key, bucket), "checking a blob"):
            return has(self.s3, bucket, key)

    def _check_bucket(self) -> None:
        """HEAD answers a bare 404 for a missing bucket too; ask once so that case is a clear error."""
        from botocore.exceptions import ClientError

        if not self._bucket_ok:
            with self._errors(self.url, "checking the blob bucket"):
                try:
                    self.s3.head_bucket(Bucket=self.bucket)
                except ClientError as e:
                    if error_code(e) in _MISSING:  # a HEAD answer has no body: 404 is all it says
                        raise ConfigError(f"bucket '{self.bucket}' does not exist (endpoint "
                                          f"{self.s3.meta.endpoint_url})", file=self.url) from None
                    raise
            self._bucket_ok = True

    def put_file(self, path: Path, digest: str | None = None, *, consume: bool = False) -> StoredBlob:
        # `consume` changes nothing here: an upload copies anyway.
        digest = digest or file_digest(path)
        key = self._key(digest)
        size = os.path.getsize(path)
        with self._errors(self._uri(key), f"uploading {path}"):
            if size < self._multipart["multipart_threshold"] and self._conditional_put(key, path):
                return StoredBlob(digest=digest, uri=self._uri(key), size=size)
        if not self._has(self.bucket, key):  # content-addressed: an existing key holds these bytes
            with self._errors(self._uri(key), f"uploading {path}"):
                client, config = self.transfers()
                client.upload_file(str(path), self.bucket, key, Config=config)
        return StoredBlob(digest=digest, uri=self._uri(key), size=size)

    def put_bytes(self, data: bytes) -> StoredBlob:
        digest = bytes_digest(data)
        key = self._key(digest)
        with self._errors(self._uri(key), "uploading"):
            if not self._conditional_put(key, data) and not self._has(self.bucket, key):
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        return StoredBlob(digest=digest, uri=self._uri(key), size=len(data))

    def _conditional_put(self, key: str, body: bytes | Path) -> bool:
        """A small blob in one request that only creates (If-None-Match: *) instead of a HEAD and a PUT: True once
        the key holds these bytes (stored now, or there already: content-addressed). False when that way did not
        settle it (a store without conditional writes, a concurrent conditional write): the caller asks with a
        HEAD."""
        from botocore.exceptions import ClientError

        try:
            if isinstance(body, Path):
                with open(body, "rb") as f:
                    self.s3.put_object(Bucket=self.bucket, Key=key, Body=f, IfNoneMatch="*")
            else:
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")
            return True
        except ClientError as e:
            if error_code(e) in _EXISTS:
                return True
            if error_code(e) in _NO_CONDITION:
                return False
            raise

    def put_dir(self, path: Path, *, consume: bool = False, confine: bool = False) -> StoredBlob:
        found = tree_files(path, confine=confine)  # every name checked before anything is uploaded
        with ThreadPoolExecutor(WORKERS) as pool:
            blobs = list(pool.map(self.put_file, [p for _, p in found]))
        files = {rel: {"digest": b.digest, "size": b.size} for (rel, _), b in zip(found, blobs)}
        manifest = self.put_bytes(manifest_bytes(files))
        return StoredBlob(digest=manifest.digest, uri=manifest.uri, size=sum(b.size for b in blobs))

    # -- reading -------------------------------------------------------------------------------
    def exists(self, uris: list[str], dirs: Collection[str] = ()) -> dict[str, bool]:
        """Which blobs are there (see `s3_presence.exists`: this store's listed, others' HEADed)."""
        if not uris:
            return {}
        self._check_bucket()
        with self._errors(self.url, "checking blobs"):
            return exists(self.s3, self.bucket, self.prefix, uris)

    def fetch(self, key: str, dest: Path, expected_size: Any = None) -> None:
        """One object of this bucket into `dest`: one GET when it is expected below the multipart threshold (a
        download by the transfer manager first asks its size), else the transfer manager's parallel ranges."""
        if isinstance(expected_size, int) and expected_size < self._multipart["multipart_threshold"]:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
            with open(dest, "wb") as f:
                shutil.copyfileobj(body, f, 1 << 20)
            return
        client, config = self.transfers()
        client.download_file(self.bucket, key, str(dest), Config=config)

    def get_file(self, uri: str, dest: Path) -> None:
        from botocore.exceptions import ClientError

        bucket, key = self._split(uri)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self._errors(uri, "downloading"):
            try:
                client, config = self.transfers()
                client.download_file(bucket, key, str(dest), Config=config)
            except ClientError as e:
                if error_code(e) in _MISSING:
                    raise ProviderError("blob not found (deleted by `flows cache gc`?)", file=uri) from None
                raise

    def read_bytes(self, uri: str) -> bytes:
        from botocore.exceptions import ClientError

        bucket, key = self._split(uri)
        with self._errors(uri, "reading"):
            try:
                return bytes(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            except ClientError as e:
                if error_code(e) in _MISSING:
                    raise ProviderError("blob not found (deleted by `flows cache gc`?)", file=uri) from None
                raise

    def get_dir(self, uri: str, dest: Path) -> None:
        try:
            files = json.loads(self.read_bytes(uri))["files"]
            plan = [(rel, str(meta["digest"])) for rel, meta in files.items()]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ProviderError("not a directory manifest", file=uri) from None
        dest.mkdir(parents=True, exist_ok=True)
        targets: list[tuple[Path, str]] = []
        for rel, digest in plan:  # check every name before writing anything: manifests are untrusted
            try:
                target = ensure_inside(dest, rel)
            except ValueError:
                raise ProviderError(f"manifest names '{rel}', which escapes {dest}; refusing it", file=uri) from None
            if not DIGEST.match(digest):
                raise ProviderError(f"manifest entry '{rel}' has a malformed digest", file=uri)
            targets.append((target, digest))
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(lambda t: self.get_file(self._uri(self._key(t[1])), t[0]), targets))

    # -- users: the states that keep outputs here (for `flows cache gc`) ------------------------------
    def register_user(self, user_id: str, record: bytes) -> None:
        from botocore.exceptions import ClientError

        key = f"{self.prefix}users/{user_id}.json"
        with self._errors(self._uri(key), "registering this state as a user of the blob store"):
            try:  # once: an entry that exists already is the same record
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=record, IfNoneMatch="*",
                                   ContentType="application/json")
            except ClientError as e:
                if error_code(e) not in {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}:
                    raise

    def users(self) -> dict[str, bytes]:
        prefix = f"{self.prefix}users/"
        out: dict[str, bytes] = {}
        with self._errors(self._uri(prefix), "listing the users of the blob store"):
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    if obj["Key"].endswith(".json"):
                        name = obj["Key"][len(prefix):-len(".json")]
                        out[name] = self.s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
        return out

    # -- garbage collection --------------------------------------------------------------------
    def list_digests(self) -> set[str]:
        found: set[str] = set()
        with self._errors(self.url, "listing blobs"):
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", []):
                    head, _, digest = obj["Key"][len(self.prefix):].partition("/")
                    if DIGEST.match(digest) and head == digest[:2]:
                        found.add(digest)
        return found

    def delete(self, digests: set[str]) -> int:
        present = sorted(digests & self.list_digests())  # count only what was there, like the local store
        with self._errors(self.url, "deleting blobs"):
            for i in range(0, len(present), DELETE_BATCH):
                batch = [{"Key": self._key(d)} for d in present[i:i + DELETE_BATCH]]
                resp = self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                if resp.get("Errors"):
                    first = resp["Errors"][0]
                    raise ProviderError(f"could not delete blobs: {first.get('Code')}: {first.get('Message')}",
                                        file=self._uri(first.get("Key", "")))
        return len(present)
