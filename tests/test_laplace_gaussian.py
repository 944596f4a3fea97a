"""Laplace is exact for Gaussian models: the engine against closed-form (restricted) likelihoods.

No reference software needed: for y_i ~ N(X_i beta, V_i), V_i = sigma^2 I + Z_i G Z_i',
    nll_ML   = sum_i 1/2 [n_i log 2pi + log|V_i| + r_i' V_i^-1 r_i],
    nll_REML = nll_ML(beta_GLS) - p/2 log 2pi + 1/2 log|sum_i X_i' V_i^-1 X_i|.
"""

import numpy as np
import pytest

import admbjax

THETA = {"log_sigma": np.log(30.0), "lambda": np.array([0.8, 0.1, 0.25])}  # arbitrary, not the optimum


def _pieces(data, theta):
    sigma = np.exp(theta["log_sigma"])
    lam = theta["lambda"]
    L = sigma * np.array([[lam[0], 0.0], [lam[1], lam[2]]])
    G = L @ L.T
    out = []
    for i in range(data.n_subjects):
        m = data.mask[i] > 0
        y, X, Z = data.arrays["y"][i][m], data.arrays["X"][i][m], data.arrays["Z"][i][m]
        out.append((y, X, np.linalg.inv(sigma**2 * np.eye(len(y)) + Z @ G @ Z.T)))
    return out


def closed_form_ml(data, theta, beta):
    nll = 0.0
    for y, X, Vinv in _pieces(data, theta):
        r = y - X @ beta
        nll += 0.5 * (len(y) * np.log(2 * np.pi) - np.linalg.slogdet(Vinv)[1] + r @ Vinv @ r)
    return nll


def gls(data, theta):
    pieces = _pieces(data, theta)
    A = sum(X.T @ Vinv @ X for y, X, Vinv in pieces)
    c = sum(X.T @ Vinv @ y for y, X, Vinv in pieces)
    return np.linalg.solve(A, c), A


def closed_form_reml(data, theta):
    beta, A = gls(data, theta)
    return closed_form_ml(data, theta, beta) - 0.5 * A.shape[0] * np.log(2 * np.pi) + 0.5 * np.linalg.slogdet(A)[1]


@pytest.fixture(scope="module")
def problem(sleepstudy):
    return sleepstudy.build()


def test_ml_laplace_equals_closed_form(problem):
    model, data = problem
    obj = admbjax.make_objective(model, data, "ML")
    for beta in ([240.0, 12.0], [255.0, 9.0]):
        x = obj.spec.layout.flat(THETA, np.array(beta))
        assert float(obj(x)) == pytest.approx(closed_form_ml(data, THETA, np.array(beta)), rel=1e-9)


def test_reml_laplace_equals_closed_form(problem):
    model, data = problem
    obj = admbjax.make_objective(model, data, "REML")
    x = obj.spec.layout.flat(THETA)
    assert float(obj(x)) == pytest.approx(closed_form_reml(data, THETA), rel=1e-9)
    np.testing.assert_allclose(obj.mode(x).beta, gls(data, THETA)[0], rtol=1e-9)


def test_reml_sigma2_closed_form_at_optimum(sleepstudy_fits, problem):
    """sigma2_hat = 1/(N0 - p) sum_i r_i' (I + Z_i Gt Z_i')^-1 r_i, Gt = G / sigma2, at the REML optimum."""
    _, data = problem
    fit = sleepstudy_fits["REML"]
    theta = fit.theta
    sigma2 = np.exp(2 * theta["log_sigma"])
    quad = 0.0
    for y, X, Vinv in _pieces(data, theta):
        r = y - X @ fit.beta
        quad += r @ (sigma2 * Vinv) @ r   # (I + Z Gt Z')^-1 = sigma2 V^-1
    assert sigma2 == pytest.approx(quad / (data.n_obs - 2), rel=1e-6)


def test_reordered_subjects_give_the_same_fit(sleepstudy_fits, sleepstudy):
    model, data = sleepstudy.build()
    df = admbjax.datasets.load("sleepstudy").sample(frac=1.0, random_state=3)  # rows shuffled
    levels = list(reversed(data.ids))                                            # subjects reversed
    _, shuffled = sleepstudy.build(df)
    shuffled = admbjax.group_data(
        {"y": df["Reaction"].to_numpy(), "X": np.column_stack([np.ones(len(df)), df["Days"]]),
         "Z": np.column_stack([np.ones(len(df)), df["Days"]])}, df["Subject"], levels=levels)
    fit = admbjax.fit(model, shuffled, "REML")
    ref = sleepstudy_fits["REML"]
    assert fit.criterion == pytest.approx(ref.criterion, rel=1e-10)
    np.testing.assert_allclose(fit.beta, ref.beta, rtol=1e-7)
    np.testing.assert_allclose(fit.b[::-1], ref.b, rtol=1e-5)
    assert fit.ids == tuple(levels)


def test_padding_does_not_change_the_fit(sleepstudy_fits, problem):
    model, data = problem
    padded = data.padded(n_subjects=data.shape[0] + 5, n_max=data.shape[1] + 3)
    fit = admbjax.fit(model, padded, "REML")
    ref = sleepstudy_fits["REML"]
    assert fit.n_obs == ref.n_obs and fit.n_groups == ref.n_groups
    assert fit.criterion == pytest.approx(ref.criterion, rel=1e-10)
    np.testing.assert_allclose(fit.beta, ref.beta, rtol=1e-7)
    np.testing.assert_allclose(fit.beta_se, ref.beta_se, rtol=1e-6)
    np.testing.assert_allclose(fit.b, ref.b, rtol=1e-5)
