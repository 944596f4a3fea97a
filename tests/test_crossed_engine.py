"""Global (crossed) random effects in hand-written models (issue 13, point 3).

References: tests/reference/crossed.json, written by tests/reference/make_crossed.R with lme4
1.1-31 (R 4.2.2): lmer on lme4::Penicillin, diameter ~ 1 + (1 | plate) + (1 | sample), REML and
ML; glmer and glmmTMB 1.1.5 on lme4::VerbAgg, r2 ~ Anger + Gender + btype + situ + (1 | id) +
(1 | item), binomial, Laplace. The plates (ids) are the subjects; the samples (items) are global
random effects v shared by every subject, integrated through the border of the arrowhead Hessian.
"""

import sys

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from jax.scipy.stats import norm

import admbjax
from conftest import REFERENCE, ROOT, reference

sys.path.insert(0, str(ROOT / "models"))
import penicillin_crossed  # noqa: E402

REF = reference("crossed")["fits"]


@pytest.fixture(scope="module", params=["REML", "ML"])
def penicillin(request):
    return request.param, admbjax.fit(*penicillin_crossed.build(), method=request.param)


def test_penicillin_matches_lme4(penicillin):
    method, fit = penicillin
    ref = REF[f"penicillin_{method}"]
    assert fit.converged
    assert fit.criterion == pytest.approx(ref["criterion"], rel=1e-6)     # Laplace is exact here
    np.testing.assert_allclose(fit.beta, list(ref["fixef"].values()), rtol=1e-4)
    np.testing.assert_allclose(fit.beta_se, list(ref["fixef_se"].values()), rtol=1e-3)
    assert float(fit.report["sd_plate"]) == pytest.approx(ref["sd"]["plate"], rel=1e-3)
    assert float(fit.report["sd_sample"]) == pytest.approx(ref["sd"]["sample"], rel=1e-3)
    assert float(fit.report["sigma"]) == pytest.approx(ref["sigma"], rel=1e-3)


def test_penicillin_global_modes_match_lme4(penicillin):
    """The samples' conditional modes b = sigma lambda_s v equal lme4's ranef(m)$sample."""
    method, fit = penicillin
    ref = {r["group"]: r for r in REF[f"penicillin_{method}"]["ranef"]}["sample"]
    sigma = np.exp(fit.theta["log_sigma"])
    b = sigma * abs(float(fit.theta["lambda_sample"])) * np.asarray(fit.extra["v"])
    b = b * np.sign(float(fit.theta["lambda_sample"]))
    np.testing.assert_allclose(b, ref["values"], rtol=1e-4, atol=1e-6)


def test_penicillin_invariant_to_row_order_and_labels():
    """Shuffled rows and relabelled samples (another order of v) give the same fit."""
    df = admbjax.datasets.load("penicillin")
    rng = np.random.default_rng(3)
    shuffled = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
    shuffled["sample"] = shuffled["sample"].map(lambda s: "z" + s if s in "ACE" else s)
    base = admbjax.fit(*penicillin_crossed.build(), method="REML")
    other = admbjax.fit(*penicillin_crossed.build(shuffled), method="REML")
    assert other.criterion == pytest.approx(base.criterion, rel=1e-10)
    np.testing.assert_allclose(other.beta, base.beta, rtol=1e-8)


def verbagg_model(df):
    X = pd.get_dummies(df[["Anger", "Gender", "btype", "situ"]], drop_first=True, dtype=float)
    X.insert(0, "(Intercept)", 1.0)
    items = sorted(df["item"].unique())
    item = df["item"].map({s: j for j, s in enumerate(items)}).to_numpy()

    def nll(theta, beta, u, data, v):
        eta = data["X"] @ beta + theta["sd_id"] * u[0] + theta["sd_item"] * v[data["item"]]
        y = data["y"]
        return -jnp.sum(data["mask"] * (y * eta - jnp.logaddexp(0.0, eta))) - jnp.sum(norm.logpdf(u))

    data = admbjax.group_data({"y": df["r2"].to_numpy(float), "X": X.to_numpy()}, df["id"].astype(str),
                              global_index={"item": item})
    model = admbjax.Model(nll=nll, theta={"sd_id": np.array(1.0), "sd_item": np.array(1.0)},
                          beta=np.zeros(X.shape[1]), n_random=1, n_global=len(items),
                          global_nll=lambda theta, v: -jnp.sum(norm.logpdf(v)),
                          beta_names=tuple(X.columns), family="binomial")
    return model, data


