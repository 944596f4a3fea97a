"""Datasets bundled with admbjax.

``sleepstudy.csv``: reaction times over 10 days of sleep restriction, 18 subjects, 180 rows.
Origin: Belenky et al. (2003) J. Sleep Res. 12:1-12; shipped in the R package lme4
(license GPL (>= 2)) as ``lme4::sleepstudy``; written from R 4.2.2 (lme4 1.1-31).
"""

from __future__ import annotations

from importlib import resources

BUNDLED = ("sleepstudy",)


def path(name: str):
    """Filesystem path of a bundled dataset's CSV."""
    if name not in BUNDLED:
        raise ValueError(f"unknown bundled dataset {name!r}; available: {', '.join(BUNDLED)}")
    return resources.files(__name__) / f"{name}.csv"


def load(name: str):
    """A bundled dataset as a pandas DataFrame (string columns kept as strings)."""
    import pandas as pd

    return pd.read_csv(path(name), dtype={"Subject": str})
