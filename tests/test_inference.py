"""Inference and diagnostics that need no reference software."""

import warnings

import numpy as np
import pandas as pd
import pytest

import admbjax
from conftest import ROOT


@pytest.fixture(scope="module")
def chickweight_reml():
    """ChickWeight is unbalanced (chicks died), so REML's beta_hat depends on theta."""
    return admbjax.fit_formula("weight ~ Time + Diet + (1 | Chick)", str(ROOT / "tests/reference/data/chickweight.csv"),
                               categorical=["Diet"])


def test_full_beta_covariance_adds_theta_uncertainty(chickweight_reml):
    """glmmTMB-style vcov = S^-1 + J cov(theta) J', J = d beta_hat / d theta by central differences."""
    fit = chickweight_reml
    model, data, _ = admbjax.formula_model("weight ~ Time + Diet + (1 | Chick)",
                                           str(ROOT / "tests/reference/data/chickweight.csv"), categorical=["Diet"])
    obj = admbjax.make_objective(model, data, "REML")
    h = 1e-5
    jac = np.stack([(np.asarray(obj.mode(fit.x + h * e).beta) - np.asarray(obj.mode(fit.x - h * e).beta)) / (2 * h)
                    for e in np.eye(len(fit.x))], axis=1)
    expected = fit.beta_cov + jac @ fit.x_cov @ jac.T
    np.testing.assert_allclose(fit.beta_cov_full, expected, rtol=1e-5, atol=1e-8 * np.abs(expected).max())
    extra = np.diag(fit.beta_cov_full) / np.diag(fit.beta_cov) - 1
    assert np.all(extra >= -1e-12) and extra.max() > 1e-5  # small here (3e-5), but not zero
    np.testing.assert_allclose(fit.vcov(full=True), fit.beta_cov_full)


def test_ml_full_covariance_is_the_beta_block_of_the_inverse_hessian(sleepstudy_fits):
    fit = sleepstudy_fits["ML"]
    k = len(fit.x_names) - len(fit.beta_names)
    np.testing.assert_allclose(fit.beta_cov_full, fit.x_cov[k:, k:])


def test_wald_intervals_and_delta_method(chickweight_reml):
    ci = chickweight_reml.confint()
    assert list(ci.index[:5]) == ["(Intercept)", "Time", "Diet2", "Diet3", "Diet4"]
    row = ci.loc["sigma"]
    assert row["2.5 %"] < chickweight_reml.sigma < row["97.5 %"]
    # positive quantities: Wald interval on the log scale (delta method), mapped back
    assert row["97.5 %"] / row["Estimate"] == pytest.approx(np.exp(1.959964 * row["Std. Error"] / row["Estimate"]), rel=1e-6)
    assert row["Estimate"] / row["2.5 %"] == pytest.approx(row["97.5 %"] / row["Estimate"], rel=1e-12)
    beta_row = ci.loc["Time"]
    assert beta_row["97.5 %"] - beta_row["Estimate"] == pytest.approx(1.959964 * beta_row["Std. Error"], rel=1e-6)
    # delta method for sigma = exp(log_sigma): se(sigma) = sigma * se(log_sigma)
    i = chickweight_reml.x_names.index("['log_sigma']")
    assert row["Std. Error"] == pytest.approx(chickweight_reml.sigma * np.sqrt(chickweight_reml.x_cov[i, i]), rel=1e-8)
    assert "Chick.sd_(Intercept)" in ci.index


def _null_group_data(seed=1):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(10), 6)
    x = rng.normal(size=60)
    y = 1 + 0.5 * x + rng.normal(size=60)  # no group effect: the variance estimate is 0
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in g]})


def test_singular_fit_is_reached_and_reported():
    df = _null_group_data()
    with pytest.warns(admbjax.AdmbjaxWarning, match=r"boundary \(singular\) fit"):
        fit = admbjax.fit_formula("y ~ x + (1 | g)", df)
    assert fit.singular and fit.converged and fit.max_abs_grad < 1e-6
    assert fit.G[0, 0] < 1e-12 * fit.sigma**2          # reached, not approached
    X = np.column_stack([np.ones(60), df["x"]])
    beta_ols, rss = np.linalg.lstsq(X, df["y"], rcond=None)[:2]
    np.testing.assert_allclose(fit.beta, beta_ols, rtol=1e-9)  # the fixed effects are still right
    n, p = X.shape
    s2 = rss[0] / (n - p)
    reml_lm = (n - p) * np.log(2 * np.pi * s2) + np.linalg.slogdet(X.T @ X)[1] + rss[0] / s2  # lm, REML
    assert fit.criterion == pytest.approx(reml_lm, rel=1e-10)
    assert "boundary (singular) fit" in fit.summary()


def test_non_singular_fit_warns_nothing(sleepstudy_fits):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        admbjax.fit_formula("Reaction ~ Days + (Days | Subject)", "sleepstudy")
