"""`[tool.flows]` as written (flows.toml or pyproject.toml) with the FLOWS_* overrides, and the project's `.flows`
folder: plain dicts, no models, so the no-op plan shortcut can read them cheaply. `reconcile.config` builds the
checked configuration from these."""
from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from vocab.errors import ConfigError


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}", file=str(path)) from None


def raw_settings(project_root: Path) -> tuple[dict[str, Any], str | None]:
    """The [tool.flows] table as written, and the file it came from (None: no configuration file)."""
    flows_toml = project_root / "flows.toml"
    if flows_toml.is_file():
        data = _read_toml(flows_toml)
        return data.get("tool", {}).get("flows", data), str(flows_toml)
    pyproject = project_root / "pyproject.toml"
    if pyproject.is_file():
        data = _read_toml(pyproject)
        return data.get("tool", {}).get("flows", {}), str(pyproject)
    return {}, None


def env_overrides(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings with FLOWS_PROVIDER, FLOWS_BACKEND, ... applied (a copy)."""
    env = os.environ
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in settings.items()}
    if env.get("FLOWS_PROVIDER"):
        out.setdefault("provider", {})["type"] = env["FLOWS_PROVIDER"]
    if env.get("FLOWS_BACKEND"):
        out.setdefault("backend", {})["type"] = env["FLOWS_BACKEND"]
    if env.get("FLOWS_STATE_PATH"):
        out.setdefault("backend", {})["path"] = env["FLOWS_STATE_PATH"]
    if env.get("FLOWS_BLOBS_URL"):
        out.setdefault("blobs", {})["url"] = env["FLOWS_BLOBS_URL"]
    if env.get("FLOWS_LOAD_TIMEOUT"):
        out["load_timeout"] = env["FLOWS_LOAD_TIMEOUT"]
    if env.get("FLOWS_PARALLELISM"):
        out["parallelism"] = env["FLOWS_PARALLELISM"]
    return out


def flows_dir_of(project_root: Path, settings: dict[str, Any]) -> Path:
    folder = Path(os.environ.get("FLOWS_DIR") or settings.get("dir", None) or project_root / ".flows")
    return folder if folder.is_absolute() else project_root / folder


def flows_dir(project_root: Path) -> Path:
    """The project's `.flows` folder (FLOWS_DIR, else `dir` in [tool.flows]), without building the whole
    configuration."""
    return flows_dir_of(project_root, raw_settings(project_root)[0])
