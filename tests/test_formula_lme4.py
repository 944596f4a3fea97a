"""The formula front end against lme4 1.1-31 on five public datasets, REML and ML.

References: tests/reference/<case>.json, produced by tests/reference/make_references.R
(R 4.2.2, lme4 1.1-31; calls and data origin recorded in each file and in the README there).
Tolerances (issue 3): criterion 1e-6 relative (a lower criterion than lme4's is better, not a
failure), fixed effects 1e-4, standard errors and variance components 1e-3.
"""

import numpy as np
import pytest

import admbjax
from conftest import ROOT, reference

CASES = {
    "sleepstudy": dict(data="sleepstudy"),
    "dyestuff": {},
    "orthodont": {},
    "orthodont_sex": {},
    "chickweight": dict(categorical=["Diet"]),
    "sleepstudy_uncorr": {},
}


def _fit(case, method):
    ref = reference(case)
    data = CASES[case].get("data") or str(ROOT / ref["data_file"])
    return admbjax.fit_formula(ref["formula"], data, method=method,
                               categorical=CASES[case].get("categorical", ())), ref


@pytest.fixture(scope="module", params=[(c, m) for c in CASES for m in ("REML", "ML")], ids=lambda p: f"{p[0]}-{p[1]}")
def fitted(request):
    case, method = request.param
    fit, ref = _fit(case, method)
    return fit, ref["fits"][f"lme4_lmer_{method}"], ref


def test_criterion(fitted):
    fit, ref, _ = fitted
    assert fit.converged
    assert fit.criterion <= ref["criterion"] * (1 + 1e-6)
    assert fit.criterion == pytest.approx(ref["criterion"], rel=1e-6)


def test_fixed_effects_and_standard_errors(fitted):
    fit, ref, _ = fitted
    assert list(fit.beta_names) == list(ref["fixef"])
    np.testing.assert_allclose(fit.beta, list(ref["fixef"].values()), rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(fit.beta_se, list(ref["fixef_se"].values()), rtol=1e-3)


def test_variance_components(fitted):
    fit, ref, case = fitted
    (group, G), = ref["G"].items()
    assert fit.group == group and list(fit.random_names) == G["terms"]
    np.testing.assert_allclose(np.sqrt(np.diag(fit.G)), G["sd"], rtol=1e-3)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-3)
    np.testing.assert_allclose(fit.G, G["cov"], rtol=1e-3, atol=1e-3 * np.max(G["sd"]) ** 2)
    assert fit.singular == bool(ref["singular_lme4"])


def test_conditional_modes_and_sds(fitted):
    fit, ref, _ = fitted
    (_, first3), = ref["ranef_first3"].items()
    idx = [fit.ids.index(level) for level in first3["levels"]]
    np.testing.assert_allclose(fit.b[idx], first3["values"], rtol=1e-3, atol=1e-4 * np.max(np.abs(first3["values"])))
    if "ranef_condsd_first3" not in ref:  # the shared sleepstudy reference predates this field
        return
    (_, sd3), = ref["ranef_condsd_first3"].items()
    np.testing.assert_allclose(fit.b_sd[idx], sd3["values"], rtol=1e-3)


def test_uncorrelated_spellings_agree():
    """(x || g) is lme4's shorthand for (1 | g) + (0 + x | g)."""
    ref = reference("sleepstudy_uncorr")["fits"]["lme4_lmer_REML"]
    long = admbjax.fit_formula("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", "sleepstudy")
    assert long.criterion == pytest.approx(ref["criterion"], rel=1e-6)
    assert long.G[0, 1] == 0.0 and long.random_names == ("(Intercept)", "Days")


def test_transformations_in_the_fixed_part():
    df = admbjax.datasets.load("sleepstudy")
    inline = admbjax.fit_formula("Reaction ~ Days + I(Days ** 2) + (Days | Subject)", df)
    by_hand = admbjax.fit_formula("Reaction ~ Days + Days2 + (Days | Subject)", df.assign(Days2=df["Days"] ** 2))
    assert inline.beta_names[2] == "I(Days^2)"        # R deparses ** as ^
    assert inline.criterion == pytest.approx(by_hand.criterion, rel=1e-12)
    np.testing.assert_allclose(inline.beta, by_hand.beta, rtol=1e-9)
