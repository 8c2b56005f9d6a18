"""Whether blobs of an S3 store are there: the check `S3BlobStore.exists` makes, without the store's models or
boto3's transfer manager, so the no-op plan shortcut (reconcile/noop_plan.py) can make it with a plain botocore
client. S3 failures are raised as botocore raises them; the caller names them."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from state.s3_client import NOT_FOUND, WORKERS, error_code

LIST_FROM = 64          # this many blobs of the store to check: list the store (16 LISTs) rather than HEAD each


def listed_keys(client: Any, bucket: str, prefix: str) -> set[str]:
    """Every key of the store's blobs (`<prefix><2 hex>/<digest>`), listed by first hex digit in parallel.

    One paginator for the 16 lists, made before they start: a client's first paginator loads botocore's
    paginator model, and 16 threads asking at once each loaded it (~1 CPU-second on a slow machine)."""
    paginator = client.get_paginator("list_objects_v2")

    def group(first: str) -> list[str]:
        pages = paginator.paginate(Bucket=bucket, Prefix=f"{prefix}{first}")
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    with ThreadPoolExecutor(WORKERS) as pool:
        return {key for keys in pool.map(group, "0123456789abcdef") for key in keys}


def has(client: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as e:
        if error_code(e) in NOT_FOUND:
            return False
        raise


def split(uri: str) -> tuple[str, str] | None:
    """(bucket, key) of an `s3://bucket/key` URI; None for anything else."""
    bucket, _, key = uri[len("s3://"):].partition("/")
    return (bucket, key) if uri.startswith("s3://") and bucket and key else None


def exists(client: Any, bucket: str, prefix: str, uris: list[str]) -> dict[str, bool]:
    """Which of `uris` are there. Many blobs of this store (`s3://bucket/prefix`): listed (one LIST answers for up
    to 1,000 keys, where a HEAD answers for one); the others: parallel HEADs. (A directory's manifest is checked
    like a file, as the local store checks it: by its presence.)"""
    own = f"s3://{bucket}/{prefix}"
    found: dict[str, bool] = {}
    if sum(u.startswith(own) for u in uris) >= LIST_FROM:
        keys = listed_keys(client, bucket, prefix)
        cut = len(f"s3://{bucket}/")
        found = {u: u[cut:] in keys for u in uris if u.startswith(own)}
    rest = [u for u in uris if u not in found]
    if rest:
        def one(uri: str) -> bool:
            where = split(uri)
            return where is not None and has(client, *where)

        with ThreadPoolExecutor(WORKERS) as pool:
            found.update(zip(rest, pool.map(one, rest)))
    return {u: found[u] for u in uris}
