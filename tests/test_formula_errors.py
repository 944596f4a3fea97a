"""Bad input through the formula front end: clear errors, lme4's wording where lme4 has one."""

import numpy as np
import pandas as pd
import pytest

import admbjax


def frame(n_groups=6, per=5, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat([f"s{i}" for i in range(n_groups)], per)
    x = rng.normal(size=n_groups * per)
    return pd.DataFrame({"y": 1 + x + rng.normal(size=len(g)), "x": x, "g": g,
                         "w": rng.normal(size=len(g)), "h": np.repeat(["a", "b"], len(g) // 2)})


def fit(formula, df, **kw):
    return admbjax.fit_formula(formula, df, **kw)


@pytest.mark.parametrize("formula, message", [
    ("y ~ z + (1 | g)", r"column\(s\) \['z'\] that `data` lacks; available: \['y', 'x', 'g', 'w', 'h'\]"),
    ("y ~ x", "has no random-effect term"),
    ("y ~ x + (1 | g + h)", "must be a column, an interaction of columns"),
    ("y ~ x + (1 | g/)", "empty part of the grouping factor"),
    ("y ~ x + (1 | g:g)", "names a column twice"),
    ("y ~ x + (1 | g", "unbalanced"),
    ("y x + (1 | g)", "expected one '~'"),
    ("~ x + (1 | g)", "no response"),
    ("y ~ x + (1 |)", "malformed random-effect term"),
])
def test_formula_errors(formula, message):
    with pytest.raises(ValueError, match=message):
        fit(formula, frame())


def test_non_numeric_response():
    with pytest.raises(ValueError, match="the response 'h' is not numeric"):
        fit("h ~ x + (1 | g)", frame())


def test_missing_values_are_counted_and_omitted_only_on_request():
    df = frame()
    df.loc[[2, 7], "y"] = np.nan
    df.loc[11, "g"] = None
    with pytest.raises(ValueError, match=r"3 row\(s\) have missing values \(per column: \{'y': 2, 'g': 1\}\).*na_action='omit'"):
        fit("y ~ x + (1 | g)", df)
    with pytest.warns(admbjax.AdmbjaxWarning, match=r"dropped 3 row\(s\) with missing values"):
        result = fit("y ~ x + (1 | g)", df, na_action="omit")
    assert result.n_obs == len(df) - 3


def test_inf_in_a_used_column_names_rows():
    df = frame()
    df.loc[4, "x"] = np.inf
    with pytest.raises(ValueError, match=r"column 'x' has inf in 1 row\(s\) \(0-based\): 4"):
        fit("y ~ x + (1 | g)", df)


def test_rank_deficient_design_drops_aliased_columns_like_lme4():
    df = frame().assign(x2=lambda d: 2 * d["x"])
    with pytest.warns(admbjax.AdmbjaxWarning,
                      match=r"fixed-effect model matrix is rank deficient so dropping 1 column / coefficient \(x2\)"):
        result = fit("y ~ x + x2 + (1 | g)", df)
    reduced = fit("y ~ x + (1 | g)", df)
    assert result.beta_names == ("(Intercept)", "x")
    assert result.criterion == pytest.approx(reduced.criterion, rel=1e-12)


def test_grouping_factor_with_one_level():
    with pytest.raises(ValueError, match="grouping factor 'g' has 1 level"):
        fit("y ~ x + (1 | g)", frame().assign(g="only"))


def test_more_random_effects_than_observations():
    with pytest.raises(ValueError, match=r"number of observations \(=12\) <= number of random effects \(=12\)"):
        fit("y ~ x + (x | g)", frame(n_groups=6, per=2))


def test_unknown_family_method_na_action_and_data():
    with pytest.raises(ValueError, match="unknown `family` 'gamma'"):
        fit("y ~ x + (1 | g)", frame(), family="gamma")
    with pytest.raises(ValueError, match="`method` must be 'REML' or 'ML'"):
        fit("y ~ x + (1 | g)", frame(), method="reml2")
    with pytest.raises(ValueError, match="`na_action` must be one of"):
        fit("y ~ x + (1 | g)", frame(), na_action="drop")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fit("y ~ x + (1 | g)", "no/such/file.csv")
    with pytest.raises(TypeError, match="`data` must be a DataFrame"):
        fit("y ~ x + (1 | g)", 42)
    with pytest.raises(ValueError, match="`categorical` names column"):
        fit("y ~ x + (1 | g)", frame(), categorical=["nope"])
