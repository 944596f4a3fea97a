"""The Gaussian fast paths equal the general engine: per-subject sufficient statistics, and
the closed-form likelihood (``admbjax._gaussian``) that formula fits use by default."""

import numpy as np
import pandas as pd
import pytest

import admbjax
from conftest import ROOT


@pytest.mark.parametrize("formula, data, method", [
    ("Reaction ~ Days + (Days | Subject)", "sleepstudy", "ML"),
    pytest.param("distance ~ age * Sex + (1 | Subject)", str(ROOT / "tests/reference/data/orthodont_sex.csv"), "REML",
                 marks=pytest.mark.slow),      # REML's closed form = engine: test_multilevel's nested case too
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin", "REML"),      # crossed: global effects
    pytest.param("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin", "ML", marks=pytest.mark.slow),
])
def test_fast_paths_equal_the_per_observation_laplace_engine(formula, data, method):
    fast_model, fast_data, design = admbjax.formula_model(formula, data)
    slow_model, slow_data, _ = admbjax.formula_model(formula, data, sufficient=False)
    assert fast_data.shape[1] == 1 and slow_data.shape[1] > 1     # one row per subject
    assert fast_data.n_obs == slow_data.n_obs
    assert getattr(fast_model.nll, "closed_form", None) is not None
    assert getattr(slow_model.nll, "closed_form", None) is None
    closed = admbjax.fit(fast_model, fast_data, method)
    engine = admbjax.fit(slow_model, slow_data, method, global_mode=False)
    assert closed.iterations < engine.iterations                  # exact Newton from the start
    assert closed.criterion == pytest.approx(engine.criterion, rel=1e-11)
    np.testing.assert_allclose(closed.beta, engine.beta, rtol=1e-8)
    np.testing.assert_allclose(closed.beta_se, engine.beta_se, rtol=1e-6)
    np.testing.assert_allclose(closed.beta_cov_full, engine.beta_cov_full, rtol=1e-5)
    np.testing.assert_allclose(closed.x, engine.x, rtol=1e-6, atol=1e-8)
    # on the scale of the standard errors: a finite-difference Hessian is good to ~1e-8 of it
    # (a covariance of 1e-11 between parameters with SEs 0.2 and 7 is zero to that precision)
    se = np.sqrt(np.outer(np.diag(engine.x_cov), np.diag(engine.x_cov)))
    np.testing.assert_allclose(closed.x_cov / se, engine.x_cov / se, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(closed.b, engine.b, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(closed.b_sd, engine.b_sd, rtol=1e-6)
    diag = admbjax._lambda.lambda_index(design.blocks)[2]      # reported as lme4 does (Model.signs)
    assert np.all(closed.theta["lambda"][diag] >= 0) and np.all(engine.theta["lambda"][diag] >= 0)
    # make_objective gives what fit optimises: the closed form; the engine on the sufficient
    # statistics (closed_form=False) and on the observations agree with it away from the optimum
    x = closed.x + 0.1
    fast = admbjax.make_objective(fast_model, fast_data, method)
    slow = admbjax.make_objective(slow_model, slow_data, method)
    assert fast.closed_form and not slow.closed_form
    assert float(fast(x)) == pytest.approx(float(slow(x)), rel=1e-11)
    if fast_model.n_global:     # crossed: statistics only the closed form reads
        with pytest.raises(ValueError, match="sufficient=False"):
            admbjax.make_objective(fast_model, fast_data, method, closed_form=False)
    else:
        stats_engine = admbjax.make_objective(fast_model, fast_data, method, closed_form=False)
        assert not stats_engine.closed_form
        assert float(stats_engine(x)) == pytest.approx(float(slow(x)), rel=1e-11)
    np.testing.assert_allclose(fast.grad(x), slow.grad(x), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(fast.mode(x).u, slow.mode(x).u, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fast.mode(x).v, slow.mode(x).v, rtol=1e-8, atol=1e-10)
    if fast_model.n_global:
        np.testing.assert_allclose(closed.extra["v"], engine.extra["v"], rtol=1e-6, atol=1e-9)
    assert float(fast(fast.start)) >= float(fast(closed.x)) - 1e-9      # the closed form's start, then its optimum


def _crossed_with_slopes(seed=3):
    """Subjects crossed with items, a correlated random slope on the items (a global term with
    two effects per level), unbalanced: some pairs missing, some repeated."""
    rng = np.random.default_rng(seed)
    rows = [(s, i) for s in range(60) for i in range(6) if rng.random() < 0.8] + [(0, 1), (3, 2), (7, 5)]
    s, i = np.array(rows).T
    x = rng.normal(size=len(s))
    b_item = rng.normal(size=(6, 2)) * [1.0, 0.5]
    y = 1 + 0.5 * x + rng.normal(size=60)[s] + b_item[i, 0] + b_item[i, 1] * x + rng.normal(size=len(s))
    return pd.DataFrame({"y": y, "x": x, "subj": s, "item": i})


@pytest.mark.parametrize("method", ["REML", pytest.param("ML", marks=pytest.mark.slow)])
def test_crossed_closed_form_equals_the_engine_with_vector_global_terms(method):
    """The closed form's border scaling (each level's Lambda_t over its effects) and its pair
    sums against the engine on the observations, away from the optimum."""
    df = _crossed_with_slopes()
    formula = "y ~ x + (1 | subj) + (x | item)"
    fast_model, fast_data, design = admbjax.formula_model(formula, df, categorical=["subj", "item"])
    slow_model, slow_data, _ = admbjax.formula_model(formula, df, sufficient=False, categorical=["subj", "item"])
    assert design.group == "subj" and fast_model.n_global == 12 and fast_data.shape[1] == 1
    fast = admbjax.make_objective(fast_model, fast_data, method)
    slow = admbjax.make_objective(slow_model, slow_data, method)
    assert fast.closed_form and not slow.closed_form
    x = fast.x0 + np.linspace(-0.3, 0.4, fast.x0.shape[0])
    assert float(fast(x)) == pytest.approx(float(slow(x)), rel=1e-11)
    np.testing.assert_allclose(fast.grad(x), slow.grad(x), rtol=1e-7, atol=1e-9)
    mode_fast, mode_slow = fast.mode(x), slow.mode(x)
    np.testing.assert_allclose(mode_fast.u, mode_slow.u, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(mode_fast.v, mode_slow.v, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(mode_fast.beta, mode_slow.beta, rtol=1e-8, atol=1e-10)
    fit = admbjax.fit(fast_model, fast_data, method)
    assert fit.converged and fit.max_abs_grad < 1e-4
    assert float(slow(fit.x)) == pytest.approx(fit.nll, rel=1e-11)
