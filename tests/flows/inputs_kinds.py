"""Workflow inputs with defaults, List, Dict, datetime and dataclass types."""
import dataclasses
from datetime import datetime, timedelta
from typing import Dict, List, Optional

from flytekit import workflow
from flytekitplugins.domino.task import DominoJobConfig, DominoJobTask


@dataclasses.dataclass
class Params:
    alpha: float = 0.5
    layers: int = 2


consume = DominoJobTask(
    "consume", DominoJobConfig(Command="python consume.py"),  # positional name and config
    inputs={"ids": List[int], "weights": Dict[str, float], "since": datetime, "params": Params,
            "window": timedelta, "note": Optional[str], "flag": bool},
    outputs={"report": str},
)


@workflow
def kinds(ids: List[int], weights: Dict[str, float] = {"a": 1.0}, since: datetime = datetime(2024, 1, 1),
          params: Params = Params(), window: timedelta = timedelta(hours=1), note: Optional[str] = None,
          flag: bool = True) -> str:
    return consume(ids=ids, weights=weights, since=since, params=params, window=window, note=note,
                   flag=flag)["report"]


@workflow
def literals() -> str:
    return consume(ids=[1, 2], weights={"b": 2, "a": 1.5}, since=datetime(2024, 5, 1), params=Params(0.1, 3),
                   window=timedelta(minutes=5), note="n", flag=False)["report"]
