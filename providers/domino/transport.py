"""HTTP to Domino: one `requests.Session`, urllib3 retries, timeouts, and one-line errors.

Retries are urllib3's (`Retry`): connection failures always; 408/429/5xx and dropped connections
for calls that are safe to repeat (all GETs, and the POSTs that change nothing twice:
resolveJobDefaults, stop). Starting a job is not safe to repeat blindly (a lost answer may hide a
job that did start), so `/v4/jobs/start` has its own adapter that only retries what surely did not
reach Domino (connection refused, 429, 503); `DominoCallError.maybe_done` tells the caller when the
outcome is unknown so it can look before starting again.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InsecureRequestWarning, MaxRetryError, ProtocolError, ReadTimeoutError
from urllib3.util.retry import Retry

from providers.domino.auth import DominoAuth
from vocab.errors import ProviderError
from vocab.masking import redact

log = logging.getLogger("flows.domino")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# A 429/503 means Domino refused before doing anything, so even a start may be sent again.
UNDONE_STATUSES = frozenset({429, 503})
START_PATH = "/v4/jobs/start"


class DominoCallError(ProviderError):
    """A call to Domino failed. `status` is the HTTP status (None: no answer); `maybe_done` is True when
    the request may have been carried out anyway (lost answer, 500/502/504)."""

    def __init__(self, message: str, *, status: int | None = None, maybe_done: bool = False) -> None:
        self.status = status
        self.maybe_done = maybe_done
        super().__init__(redact(message))


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 6             # per call, on top of the first try
    backoff: float = 0.5         # urllib3 backoff_factor: 0, 2b, 4b, ... seconds between tries
    backoff_max: float = 20.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0


def _retry(policy: RetryPolicy, *, methods: frozenset[str], statuses: frozenset[int],
           read_retries: bool) -> Retry:
    return Retry(total=policy.retries, connect=policy.retries, read=policy.retries if read_retries else False,
                 status=policy.retries, other=0, redirect=0, allowed_methods=methods, status_forcelist=statuses,
                 backoff_factor=policy.backoff, backoff_max=policy.backoff_max, raise_on_status=False,
                 respect_retry_after_header=True)


class Transport:
    """Sends requests to one Domino (or its API proxy) and turns failures into `DominoCallError`."""

    def __init__(self, host: str, auth: DominoAuth, *, verify: bool = True,
                 policy: RetryPolicy | None = None) -> None:
        self.host = host
        self.auth = auth
        self.verify = verify
        self.policy = policy or RetryPolicy()
        self.session = requests.Session()
        self.session.auth = auth
        if not verify:   # the user turned checks off on purpose: one warning (the client's), not one per call
            urllib3.disable_warnings(InsecureRequestWarning)
        safe = HTTPAdapter(max_retries=_retry(self.policy, methods=frozenset({"GET", "HEAD", "POST"}),
                                              statuses=RETRY_STATUSES, read_retries=True))
        start = HTTPAdapter(max_retries=_retry(self.policy, methods=frozenset({"POST"}),
                                               statuses=UNDONE_STATUSES, read_retries=False))
        self.session.mount("http://", safe)
        self.session.mount("https://", safe)
        # Adapters are chosen by URL prefix after auth ran, i.e. on the proxy's URL in proxy mode.
        self.session.mount(auth.origin(host) + START_PATH, start)

    def __repr__(self) -> str:
        return f"Transport({self.host!r}, {self.auth!r})"

    def close(self) -> None:
        self.session.close()

    def call(self, method: str, path: str, endpoint: str, *, json: Any = None,
             params: dict[str, str] | None = None, not_found: str | None = None) -> Any:
        """Send one request and return the decoded JSON answer.

        `endpoint` is the route as a template (`GET /v4/jobs/{jobId}`): it names the call in errors.
        `not_found` replaces the generic message for a 404.
        """
        url = self.host + path
        started = time.monotonic()
        try:
            resp = self.session.request(method, url, json=json, params=params, verify=self.verify,
                                        timeout=(self.policy.connect_timeout, self.policy.read_timeout))
        except requests.exceptions.RequestException as e:
            raise self._no_answer(e, endpoint) from None
        log.debug("%s -> HTTP %s in %.0f ms", endpoint, resp.status_code, (time.monotonic() - started) * 1000)
        if resp.status_code >= 400:
            raise self._http_error(resp, endpoint, not_found)
        try:
            return resp.json()
        except ValueError:
            kind = resp.headers.get("Content-Type", "no content type")
            raise DominoCallError(f"Domino's answer to {endpoint} is not JSON (HTTP {resp.status_code}, {kind}); "
                                  f"does {self.host} point at the Domino API?") from None

    def _no_answer(self, e: requests.exceptions.RequestException, endpoint: str) -> DominoCallError:
        where = self.auth.origin(self.host)
        if isinstance(e, requests.exceptions.SSLError):
            return DominoCallError(f"the TLS certificate of {where} is not trusted ({endpoint}); set "
                                   f"REQUESTS_CA_BUNDLE to your CA, or DOMINO_VERIFY_CERTIFICATE=false to skip the check")
        if isinstance(e, requests.exceptions.ConnectTimeout):
            return DominoCallError(f"cannot connect to Domino at {where}: timed out after "
                                   f"{self.policy.connect_timeout:g}s ({endpoint})")
        if isinstance(e, requests.exceptions.ReadTimeout):
            return DominoCallError(f"Domino did not answer {endpoint} within {self.policy.read_timeout:g}s",
                                   maybe_done=True)
        if isinstance(e, requests.exceptions.ConnectionError):
            cause = e.args[0] if e.args else None
            if isinstance(cause, MaxRetryError):   # retries ran out: what failed the last time
                cause = cause.reason
            if isinstance(cause, ReadTimeoutError):
                return DominoCallError(f"Domino did not answer {endpoint} within {self.policy.read_timeout:g}s",
                                       maybe_done=True)
            if isinstance(cause, ProtocolError):   # sent, then the connection dropped: outcome unknown
                return DominoCallError(f"Domino dropped the connection during {endpoint}", maybe_done=True)
            return DominoCallError(f"cannot connect to Domino at {where} ({endpoint}): {_reason(cause)}")
        return DominoCallError(f"the request {endpoint} to Domino failed: {type(e).__name__}", maybe_done=True)

    def _http_error(self, resp: requests.Response, endpoint: str, not_found: str | None) -> DominoCallError:
        code = resp.status_code
        if code in (401, 403):
            msg = (f"Domino rejected the credentials (HTTP {code} on {endpoint}; using the "
                   f"{self.auth.describe()})")
        elif code == 409:
            msg = (f"Domino says the credentials expired (HTTP 409 on {endpoint}); log in to Domino again "
                   f"or refresh the token")
        elif code == 404:
            msg = not_found or f"Domino has no {endpoint} (HTTP 404); is {self.host} the Domino API?"
        elif code >= 500:
            msg = f"Domino failed on {endpoint} (HTTP {code}, after up to {self.policy.retries} retries)"
        else:
            detail = _detail(resp)
            msg = f"Domino refused {endpoint} (HTTP {code})" + (f": {detail}" if detail else "")
        return DominoCallError(msg, status=code, maybe_done=code in (500, 502, 504))


def _reason(cause: Any) -> str:
    """The last, most specific part of urllib3's error chain ('Connection refused'), without URLs."""
    reason = getattr(cause, "reason", cause)
    text = str(reason) if reason is not None else "no answer"
    return text.rsplit(": ", 1)[-1].strip() or type(reason).__name__


def _detail(resp: requests.Response) -> str:
    """Domino's own one-line explanation of a 4xx, if it gave one."""
    try:
        body = resp.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        for key in ("message", "error", "errors", "detail"):
            if body.get(key):
                text = " ".join(str(body[key]).split())
                return text[:200]
    return ""


def clean_host(url: str) -> str:
    """`scheme://host[:port]` of DOMINO_API_HOST (python-domino drops any path)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ProviderError(f"DOMINO_API_HOST must be a URL like https://domino.example.com, not {url!r}")
    return f"{parts.scheme}://{parts.netloc}"
