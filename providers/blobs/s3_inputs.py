"""Digests of `s3://` flow inputs: BLAKE3 of the object's bytes, cached by (uri, ETag, size).

An unchanged object (same ETag and size) is not downloaded again; the cache lives in the stat cache.
"""
from __future__ import annotations

import functools
import os
from typing import Any

from blake3 import blake3

from state.s3_client import make_client
from vocab.digest import StatCache
from vocab.errors import InputError

CHUNK = 1 << 20


def split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket or not key:
        raise InputError(f"not an s3://bucket/key URI: {uri}")
    return bucket, key


@functools.lru_cache(maxsize=8)
def _client(region: str | None, endpoint_url: str | None, profile: str | None, aws_env: tuple[Any, ...]) -> Any:
    """One client per S3 settings and AWS environment (botocore clients are thread-safe; HEAD and GET only)."""
    return make_client(region=region, endpoint_url=endpoint_url, profile=profile, max_attempts=5, transfers=False)


def s3_object_digest(uri: str, cache: StatCache, settings: Any) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3_uri(uri)
    s3 = _client(getattr(settings, "region", None), getattr(settings, "endpoint_url", None),
                 getattr(settings, "profile", None),
                 tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))))
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
