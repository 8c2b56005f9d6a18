"""Flow files written the way Domino's users write them load: helper modules beside the flow that import
flytekit / python-domino for run time, DominoFile, export specs, the plugin's resolution API, by-name settings,
old `domino.flyte` imports and aliases, several workflows in one file.

The flows live in tests/flows/clinical and tests/flows/legacy (written for these tests, shaped like real ones).
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vocab.errors import FlowLoadError, NotSupportedError
from reconcile.loader import load_every_workflow, load_flow

FLOWS = Path(__file__).parent / "flows"
CLINICAL = FLOWS / "clinical" / "flow.py"
LEGACY = FLOWS / "legacy" / "flow.py"
FLOWS_SCRIPT = Path(sys.executable).parent / "flows"


def line_of(path: Path, marker: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if marker in line)


def test_helper_module_imports_flytekit_loggers_core_and_domino_at_load_time():
    g = load_flow(CLINICAL, "adam_tfl")
    assert g.order() == ["adam_tfl/DM SDTM", "adam_tfl/AE SDTM", "adam_tfl/Create ADSL", "adam_tfl/Create ADAE",
                         "adam_tfl/Create T_AE_REL", "adam_tfl/export artifacts"]
    adae = g.nodes["adam_tfl/Create ADAE"]  # built by the helper module
    assert adae.command == "prod/adam/adae.sas" and adae.cache_version == "2"
    assert (adae.bindings["ae"].node, adae.bindings["adsl"].node) == ("adam_tfl/AE SDTM", "adam_tfl/Create ADSL")


def test_using_a_run_time_name_while_tracing_names_the_helper_line():
    helpers = FLOWS / "clinical" / "study_utils.py"
    for workflow, marker, name in (("asks_domino_while_traced", "mark:domino-call", "domino.Domino"),
                                   ("checks_promises", "mark:isinstance", "flytekit.core.promise.Promise")):
        with pytest.raises(NotSupportedError) as info:
            load_flow(CLINICAL, workflow)
        e = info.value
        assert (e.file, e.line) == (str(helpers), line_of(helpers, marker))
        assert e.message.startswith(f"not supported: {name} (")


def test_domino_file_is_a_flyte_file_with_its_format():
    g = load_flow(CLINICAL, "adam_tfl")
    assert g.nodes["adam_tfl/AE SDTM"].outputs == {"ae": "file[sas7bdat]"}           # DominoFile[TypeVar("sas7bdat")]
    assert g.nodes["adam_tfl/Create ADAE"].inputs == {"ae": "file[sas7bdat]", "adsl": "file[sas7bdat]"}


def test_identical_duplicate_output_loads_with_a_warning_naming_file_and_line():
    g = load_flow(CLINICAL, "adam_tfl")
    assert g.nodes["adam_tfl/DM SDTM"].outputs == {"dm": "file[sas7bdat]"}
    line = line_of(CLINICAL, "flyte_task_name=\"DM SDTM\"") - 1  # the call's first line
    assert g.warnings == [f"{CLINICAL}:{line}: task 'DM SDTM': output 'dm' is declared twice in output_specs "
                          "(the same type; one is kept)"]


def test_duplicate_output_with_another_type_stays_an_error(tmp_path):
    flow = tmp_path / "flow.py"
    flow.write_text(textwrap.dedent("""\
        from typing import TypeVar
        from flytekit import workflow
        from flytekit.types.file import FlyteFile
        from flytekitplugins.domino.helpers import Output, run_domino_job_task

        @workflow
        def wf():
            run_domino_job_task(flyte_task_name="t", command="python t.py",
                                output_specs=[Output(name="x", type=FlyteFile[TypeVar("csv")]),
                                              Output(name="x", type=FlyteFile[TypeVar("pdf")])])
        """))
    with pytest.raises(FlowLoadError) as info:
        load_flow(flow)
    assert info.value.render() == (f"{flow}:8: node 't': output_specs: output 'x' is declared twice, with different "
                                   "types (file[csv] and file[pdf])")


def test_export_specs_positional_keyword_alias_and_bundles():
    export = load_flow(CLINICAL, "adam_tfl").nodes["adam_tfl/export artifacts"]
    assert export.export_specs == [
        {"kind": "ExportArtifactToDatasetsSpec", "artifact": "ADaM Datasets", "dataset_id": "adam-dataset-id"},
        {"kind": "ExportArtifactToNetAppVolumesSpec", "artifact": "ADaM Datasets", "netapp_volume_id": "vol-7",
         "target_relative_path": "ADaM"},
        {"kind": "ExportArtifactFilesToBundleSpec", "artifact": "ADaM Datasets", "bundle_id": "Study 101 submission",
         "files": ["adsl.sas7bdat"]},
        {"kind": "ExportArtifactFilesToBundleSpec", "artifact": "TFL Reports", "bundle_id": "Study 101 submission",
         "files": ["t_ae_rel.pdf"]},
    ]
    assert {k: b.node for k, b in export.bindings.items()} == {
        "ADaM_Datasets.adsl.sas7bdat": "adam_tfl/Create ADSL", "ADaM_Datasets.adae.sas7bdat": "adam_tfl/Create ADAE",
        "TFL_Reports.t_ae_rel.pdf": "adam_tfl/Create T_AE_REL"}
    assert export.job_config == {"EnvironmentName": "Domino Standard Environment", "HardwareTierName": "Small"}


def test_resolution_api_and_by_name_settings_reach_the_node():
    g = load_flow(CLINICAL, "adam_tfl")
    adae = g.nodes["adam_tfl/Create ADAE"]
    # resolve_job_properties() in the helper: the provider resolves the project's defaults when it plans
    assert adae.resolve_defaults
    assert adae.job_config == {"DatasetSnapshots": [{"DatasetId": "sdtm-ds", "SnapshotVersion": 4,
                                                     "DatasetName": "SDTM"}],
                               "EnvironmentName": "SAS Analytics Pro", "HardwareTierName": "Small"}
    # use_latest_git_ref=True: the main repo's head, resolved when planned
    assert g.nodes["adam_tfl/DM SDTM"].job_config == {"MainRepoGitRef": {"Type": "head"}}
    assert g.nodes["adam_tfl/Create ADSL"].job_config == {"EnvironmentName": "SAS Analytics Pro"}
    assert g.nodes["adam_tfl/Create T_AE_REL"].job_config == {"HardwareTierName": "Small"}


def test_domino_job_config_resolution_api_has_the_plugins_meaning():
    from reconcile.authoring.domino_task import (DatasetSnapshot, DominoJobConfig, EnvironmentRevisionSpecification,
                                                 EnvironmentRevisionType, GitRef)
    bare = DominoJobConfig(Command="python a.py")
    assert not bare.is_resolved()
    assert bare.unresolved_fields() == ["commitId", "hardwareTierId", "environmentId", "environmentRevisionSpec",
                                        "volumeSizeGiB", "datasetSnapshots", "externalVolumeMountIds"]
    bare.resolve_job_properties()
    assert bare.resolution_wanted
    full = DominoJobConfig(Command="python a.py", CommitId="c1", HardwareTierId="small", EnvironmentId="e1",
                           EnvironmentRevisionSpec=EnvironmentRevisionSpecification(
                               EnvironmentRevisionType.SomeRevision, "r1"),
                           VolumeSizeGiB=10, DatasetSnapshots=[DatasetSnapshot("d1", 2)], ExternalVolumeMountIds=[],
                           MainRepoGitRef=GitRef("commitId", "abc"))
    assert full.is_resolved() and full.unresolved_fields() == []
    full.resolve_job_properties()
    assert not full.resolution_wanted  # nothing left to resolve: as the plugin, a no-op
    assert full.to_json() == {
        "ownerName": None, "projectName": None, "apiKey": None, "command": "python a.py", "commitId": "c1",
        "hardwareTierId": {"value": "small"}, "environmentId": "e1",
        "environmentRevisionSpec": {"_type": "domino.environments.api.SomeRevision", "revisionId": "r1"},
        "datasetSnapshots": [{"datasetId": "d1", "snapshotVersion": 2, "datasetName": None}],
        "externalVolumeMountIds": [], "volumeSizeGiB": 10, "title": None,
        "mainRepoGitRef": {"type": "commitId", "value": "abc"}, "computeClusterProperties": None,
        "inputInterfaceBase64": None, "inputOutputInterfaceBase64": None}


HEADER = """\
from flytekit import task, workflow
from flytekitplugins.domino.helpers import Output, run_domino_job_task
from flytekitplugins.domino.task import DominoJobConfig, DominoJobTask, GitRef
"""


@pytest.mark.parametrize("body, message", [
    ('DominoJobTask(name="t", domino_job_config=DominoJobConfig(Command="x"), cache_versoin="1")',
     "DominoJobTask has no keyword 'cache_versoin' (did you mean 'cache_version'?)"),
    ('DominoJobTask(name="t", domino_job_config=DominoJobConfig(Command="x"), hardware_tier="Small")',
     "DominoJobTask has no keyword 'hardware_tier' (did you mean 'hardware_tier_name'?)"),
    ('DominoJobConfig(Comand="python t.py")', "DominoJobConfig has no keyword 'Comand' (did you mean 'Command'?)"),
    ('GitRef(type="head")', "GitRef has no keyword 'type' (did you mean 'Type'?)"),
    ('run_domino_job_task("t", "python t.py", use_latest_gitref=True)',
     "run_domino_job_task has no keyword 'use_latest_gitref' (did you mean 'use_latest_git_ref'?)"),
    ('Output(nmae="x", type=int)', "Output has no keyword 'nmae' (did you mean 'name'?)"),
    ('@task(cache_verison="1")\ndef f() -> int:\n    return 1',
     "@task has no keyword 'cache_verison' (did you mean 'cache_version'?)"),
])
def test_unknown_keyword_is_an_error_naming_it_with_did_you_mean(tmp_path, body, message):
    flow = tmp_path / "flow.py"
    line = 4 if body.startswith("@") else 6  # a decorator's line, or the call's line in the workflow body
    body = body if body.startswith("@") else f"@workflow\ndef wf():\n    {body}\n"
    flow.write_text(HEADER + body + "\n\n@workflow\ndef other():\n    return\n")
    with pytest.raises(FlowLoadError) as info:
        load_flow(flow, "wf" if "def wf" in body else "other")
    assert info.value.message == message
    assert (info.value.file, info.value.line) == (str(flow), line)


def test_use_latest_git_ref_with_a_pinned_ref_is_an_error(tmp_path):
    flow = tmp_path / "flow.py"
    flow.write_text(HEADER + textwrap.dedent("""\
        @workflow
        def wf():
            run_domino_job_task("t", "python t.py", main_git_repo_ref=GitRef("commitId", "abc"),
                                use_latest_git_ref=True)
        """))
    with pytest.raises(FlowLoadError) as info:
        load_flow(flow)
    assert info.value.render() == (f"{flow}:6: node 't': use_latest_git_ref=True asks for the main repo's latest "
                                   "commit, but the git ref (commitId abc) chooses another; keep one of them")


def test_flytekit_task_settings_flows_does_not_use_are_a_warning_not_silence(tmp_path):
    flow = tmp_path / "flow.py"
    flow.write_text(HEADER + textwrap.dedent("""\
        from flytekit import Resources

        @task(requests=Resources(cpu="2"), container_image="ghcr.io/x/y:1", retries=2)
        def f() -> int:
            return 1

        @workflow
        def wf() -> int:
            return f()
        """))
    g = load_flow(flow)
    assert g.nodes["wf/f"].retries == 2
    assert g.warnings == [f"{flow}:6: @task 'f': container_image, requests ignored (flytekit settings for how Flyte "
                          "runs it; flows runs it with its provider)"]


def test_old_imports_aliases_and_several_workflows():
    results = dict(load_every_workflow(LEGACY))
    assert list(results) == ["only_a", "only_b", "both"]
    both = results["both"]
    assert both.order() == ["both/only_a/Load Data A", "both/only_b/Load Data B", "both/Merge"]
    assert both.nodes["both/Merge"].inputs == {"a": "file[csv]", "b": "file[csv]"}  # kwtypes(...)
    assert both.nodes["both/only_a/Load Data A"].job_config == {
        "EnvironmentName": "Domino Standard Environment Py3.11", "HardwareTierName": "Small"}
    assert both.nodes["both/only_a/Load Data A"].resolve_defaults


def test_validate_without_a_name_reports_every_workflow():
    r = subprocess.run([str(FLOWS_SCRIPT), "validate", str(LEGACY)], capture_output=True, text=True, timeout=60,
                       env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    for name, nodes in (("only_a", 1), ("only_b", 1), ("both", 3)):
        assert f"workflow {name} is valid" in r.stdout
        assert f"{name}: {nodes} node{'s' * (nodes != 1)}," in r.stdout
    assert r.stdout.rstrip().endswith("3 workflows: 3 valid")
    r = subprocess.run([str(FLOWS_SCRIPT), "validate", str(LEGACY), "--json"], capture_output=True, text=True,
                       timeout=60)
    data = json.loads(r.stdout)
    assert data["valid"] is True and [w["workflow"] for w in data["workflows"]] == ["only_a", "only_b", "both"]


def test_validate_without_a_name_reports_each_invalid_workflow_and_exits_1():
    r = subprocess.run([str(FLOWS_SCRIPT), "validate", str(CLINICAL)], capture_output=True, text=True, timeout=60,
                       env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 1
    assert "workflow adam_tfl is valid" in r.stdout
    assert "3 workflows: 1 valid, 2 invalid (asks_domino_while_traced, checks_promises)" in r.stdout
    assert "workflow asks_domino_while_traced: " in r.stderr and "not supported: domino.Domino" in r.stderr
    assert f"Warning: {CLINICAL}:" in r.stderr and "output 'dm' is declared twice" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("imports", [
    "from flytekit.loggers import logger\nlogger.info('loading')",
    "from flytekit.core.promise import Promise\nfrom flytekit.core.context_manager import FlyteContextManager",
    "from flytekit.extras.tasks.shell import OutputLocation, ShellTask\nimport flytekit.extras.accelerators as acc",
    "from flytekitplugins.domino.file import DominoFile\nSas = DominoFile[TypeVar('sas7bdat')]",
    "from domino import Domino\nimport domino.exceptions",
    "from flytekit.types.structured import StructuredDataset",
])
def test_each_run_time_import_loads_on_its_own(tmp_path, imports):
    flow = tmp_path / "flow.py"
    flow.write_text(f"from typing import TypeVar\nfrom flytekit import workflow\n{imports}\n\n"
                    "@workflow\ndef wf() -> int:\n    return 1\n")
    assert load_flow(flow).workflow == "wf"
