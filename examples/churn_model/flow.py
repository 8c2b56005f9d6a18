"""Churn model: a sub-workflow builds the features, then a model is trained and evaluated.

Plain Domino Flows code (`pyflyte run --remote flow.py churn_training --customers ... --events ...`
on Domino; `flows apply flow.py churn_training --inputs inputs.json` here). It shows:
- `DominoJobTask` objects defined once at module level, through a small subclass that fills in what
  every task of this project shares;
- a sub-workflow (`prepare_features`) returning a class-style `NamedTuple`, read as `features.train`;
- a workflow returning a functional `NamedTuple`;
- artifacts of all three types: DATA (the train/test split), MODEL (the model), REPORT (the report).
"""
from typing import NamedTuple, TypeVar

from flytekit import workflow
from flytekit.types.file import FlyteFile
from flytekitplugins.domino.artifact import DATA, MODEL, REPORT, Artifact
from flytekitplugins.domino.task import DominoJobConfig, DominoJobTask

CSV = FlyteFile[TypeVar("csv")]
JSON = FlyteFile[TypeVar("json")]

Features = Artifact("Churn features", DATA)
Model = Artifact("Churn model", MODEL)
Report = Artifact("Churn report", REPORT)


class ScriptTask(DominoJobTask):
    """A Domino job running one script of this project, with the project's default environment and hardware."""

    def __init__(self, name: str, script: str, **kwargs):
        super().__init__(
            name=name,
            domino_job_config=DominoJobConfig(Command=f"python /mnt/code/scripts/{script}"),
            use_latest=True,
            **kwargs,
        )


join_events = ScriptTask("Join Events", "join_events.py",
                         inputs={"customers": CSV, "events": CSV}, outputs={"joined": CSV})
split_data = ScriptTask("Split", "split_data.py",
                        inputs={"joined": CSV, "test_fraction": float, "seed": int},
                        outputs={"train": Features.File(name="train.csv"), "test": Features.File(name="test.csv")})
train_model = ScriptTask("Train", "train.py",
                         inputs={"train": CSV, "epochs": int, "learning_rate": float},
                         outputs={"model": Model.File(name="model.json"), "train_accuracy": float})
evaluate_model = ScriptTask("Evaluate", "evaluate.py",
                            inputs={"model": JSON, "test": CSV},
                            outputs={"report": Report.File(name="report.md"), "accuracy": float})


class Split(NamedTuple):
    train: CSV
    test: CSV


@workflow
def prepare_features(customers: CSV, events: CSV, test_fraction: float = 0.25, seed: int = 7) -> Split:
    joined = join_events(customers=customers, events=events)
    parts = split_data(joined=joined, test_fraction=test_fraction, seed=seed)  # one output: passed whole
    return parts["train"], parts["test"]


@workflow
def churn_training(customers: CSV, events: CSV, test_fraction: float = 0.25, seed: int = 7, epochs: int = 400,
                   learning_rate: float = 0.3) -> NamedTuple("ChurnOutputs", model=JSON, report=FlyteFile,
                                                              accuracy=float):
    features = prepare_features(customers=customers, events=events, test_fraction=test_fraction, seed=seed)
    fitted = train_model(train=features.train, epochs=epochs, learning_rate=learning_rate)
    scored = evaluate_model(model=fitted["model"], test=features.test)
    return fitted["model"], scored["report"], scored["accuracy"]
