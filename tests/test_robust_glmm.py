"""Student-t and GLMM fits against glmmTMB 1.1.5 / lme4 1.1-31, and adaptive Gauss-Hermite.

References (provenance in tests/reference/README.md): student_t_sim.json and cbpp.json
(shared references, R 4.2.2), salamanders.json (make_references.R).
"""


import numpy as np
import pytest

import admbjax
from conftest import ROOT, cli_fit_json, reference

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def _data(name):
    """The copy of the shared dataset the reference was fitted to (tests/reference/data)."""
    return str(ROOT / "tests" / "reference" / "data" / f"{name}.csv")


@pytest.fixture(scope="module", params=["ML", "REML"])
def t_fit(request):
    fit = admbjax.fit_formula("y ~ t + (t | subject)", _data("student_t_sim"), family="student_t", method=request.param)
    return fit, reference("student_t_sim")["fits"][f"glmmTMB_t_{request.param}"]


def test_student_t_matches_glmmtmb(t_fit):
    fit, ref = t_fit
    assert fit.converged and fit.family == "student_t"
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-7)
    assert fit.df == pytest.approx(ref["t_df"], rel=1e-4)
    assert fit.sigma == pytest.approx(ref["t_scale"], rel=1e-4)
    np.testing.assert_allclose(fit.beta, list(ref["fixef"].values()), rtol=1e-5)
    # glmmTMB's sdreport SEs include the variance parameters' uncertainty: vcov(full=True)
    np.testing.assert_allclose(fit.beta_se_full, list(ref["fixef_se"].values()), rtol=1e-4)
    np.testing.assert_allclose(fit.report["sd"], ref["G"]["subject"]["sd"], rtol=1e-4)


def test_student_t_df_interval(t_fit):
    fit, _ = t_fit
    ci = fit.confint().loc["df"]
    assert ci["2.5 %"] < fit.df < ci["97.5 %"] and ci["2.5 %"] > 0
    # Wald on log(df), mapped back: geometric symmetry about the estimate
    assert ci["97.5 %"] / fit.df == pytest.approx(fit.df / ci["2.5 %"], rel=1e-10)
    assert "Student-t degrees of freedom" in fit.summary()


def test_binomial_cbpp_matches_glmmtmb():
    fit = admbjax.fit_formula(CBPP, _data("cbpp"), family="binomial", method="ML")
    ref = reference("cbpp")["fits"]["glmmTMB_Laplace"]
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-6)
    np.testing.assert_allclose(fit.beta, list(ref["fixef"].values()), rtol=1e-4)
    assert np.sqrt(fit.G[0, 0]) == pytest.approx(ref["G"]["herd"]["sd"][0], rel=1e-4)
    np.testing.assert_allclose(fit.beta_se_full, list(ref["fixef_se"].values()), rtol=1e-4)
    assert fit.sigma is None and "z value" in fit.summary()


def test_poisson_salamanders_matches_glmmtmb(tmp_path):
    ref = reference("salamanders")["fits"]["glmmTMB_Laplace"]
    rc, d = cli_fit_json(tmp_path, "--data", str(ROOT / "tests/reference/data/salamanders.csv"), "--formula",
                         "count ~ mined + (1 | site)", "--family", "poisson", "--method", "ML")
    assert rc == 0 and d["family"] == "poisson" and d["sigma"] is None
    assert d["loglik"] == pytest.approx(ref["logLik"], rel=1e-6)
    np.testing.assert_allclose(d["fixed"]["estimate"], list(ref["fixef"].values()), rtol=1e-4)
    assert d["random"][0]["sd"][0] == pytest.approx(ref["G"]["site"]["sd"][0], rel=1e-4)


def test_binomial_zero_one_response_matches_the_aggregated_fit():
    """cbpp expanded to one 0/1 row per animal: the same likelihood up to the binomial constant."""
    import pandas as pd

    agg = pd.read_csv(_data("cbpp"), dtype={"herd": str, "period": str})
    rows = []
    for r in agg.itertuples():
        rows += [(r.herd, r.period, 1)] * r.incidence + [(r.herd, r.period, 0)] * (r.size - r.incidence)
    long = pd.DataFrame(rows, columns=["herd", "period", "sick"])
    fit01 = admbjax.fit_formula("sick ~ period + (1 | herd)", long, family="binomial", method="ML")
    ref = reference("cbpp")["fits"]["glmmTMB_Laplace"]
    np.testing.assert_allclose(fit01.beta, list(ref["fixef"].values()), rtol=1e-4)


