"""The one S3 client factory and the one translation of S3 failures into clear errors.

Shared by the S3 state backend, the S3 blob store and the digests of `s3://` flow inputs: throttling and
5xx are retried by botocore's standard mode (never by hand), and a session is kept per profile and AWS
environment.
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Iterator

from blake3 import blake3

from vocab.errors import ConfigError, FlowsError, StateError
from vocab.masking import redact

WORKERS = 16            # parallel HEAD/GET requests
_ACCESS = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
           "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem", "InvalidClientTokenId", "403"}
_REGION = {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException", "301"}

NOT_FOUND = {"NoSuchKey", "NotFound", "404"}  # the error codes of an object (or a HEAD on one) that is not there

_SESSIONS: dict[str, Any] = {}
_SESSIONS_LOCK = threading.Lock()


def make_client(*, region: str | None, endpoint_url: str | None, profile: str | None,
                max_attempts: int | None = None, connect_timeout: float = 10.0, read_timeout: float = 60.0,
                pool: int = WORKERS * 2, signature_version: str | None = None, transfers: bool = True) -> Any:
    """An S3 client; throttling and 5xx are retried by botocore (standard mode), never by hand.

    `max_attempts` counts the first try; unset, botocore takes AWS_MAX_ATTEMPTS / the profile / its default.
    `signature_version`: e.g. "s3v4" for a client that presigns URLs (what every region takes).
    `transfers=True`: boto3's client, with upload_file/download_file (its transfer manager: multipart, parallel).
    `transfers=False`: botocore's own client, the same requests otherwise: for what moves no file (importing
    boto3 and its transfer manager costs ~0.15 s, a tenth of a no-op plan on S3).
    """
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    retries: dict[str, Any] = {"mode": "standard"}
    if max_attempts is not None:
        retries["total_max_attempts"] = max_attempts
    config = Config(retries=retries, connect_timeout=connect_timeout, read_timeout=read_timeout,
                    max_pool_connections=pool, **({"signature_version": signature_version} if signature_version else {}))
    try:
        # A session costs ~0.1 s to load and is not thread-safe: keep one per profile and AWS environment
        # (a session caches the credentials it found, so a changed environment needs a new one).
        aws_env = sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))
        cache_key = blake3(repr((profile, aws_env, transfers)).encode()).hexdigest()
        with _SESSIONS_LOCK:
            session = _SESSIONS.get(cache_key)
            if session is None:
                session = _SESSIONS[cache_key] = _session(profile, transfers)
            if transfers:
                return session.client("s3", region_name=region, endpoint_url=endpoint_url, config=config)
            return session.create_client("s3", region_name=region, endpoint_url=endpoint_url, config=config)
    except (BotoCoreError, ValueError) as e:  # unknown profile, malformed endpoint URL
        raise ConfigError(f"cannot set up the S3 client: {redact(str(e))}") from None


def _session(profile: str | None, transfers: bool) -> Any:
    if transfers:
        import boto3
        return boto3.session.Session(profile_name=profile)
    import botocore.session
    return botocore.session.Session(profile=profile)


def error_code(e: Exception) -> str:
    response = getattr(e, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def translate(e: Exception, *, where: str, doing: str, client: Any,
              default: type[FlowsError] = StateError) -> FlowsError:
    """One clear line for an S3 failure, naming the object (`where`); never a traceback or a secret."""
    from botocore.exceptions import (ClientError, ConnectTimeoutError, EndpointConnectionError,
                                     NoCredentialsError, PartialCredentialsError, ReadTimeoutError)

    cls: type[FlowsError]
    bucket = where[len("s3://"):].split("/", 1)[0]
    endpoint = client.meta.endpoint_url
    if isinstance(e, ClientError):
        code = error_code(e)
        meta = e.response.get("ResponseMetadata", {})
        status = str(meta.get("HTTPStatusCode", ""))
        if code == "NoSuchBucket":
            msg, cls = f"bucket '{bucket}' does not exist (endpoint {endpoint})", ConfigError
        elif code in _ACCESS or status == "403":
            msg, cls = (f"access denied ({code}) while {doing}: check the AWS credentials/profile and the "
                        f"bucket policy of '{bucket}'"), ConfigError
        elif code in _REGION or status == "301":
            actual = meta.get("HTTPHeaders", {}).get("x-amz-bucket-region") or e.response["Error"].get("Region")
            hint = f"it is in '{actual}'" if actual else "it is in another region"
            msg, cls = (f"bucket '{bucket}' is not in region '{client.meta.region_name}' ({hint}): "
                        f"set `region`"), ConfigError
        else:
            detail = e.response.get("Error", {}).get("Message") or status
            msg, cls = f"{doing} failed: {code}: {detail}", default
    elif isinstance(e, (NoCredentialsError, PartialCredentialsError)):
        msg, cls = ("no AWS credentials found (environment, ~/.aws, `profile`, or an instance role) "
                    f"while {doing}"), ConfigError
    elif isinstance(e, (EndpointConnectionError, ConnectTimeoutError)):
        msg, cls = f"cannot reach S3 at {endpoint} while {doing} (is the endpoint up?)", default
    elif isinstance(e, ReadTimeoutError):
        msg, cls = f"S3 at {endpoint} did not answer in time while {doing}", default
    else:
        msg, cls = f"{doing} failed: {e}", default
    return cls(redact(msg), file=where)


@contextlib.contextmanager
def s3_errors(client: Any, where: str, doing: str, default: type[FlowsError] = StateError) -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError) as e:
        raise translate(e, where=where, doing=doing, client=client, default=default) from None
