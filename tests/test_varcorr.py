"""The JSON's ``"random"`` terms and ``"varcorr"`` rows against lme4 (issue 13, point 4).

Reference: tests/reference/varcorr.json, lme4 1.1-31's ``as.data.frame(VarCorr(m))`` (R 4.2.2),
written by tests/reference/make_varcorr.R: sleepstudy by REML with correlated and uncorrelated
(``||``) terms, and cbpp's binomial GLMM (no residual row).
"""

import numpy as np
import pytest

import admbjax
from conftest import REFERENCE, reference

REF = reference("varcorr")["fits"]
CASES = {
    "sleepstudy": ("Reaction ~ Days + (Days | Subject)", "sleepstudy", "gaussian", "REML"),
    "sleepstudy_uncorr": ("Reaction ~ Days + (Days || Subject)", "sleepstudy", "gaussian", "REML"),
    "cbpp": ("cbind(incidence, size - incidence) ~ period + (1 | herd)", str(REFERENCE / "data" / "cbpp.csv"),
             "binomial", "ML"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_varcorr_rows_are_lme4s(case):
    formula, data, family, method = CASES[case]
    kwargs = {"categorical": ["period"]} if case == "cbpp" else {}
    d = admbjax.fit_formula(formula, data, family=family, method=method, **kwargs).to_dict()
    assert d["schema"] == 2
    ref = REF[case]
    assert [(r["group"], r["var1"], r["var2"]) for r in d["varcorr"]] == \
        [(r["group"], r.get("var1"), r.get("var2")) for r in ref]
    np.testing.assert_allclose([r["vcov"] for r in d["varcorr"]], [r["vcov"] for r in ref], rtol=1e-3)
    np.testing.assert_allclose([r["sdcor"] for r in d["varcorr"]], [r["sdcor"] for r in ref], rtol=1e-3, atol=1e-6)
    groups = [r["group"] for r in ref if r["group"] != "Residual"]
    assert [t["group"] for t in d["random"]] == list(dict.fromkeys(groups))


def test_random_is_an_empty_list_without_covariance():
    """A hand-written model whose report has no G: no terms, and only the residual row."""
    import sys
    from conftest import ROOT
    sys.path.insert(0, str(ROOT / "models"))
    import penicillin_crossed

    d = admbjax.fit(*penicillin_crossed.build(), method="REML").to_dict()
    assert d["random"] == [] and [r["group"] for r in d["varcorr"]] == ["Residual"]


def test_summary_lists_uncorrelated_terms_as_lme4():
    """``(Days || Subject)``: lme4's summary has two groups, Subject and Subject.1, and no
    correlation column (lme4 1.1-31's print(summary(m)) lines, values from varcorr.json)."""
    fit = admbjax.fit_formula("Reaction ~ Days + (Days || Subject)", "sleepstudy")
    text = fit.summary()
    block = text[text.index("Random effects:"):text.index("Number of obs")].splitlines()
    assert block[1].split() == ["Groups", "Name", "Variance", "Std.Dev."]
    assert block[2].split()[:2] == ["Subject", "(Intercept)"] and block[3].split()[:2] == ["Subject.1", "Days"]
    ref = {r["group"]: r for r in REF["sleepstudy_uncorr"]}
    assert float(block[3].split()[2]) == pytest.approx(ref["Subject.1"]["vcov"], rel=1e-3)
