"""Secret redaction: API keys and secret-looking environment values never reach any output.

Masked: every value registered with `register_secret` (a Domino API key or token read from its file), and the
value of every environment variable whose name says KEY/TOKEN/SECRET/PASSWORD when the value looks like a
secret (`looks_like_secret`: not a path, a URL without credentials, a number, a flag or plain words).

Everything the tool prints or writes (state, plan files, logs, errors) goes through `redact`, which masks each
secret both as it is and as JSON text escapes it.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any

SECRET_ENV_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
MASK = "***"
_MIN_LEN = 4  # shorter values would mask ordinary words
_ENV_MIN_LEN = 6
_NOT_SECRET = {"true", "false", "yes", "no", "none", "null", "on", "off", "enabled", "disabled"}
_registered: set[str] = set()
# A presigned S3 URL's signing parameters (SigV4 and SigV2): whoever holds them can read or write the object.
_PRESIGNED = re.compile(r"((?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|AWSAccessKeyId)=)"
                        r"[^&\s'\"]+")


def register_secret(value: str | None) -> None:
    if value and len(value) >= _MIN_LEN:
        _registered.add(value)


_cache: tuple[object, list[str]] | None = None


_env_seen: dict[Any, Any] | None = None  # the environment as last seen by env_signature (a copy)
_env_version = 0


def env_signature() -> object:
    """Cheap identity of the environment and the registered secrets: redact runs thousands of times a plan (and
    several times per job of an apply). A version that moves whenever the environment differs from the last look:
    one comparison of two dicts in C, where hashing a tuple of its items allocated one per variable."""
    global _env_seen, _env_version
    raw = getattr(os.environ, "_data", None)  # CPython keeps the encoded environment here: no decoding needed
    if not isinstance(raw, dict):
        return (tuple(os.environ.items()), len(_registered))
    if raw != _env_seen:
        _env_seen = dict(raw)
        _env_version += 1
    return (_env_version, len(_registered))


def secret_values() -> list[str]:
    global _cache
    signature = env_signature()
    if _cache is not None and _cache[0] == signature:
        return _cache[1]
    values = _compute_secret_values()
    _cache = (signature, values)
    return values


# A variable that names where something is (DOMINO_TOKEN_FILE, SSH_KEY_DIR) holds a location, not a secret.
LOCATION_ENV_NAME = re.compile(r"_(FILE|PATH|DIR|FOLDER|HOME)$", re.IGNORECASE)
# One or more plain words: `team-data`, `prod`, `eu-west-1-bucket` is not (it has digits) and is masked.
_LONGEST_WORD = 15
_WORDS = re.compile(r"[a-z]+(?:[-_. ][a-z]+)*|[A-Z]+(?:[-_. ][A-Z]+)*")


def looks_like_secret(value: str) -> bool:
    """Whether an environment value is masked: a secret *looks* like one (a key, a token, a password with a
    digit or mixed case); a path, a URL without credentials, a number, a flag or plain words are ordinary text
    that happens to sit in a *_KEY/*_TOKEN variable, and masking them would hide paths and words everywhere
    (`Error: ***/bad/raises.py`)."""
    if len(value) < _ENV_MIN_LEN or value.lower() in _NOT_SECRET or value.isdigit():
        return False
    if any(c.isspace() for c in value):
        return False
    if _WORDS.fullmatch(value) and max(len(w) for w in re.split(r"[-_. ]", value)) <= _LONGEST_WORD:
        return False  # plain words; a 30-letter "word" is a random string
    if value.startswith(("/", "./", "../", "~")) or os.path.exists(value):
        return False
    if re.fullmatch(r"[a-z][a-z0-9+.-]*://[^@/]*(/[^@]*)?", value, re.IGNORECASE):  # no user:password@
        return False
    return True


def _compute_secret_values() -> list[str]:
    found = set(_registered)
    for name, value in os.environ.items():
        if SECRET_ENV_NAME.search(name) and not LOCATION_ENV_NAME.search(name) and value and looks_like_secret(value):
            found.add(value)
    # Each also as JSON text shows it: a secret with a quote, a backslash, a line break or (ASCII-escaped) a
    # non-ASCII letter appears in a stored document only escaped, and inside a fingerprint's stored text
    # (`state.fingerprint_text`) escaped twice.
    forms = set(found)
    for value in found:
        for ascii_only in (False, True):
            once = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
            forms.update((once, json.dumps(once, ensure_ascii=ascii_only)[1:-1]))
    # Longest first so a secret containing another is masked whole.
    return sorted(forms, key=len, reverse=True)


def redact(text: str) -> str:
    return _redact(text, secret_values())


def _redact(text: str, values: list[str]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    if "X-Amz-" in text or "Signature=" in text:
        text = _PRESIGNED.sub(r"\1" + MASK, text)
    return text


def redact_bytes(data: bytes, values: list[str] | None = None) -> bytes:
    """`redact` of UTF-8 text given as bytes, without decoding it when there is nothing to mask (the usual case):
    a 10,000-node state is 30+ MB, and each decoded or re-encoded copy of it is that much more memory. `values`:
    `secret_values()`, looked up once by a caller masking a document piece by piece."""
    values = secret_values() if values is None else values
    if not any(value.encode() in data for value in values) and \
            b"X-Amz-" not in data and b"Signature=" not in data:
        return data
    return _redact(data.decode(), values).encode()


def redact_obj(obj: Any) -> Any:
    """Redact every string inside a JSON-like structure (the secrets are looked up once for all of them)."""
    return _redact_obj(obj, secret_values())


def _redact_obj(obj: Any, values: list[str]) -> Any:
    if isinstance(obj, str):
        return _redact(obj, values)
    if isinstance(obj, dict):
        return {_redact_obj(k, values): _redact_obj(v, values) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_redact_obj(v, values) for v in obj]
    return obj


def json_masked(obj: Any, values: list[str] | None = None) -> str:
    """`json.dumps(redact_obj(obj), ensure_ascii=False)`, without walking `obj` when its text holds nothing to mask:
    JSON escapes a string character by character, so a secret inside a string shows in the text as the secret's
    own JSON form, which `secret_values` lists too (a match that is not one only costs the walk). `values`: as for
    `redact_bytes`."""
    text = json.dumps(obj, ensure_ascii=False)
    values = secret_values() if values is None else values
    if "X-Amz-" in text or "Signature=" in text or any(v in text for v in values):
        return json.dumps(_redact_obj(obj, values), ensure_ascii=False)
    return text