def _herd_integrals(fit, data, n_grid=20001):
    """Exact per-herd marginal nll at the fitted parameters by dense 1-D integration."""
    from scipy.special import gammaln

    sd = np.sqrt(fit.G[0, 0])
    total = 0.0
    b = np.linspace(-12, 12, n_grid) * sd
    for i in range(data.n_subjects):
        m = data.mask[i] > 0
        y, n, X = data.arrays["y"][i][m], data.arrays["trials"][i][m], data.arrays["X"][i][m]
        eta = (X @ fit.beta)[:, None] + b[None, :]
        ll = (gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1))[:, None] + y[:, None] * eta - n[:, None] * np.logaddexp(0, eta)
        log_integrand = ll.sum(0) - 0.5 * (b / sd) ** 2 - np.log(sd * np.sqrt(2 * np.pi))
        mx = log_integrand.max()
        total -= mx + np.log(np.trapezoid(np.exp(log_integrand - mx), b))
    return total


def test_agq_converges_to_the_exact_marginal_likelihood():
    model, data, _ = admbjax.formula_model(CBPP, _data("cbpp"), family="binomial")
    fit = admbjax.fit_formula(CBPP, _data("cbpp"), family="binomial", method="ML")
    exact = _herd_integrals(fit, data)
    errors = []
    for k in (1, 3, 7, 15):
        obj = admbjax.make_objective(model, data, "ML", n_agq=k)
        errors.append(abs(float(obj(fit.x)) - exact))
    assert errors[0] > 1e-2                     # Laplace is visibly off here
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-8


def test_agq25_matches_lme4_nagq25():
    fit = admbjax.fit_formula(CBPP, _data("cbpp"), family="binomial", method="ML", n_agq=25)
    ref = reference("cbpp")["fits"]["lme4_glmer_AGQ25"]
    np.testing.assert_allclose(fit.beta, list(ref["fixef"].values()), atol=1e-3)
    assert np.sqrt(fit.G[0, 0]) == pytest.approx(ref["G"]["herd"]["sd"][0], abs=1e-3)
    # the true marginal log-likelihood, not lme4's deviance-residual scale; at least as good
    assert fit.loglik == pytest.approx(ref["logLik_exact_at_estimates"], abs=1e-6)
    assert fit.loglik >= ref["logLik_exact_at_estimates"] - 1e-9


def test_agq_is_for_ml_with_at_most_two_random_effects():
    with pytest.raises(ValueError, match="for ML fits"):
        admbjax.fit_formula(CBPP, _data("cbpp"), family="binomial", method="REML", n_agq=5)
    with pytest.raises(ValueError, match="positive integer"):
        admbjax.fit_formula(CBPP, _data("cbpp"), family="binomial", method="ML", n_agq=0)


@pytest.mark.parametrize("family, column, values, message", [
    ("poisson", "y", {3: -1.0, 5: 2.5}, r"non-negative integer count; 2 row\(s\) are not \(0-based\): 3, 5"),
    ("binomial", "y", {1: 3.0}, r"between 0 and the trials; 1 row\(s\)"),
])
def test_glmm_response_errors(family, column, values, message):
    import pandas as pd

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"y": rng.integers(0, 2, 40).astype(float), "x": rng.normal(size=40),
                       "g": np.repeat([f"g{i}" for i in range(8)], 5)})
    for row, v in values.items():
        df.loc[row, column] = v
    with pytest.raises(ValueError, match=message):
        admbjax.fit_formula("y ~ x + (1 | g)", df, family=family, method="ML")


def test_binomial_successes_above_trials_and_separation():
    import pandas as pd

    df = pd.DataFrame({"s": [1, 5, 2, 0], "f": [1, -2, 1, 3], "g": ["a", "a", "b", "b"], "x": [0.1, 0.2, 0.3, 0.4]})
    with pytest.raises(ValueError, match=r"1 row\(s\) are not \(0-based\): 1"):
        admbjax.fit_formula("cbind(s, f) ~ x + (1 | g)", df, family="binomial", method="ML")
    sep = pd.DataFrame({"y": [0, 0, 1, 1, 1, 0, 0, 0], "g": list("aabbbccc"), "x": np.arange(8.0)})
    with pytest.raises(ValueError, match="all one value within every level of 'g'"):
        admbjax.fit_formula("y ~ x + (1 | g)", sep, family="binomial", method="ML")


def test_df_start_must_be_positive():
    with pytest.raises(ValueError, match=r"`start\['df'\]` must be a positive number, got -2"):
        admbjax.fit_formula("y ~ t + (t | subject)", _data("student_t_sim"), family="student_t", start={"df": -2})
    with pytest.raises(ValueError, match="which family 'gaussian' does not have"):
        admbjax.fit_formula("y ~ t + (t | subject)", _data("student_t_sim"), start={"df": 3})
