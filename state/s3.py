"""The S3 backend: one state object per flow, written compare-and-swap; a lease lock object; a journal prefix.

Layout for a key template `projects/churn/{flow}.json` and flow `wf`:
  projects/churn/wf.json            the state (GET once; PUT with If-Match / If-None-Match: *)
  projects/churn/wf.json.lock       the lock: LockInfo JSON, created with If-None-Match: *
  projects/churn/wf.json.journal/N  one object per journal record (never rewrites the state)
History is the bucket's object versions of the state key (turn versioning on).
The S3 client and error translation here are shared with providers/blobs/s3.py.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Iterator


from vocab.errors import ConfigError, FlowsError, LockHeldError, StateError
from state.backend import HistoryEntry, LockInfo, LockLostError
from state.s3_client import NOT_FOUND as _NOT_FOUND, WORKERS, error_code, make_client, s3_errors
from state.local import FLOW_NAME
from state.s3_layout import journal_prefix, peek, state_key

POLL_SECONDS = 0.5      # how often a waiting `lock(timeout=...)` looks again
HISTORY_LIMIT = 100     # newest versions listed by `history` (older ones stay readable by id)
_LOST_RACE = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


# -- the backend ---------------------------------------------------------------------------------
class S3Backend:
    kind = "s3"

    def __init__(self, bucket: str, key: str = "flows/{flow}.json", region: str | None = None,
                 endpoint_url: str | None = None, profile: str | None = None, kms_key_id: str | None = None,
                 encrypt: bool = False, lease_seconds: float = 120.0, *, max_attempts: int | None = None,
                 connect_timeout: float = 10.0, poll_seconds: float = POLL_SECONDS) -> None:
        key = key.lstrip("/")
        if key.count("{flow}") != 1:
            raise ConfigError(f"[tool.flows.backend] key '{key}' must contain {{flow}} exactly once "
                              "(one state object per flow), e.g. 'flows/{flow}.json'")
        self.bucket, self.template = bucket, key
        self.lease_seconds, self.poll_seconds = lease_seconds, poll_seconds
        # where and how it connects, nothing secret: what the no-op plan shortcut needs to look again
        self.connection: dict[str, Any] = {"bucket": bucket, "key": key, "region": region,
                                           "endpoint_url": endpoint_url, "profile": profile,
                                           "max_attempts": max_attempts, "connect_timeout": connect_timeout}
        self.s3 = make_client(region=region, endpoint_url=endpoint_url, profile=profile,  # (no file transfers)
                              max_attempts=max_attempts, connect_timeout=connect_timeout, transfers=False)
        self._sse: dict[str, str] = {}
        if kms_key_id:
            self._sse = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id}
        elif encrypt:
            self._sse = {"ServerSideEncryption": "AES256"}
        self._journal_next: dict[str, int] = {}
        self._journal_mutex = threading.Lock()

    # -- keys ----------------------------------------------------------------------------------
    def _key(self, flow: str) -> str:
        return state_key(self.template, flow)

    def _uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def describe(self, flow: str) -> str:
        return self._uri(self._key(flow))

    def _errors(self, key: str, doing: str) -> contextlib.AbstractContextManager[None]:
        return s3_errors(self.s3, self._uri(key), doing)

    # -- small S3 verbs ------------------------------------------------------------------------
    def _get(self, key: str, **kw: Any) -> tuple[bytes, dict[str, Any]] | None:
        """The object's bytes and response, or None when it does not exist."""
        from botocore.exceptions import ClientError

        with self._errors(key, "reading"):
            try:
                resp = self.s3.get_object(Bucket=self.bucket, Key=key, **kw)
            except ClientError as e:
                if error_code(e) in _NOT_FOUND:
                    return None
                raise
            return resp["Body"].read(), resp

    def _put_if(self, key: str, body: bytes, cond: dict[str, str], **kw: Any) -> str | None:
        """Conditional PUT: the new ETag, or None when the condition did not hold (someone else won)."""
        from botocore.exceptions import ClientError

        with self._errors(key, "writing"):
            try:
                resp = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, **cond, **self._sse, **kw)
            except ClientError as e:
                # If-Match on an object deleted meanwhile answers 404: also a lost race.
                if error_code(e) in _LOST_RACE or (cond.get("IfMatch") and error_code(e) in _NOT_FOUND):
                    return None
                raise
            return str(resp["ETag"])

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        with self._errors(prefix, "listing"):
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                yield from page.get("Contents", [])

    # -- state ---------------------------------------------------------------------------------
    def list_flows(self) -> list[str]:
        head, tail = self.template.split("{flow}")
        found = set()
        for obj in self._list(head):
            rest = obj["Key"][len(head):]
            journal_mark = tail + ".journal/"
            if journal_mark in rest:  # a flow whose first apply crashed has only a journal
                name = rest[:rest.index(journal_mark)]
            elif rest.endswith(tail):
                name = rest[:len(rest) - len(tail)]
            else:
                continue
            # With an empty suffix a lock object would look like a flow named `<flow>.lock`.
            if FLOW_NAME.match(name) and not (not tail and name.endswith(".lock")):
                found.add(name)
        return sorted(found)

    def read_bytes(self, flow: str) -> tuple[bytes | None, str | None]:
        got = self._get(self._key(flow))
        if got is None:
            return None, None
        data, resp = got
        return data, str(resp["ETag"])

    def peek(self, flow: str) -> tuple[str | None, bool]:
        """(the state's ETag, None when there is none; whether a journal is waiting to be folded): one HEAD and
        one LIST, for the no-op plan shortcut."""
        with self._errors(self._key(flow), "checking"):
            return peek(self.s3, self.bucket, self.template, flow)

    def write_bytes(self, flow: str, data: bytes, expected_etag: str | None, *, serial: int, lineage: str,
                    lock_id: str | None = None) -> str | None:
        # S3 cannot check the lock object in the same request: the fence inside the state (checked by the
        # store through If-Match on the version it read) is the proof of holding the lock.
        cond = {"IfMatch": expected_etag} if expected_etag else {"IfNoneMatch": "*"}
        # Metadata lets `history` show serial/lineage/who with one HEAD per version.
        meta = {"serial": str(serial), "lineage": lineage, "who": _who()}
        return self._put_if(self._key(flow), data, cond, ContentType="application/json", Metadata=meta)

    def write_parts(self, flow: str, parts: Iterable[bytes], expected_etag: str | None, *, serial: int,
                    lineage: str, lock_id: str | None = None) -> str | None:
        # (one PUT of the whole body: a conditional multipart upload is not worth it for a state)
        return self.write_bytes(flow, b"".join(parts), expected_etag, serial=serial, lineage=lineage, lock_id=lock_id)

    def history(self, flow: str) -> list[HistoryEntry]:
        key = self._key(flow)
        versions: list[dict[str, Any]] = []
        with self._errors(key, "listing versions"):
            pages = self.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=key)
            for page in pages:
                versions += [v for v in page.get("Versions", []) if v["Key"] == key]
                if len(versions) >= HISTORY_LIMIT:
                    break
        versions.sort(key=lambda v: v["LastModified"], reverse=True)  # stable: S3 lists newest first
        with ThreadPoolExecutor(WORKERS) as pool:
            return list(pool.map(lambda v: self._entry(key, v), versions[:HISTORY_LIMIT]))

    def _entry(self, key: str, v: dict[str, Any]) -> HistoryEntry:
        with self._errors(key, "reading a version"):
            meta = self.s3.head_object(Bucket=self.bucket, Key=key, **_version(v["VersionId"])).get("Metadata", {})
        serial, lineage, who = meta.get("serial"), meta.get("lineage"), meta.get("who")
        if serial is None:  # written by another tool: read the version itself
            got = self._get(key, **_version(v["VersionId"]))
            with contextlib.suppress(ValueError, AttributeError):
                raw = json.loads(got[0]) if got else {}
                serial, lineage = raw.get("serial"), raw.get("lineage")
        return HistoryEntry(version_id=v["VersionId"], serial=int(serial) if serial is not None else None,
                            lineage=lineage, who=who, size=v.get("Size"), latest=bool(v.get("IsLatest")),
                            modified=v["LastModified"].astimezone(dt.timezone.utc).isoformat(timespec="seconds"))

    def read_version_bytes(self, flow: str, version_id: str) -> tuple[bytes, str]:
        from botocore.exceptions import ClientError

        key = self._key(flow)
        if version_id == "latest":
            data, _ = self.read_bytes(flow)
            if data is None:
                raise StateError(f"flow '{flow}' has no state", file=self._uri(key))
            return data, self._uri(key)
        with self._errors(key, "reading a version"):
            try:
                data = self.s3.get_object(Bucket=self.bucket, Key=key, **_version(version_id))["Body"].read()
            except ClientError as e:
                if error_code(e) in _NOT_FOUND | {"NoSuchVersion", "InvalidArgument", "400"}:
                    raise StateError(f"no version '{version_id}' of flow '{flow}' (see `flows state history`)",
                                     file=self._uri(key)) from None
                raise
        return data, f"{self._uri(key)}?versionId={version_id}"

    # -- lock ----------------------------------------------------------------------------------
    def _lock_key(self, flow: str) -> str:
        return self._key(flow) + ".lock"

    def _read_lock(self, flow: str) -> tuple[LockInfo, str] | None:
        got = self._get(self._lock_key(flow))
        if got is None:
            return None
        data, resp = got
        try:
            return LockInfo.model_validate_json(data), str(resp["ETag"])
        except ValueError:  # unreadable: never broken automatically, `flows state unlock unreadable` clears it
            return LockInfo(id="unreadable", who="?", host="?", pid=0, created="?"), str(resp["ETag"])

    def read_lock(self, flow: str) -> LockInfo | None:
        got = self._read_lock(flow)
        return got[0] if got else None

    def _lease(self, info: LockInfo) -> LockInfo:
        end = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=self.lease_seconds)
        return info.model_copy(update={"expires": end.isoformat(timespec="milliseconds")})

    def _put_lock(self, flow: str, info: LockInfo, cond: dict[str, str]) -> bool:
        """Conditional PUT of the lock object. When the answer is lost (no answer at all, or a retry told that
        the condition failed because the first attempt had landed), read back: the lock is ours if it carries
        our nonce (the lock id) and our lease end."""
        key = self._lock_key(flow)
        body = info.model_dump_json().encode()
        try:
            if self._put_if(key, body, cond, ContentType="application/json") is not None:
                return True
        except FlowsError:
            if not self._is_mine(flow, info):
                raise
            return True
        return self._is_mine(flow, info)

    def _is_mine(self, flow: str, info: LockInfo) -> bool:
        got = self._read_lock(flow)
        return got is not None and got[0].id == info.id and got[0].expires == info.expires

    def lock(self, flow: str, info: LockInfo, *, timeout: float = 0.0, break_expired: bool = False) -> LockInfo:
        key = self._lock_key(flow)
        deadline = time.monotonic() + timeout
        while True:
            mine = self._lease(info)
            if self._put_lock(flow, mine, {"IfNoneMatch": "*"}):
                return mine
            got = self._read_lock(flow)
            if got is None:
                continue  # released between our PUT and our GET: try again at once
            held, etag = got
            if break_expired and (held.expired() or held.holder_gone()):
                why = "lease expired" if held.expired() else "holder process gone"
                note = f"{info.operation} (broke lock {held.id} of {held.who}@{held.host}: {why})"
                mine = self._lease(info.model_copy(update={"operation": note}))
                # Overwrite only the exact lock we judged expired: of two breakers, one wins.
                if self._put_lock(flow, mine, {"IfMatch": etag}):
                    return mine
                continue
            if time.monotonic() >= deadline:
                raise LockHeldError(f"state is locked: {held.describe()}. If that process is gone, run "
                                    f"`flows state unlock {held.id}`", file=self._uri(key))
            time.sleep(self.poll_seconds)  # poll: the holder releases by deleting the lock object

    def renew(self, flow: str, info: LockInfo) -> LockInfo:
        key = self._lock_key(flow)
        got = self._read_lock(flow)
        new = self._lease(info)
        if got is None or got[0].id != info.id or not self._put_lock(flow, new, {"IfMatch": got[1]}):
            raise LockLostError(f"lost the state lock {info.id} (it was broken by someone else)", file=self._uri(key))
        return new

    def unlock(self, flow: str, lock_id: str) -> None:
        from botocore.exceptions import ClientError

        key = self._lock_key(flow)
        got = self._read_lock(flow)
        if got is None:
            raise StateError(f"flow '{flow}' is not locked", file=self._uri(key))
        held, etag = got
        if held.id != lock_id:
            raise StateError(f"lock id {lock_id} does not match the held {held.describe()}", file=self._uri(key))
        with self._errors(key, "unlocking"):
            try:  # conditional: never delete a lock someone took over since we read it
                self.s3.delete_object(Bucket=self.bucket, Key=key, IfMatch=etag)
            except ClientError as e:
                if error_code(e) in _NOT_FOUND:
                    return
                if error_code(e) in _LOST_RACE:
                    raise StateError(f"lock {lock_id} changed while unlocking (taken over?); nothing was "
                                     "deleted", file=self._uri(key)) from None
                raise

    # -- journal -------------------------------------------------------------------------------
    def _journal_prefix(self, flow: str) -> str:
        return journal_prefix(self.template, flow)

    def _journal_keys(self, flow: str) -> list[str]:
        prefix = self._journal_prefix(flow)
        keys = [o["Key"] for o in self._list(prefix) if o["Key"][len(prefix):].isdigit()]
        return sorted(keys, key=lambda k: int(k[len(prefix):]))

    def _next_seq(self, flow: str) -> int:
        keys = self._journal_keys(flow)
        return int(keys[-1][len(self._journal_prefix(flow)):]) + 1 if keys else 0

    def journal_append(self, flow: str, data: bytes, durable: bool = True) -> None:  # always durable
        prefix = self._journal_prefix(flow)
        with self._journal_mutex:  # one sequence per flow in this process, in call order
            seq = self._journal_next.get(flow)
            for _ in range(5):
                if seq is None:
                    seq = self._next_seq(flow)
                if self._put_if(f"{prefix}{seq:012d}", data, {"IfNoneMatch": "*"}) is not None:
                    self._journal_next[flow] = seq + 1
                    return
                seq = None  # another process appended (or our unanswered first try landed): skip past it
        raise StateError("could not append to the journal: another process keeps writing it",
                         file=self._uri(prefix))

    def journal_read(self, flow: str) -> list[bytes]:
        keys = self._journal_keys(flow)
        with ThreadPoolExecutor(WORKERS) as pool:
            bodies = list(pool.map(self._get, keys))
        # (a record deleted between listing and reading went with a concurrent clear)
        return [got[0] for got in bodies if got is not None]

    def journal_clear(self, flow: str, lock_id: str | None = None) -> None:
        # S3 cannot delete on a condition about another object: the lock is read just before the listing, so
        # only a holder paused between the two for longer than its lease could still delete a newer journal.
        if lock_id is not None:
            held = self.read_lock(flow)
            if held is None or held.id != lock_id:
                return
        keys = self._journal_keys(flow)
        prefix = self._journal_prefix(flow)
        with self._errors(prefix, "clearing the journal"):
            for i in range(0, len(keys), 1000):  # DeleteObjects takes up to 1000 keys
                batch = [{"Key": k} for k in keys[i:i + 1000]]
                resp = self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                if resp.get("Errors"):
                    first = resp["Errors"][0]
                    raise StateError(f"could not clear the journal: {first.get('Code')}: {first.get('Message')}",
                                     file=self._uri(first.get("Key", prefix)))
        with self._journal_mutex:
            self._journal_next.pop(flow, None)


def _version(version_id: str) -> dict[str, str]:
    """Without versioning the only version is "null", the current object; not every server takes that id."""
    return {} if version_id == "null" else {"VersionId": version_id}


def _who() -> str:
    """user@host for version metadata; S3 user metadata travels in HTTP headers, so ASCII only."""
    info = LockInfo()
    return f"{info.who}@{info.host}".encode("ascii", "replace").decode()
