"""Digests of `s3://` flow inputs: BLAKE3 of the object's bytes, cached by (uri, ETag, size).

An unchanged object (same ETag and size) is not downloaded again; the cache lives in the stat cache.
"""
from __future__ import annotations

from typing import Any

from blake3 import blake3

from reconcile.digest import StatCache
from reconcile.errors import InputError

CHUNK = 1 << 20


def split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket or not key:
        raise InputError(f"not an s3://bucket/key URI: {uri}")
    return bucket, key


def s3_object_digest(uri: str, cache: StatCache, settings: Any) -> str:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3_uri(uri)
    session = boto3.session.Session(profile_name=getattr(settings, "profile", None))
    s3 = session.client("s3", region_name=getattr(settings, "region", None),
                        endpoint_url=getattr(settings, "endpoint_url", None),
                        config=Config(retries={"mode": "standard", "max_attempts": 5}))
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
        sig = [head["ContentLength"], head.get("ETag", ""), 0]
        hit = cache.entries.get(uri)
        if hit is not None and hit[:3] == sig:
            return str(hit[3])
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        h = blake3()
        for chunk in iter(lambda: body.read(CHUNK), b""):
            h.update(chunk)
    except (ClientError, BotoCoreError) as e:
        raise InputError(f"cannot read {uri}: {e}") from None
    digest = h.hexdigest()
    cache.entries[uri] = [*sig, digest]
    cache.dirty = True
    return digest
