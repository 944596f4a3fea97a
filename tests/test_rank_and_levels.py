"""Rank deficiency at any shape and by-levels that cannot be fitted (issue 11, point 3).

Reference: tests/reference/formula_terms.json ("wide"): the columns lme4 1.1-31's rank check
(``chkRank.drop.cols``, R 4.2.2) drops from tests/reference/data/wide.csv, 8 rows and 10
fixed-effect columns; written by tests/reference/make_formula_terms.R.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

import admbjax
from admbjax._formula import drop_aliased
from conftest import REFERENCE, reference

WIDE = pd.read_csv(REFERENCE / "data" / "wide.csv")
WIDE_FORMULA = "y ~ " + " + ".join(f"x{j}" for j in range(1, 10)) + " + (1 | g)"


def test_more_columns_than_rows_drops_what_lme4_drops_then_refuses():
    ref = reference("formula_terms")["wide"]
    X = pd.concat([pd.Series(1.0, index=WIDE.index, name="(Intercept)"), WIDE[[f"x{j}" for j in range(1, 10)]]],
                  axis=1)
    kept, dropped = drop_aliased(X)
    assert list(kept.columns) == ref["kept"] and list(dropped) == ref["dropped"]
    with pytest.warns(admbjax.AdmbjaxWarning, match=r"dropping 2 columns / coefficients \(x8, x9\)"):
        with pytest.raises(ValueError, match=r"number of observations \(=8\) <= number of fixed effects \(=8"):
            admbjax.fit_formula(WIDE_FORMULA, WIDE)


@pytest.mark.parametrize("n, p, rank", [(8, 10, 8), (5, 12, 3), (30, 6, 4), (12, 40, 12), (3, 3, 1)])
def test_drop_aliased_keeps_a_basis_in_order(n, p, rank):
    rng = np.random.default_rng(n * p + rank)
    A = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, p)) * 10.0 ** rng.integers(-6, 6, size=p)
    X = pd.DataFrame(A, columns=[f"c{j}" for j in range(p)])
    kept, dropped = drop_aliased(X)
    assert kept.shape[1] == rank and len(dropped) == p - rank
    assert np.linalg.matrix_rank(kept.to_numpy()) == rank
    for name in dropped:       # each dropped column is in the span of the kept columns before it
        j = X.columns.get_loc(name)
        before = [c for c in kept.columns if X.columns.get_loc(c) < j]
        B = X[before].to_numpy()
        B = B / np.linalg.norm(B, axis=0)     # unit columns: lstsq's cut-off is relative to the largest
        coef = np.linalg.lstsq(B, X[name].to_numpy(), rcond=None)[0]
        assert np.linalg.norm(B @ coef - X[name].to_numpy()) <= 1e-6 * np.linalg.norm(X[name].to_numpy())


def _levels(seed=1, n_levels=5):
    rng = np.random.default_rng(seed)
    frames = []
    for r in range(n_levels):
        g = np.repeat([f"s{i}" for i in range(6)], 5)
        d = {"rep": f"r{r}", "g": g, **{c: rng.normal(size=30) for c in ["x", "z", "w1", "w2", "w3"]}}
        d["y"] = 1 + d["x"] + rng.normal(size=6)[np.repeat(np.arange(6), 5)] + rng.normal(size=30)
        frames.append(pd.DataFrame(d))
    return pd.concat(frames, ignore_index=True)


FORMULA = "y ~ x + z + w1 + w2 + w3 + (1 | g)"


@pytest.mark.parametrize("na_action", ["fail", pytest.param("omit", marks=pytest.mark.slow)])
def test_by_levels_that_cannot_be_fitted_are_named_and_skipped(na_action):
    df = _levels()
    df = df[~((df["rep"] == "r1") & ~df.index.isin([30, 31, 35, 36, 37]))].reset_index(drop=True)  # 5 rows < p = 6
    inf_row, nan_row = int(np.flatnonzero(df["rep"] == "r2")[4]), int(np.flatnonzero(df["rep"] == "r3")[7])
    df.loc[inf_row, "w2"] = np.inf
    df.loc[nan_row, "y"] = np.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        levels, results = admbjax.fit_formula_by(FORMULA, df, "rep", na_action=na_action)
    text = "\n".join(str(w.message) for w in caught)
    assert "level 'r1' of 'rep' was not fitted" in text and "rank deficient" in text
    assert f"level 'r2' of 'rep' was not fitted: column 'w2' has inf in 1 row(s) (0-based): {inf_row}" in text
    assert results[1] is None and results[2] is None
    if na_action == "fail":
        assert f"level 'r3' of 'rep' was not fitted: 1 row(s) have missing values" in text
        assert f"rows (0-based): {nan_row}" in text and results[3] is None
    else:
        assert results[3] is not None
    for k in [0, 4] + ([3] if na_action == "omit" else []):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", admbjax.AdmbjaxWarning)
            alone = admbjax.fit_formula(FORMULA, df[df["rep"] == levels[k]], na_action=na_action)
        assert results[k].criterion == pytest.approx(alone.criterion, rel=1e-9)
        np.testing.assert_allclose(results[k].beta, alone.beta, rtol=1e-6, atol=1e-9)


def test_by_level_with_no_residual_degrees_of_freedom_is_skipped():
    df = _levels(seed=2, n_levels=3)
    df = df[~((df["rep"] == "r0") & ~df.index.isin([0, 1, 2, 5, 6, 7]))].reset_index(drop=True)   # n = p = 6
    with pytest.warns(admbjax.AdmbjaxWarning, match=r"level 'r0' of 'rep' was not fitted: number of observations "
                                                     r"\(=6\) <= number of fixed effects \(=6"):
        _, results = admbjax.fit_formula_by(FORMULA, df, "rep")
    assert results[0] is None and results[1] is not None and results[2] is not None
