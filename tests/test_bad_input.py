"""Bad input at the engine layer: clear errors naming the argument and the offenders."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

import admbjax


def tiny_data(**overrides):
    rng = np.random.default_rng(0)
    g = np.repeat(["a", "b", "c", "d", "e"], 3)
    arrays = {"y": rng.normal(size=15), "flag": np.isin(g, ["b", "d"]).astype(float)}
    arrays.update(overrides)
    return arrays, g


def intercept_nll(theta, beta, u, data):
    mu = beta[0] + jnp.exp(theta["log_tau"]) * u[0]
    return -jnp.sum(data["mask"] * norm.logpdf(data["y"], mu, 1.0)) - jnp.sum(norm.logpdf(u))


def model_of(nll, **kw):
    return admbjax.Model(nll=nll, theta={"log_tau": 0.0}, beta=[0.0], n_random=1, **kw)


def test_mismatched_lengths_are_named():
    arrays, g = tiny_data(x=np.zeros(14))
    with pytest.raises(ValueError, match=r"mismatched lengths.*'x': 14.*'groups': 15"):
        admbjax.group_data(arrays, g)


def test_nan_and_inf_rows_are_named():
    y = np.zeros(15)
    y[[3, 7]] = [np.nan, np.inf]
    arrays, g = tiny_data(y=y)
    with pytest.raises(ValueError, match=r"arrays\['y'\].*NaN or inf in 2 row\(s\).*3, 7"):
        admbjax.group_data(arrays, g)


def test_missing_group_ids_are_named():
    arrays, g = tiny_data()
    g = g.astype(object)
    g[4] = None
    with pytest.raises(ValueError, match=r"`groups` is missing for 1 row\(s\).*4"):
        admbjax.group_data(arrays, g)


def test_subjects_without_observations_are_named():
    arrays, g = tiny_data()
    with pytest.raises(ValueError, match=r"2 subject\(s\) with no observations: x, z"):
        admbjax.group_data(arrays, g, levels=["a", "b", "x", "c", "d", "e", "z"])


def test_non_numeric_data_is_named():
    arrays, g = tiny_data(x=np.array(["u"] * 15))
    with pytest.raises(TypeError, match=r"arrays\['x'\].*not numeric"):
        admbjax.group_data(arrays, g)


def test_non_scalar_nll_is_an_error():
    data = admbjax.group_data(*tiny_data())
    bad = model_of(lambda theta, beta, u, data: data["mask"] * (data["y"] - u[0]) ** 2)
    with pytest.raises(TypeError, match="must return a scalar per subject; it returned shape"):
        admbjax.fit(bad, data)


def test_nll_failing_on_the_data_is_reported_with_the_subject():
    data = admbjax.group_data(*tiny_data())
    bad = model_of(lambda theta, beta, u, data: jnp.sum(data["X"] @ beta))
    with pytest.raises(TypeError, match=r"failed on subject 'a'.*KeyError"):
        admbjax.fit(bad, data)


def test_non_finite_at_initial_values_names_subjects():
    data = admbjax.group_data(*tiny_data())

    def nll(theta, beta, u, data):
        return intercept_nll(theta, beta, u, data) + jnp.log(1.0 - data["flag"][0])

    with pytest.raises(ValueError, match=r"not finite at the initial values for 2 subject\(s\): b, d"):
        admbjax.fit(model_of(nll), data)


def test_nll_that_counts_padding_is_an_error():
    arrays, g = tiny_data()
    data = admbjax.group_data(arrays, g[np.r_[0:14, 13]])  # subject e has 4 rows, others 3

    def forgets_mask(theta, beta, u, data):
        return -jnp.sum(norm.logpdf(data["y"], beta[0] + u[0], 1.0)) - jnp.sum(norm.logpdf(u))

    with pytest.raises(ValueError, match=r"changes when padded \(masked\) rows are added.*data\['mask'\]"):
        admbjax.fit(model_of(forgets_mask), data)


def test_no_mode_names_subjects_instead_of_returning_nan():
    """Subjects b and d have a density that is concave in u: no mode, Hessian not PD."""
    data = admbjax.group_data(*tiny_data())

    def nll(theta, beta, u, data):
        concave = data["flag"][0] * (-2.0 * jnp.dot(u, u))
        return intercept_nll(theta, beta, u, data) + concave

    with pytest.raises(ValueError, match=r"not positive definite at the inner mode for subjects b, d"):
        admbjax.fit(model_of(nll), data, "ML")


def test_bad_initial_values_and_method():
    with pytest.raises(ValueError, match="initial values are not finite"):
        admbjax.Model(nll=intercept_nll, theta={"log_tau": np.nan}, beta=[0.0], n_random=1)
    with pytest.raises(ValueError, match="`n_random` must be a positive integer"):
        admbjax.Model(nll=intercept_nll, theta={"log_tau": 0.0}, beta=[0.0], n_random=0)
    data = admbjax.group_data(*tiny_data())
    with pytest.raises(ValueError, match="`method` must be 'REML' or 'ML', got 'MLE'"):
        admbjax.fit(model_of(intercept_nll), data, "MLE")


def test_well_posed_tiny_model_fits_both_ways():
    """The same tiny model without the defects fits (guards the tests above against false alarms)."""
    data = admbjax.group_data(*tiny_data())
    for method in ("ML", "REML"):
        fit = admbjax.fit(model_of(intercept_nll), data, method)
        assert np.isfinite(fit.criterion) and fit.max_abs_grad < 1e-5
