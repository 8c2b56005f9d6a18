"""The emulator's world: projects with their environments, hardware tiers and commits, and the faults
to inject. Ids look like Domino's (24-hex ObjectIds, 40-hex commits) and are stable across runs."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr


class EnvironmentSpec(BaseModel):
    id: str
    name: str
    revisions: list[str]                 # oldest first; the last is the latest
    active_revision: str | None = None   # default: the first

    @property
    def active(self) -> str:
        return self.active_revision or self.revisions[0]


class HardwareTierSpec(BaseModel):
    id: str
    name: str
    is_default: bool = False
    cores: float = 1.0
    memory_gib: float = 4.0


class ProjectSpec(BaseModel):
    id: str
    owner: str
    name: str
    dir: Path                            # where job commands run
    commits: list[str]                   # DFS commits, oldest first; the last is the latest
    git_head: str | None = None          # a git-based project: the main repo's head commit
    environments: list[EnvironmentSpec]
    default_environment_id: str
    hardware_tiers: list[HardwareTierSpec]
    volume_size_gib: float = 10.0

    @property
    def working_dir(self) -> str:
        """`DOMINO_WORKING_DIR`: a git-based project's code is at /mnt/code, a DFS project's at /mnt."""
        return "/mnt/code" if self.git_head is not None else "/mnt"

    def environment(self, env_id: str) -> EnvironmentSpec | None:
        return next((e for e in self.environments if e.id == env_id), None)

    def tier(self, tier_id: str) -> HardwareTierSpec | None:
        return next((t for t in self.hardware_tiers if t.id == tier_id), None)

    @property
    def default_tier(self) -> HardwareTierSpec:
        return next((t for t in self.hardware_tiers if t.is_default), self.hardware_tiers[0])


class JobRule(BaseModel):
    match: str                           # a substring of commandToRun
    outcome: Literal["fail", "hang", "die"]


class Faults(BaseModel):
    error_rate: float = 0.0              # share of requests answered 500/502/503/504 (not processed)
    reset_rate: float = 0.0              # share of connections dropped before processing
    lost_response_rate: float = 0.0      # share processed, then the connection dropped (answer lost)
    seed: int = 0
    paths: list[str] = Field(default_factory=list)   # path prefixes the faults apply to (empty: all)
    queue_seconds: float = 0.0           # how long each job stays Queued
    job_rules: list[JobRule] = Field(default_factory=list)


class EmulatorConfig(BaseModel):
    projects: list[ProjectSpec]
    api_key: SecretStr | None = None
    tokens: list[SecretStr] = Field(default_factory=list)
    trust_proxy: bool = False            # accept calls with no credentials (we play the in-run API proxy)
    username: str = "flows-user"
    version: str = "6.0.0"
    faults: Faults = Field(default_factory=Faults)
    work_dir: Path | None = None         # where job folders go (default: a temporary folder)
    # Realistic mode: what a real Domino does that a friendly emulator would not. Each job runs as a
    # non-root user (uid/gid `job_user`) with only the system Python on its PATH (so this project is not
    # importable), no cloud credentials and nothing of this process's environment, a root-owned
    # /workflow it cannot write, the project at DOMINO_WORKING_DIR (/mnt for DFS projects); jobRunCommand
    # comes back in Domino's own quoting; every finished job commits its results (the project's commit
    # moves); `latency_seconds` delays every answer.
    realistic: bool = False
    job_user: int = 65534
    latency_seconds: float = 0.0


def hexid(*parts: object) -> str:
    """A 24-hex id, like Domino's Mongo ObjectIds, stable for the same parts."""
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:24]


def commit_sha(*parts: object) -> str:
    return hashlib.sha1(("commit/" + "/".join(map(str, parts))).encode()).hexdigest()


def demo_project(project_dir: Path, owner: str = "flows-user", name: str = "demo", *,
                 git: bool = False) -> ProjectSpec:
    """A small, realistic project: two environments (active ≠ latest revision) and three tiers."""
    envs = [EnvironmentSpec(id=hexid(name, "env", i), name=env_name,
                            revisions=[hexid(name, "env", i, "rev", r) for r in (1, 2)])
            for i, env_name in enumerate(["Domino Standard Environment Py3.11", "Flows Runtime Py3.11"])]
    tiers = [HardwareTierSpec(id="small-k8s", name="Small", is_default=True, cores=1, memory_gib=4),
             HardwareTierSpec(id="medium-k8s", name="Medium", cores=4, memory_gib=16),
             HardwareTierSpec(id="gpu-small-k8s", name="GPU (small)", cores=4, memory_gib=16)]
    return ProjectSpec(id=hexid(owner, name), owner=owner, name=name, dir=project_dir,
                       commits=[commit_sha(owner, name, 1)], git_head=commit_sha(owner, name, "git", 1) if git else None,
                       environments=envs, default_environment_id=envs[0].id, hardware_tiers=tiers)
