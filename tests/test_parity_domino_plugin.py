"""Our `flytekitplugins.domino` names against the real plugin, which is not public: its signatures come from
the vendored copies of `task.py` and the call sites collected in ../shared/research/domino-api.md (§5),
tagged here with that file's source tags. A difference is listed with why.
"""
from __future__ import annotations

import datetime as dt
import inspect

from reconcile.authoring_imports import shim_modules

# (module, name) -> the leading parameters as the source shows them: [(name, default or REQUIRED)].
REQUIRED = object()
REAL = {
    ("task", "GitRef"): [("Type", REQUIRED), ("Value", None)],                                  # FP-a
    ("task", "EnvironmentRevisionSpecification"): [("EnvironmentRevisionType", REQUIRED),
                                                   ("EnvironmentRevisionId", None)],           # FP-a
    ("task", "DatasetSnapshot"): [("DatasetId", REQUIRED), ("SnapshotVersion", REQUIRED),
                                  ("DatasetName", None)],                                     # FP-a
    ("task", "ClusterProperties"): [("ClusterType", REQUIRED), ("ComputeEnvironmentId", REQUIRED),
                                    ("WorkerHardareTierId", REQUIRED), ("WorkerCount", REQUIRED),
                                    ("WorkerStorageGiB", None), ("MaxWorkerCount", None),
                                    ("ComputeEnvironmentRevisionSpec", None), ("MasterHardwareTierId", None),
                                    ("ExtraConfigs", None)],                                  # FP-a
    ("task", "DominoJobTask"): [("name", REQUIRED), ("domino_job_config", REQUIRED), ("use_latest", False),
                                ("inputs", None), ("outputs", None), ("log_level", 20), ("cache", False),
                                ("cache_serialize", False), ("cache_version", ""), ("cache_ignore_input_vars", ()),
                                ("retries", 0), ("timeout", dt.timedelta(hours=3))],          # FP-a + FP-patch
    ("helpers", "Input"): [("name", REQUIRED), ("type", REQUIRED), ("value", REQUIRED)],       # DOCS, TF
    ("helpers", "Output"): [("name", REQUIRED), ("type", REQUIRED)],                           # DOCS, TF
    ("artifact", "Artifact"): [("name", REQUIRED), ("type", REQUIRED)],                        # DOCS
    ("artifact", "ExportArtifactToDatasetsSpec"): [("artifact", REQUIRED), ("dataset_id", REQUIRED)],  # TF, EX
    ("artifact", "ExportArtifactToNetAppVolumesSpec"): [("artifact", REQUIRED), ("netapp_volume_id", REQUIRED),
                                                        ("target_relative_path", None)],      # TF, EX
    ("artifact", "ExportArtifactFilesToBundleSpec"): [("files", REQUIRED), ("bundles", REQUIRED)],   # call sites
}
DIFFERENCES = {
    "ClusterProperties(WorkerHardareTierId)": "optional: newer call sites spell it WorkerHardwareTierId (also taken)",
    "ClusterProperties(WorkerCount)": "optional, as a consequence (a dataclass field after an optional one)",
    "DominoJobTask(domino_job_config)": "optional: the plugin's older keyword task_config= is taken too",
    "DominoJobTask(cache)": "default None, not False: the reconciler reuses a result whose key matches unless "
                            "cache=False is written (DESIGN decision 9)",
    "DatasetSnapshot(DatasetId)": "optional: newer call sites write DatasetSnapshot(Id=, Version=) or (Name=, Version=)",
    "DatasetSnapshot(SnapshotVersion)": "as DatasetId",
    "Input(value)": "default None: an input with no value is reported as missing when the flow is traced",
    "Artifact(type)": "default DATA",
}
# Keywords real call sites pass to the helpers (research §5 and the collected flows).
RUN_DOMINO_JOB_TASK = ["flyte_task_name", "command", "job_title", "inputs", "output_specs", "environment_name",
                       "environment_id", "environment_revision_id", "hardware_tier_name", "hardware_tier_id",
                       "main_git_repo_ref", "dfs_repo_commit_id", "dataset_snapshots", "netapp_volume_snapshots",
                       "external_data_volumes", "volume_size_gib", "use_project_defaults_for_omitted", "cache",
                       "cache_version", "use_latest_git_ref"]
EXPORT_TASK = ["spec_list", "environment_name", "hardware_tier_name", "hardware_tier_id",
               "use_project_defaults_for_omitted"]
CONFIG_FIELDS = ["OwnerName", "ProjectName", "ApiKey", "Command", "Title", "CommitId", "MainRepoGitRef",
                 "HardwareTierId", "EnvironmentId", "EnvironmentRevisionSpec", "ComputeClusterProperties",
                 "VolumeSizeGiB", "DatasetSnapshots", "ExternalVolumeMountIds"]               # FP-a


def _ours(module: str, name: str) -> object:
    return getattr(shim_modules()[f"flytekitplugins.domino.{module}"], name)


def test_signatures_match_the_plugins_sources():
    problems = []
    for (module, name), params in REAL.items():
        sig = inspect.signature(_ours(module, name))
        ours = [p for p in sig.parameters.values() if p.name != "self" and p.kind is not p.VAR_KEYWORD]
        if [p.name for p in ours[:len(params)]] != [n for n, _ in params]:
            problems.append(f"{name}: parameters {[p.name for p in ours]} do not start with {[n for n, _ in params]}")
            continue
        for p, (pname, default) in zip(ours, params):
            mine = REQUIRED if p.default is inspect.Parameter.empty else p.default
            if mine != default and f"{name}({pname})" not in DIFFERENCES:
                theirs = "(required)" if default is REQUIRED else repr(default)
                problems.append(f"{name}({pname}): default {mine!r} != the plugin's {theirs}")
    assert problems == [], "\n".join(problems)


def test_helpers_take_every_keyword_real_call_sites_pass():
    for module, name, keywords in (("helpers", "run_domino_job_task", RUN_DOMINO_JOB_TASK),
                                   ("artifact", "run_launch_export_artifacts_task", EXPORT_TASK)):
        params = inspect.signature(_ours(module, name)).parameters
        assert [k for k in keywords if k not in params] == [], name


def test_job_config_has_the_plugins_fields_and_resolution_api():
    config = _ours("task", "DominoJobConfig")
    fields = inspect.signature(config).parameters
    assert [f for f in CONFIG_FIELDS if f not in fields] == []
    for method in ("is_resolved", "unresolved_fields", "resolve_job_properties", "to_json"):
        assert callable(getattr(config, method))
    kinds = {m.name for m in _ours("task", "EnvironmentRevisionType")}
    assert {"SomeRevision", "RestrictedRevision", "ActiveRevision", "LatestRevision"} <= kinds  # FP-a, FP-c