@pytest.mark.slow
def test_verbagg_binomial_matches_glmmtmb_and_glmer():
    """glmmTMB's optimum to 1e-10; glmer's criterion is 7.7e-4 higher (its PIRLS tolerance)
    and its estimates differ from glmmTMB's by up to 1.6e-3 relative: within 1e-6 of it."""
    tmb, glmer = REF["verbagg_glmmTMB"], REF["verbagg_ML"]
    df = pd.read_csv(REFERENCE / "data" / "verbagg.csv")
    fit = admbjax.fit(*verbagg_model(df), method="ML")
    assert fit.converged
    assert fit.criterion == pytest.approx(tmb["criterion"], rel=1e-10)
    assert fit.criterion == pytest.approx(glmer["criterion"], rel=1e-6) and fit.criterion < glmer["criterion"]
    np.testing.assert_allclose(fit.beta, list(tmb["fixef"].values()), rtol=1e-4)
    np.testing.assert_allclose(fit.beta_se_full, list(tmb["fixef_se"].values()), rtol=1e-3)
    sd = np.abs([float(fit.theta["sd_id"]), float(fit.theta["sd_item"])])
    np.testing.assert_allclose(sd, [tmb["sd"]["id"], tmb["sd"]["item"]], rtol=1e-3)


def test_global_index_errors_name_the_rows():
    with pytest.raises(ValueError, match=r"global_index\['item'\].*outside \[0, n_global = 3\).*rows \(0-based\) 2"):
        admbjax.group_data({"y": [1.0, 2.0, 3.0]}, ["a", "a", "b"], global_index={"item": [0, 1, 5]}, n_global=3)
    with pytest.raises(ValueError, match=r"global_index\['item'\]` must hold integers.*rows \(0-based\) 1"):
        admbjax.group_data({"y": [1.0, 2.0]}, ["a", "b"], global_index={"item": [0, 0.5]})
    with pytest.raises(ValueError, match="also in `arrays`"):
        admbjax.group_data({"y": [1.0, 2.0]}, ["a", "b"], global_index={"y": [0, 1]})


def test_model_and_data_must_agree_on_global_effects():
    model, data = penicillin_crossed.build()
    plain = admbjax.group_data({"y": data.arrays["y"][data.mask > 0]}, np.repeat(data.ids, 6))
    with pytest.raises(ValueError, match="indexes none: give group_data a `global_index`"):
        admbjax.fit(model, plain)
    with pytest.raises(TypeError, match="need `global_nll"):
        admbjax.Model(nll=model.nll, theta=model.theta, beta=model.beta, n_random=1, n_global=6)


def test_local_slots_map_rows_to_their_global_effect():
    """Each subject's local v holds the effects its rows index, and data[name] points at them."""
    data = admbjax.group_data({"y": np.arange(5.0)}, ["a", "a", "b", "b", "b"],
                              global_index={"item": [4, 1, 1, 3, 1]}, n_global=6)
    local, slots = data.local, data.index["item"]
    assert data.n_global == 6 and local.shape == (2, 2)
    np.testing.assert_array_equal(local[0], [1, 4])
    np.testing.assert_array_equal(local[1], [1, 3])
    np.testing.assert_array_equal(local[np.arange(2)[:, None], slots][data.mask > 0], [4, 1, 1, 3, 1])


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_crossed_gradient_equals_finite_differences(method):
    """The exact gradient through the border (implicit function theorem) at a point away
    from the optimum equals central differences of the marginal nll."""
    obj = admbjax.make_objective(*penicillin_crossed.build(), method=method)
    x = np.asarray(obj.x0, float) + 0.1
    g = np.asarray(obj.grad(x))
    h = 1e-5
    fd = [(float(obj(x + h * e)) - float(obj(x - h * e))) / (2 * h) for e in np.eye(len(x))]
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-7)


def test_a_border_too_large_is_refused_with_its_sizes():
    """Two crossed factors of 1e5 levels each: the second as global effects would make a
    1e5 x 1e5 Schur complement; refused before anything is allocated."""
    n = 100_000
    rng = np.random.default_rng(0)
    data = admbjax.group_data({"y": rng.normal(size=n)}, np.arange(n), global_index={"sample": rng.permutation(n)})
    model, _ = penicillin_crossed.build()
    big = admbjax.Model(nll=model.nll, theta=model.theta, beta=model.beta, n_random=1, n_global=n,
                        global_nll=model.global_nll)
    with pytest.raises(ValueError, match=r"100000 global random effects .* border of 100001 entries.*74\.5 GiB"):
        admbjax.fit(big, data)


def test_batches_of_global_models_are_refused_clearly():
    model, data = penicillin_crossed.build()
    with pytest.raises(ValueError, match="fit_batch does not take models with global"):
        admbjax.fit_batch(model, [data, data])
