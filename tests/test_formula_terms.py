"""Formula terms and names (issue 11, points 1-2): any column name is a predictor like any
other, transformations match lme4, and a formula is data, never code.

References: tests/reference/formula_terms.json, lme4 1.1-31 (R 4.2.2) fits of
tests/reference/data/sleepstudy_extra.csv, written by tests/reference/make_formula_terms.R.
"""

import re

import numpy as np
import pandas as pd
import pytest

import admbjax
from admbjax import cli
from conftest import REFERENCE, reference

REF = reference("formula_terms")
EXTRA = pd.read_csv(REFERENCE / "data" / "sleepstudy_extra.csv", dtype={"Subject": str})
R_TO_ADMBJAX = {"centre": "Reaction ~ center(Days) + (1 | Subject)"}   # R has no center(): scale(x, scale = FALSE)


@pytest.mark.parametrize("case", sorted(REF["fits"]))
def test_terms_match_lme4(case):
    ref = REF["fits"][case]
    formula = R_TO_ADMBJAX.get(case.rsplit("_", 1)[0], ref["formula"])
    fit = admbjax.fit_formula(formula, EXTRA, method=ref["method"])
    assert fit.criterion == pytest.approx(ref["criterion"], rel=1e-7)
    names = list(ref["fixef"]) if "center(" not in formula else ["(Intercept)", "center(Days)"]
    assert list(fit.beta_names) == names
    np.testing.assert_allclose(fit.beta, list(ref["fixef"].values()), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(fit.beta_se, list(ref["fixef_se"].values()), rtol=1e-4)


def _renamed(df, mapping, formula):
    """``df`` and ``formula`` with columns renamed (the formula's names replaced as words)."""
    import re

    for old, new in mapping.items():
        formula = re.sub(rf"(?<![\w.`]){re.escape(old)}(?![\w.`])", new, formula)
    return df.rename(columns={k: v.strip("`") for k, v in mapping.items()}), formula


@pytest.mark.parametrize("mapping", [
    {"Reaction": "class", "Days": "lambda", "Subject": "def"},          # Python keywords
    {"Reaction": "Intercept", "Days": "center", "Subject": "scale"},    # formulaic's own names
    {"Days": "`day count`", "Subject": "`the subject`"},                # names that need backticks
    {"Days": "Jours", "Subject": "Élève"},                              # non-ASCII first letters
    {"Days": "np", "Subject": "I"},
    {"Days": "x.1", "Subject": ".g"},                                   # R's dotted names
])
def test_any_column_name_gives_the_same_fit(mapping):
    formula = "Reaction ~ Days + I(Days^2) + (Days | Subject)"
    plain = EXTRA[["Reaction", "Days", "Subject"]]
    base = admbjax.fit_formula(formula, plain)
    df, renamed = _renamed(plain, mapping, formula)
    fit = admbjax.fit_formula(renamed, df)
    assert fit.criterion == pytest.approx(base.criterion, rel=1e-12)
    np.testing.assert_allclose(fit.beta, base.beta, rtol=1e-10)
    day = mapping.get("Days", "Days")
    assert fit.beta_names == ("(Intercept)", day, f"I({day}^2)")
    assert fit.group == mapping.get("Subject", "Subject").strip("`")


def test_a_column_named_intercept_is_a_third_coefficient():
    ref = REF["fits"]["intercept_column_REML"]
    fit = admbjax.fit_formula(ref["formula"], EXTRA)
    renamed = admbjax.fit_formula("Reaction ~ Days + w + (1 | Subject)", EXTRA.rename(columns={"Intercept": "w"}))
    assert fit.beta_names == ("(Intercept)", "Days", "Intercept")
    assert fit.criterion == pytest.approx(renamed.criterion, rel=1e-12) == pytest.approx(ref["criterion"], rel=1e-7)


def test_duplicate_column_names_are_an_error():
    df = pd.concat([EXTRA, EXTRA[["Days"]]], axis=1)
    with pytest.raises(ValueError, match=r"`data` has more than one column named 'Days'"):
        admbjax.fit_formula("Reaction ~ Days + (1 | Subject)", df)


def test_keyword_columns_from_the_command_line(tmp_path, capsys):
    path = tmp_path / "kw.csv"
    EXTRA.rename(columns={"Reaction": "class", "Days": "lambda", "Subject": "def"}).to_csv(path, index=False)
    assert cli.main(["fit", "--data", str(path), "--formula", "class ~ lambda + (lambda | def)"]) == 0
    assert "REML criterion at convergence: 1743.6283" in capsys.readouterr().out


@pytest.mark.parametrize("term, why", [
    ("I(np.__builtins__['__import__']('os').system('touch {marker}'))", r"'\['"),
    ("I(__import__('os').system('touch {marker}'))", "\"'\""),
    ("I(eval('1'))", "\"'\""),
    ("eval(Days)", r"eval\(\) is not an allowed function"),
    ("getattr(np, Days)", r"getattr\(\) is not an allowed function"),
    ("np.__dict__(Days)", r"np.__dict__\(\) is not an allowed numpy function"),
    ("np.load(Days)", r"np.load\(\) is not an allowed numpy function"),
    ("I(Days.real)", r"column\(s\) \['Days.real'\] that `data` lacks"),
    ("I(lambda: 1)", r"column\(s\) \['lambda'\] that `data` lacks"),
    ("{Days}", "'{' is not allowed"),
    ("I(Days; 1)", "';' is not allowed"),
    ("I(x := Days)", "':=' is not allowed|'=' is only for a keyword argument"),
    ("scale(Days, ddof=0)", r"scale\(\) takes no argument 'ddof'"),
])
def test_formulas_are_data_not_code(tmp_path, term, why):
    marker = tmp_path / "ran"
    term = term.replace("{marker}", str(marker))
    with pytest.raises(ValueError, match=why) as err:
        admbjax.fit_formula(f"Reaction ~ Days + {term} + (1 | Subject)", EXTRA)
    assert not marker.exists()
    if "lacks" not in why:
        assert f"formula term {term!r} is refused" in str(err.value)


def test_refused_terms_in_every_part_of_the_formula(tmp_path):
    for formula in ["I(os.system('x')) ~ Days + (1 | Subject)", "Reaction ~ Days + (eval(Days) | Subject)",
                    "cbind(Reaction, open('x')) ~ Days + (1 | Subject)"]:
        with pytest.raises(ValueError, match="is refused|is not allowed"):
            admbjax.fit_formula(formula, EXTRA)


def test_allowed_functions_evaluate_as_numpy():
    df = EXTRA.assign(d1=EXTRA["Days"] + 1)
    fit = admbjax.fit_formula("Reaction ~ np.log(d1) + sqrt(d1) + exp(-Days) + (1 | Subject)", df)
    by_hand = admbjax.fit_formula("Reaction ~ a + b + c + (1 | Subject)",
                                  df.assign(a=np.log(df["d1"]), b=np.sqrt(df["d1"]), c=np.exp(-df["Days"])))
    assert fit.beta_names == ("(Intercept)", "log(d1)", "sqrt(d1)", "exp(-Days)")
    assert fit.criterion == pytest.approx(by_hand.criterion, rel=1e-12)


def test_grouping_columns_that_look_nested_are_single_columns():
    df = EXTRA.rename(columns={"Subject": "Sujet:Élève"})
    fit = admbjax.fit_formula("Reaction ~ Days + (1 | `Sujet:Élève`)", df)
    assert fit.group == "Sujet:Élève" and fit.n_groups == 18
    with pytest.raises(ValueError, match=r"random effects \(=180\) for term \(\(Intercept\) \| Subject:Days\)"):
        admbjax.fit_formula("Reaction ~ Days + (1 | Subject:Days)", EXTRA)     # an interaction: 180 levels


@pytest.mark.parametrize("formula, term, rows", [
    ("log(Reaction - 1000) ~ Days + (1 | Subject)", "log(Reaction - 1000)", "180 row(s)"),
    ("Reaction ~ log(Days) + (1 | Subject)", "log(Days)", "18 row(s) (0-based): 0, 10, 20"),
    ("Reaction ~ Days + (sqrt(Days - 5) | Subject)", "sqrt(Days - 5)", "90 row(s) (0-based): 0, 1, 2, 3, 4, 10"),
])
def test_a_term_outside_its_domain_is_named_with_its_rows(formula, term, rows):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")              # no raw RuntimeWarning from numpy
        with pytest.raises(ValueError, match=rf"formula term {re.escape(repr(term))} is NaN or infinite in "
                                             rf"{re.escape(rows)}"):
            admbjax.fit_formula(formula, EXTRA)
