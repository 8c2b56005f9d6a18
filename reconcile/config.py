"""Configuration: `[tool.flows]` in pyproject.toml or flows.toml at the project root, then env vars.

Defaults are the embedded ones: local provider, local state in `.flows/state/`, local blobs in
`.flows/blobs/`. Factories here build the backend, blob store and provider a command needs
(S3 and Domino modules are imported only when configured, to keep start-up fast).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vocab.errors import ConfigError
from reconcile.settings import env_overrides, flows_dir, flows_dir_of, raw_settings

__all__ = ["FlowsConfig", "load_config", "raw_settings", "flows_dir", "make_backend", "make_blob_store",
           "make_provider", "local_state_dir", "load_timeout"]

if TYPE_CHECKING:  # the implementations are imported only when configured
    from providers.base import Provider
    from providers.blobs.base import BlobStore
    from state.backend import Backend
    from vocab.digest import StatCache


# What boto3 accepts as a bucket name (its own check fails with a multi-line regex message): said in one line.
_BUCKET = re.compile(r"[a-zA-Z0-9.\-_]{1,255}")


def _check_bucket(name: str) -> str:
    if not _BUCKET.fullmatch(name):
        raise ValueError(f"{name!r} is not an S3 bucket name (letters, digits, '.', '-', '_'; "
                         "AWS wants 3-63 lowercase letters, digits, '.' and '-')")
    return name


class BackendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["local", "s3"] = "local"
    path: str | None = None                # local: folder of state files (default .flows/state)
    bucket: str | None = None
    key: str = "flows/{flow}.json"
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    kms_key_id: str | None = None
    encrypt: bool = False
    lease_seconds: float = 120.0

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, v: str | None) -> str | None:
        return None if v is None else _check_bucket(v)


class BlobsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = None                 # local folder or s3://bucket/prefix/ (default .flows/blobs)
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None

    @field_validator("url")
    @classmethod
    def _bucket_name(cls, v: str | None) -> str | None:
        if v is not None and v.startswith("s3://"):
            _check_bucket(v[len("s3://"):].split("/", 1)[0])
        return v


class ProviderConfig(BaseModel):
    model_config = ConfigDict(extra="allow")  # provider-specific settings (Domino host, poll interval, ...)
    type: Literal["local", "domino"] = "local"


class FlowsConfig(BaseModel):
    project_root: Path
    dir: Path                               # .flows: stat cache, logs, local state and blobs
    backend: BackendConfig = Field(default_factory=BackendConfig)
    blobs: BlobsConfig = Field(default_factory=BlobsConfig)
    provider: ProviderConfig = Field(default_factory=ProviderConfig)
    parallelism: int | None = None
    load_timeout: float = Field(default=60.0, gt=0)  # seconds a flow file may take to import and trace


DEFAULT_LOAD_TIMEOUT = 60.0


def load_timeout(project_root: Path) -> float:
    """Seconds a flow file may take to load: FLOWS_LOAD_TIMEOUT, else `load_timeout` in [tool.flows], else 60.

    Read before the flow is imported, without building the whole configuration."""
    raw = os.environ.get("FLOWS_LOAD_TIMEOUT")
    source = "FLOWS_LOAD_TIMEOUT"
    if not raw:
        settings, file = raw_settings(project_root)
        raw, source = settings.get("load_timeout"), f"load_timeout in {file}"
    if raw is None or raw == "":
        return DEFAULT_LOAD_TIMEOUT
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{source}: expected a positive number of seconds, got {raw!r}")
    return value


def load_config(project_root: Path) -> FlowsConfig:
    settings, source = raw_settings(project_root)
    settings = env_overrides(settings)
    folder = flows_dir_of(project_root, settings)
    settings.pop("dir", None)
    try:
        return FlowsConfig(project_root=project_root, dir=folder, **settings)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"[tool.flows] {loc}: {first['msg'].removeprefix('Value error, ')}", file=source) from None


def make_backend(cfg: FlowsConfig) -> Backend:
    b = cfg.backend
    if b.type == "s3":
        from state.s3 import S3Backend  # noqa: PLC0415 - boto3 only when needed
        if not b.bucket:
            raise ConfigError("[tool.flows.backend] type = \"s3\" needs a bucket")
        return S3Backend(bucket=b.bucket, key=b.key, region=b.region, endpoint_url=b.endpoint_url,
                         profile=b.profile, kms_key_id=b.kms_key_id, encrypt=b.encrypt,
                         lease_seconds=b.lease_seconds)
    from state.local import LocalBackend
    return LocalBackend(local_state_dir(cfg), lease_seconds=b.lease_seconds)


def local_state_dir(cfg: FlowsConfig) -> Path:
    path = Path(cfg.backend.path) if cfg.backend.path else cfg.dir / "state"
    return path if path.is_absolute() else cfg.project_root / path


def make_blob_store(cfg: FlowsConfig, digests: StatCache | None = None) -> BlobStore:
    """`digests`: the command's stat cache, with which a local store checks a blob before each use."""
    url = cfg.blobs.url
    if url and url.startswith("s3://"):
        from providers.blobs.s3 import S3BlobStore  # noqa: PLC0415
        return S3BlobStore(url, region=cfg.blobs.region, endpoint_url=cfg.blobs.endpoint_url,
                           profile=cfg.blobs.profile)
    from providers.blobs.local import LocalBlobStore
    path = Path(url) if url else cfg.dir / "blobs"
    if not path.is_absolute():
        path = cfg.project_root / path
    return LocalBlobStore(path, digests)


def make_provider(cfg: FlowsConfig, blobs: BlobStore) -> Provider:
    if cfg.provider.type == "domino":
        from providers.domino.provider import DominoProvider  # noqa: PLC0415
        return DominoProvider.from_config(cfg, blobs)
    from providers.local import LocalProvider
    hide = [] if cfg.backend.type == "s3" else [local_state_dir(cfg)]  # jobs must not see the state
    return LocalProvider(blobs=blobs, logs_dir=cfg.dir / "logs", domino_settings=cfg.provider.model_extra or {},
                         hide=hide)
