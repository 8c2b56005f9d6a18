"""bench/latency_proxy.py, the TCP proxy the benchmark puts in front of S3 and Domino: bytes arrive unchanged
and requests are counted (no test asserts a time)."""
from __future__ import annotations

import boto3

from bench.latency_proxy import LatencyProxy
from tests.fixtures.s3 import REGION, S3Env


def test_s3_through_the_proxy_is_unchanged_and_counted(s3: S3Env) -> None:
    host, port = s3.endpoint[len("http://"):].split(":")
    with LatencyProxy(host, int(port), rtt=0.002) as proxy:
        client = boto3.client("s3", region_name=REGION, endpoint_url=proxy.url)
        body = bytes(range(256)) * 1000  # bigger than one chunk
        client.put_object(Bucket=s3.bucket, Key="a/b", Body=body)
        assert client.get_object(Bucket=s3.bucket, Key="a/b")["Body"].read() == body
        client.head_object(Bucket=s3.bucket, Key="a/b")
        counts = proxy.counts()
    assert counts["requests"] == 3
    assert counts["by_method"] == {"PUT": 1, "GET": 1, "HEAD": 1}
    assert counts["by_agent"] == {"Boto3": 3}
    assert counts["connections"] >= 1
