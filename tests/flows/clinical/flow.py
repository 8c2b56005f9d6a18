"""An SDTM -> ADaM -> TFL study flow, shaped like the clinical flows Domino's users run (written for these tests).

pyflyte run --remote flow.py adam_tfl --sdtm_snapshot /mnt/imported/data/SDTM
"""
from typing import TypeVar

from flytekit import workflow
from flytekit.types.file import FlyteFile
from flytekitplugins.domino.artifact import (DATA, REPORT, Artifact, ExportArtifactFilesToBundleSpec,
                                             ExportArtifactToDatasetsSpec, ExportArtifactToNetappVolumesSpec,
                                             run_launch_export_artifacts_task)
from flytekitplugins.domino.file import DominoFile
from flytekitplugins.domino.helpers import Input, Output, run_domino_job_task

import study_utils as su
from study_utils import sas_job

SasFile = DominoFile[TypeVar("sas7bdat")]
AdamData = Artifact("ADaM Datasets", DATA)
TflReports = Artifact(name="TFL Reports", type=REPORT)
AdslFile = AdamData.File(name="adsl.sas7bdat")

adae_job = sas_job("Create ADAE", "adam/adae", inputs={"ae": SasFile, "adsl": SasFile},
                   outputs={"adae": AdamData.File(name="adae.sas7bdat")})


@workflow
def adam_tfl(sdtm_snapshot: str):
    dm = run_domino_job_task(
        flyte_task_name="DM SDTM",
        command="utils/SDTM_transfer/dm.py",
        inputs=[Input(name="sdtm_snapshot", type=str, value=sdtm_snapshot)],
        output_specs=[Output(name="dm", type=FlyteFile[TypeVar("sas7bdat")]),
                      Output(name="dm", type=FlyteFile[TypeVar("sas7bdat")])],  # mark:duplicate
        use_project_defaults_for_omitted=True,
        use_latest_git_ref=True,
        cache=False,
    )
    ae = run_domino_job_task("AE SDTM", "utils/SDTM_transfer/ae.py",
                             inputs=[Input("sdtm_snapshot", str, sdtm_snapshot)],
                             output_specs=[Output("ae", SasFile)],
                             use_project_defaults_for_omitted=True, use_latest_git_ref=True)
    adsl = run_domino_job_task(
        flyte_task_name="Create ADSL",
        command="prod/adam/adsl.sas",
        inputs=[Input(name="dm", type=SasFile, value=dm["dm"])],
        output_specs=[Output(name="adsl", type=AdslFile)],
        environment_name=su.SAS_ENVIRONMENT,
        use_project_defaults_for_omitted=True,
    )
    adae = adae_job(ae=ae["ae"], adsl=adsl["adsl"])
    report = run_domino_job_task(
        flyte_task_name="Create T_AE_REL",
        command="prod/tfl/t_ae_rel.sas",
        inputs=[Input(name="adae", type=SasFile, value=adae["adae"])],
        output_specs=[Output(name="t_ae_rel", type=TflReports.File(name="t_ae_rel.pdf"))],
        hardware_tier_name="Small",
        use_project_defaults_for_omitted=True,
    )
    run_launch_export_artifacts_task(
        spec_list=[
            ExportArtifactToDatasetsSpec(AdamData, "adam-dataset-id"),
            ExportArtifactToNetappVolumesSpec(artifact=AdamData, netapp_volume_id="vol-7",
                                              target_relative_path="ADaM"),
            ExportArtifactFilesToBundleSpec(files=[AdslFile, TflReports.File(name="t_ae_rel.pdf")],
                                            bundles=["Study 101 submission"]),
        ],
        environment_name="Domino Standard Environment",
        hardware_tier_name="Small",
        use_project_defaults_for_omitted=True,
    )
    return


@workflow
def asks_domino_while_traced(sdtm_snapshot: str):
    su.domino_client()
    return


@workflow
def checks_promises(sdtm_snapshot: str):
    su.is_promise(sdtm_snapshot)
    return
