"""Not a flow: the study's helper module, next to the flow (written for these tests, shaped like real ones).

It imports flytekit and python-domino at the top for run-time use, logs at import time, and builds
tasks from a shared config the way Domino's example helpers do.
"""
import os

from domino import Domino
from flytekit.core.promise import Promise
from flytekit.loggers import logger
from flytekitplugins.domino.task import DominoJobConfig, DominoJobTask, DatasetSnapshot

SAS_ENVIRONMENT = os.environ.get("STUDY_SAS_ENV", "SAS Analytics Pro")
logger.info("study helpers loaded (environment %s)", SAS_ENVIRONMENT)


def domino_client() -> Domino:
    """Only for run time: a workflow that calls it while being traced is refused."""
    return Domino(f"{os.environ.get('DOMINO_PROJECT_OWNER', 'me')}/study")  # mark:domino-call


def is_promise(value) -> bool:
    return isinstance(value, Promise)  # mark:isinstance


def sas_job(name: str, program: str, inputs: dict, outputs: dict) -> DominoJobTask:
    config = DominoJobConfig(Command=f"prod/{program}.sas",
                             DatasetSnapshots=[DatasetSnapshot("sdtm-ds", 4, "SDTM")])
    if not config.is_resolved():
        logger.warning("resolving %s for %s", ", ".join(config.unresolved_fields()), name)
        config.resolve_job_properties()
    logger.debug("job config %s", config.to_json())
    return DominoJobTask(name, config, inputs=inputs, outputs=outputs, environment_name=SAS_ENVIRONMENT,
                         hardware_tier_name="Small", cache_version="2")
