"""GLMM defaults and outputs as lme4 1.1-31 and glmmTMB 1.1.5 give them (issue 11, point 7).

References (provenance in tests/reference/README.md): glmm_residuals.json, written by
tests/reference/make_glmm_residuals.R (glmer / glmmTMB residuals of cbpp and grouseticks,
lmer / glmmTMB fits of Orthodont with three random-effect terms on Subject); cbpp.json,
grouseticks.json (their fixef_se).
"""

import json

import numpy as np
import pandas as pd
import pytest

import admbjax
from admbjax import _families, _formula
from admbjax._results import full_vcov_default
from conftest import ROOT, cli_fit_json, reference

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
TICKS = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)"
DATA = ROOT / "tests" / "reference" / "data"
QUARTILES = ["Min", "1Q", "Median", "3Q", "Max"]


@pytest.fixture(scope="module")
def ref():
    return reference("glmm_residuals")


@pytest.fixture(scope="module")
def cbpp():
    """cbpp by binomial GLMM, the method left to its default."""
    return admbjax.fit_formula(CBPP, str(DATA / "cbpp.csv"), family="binomial")


@pytest.fixture(scope="module")
def ticks_data():
    return pd.read_csv(DATA / "grouseticks.csv", dtype={"BROOD": str})


@pytest.fixture(scope="module")
def ticks(ticks_data):
    """grouseticks by Poisson GLMM, the family given as a Family object, method by default."""
    return admbjax.fit_formula(TICKS, ticks_data, family=_families.POISSON, categorical=["YEAR"])


def test_non_gaussian_families_fit_by_ml_unless_told(cbpp, ticks, tmp_path):
    assert cbpp.method == "ML" and cbpp.to_dict()["method"] == "ML" and ticks.method == "ML"
    assert "fit by maximum likelihood" in cbpp.summary()
    assert cbpp.loglik == pytest.approx(reference("cbpp")["fits"]["glmmTMB_Laplace"]["logLik"], rel=1e-7)
    assert [_formula.default_method(f) for f in ("gaussian", "student_t", "poisson", "binomial")] == \
        ["REML", "ML", "ML", "ML"]
    # the command line's --method default is the same (the program is the one compiled above)
    rc, d = cli_fit_json(tmp_path, "--data", str(DATA / "cbpp.csv"), "--formula", CBPP, "--family", "binomial")
    assert rc == 0 and d["method"] == "ML" and d["loglik"] == pytest.approx(cbpp.loglik, rel=1e-12)


