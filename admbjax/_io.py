"""Reading data for the formula front end: DataFrames, CSV files, bundled datasets."""

from __future__ import annotations

import codecs
import csv
import os

import pandas as pd

from . import datasets


def _quoted_columns(path, encoding) -> list[str]:
    """Columns whose first data value is quoted: strings, as R's CSV writer marks them."""
    with open(path, newline="", encoding=encoding) as fh:
        lines = [fh.readline(), fh.readline()]
    header = next(csv.reader([lines[0]]))
    if not lines[1].strip():
        return []
    raw = next(csv.reader([lines[1]], quoting=csv.QUOTE_NONE))
    return [h for h, v in zip(header, raw) if v.startswith('"')]


def _codec(encoding: str) -> str:
    """The codec to read with: UTF-8 also accepts (and drops) a byte-order mark."""
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


def _decode_error(path, encoding: str) -> str:
    """The message for a file that is not in ``encoding``: the first bad byte, where it is."""
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        raw.decode(_codec(encoding))
        where = ""
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        where = f" (byte 0x{raw[err.start]:02x} at position {err.start}, line {line})"
    utf8 = codecs.lookup(encoding).name == "utf-8"
    what = "is not UTF-8" if utf8 else f"cannot be read as {encoding}"
    return (f"data file {str(path)!r} {what}{where}; pass its encoding, e.g. encoding='latin-1' "
            "(CLI: --encoding latin-1)")


def read_csv(path, encoding: str = "utf-8") -> pd.DataFrame:
    """A CSV file as a DataFrame; quoted columns stay strings (``"308"`` is a label, not 308).

    ``encoding``: the file's text encoding (default UTF-8, with or without a byte-order
    mark); e.g. ``"latin-1"`` or ``"cp1252"`` for files from older spreadsheet programs."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"data file {str(path)!r} is a directory, not a CSV file")
    try:
        codec = _codec(encoding)
    except (LookupError, TypeError):
        raise ValueError(f"unknown `encoding` {encoding!r} (e.g. 'utf-8', 'latin-1', 'cp1252')") from None
    try:
        df = pd.read_csv(path, dtype={c: str for c in _quoted_columns(path, codec)}, encoding=codec)
    except UnicodeDecodeError:
        raise ValueError(_decode_error(path, encoding)) from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"data file {str(path)!r} is empty") from None
    except pd.errors.ParserError as err:
        raise ValueError(f"data file {str(path)!r} is not a well-formed CSV file: {err}") from None
    if len(df) == 0:
        raise ValueError(f"data file {str(path)!r} has no rows")
    return df


def read_data(data, encoding: str = "utf-8") -> pd.DataFrame:
    """``data`` as a DataFrame: a DataFrame, a CSV path (read as ``encoding``), or a bundled
    dataset's name."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, (str, os.PathLike)):
        if str(data) in datasets.BUNDLED:
            return read_csv(datasets.path(str(data)))
        return read_csv(data, encoding)
    if isinstance(data, dict):
        return pd.DataFrame(data)
    raise TypeError(f"`data` must be a DataFrame, a CSV path or a bundled dataset name, got {type(data).__name__}")
