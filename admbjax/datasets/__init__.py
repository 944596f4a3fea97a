"""Datasets bundled with admbjax.

``sleepstudy.csv``: reaction times over 10 days of sleep restriction, 18 subjects, 180 rows.
Origin: Belenky et al. (2003) J. Sleep Res. 12:1-12; shipped in the R package lme4
(license GPL (>= 2)) as ``lme4::sleepstudy``; written from R 4.2.2 (lme4 1.1-31).

``penicillin.csv``: diameters of the zones of inhibition of 6 penicillin samples, each on
24 plates (a crossed design: every sample on every plate), 144 rows: ``diameter``, ``plate``,
``sample``. Origin: Davies & Goldsmith (1972) Statistical Methods in Research and
Production, 4th ed., table 6.6; shipped in lme4 as ``lme4::Penicillin``; written from R 4.2.2
(lme4 1.1-31) by ``tests/reference/make_crossed.R``.
"""

from __future__ import annotations

from importlib import resources

BUNDLED = ("sleepstudy", "penicillin")


def path(name: str):
    """Filesystem path of a bundled dataset's CSV."""
    if name not in BUNDLED:
        raise ValueError(f"unknown bundled dataset {name!r}; available: {', '.join(BUNDLED)}")
    return resources.files(__name__) / f"{name}.csv"


def load(name: str):
    """A bundled dataset as a pandas DataFrame (string columns kept as strings)."""
    import pandas as pd

    return pd.read_csv(path(name), dtype={"Subject": str, "plate": str, "sample": str})
