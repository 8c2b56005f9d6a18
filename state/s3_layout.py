"""Where the S3 backend keeps a flow's state and journal, and a look at both: without the backend's models, so the
no-op plan shortcut (reconcile/noop_plan.py) can check them without importing pydantic or boto3."""
from __future__ import annotations

from typing import Any

from state.local_layout import check_flow_name
from state.s3_client import NOT_FOUND, error_code


def state_key(template: str, flow: str) -> str:
    """The state object of `flow` under a key template such as `projects/churn/{flow}.json`."""
    return template.replace("{flow}", check_flow_name(flow))


def journal_prefix(template: str, flow: str) -> str:
    return state_key(template, flow) + ".journal/"


def peek(client: Any, bucket: str, template: str, flow: str) -> tuple[str | None, bool]:
    """(the state's ETag, None when there is none; whether a journal is waiting to be folded): one HEAD and one
    LIST. S3 failures other than a missing state are raised as botocore raises them."""
    from botocore.exceptions import ClientError

    try:
        etag: str | None = str(client.head_object(Bucket=bucket, Key=state_key(template, flow))["ETag"])
    except ClientError as e:
        if error_code(e) not in NOT_FOUND:
            raise
        etag = None
    page = client.list_objects_v2(Bucket=bucket, Prefix=journal_prefix(template, flow), MaxKeys=1)
    return etag, bool(page.get("Contents"))
