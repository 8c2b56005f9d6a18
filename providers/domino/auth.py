"""How requests to Domino authenticate: API key, bearer token, or the in-run API proxy.

The three modes and their precedence are python-domino's (`domino/authentication.py`): explicit
proxy > token > token file > API key, then from the environment `DOMINO_API_PROXY` >
`DOMINO_TOKEN_FILE` > `DOMINO_USER_API_KEY`. Secrets live only inside these objects: their reprs
and every message name the mode, never the value, and each value is registered for redaction.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import requests
from requests.auth import AuthBase

from vocab.errors import ProviderError
from vocab.masking import register_secret

ENV_PROXY = "DOMINO_API_PROXY"
ENV_TOKEN_FILE = "DOMINO_TOKEN_FILE"
ENV_API_KEY = "DOMINO_USER_API_KEY"
_PROXY = re.compile(r"^(https?://)?([^/]+:[0-9]+)/?$")
_ORIGIN = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]+")


class DominoAuth(AuthBase):
    """Base: `mode` names the mode in messages; `origin` says where requests really go."""

    mode = "none"
    source = ""

    def origin(self, host: str) -> str:
        return host

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source or self.mode})"

    def describe(self) -> str:
        return f"{self.mode} from {self.source}" if self.source else self.mode


class ApiKeyAuth(DominoAuth):
    mode = "API key"

    def __init__(self, api_key: str, source: str = "api_key") -> None:
        if not api_key.strip():
            raise ProviderError(f"the Domino API key ({source}) is empty")
        self._key = api_key.strip()
        self.source = source
        register_secret(self._key)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["X-Domino-Api-Key"] = self._key
        return r


class BearerAuth(DominoAuth):
    """A fixed token, or the first line of a token file re-read on every request (Domino rotates it)."""

    mode = "bearer token"

    def __init__(self, token: str | None = None, token_file: str | None = None, source: str = "") -> None:
        self._token = token.strip() if token else None
        self._file = token_file
        self.source = source or ("token file" if token_file else "auth_token")
        register_secret(self._token)

    def _current(self) -> str:
        if self._file is None:
            token = self._token or ""
        else:
            try:
                lines = Path(self._file).read_text().splitlines()
            except OSError as e:
                raise ProviderError(f"cannot read the Domino token file {self._file}: "
                                    f"{e.strerror or type(e).__name__}") from None
            token = lines[0].strip() if lines else ""
        if not token:
            raise ProviderError(f"the Domino token ({self.source}) is empty")
        register_secret(token)
        return token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = "Bearer " + self._current()
        return r


class ProxyAuth(DominoAuth):
    """Inside a Domino run: send every request to the local API proxy, which adds the credentials."""

    mode = "API proxy"

    def __init__(self, api_proxy: str, source: str = "api_proxy") -> None:
        match = _PROXY.match(api_proxy.strip())
        if not match:
            raise ProviderError(f"{source} must be host:port or scheme://host:port, not {api_proxy!r}")
        self.proxy = (match.group(1) or "http://") + match.group(2)
        self.source = source

    def origin(self, host: str) -> str:
        return self.proxy

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.url = _ORIGIN.sub(self.proxy, r.url or "", count=1)
        return r


def auth_from_env(env: Mapping[str, str] | None = None, *, api_proxy: str | None = None,
                  auth_token: str | None = None, token_file: str | None = None,
                  api_key: str | None = None) -> DominoAuth:
    """Pick the auth mode exactly as python-domino does; no credentials at all is a clear error."""
    if api_proxy:
        return ProxyAuth(api_proxy)
    if auth_token:
        return BearerAuth(token=auth_token)
    if token_file:
        return BearerAuth(token_file=token_file)
    if api_key:
        return ApiKeyAuth(api_key)
    env = os.environ if env is None else env
    if env.get(ENV_PROXY):
        return ProxyAuth(env[ENV_PROXY], source=ENV_PROXY)
    if env.get(ENV_TOKEN_FILE):
        return BearerAuth(token_file=env[ENV_TOKEN_FILE], source=ENV_TOKEN_FILE)
    if env.get(ENV_API_KEY):
        return ApiKeyAuth(env[ENV_API_KEY], source=ENV_API_KEY)
    raise ProviderError(f"no Domino credentials: set {ENV_API_KEY} (an API key), {ENV_TOKEN_FILE} "
                        f"(a file holding a bearer token) or {ENV_PROXY} (inside a Domino run)")
