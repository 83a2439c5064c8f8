"""Reading outputs back in tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd


def read_parquet(output: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(output / name).sort_values("path").reset_index(drop=True)


def vectors(frame: pd.DataFrame, column: str) -> np.ndarray:
    return np.stack(frame[column].to_numpy()).astype(np.float64)


def metrics(output: Path) -> dict:
    return json.loads((output / "metrics.json").read_text())
