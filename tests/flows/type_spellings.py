"""Every way real flow files spell a file type."""
from typing import TypeVar

from flytekit import workflow
from flytekit.types.file import CSVFile, FlyteFile
from flytekitplugins.domino.task import DominoJobConfig, DominoJobTask

csv = TypeVar("csv")                 # a TypeVar alias, used as FlyteFile[csv]
CsvAlias = FlyteFile[TypeVar("csv")]  # an alias of the whole type
Json = TypeVar("json")               # a bare TypeVar used as a type

spellings = DominoJobTask(
    name="spellings",
    domino_job_config=DominoJobConfig(Command="python spellings.py"),
    inputs={"a": FlyteFile[TypeVar("csv")], "b": FlyteFile["csv"], "c": FlyteFile, "d": FlyteFile[csv],
            "e": CsvAlias, "f": CSVFile, "g": Json},
    outputs={"typed": FlyteFile[TypeVar("csv")], "bare": FlyteFile},
)


@workflow
def spell(a: FlyteFile[TypeVar("csv")], b: FlyteFile["csv"], c: FlyteFile, d: FlyteFile[csv], e: CsvAlias,
          f: CSVFile, g: Json) -> CSVFile:
    first = spellings(a=a, b=b, c=c, d=d, e=e, f=f, g=g)
    # A bare FlyteFile output may feed a csv input, and a csv output a bare input (Flyte's rule).
    second = spellings(a=first["bare"], b=first["typed"], c=first["typed"], d=a, e=a, f=a, g=g)
    return second["typed"]
