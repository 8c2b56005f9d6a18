"""One command's view of a project: configuration, state backend, blob store, provider, stat cache."""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from reconcile.config import FlowsConfig, load_config, make_backend, make_blob_store, make_provider
from vocab.digest import StatCache
from reconcile.fingerprint import upgrade_keys
from state.store import StateStore, StateView

if TYPE_CHECKING:
    from providers.base import Provider
    from providers.blobs.base import BlobStore
    from state.backend import Backend


class Workspace:
    def __init__(self, project_root: Path, config: FlowsConfig | None = None) -> None:
        self.project_root = project_root
        self.config = config or load_config(project_root)

    @cached_property
    def backend(self) -> Backend:
        return make_backend(self.config)

    @cached_property
    def blobs(self) -> BlobStore:
        return make_blob_store(self.config, self.digests)

    @cached_property
    def provider(self) -> Provider:
        return make_provider(self.config, self.blobs)

    @cached_property
    def digests(self) -> StatCache:
        return StatCache(self.config.dir / "statcache.json")

    @property
    def logs_dir(self) -> Path:
        return self.config.dir / "logs"

    def store(self, flow: str) -> StateStore:
        """The one owner of `flow`'s state: every read and change of it goes through this."""
        return StateStore(self.backend, flow, self.config.backend.lease_seconds)

    def read_state(self, flow: str) -> StateView:
        """Read without locking; a journal left by a crashed apply is folded in memory (not written)."""
        view = self.store(flow).view()
        view.rekeyed = upgrade_keys(view.state)
        return view

    def remote_digest(self, uri: str) -> str:
        """Digest of an s3:// input, cached by (uri, etag, size) so an unchanged object is not re-read."""
        from providers.blobs.s3_inputs import s3_object_digest  # noqa: PLC0415 - boto3 only when needed
        return s3_object_digest(uri, self.digests, self.config.blobs)
