"""Honest flags (issue 11, point 4): ``converged`` means a minimum, judged without units;
separation and constant responses are named, never fitted silently.

References: tests/reference/honest_flags.json (lme4 1.1-31, glmmTMB 1.1.5, R 4.2.2; written by
tests/reference/make_honest_flags.R from the CSVs in tests/reference/data) and
tests/reference/sleepstudy.json (lme4's sleepstudy fits).
"""

import sys
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import admbjax
from conftest import REFERENCE, ROOT, reference

sys.path.insert(0, str(ROOT / "models"))
SLEEP = "Reaction ~ Days + (Days | Subject)"
FLAGS = reference("honest_flags")["fits"]


def _quiet(f, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", admbjax.AdmbjaxWarning)
        out = f(*args, **kwargs)
    return out, [str(w.message) for w in caught]


@pytest.fixture(scope="module")
def zero_start():
    """sleepstudy's hand-written model started with Lambda = 0: every variance exactly zero, where
    the gradient in Lambda is zero by symmetry and the Hessian has negative curvature."""
    import sleepstudy_lmm

    model, data = sleepstudy_lmm.build()
    return replace(model, theta={"log_sigma": model.theta["log_sigma"], "lambda": np.zeros(3)}), data


@pytest.mark.parametrize("method, ref", [("REML", "lme4_lmer_REML"), ("ML", "lme4_lmer_ML")])
def test_a_saddle_point_start_is_left_for_the_minimum(zero_start, method, ref):
    fit, caught = _quiet(admbjax.fit, *zero_start, method)
    assert fit.converged and not caught
    assert fit.criterion == pytest.approx(reference("sleepstudy")["fits"][ref]["criterion"], rel=1e-8)


def test_a_batch_lane_started_at_a_saddle_point_is_not_reported_converged(zero_start):
    """A batch's lanes take no eigendecompositions: they do not find the way off, and say so."""
    model, data = zero_start
    results, caught = _quiet(admbjax.fit_batch, [model], [data], "REML")
    fit = results[0]
    assert not fit.converged and not results.converged[0]
    assert any(m.startswith("Model failed to converge") for m in fit.messages)
    assert any("did not converge" in m for m in caught)


def test_a_stationary_point_with_negative_curvature_is_flagged():
    from admbjax._results import curvature_check

    h = np.array([[[4.0, 0.0], [0.0, -1e-3]], [[4.0, 1.0], [1.0, 2.0]], [[1e-24, 0.0], [0.0, 1e6]]])
    g = np.array([[0.0, 0.0], [1e-9, 0.0], [1e-15, 1e-6]])
    scaled, saddle = curvature_check(g, h)
    assert saddle.tolist() == [True, False, False]
    # unit-free: the third is a gradient of 1e-15 where the curvature is 1e-24 (a SE of 1e12)
    assert scaled[2] == pytest.approx(np.hypot(1e-15 / 1e-12, 1e-6 / 1e3), rel=1e-12)
    assert scaled[1] == pytest.approx(np.sqrt(g[1] @ np.linalg.solve(h[1], g[1])), rel=1e-12)


@pytest.mark.parametrize("closed_form", [True, False])
@pytest.mark.parametrize("method", ["REML", "ML"])
def test_the_flag_and_accuracy_do_not_depend_on_the_units_of_y(method, closed_form):
    df = admbjax.datasets.load("sleepstudy")
    base = admbjax.fit_formula(SLEEP, df, method=method, closed_form=closed_form)
    n, p = 180, 2
    for k in (-12, 12):
        c = 10.0 ** k
        fit = admbjax.fit_formula(SLEEP, df.assign(Reaction=df["Reaction"] * c), method=method,
                                  closed_form=closed_form)
        assert fit.converged, (k, fit.status)
        assert fit.scaled_grad < 1e-8
        shift = 2 * (n - p if method == "REML" else n) * np.log(c)
        assert fit.criterion - shift == pytest.approx(base.criterion, rel=1e-10)
        np.testing.assert_allclose(fit.beta / c, base.beta, rtol=1e-9)
        assert fit.sigma / c == pytest.approx(base.sigma, rel=1e-9)
        np.testing.assert_allclose(fit.G / c**2, base.G, rtol=1e-7)
        np.testing.assert_allclose(fit.beta_se / c, base.beta_se, rtol=1e-6)


def test_poisson_counts_near_4e5_converge_to_lme4s_deviance():
    df = pd.read_csv(REFERENCE / "data" / "poisson_large_counts.csv")
    fit = admbjax.fit_formula("y ~ x + (1 | g)", df, family="poisson")
    assert fit.converged and fit.method == "ML"
    best = min(FLAGS["poisson_glmer"]["deviance"], FLAGS["poisson_glmmTMB"]["deviance"])
    assert fit.criterion <= best * (1 + 1e-9)          # glmmTMB's, to its optimiser's tolerance
    assert fit.criterion == pytest.approx(best, rel=1e-9)
    np.testing.assert_allclose(fit.beta, list(FLAGS["poisson_glmmTMB"]["fixef"].values()), rtol=1e-6)


def test_complete_separation_is_flagged_not_converged():
    """glmer stops with an error here (see the reference); admbjax says what happened."""
    assert "did not converge" in FLAGS["separation_glmer"]["error"]
    df = pd.read_csv(REFERENCE / "data" / "binomial_separation.csv")
    fit, caught = _quiet(admbjax.fit_formula, "y ~ x + (1 | g)", df, family="binomial")
    assert not fit.converged and fit.status == "complete or quasi-complete separation"
    text = "\n".join(caught)
    assert "fitted probabilities numerically 0 or 1 occurred" in text and "separation" in text and " x)" in text
    assert any("separation" in m for m in fit.messages)


def test_a_constant_response_is_refused_alone_and_in_a_batch():
    df = admbjax.datasets.load("sleepstudy")
    constant = df.assign(Reaction=300.0)
    assert FLAGS["constant_lmer"]["warnings"]          # lme4 "fits" it, with convergence warnings
    with pytest.raises(ValueError, match="the response 'Reaction' is constant"):
        admbjax.fit_formula(SLEEP, constant)
    both = pd.concat([df.assign(rep="a"), constant.assign(rep="b")], ignore_index=True)
    for method in ("REML", "ML"):
        (levels, results), caught = _quiet(admbjax.fit_formula_by, SLEEP, both, "rep", method=method)
        assert results[1] is None and results[0].converged
        assert any("level 'b' of 'rep' was not fitted: the response 'Reaction' is constant" in m for m in caught)
        alone = admbjax.fit_formula(SLEEP, df, method=method)
        assert results[0].criterion == pytest.approx(alone.criterion, rel=1e-10)
    genes, caught = _quiet(admbjax.fit_formula_responses, "y ~ Days + (Days | Subject)",
                           df.assign(g1=df["Reaction"], g2=300.0), ["g1", "g2"])
    assert genes[1] is None and genes[0].converged
    assert any("was not fitted: the response 'g2' is constant" in m for m in caught)