@pytest.mark.parametrize("case", ["cbpp", "grouseticks"])
def test_residuals_are_response_and_pearson_residuals_as_in_lme4(case, cbpp, ticks, ref):
    fit, r = (cbpp if case == "cbpp" else ticks), ref[case]
    resid, scaled = fit.extra["residuals"], fit.extra["scaled_residuals"]
    # each package at its own estimates: glmmTMB's match ours to ~5e-6, glmer's are off by
    # its approximate Laplace (cbpp's estimates differ by 6e-4)
    np.testing.assert_allclose(resid, r["glmmTMB"]["response"], atol=1e-5)
    np.testing.assert_allclose(scaled, r["glmmTMB"]["pearson"], atol=3e-5)
    np.testing.assert_allclose(resid, r["lme4"]["response"], atol=1e-4)
    np.testing.assert_allclose(scaled, r["lme4"]["pearson_scaled"], atol=2e-3)
    q = np.quantile(scaled, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(q, [r["lme4"]["scaled_quantiles"][k] for k in QUARTILES], atol=1e-3)
    np.testing.assert_allclose(q, [r["glmmTMB"]["pearson_quantiles"][k] for k in QUARTILES], atol=2e-5)
    assert "Scaled residuals:\n" in fit.summary() and " ".join(f"{v:.4f}" for v in q) in fit.summary()


def test_binomial_residuals_are_on_the_proportion_scale(cbpp):
    d = pd.read_csv(DATA / "cbpp.csv")
    p = d.incidence / d["size"] - cbpp.extra["residuals"]            # the fitted probabilities
    assert np.all((p > 0) & (p < 1))
    np.testing.assert_allclose(cbpp.extra["scaled_residuals"], cbpp.extra["residuals"] / np.sqrt(p * (1 - p) / d["size"]),
                               rtol=1e-12)


@pytest.mark.parametrize("case", ["cbpp", "grouseticks"])
def test_glmm_standard_errors_include_the_variance_parameters(case, cbpp, ticks):
    fit = cbpp if case == "cbpp" else ticks
    fits = reference(case)["fits"]
    tmb, glmer = (list(fits[k]["fixef_se"].values()) for k in ("glmmTMB_Laplace", "lme4_glmer_Laplace"))
    assert fit.vcov_full
    np.testing.assert_allclose(fit.beta_se, tmb, rtol=1e-4)
    # glmer's vcov is also the full one; its Hessian is of its approximate deviance (cbpp: 1.1% off)
    np.testing.assert_allclose(fit.beta_se, glmer, rtol=2e-2 if case == "cbpp" else 1e-4)
    np.testing.assert_allclose(fit.beta_se, fit.beta_se_full)
    assert np.all(fit.beta_se_conditional < fit.beta_se)          # the conditional ones are still there
    np.testing.assert_allclose(fit.vcov(), fit.beta_cov_full)
    np.testing.assert_allclose(fit.vcov(full=False), fit.beta_cov)
    np.testing.assert_allclose(fit.fixef_table()["Std. Error"], fit.beta_se)
    np.testing.assert_allclose(fit.to_dict()["fixed"]["se"], fit.beta_se)
    np.testing.assert_allclose(fit.confint()["Std. Error"].iloc[:len(fit.beta)], fit.beta_se)
    assert f"{fit.beta_se[0]:.6g}" in fit.summary()
    assert full_vcov_default("student_t") and not full_vcov_default("gaussian")


def test_batch_json_writes_the_same_se_as_to_dict(ticks_data, ticks):
    """``json_lines()`` (written from the batch's arrays) equals ``json.dumps(to_dict())``."""
    df = ticks_data[ticks_data.YEAR == 96].assign(half=lambda x: np.where(np.arange(len(x)) % 2, "a", "b"))
    levels, results = admbjax.fit_formula_by("TICKS ~ cHEIGHT + (1 | BROOD)", df, by="half", family="poisson")
    assert levels == ["a", "b"] and all(r.method == "ML" for r in results)
    for line, r in zip(results.json_lines(), results):
        assert line == json.dumps(r.to_dict())
        np.testing.assert_allclose(json.loads(line)["fixed"]["se"], r.beta_se_full)


def test_summary_names_the_family_and_link(cbpp):
    lines = cbpp.summary().splitlines()
    assert lines[0] == "Generalized linear mixed model fit by maximum likelihood (Laplace Approximation)"
    assert lines[1] == " Family: binomial  ( logit )" and lines[2] == f"Formula: {CBPP}"


def test_family_objects_and_custom_families(ticks, ticks_data):
    by_name = admbjax.fit_formula(TICKS, ticks_data, family="poisson", categorical=["YEAR"])
    assert by_name.loglik == ticks.loglik
    # a Family of a new name: the same density, fitted as its own model
    mine = admbjax.Family("my_poisson", _families._poisson_logpdf, (), False, lambda th: {}, "log")
    fit = admbjax.fit_formula(TICKS, ticks_data, family=mine, categorical=["YEAR"])
    assert fit.family == "my_poisson" and fit.method == "ML" and fit.converged
    assert fit.loglik == pytest.approx(ticks.loglik, rel=1e-10)
    np.testing.assert_allclose(fit.beta_se, ticks.beta_se, rtol=1e-6)
    np.testing.assert_allclose(fit.extra["residuals"], ticks.extra["residuals"], atol=1e-8)
    assert fit.summary().splitlines()[1] == " Family: my_poisson  ( log )"


# ------------------------------------------------------------------ lme4's check, per term


@pytest.fixture(scope="module")
def orthodont(ref):
    d = pd.read_csv(DATA / "orthodont.csv", dtype={"Subject": str, "Sex": str})
    d["nsex"] = (d.Sex == "Male").astype(float)
    d["nsexage"] = d.nsex * d.age
    formula = ref["orthodont_terms"]["formula"]
    with pytest.warns(admbjax.AdmbjaxWarning, match="singular"):
        fits = {m: admbjax.fit_formula(formula, d, method=m) for m in ("REML", "ML")}
    return fits


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_three_terms_on_one_factor_fit_as_in_lme4(orthodont, ref, method):
    """108 observations, 108 random effects in all, but 54, 27 and 27 per term: lme4 and
    glmmTMB fit it (both sex terms go to zero: a singular fit, as lme4 says)."""
    fit = orthodont[method]
    refs = ref["orthodont_terms"]["fits"]
    lme4, tmb = refs[f"lme4_lmer_{method}"], refs[f"glmmTMB_{method}"]
    assert list(lme4["term_nRE"].values()) == [54, 27, 27]
    assert fit.converged and fit.singular and lme4["singular"]
    assert fit.criterion == pytest.approx(lme4["criterion"], abs=2e-5)
    assert fit.criterion <= lme4["criterion"] + 1e-7                  # lme4 stops a little short (REML)
    if method == "REML":                                             # glmmTMB's ML fit did not converge
        assert fit.loglik == pytest.approx(tmb["logLik"], abs=1e-7)
        np.testing.assert_allclose(fit.beta_se, list(tmb["fixef_se"].values()), rtol=1e-5)
    np.testing.assert_allclose(fit.beta, list(lme4["fixef"].values()), rtol=1e-6)
    np.testing.assert_allclose(fit.beta_se, list(lme4["fixef_se"].values()), rtol=3e-4)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.G))[:2], lme4["sd"]["Subject"], rtol=1e-3)
    assert np.sqrt(np.diag(fit.G))[2:].max() < 3e-3 and fit.sigma == pytest.approx(lme4["sigma"], rel=1e-4)


def test_a_term_with_as_many_effects_as_observations_is_refused():
    names = ("(Intercept)", "age", "nsex", "nsexage")
    assert _formula.unidentifiable(108, 27, names, "Subject", _families.GAUSSIAN, blocks=(2, 1, 1)) is None
    message = _formula.unidentifiable(108, 27, names, "Subject", _families.GAUSSIAN)      # one term of 4
    assert "(=108) <= number of random effects (=108) for term ((Intercept) + age + nsex + nsexage | Subject)" in message
    # two observations per subject: the (1 + x | g) term has as many effects as observations
    df = pd.DataFrame({"y": np.arange(12.0) ** 1.5, "x": np.tile([0.0, 1.0], 6), "z": np.arange(12.0) % 5,
                       "g": np.repeat(list("abcdef"), 2)})
    with pytest.raises(ValueError, match=r"\(=12\) <= number of random effects \(=12\) for term \(\(Intercept\) \+ x \| g\)"):
        admbjax.fit_formula("y ~ x + (x | g)", df)
    with pytest.raises(ValueError, match=r"for term \(x \+ z \| g\)"):       # the second term alone is too big
        admbjax.fit_formula("y ~ x + (1 | g) + (0 + x + z | g)", df)
