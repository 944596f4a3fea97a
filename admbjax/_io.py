"""Reading data for the formula front end: DataFrames, CSV files, bundled datasets."""

from __future__ import annotations

import csv
import os

import pandas as pd

from . import datasets


def _quoted_columns(path) -> list[str]:
    """Columns whose first data value is quoted: strings, as R's CSV writer marks them."""
    with open(path, newline="") as fh:
        lines = [fh.readline(), fh.readline()]
    header = next(csv.reader([lines[0]]))
    if not lines[1].strip():
        return []
    raw = next(csv.reader([lines[1]], quoting=csv.QUOTE_NONE))
    return [h for h, v in zip(header, raw) if v.startswith('"')]


def read_csv(path) -> pd.DataFrame:
    """A CSV file as a DataFrame; quoted columns stay strings (``"308"`` is a label, not 308)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    try:
        df = pd.read_csv(path, dtype={c: str for c in _quoted_columns(path)})
    except pd.errors.EmptyDataError:
        raise ValueError(f"data file {str(path)!r} is empty") from None
    if len(df) == 0:
        raise ValueError(f"data file {str(path)!r} has no rows")
    return df


def read_data(data) -> pd.DataFrame:
    """``data`` as a DataFrame: a DataFrame, a CSV path, or a bundled dataset's name."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, (str, os.PathLike)):
        if str(data) in datasets.BUNDLED:
            return read_csv(datasets.path(str(data)))
        return read_csv(data)
    if isinstance(data, dict):
        return pd.DataFrame(data)
    raise TypeError(f"`data` must be a DataFrame, a CSV path or a bundled dataset name, got {type(data).__name__}")
