"""Properties that need no reference (issue 11, point 9), on small random LMMs and GLMMs
drawn by hypothesis: a fit does not change when rows are reordered, subjects relabelled, y
shifted or y scaled by 10^k (ML and REML); a fit flagged converged has finite estimates,
and its JSON is strict. Every example of a strategy has one shape, so that the examples
share one compiled program.
"""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import admbjax

N_GROUPS, PER = 7, 5
SETTINGS = settings(max_examples=6, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _frame(seed: int, family: str, slope_sd: float, intercept_sd: float, t_df=None):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(N_GROUPS), PER)
    x = rng.normal(size=len(g))
    b0, b1 = rng.normal(0, intercept_sd, N_GROUPS)[g], rng.normal(0, slope_sd, N_GROUPS)[g]
    eta = 0.3 + 0.8 * x + b0 + b1 * x
    if family == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    elif family == "binomial":
        y = (rng.random(len(g)) < 1 / (1 + np.exp(-eta))).astype(float)
    else:
        e = rng.standard_t(t_df, size=len(g)) if t_df else rng.normal(size=len(g))
        y = 10 * eta + e
    return pd.DataFrame({"y": y, "x": x, "g": [f"s{i}" for i in g]})


def _fit(df, family, method, formula="y ~ x + (x | g)"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", admbjax.AdmbjaxWarning)     # singular fits are not under test here
        return admbjax.fit_formula(formula, df, family=family, method=method)


def _same(a, b, rtol=1e-8):
    assert a.converged == b.converged
    assert a.criterion == pytest.approx(b.criterion, rel=rtol, abs=rtol)
    se = np.where(np.isfinite(a.beta_se), a.beta_se, 1.0)
    assert np.all(np.abs(a.beta - b.beta) <= 1e-5 * se + 1e-10 * np.abs(a.beta))
    if a.sigma is not None:
        assert a.sigma == pytest.approx(b.sigma, rel=1e-5)


def _strict(fit):
    text = json.dumps(fit.to_dict(), allow_nan=False)     # raises on NaN or inf
    if fit.converged:
        assert np.all(np.isfinite(fit.beta)) and np.isfinite(fit.criterion)
        assert all(np.all(np.isfinite(np.asarray(v))) for v in fit.report.values())
    return text


CASES = [("gaussian", "REML"), ("gaussian", "ML"), ("poisson", "ML"), ("binomial", "ML")]


@pytest.mark.parametrize("family, method", CASES)
@SETTINGS
@given(seed=st.integers(0, 10_000), slope_sd=st.sampled_from([0.0, 0.3]), perm_seed=st.integers(0, 10_000))
def test_row_order_and_labels_do_not_matter(family, method, seed, slope_sd, perm_seed):
    df = _frame(seed, family, slope_sd, 0.7)
    base = _fit(df, family, method)
    _strict(base)
    rng = np.random.default_rng(perm_seed)
    shuffled = df.iloc[rng.permutation(len(df))]
    _same(_fit(shuffled, family, method), base)
    labels = {f"s{i}": f"id{j:03d}" for i, j in enumerate(rng.permutation(N_GROUPS) * 7 + 3)}
    relabelled = _fit(df.assign(g=df["g"].map(labels)), family, method)
    _same(relabelled, base)
    b = base.ranef().rename(index=labels).sort_index()
    np.testing.assert_allclose(relabelled.ranef().sort_index().to_numpy(), b.to_numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["REML", "ML"])
@SETTINGS
@given(seed=st.integers(0, 10_000), shift=st.floats(-1e4, 1e4), k=st.integers(-12, 12))
def test_shifting_and_scaling_y(method, seed, shift, k):
    df = _frame(seed, "gaussian", 0.3, 0.7)
    base = _fit(df, "gaussian", method)
    _strict(base)
    shifted = _fit(df.assign(y=df["y"] + shift), "gaussian", method)
    assert shifted.converged == base.converged
    assert shifted.criterion == pytest.approx(base.criterion, rel=1e-8)
    np.testing.assert_allclose(shifted.beta - [shift, 0.0], base.beta, rtol=1e-6, atol=1e-6 * (1 + abs(shift)))
    c = 10.0 ** k
    scaled = _fit(df.assign(y=df["y"] * c), "gaussian", method)
    _strict(scaled)
    n, p = len(df), 2
    shift_crit = 2 * (n - p if method == "REML" else n) * np.log(c)     # -2 log L of y*c
    assert scaled.converged == base.converged
    assert scaled.criterion - shift_crit == pytest.approx(base.criterion, rel=1e-8, abs=1e-7)
    np.testing.assert_allclose(scaled.beta / c, base.beta, rtol=1e-6)
    assert scaled.sigma / c == pytest.approx(base.sigma, rel=1e-6)
    np.testing.assert_allclose(np.sqrt(np.diag(scaled.G)) / c, np.sqrt(np.diag(base.G)), rtol=1e-5, atol=1e-8 * base.sigma)


@SETTINGS
@given(seed=st.integers(0, 10_000), k=st.integers(-12, 12))
def test_student_t_scaling_y(seed, k):
    df = _frame(seed, "gaussian", 0.0, 0.7, t_df=2)
    base = _fit(df, "student_t", "ML", "y ~ x + (1 | g)")
    assume(base.df < 1e3)        # an interior optimum (df -> infinity is the Gaussian boundary)
    c = 10.0 ** k
    scaled = _fit(df.assign(y=df["y"] * c), "student_t", "ML", "y ~ x + (1 | g)")
    _strict(scaled)
    assert scaled.converged == base.converged
    if base.converged:
        assert scaled.loglik + len(df) * np.log(c) == pytest.approx(base.loglik, rel=1e-8)
        np.testing.assert_allclose(scaled.beta / c, base.beta, rtol=1e-5)
        assert scaled.df == pytest.approx(base.df, rel=1e-4)


def _reject_constant(name):
    raise ValueError(f"not strict JSON: {name}")


@SETTINGS
@given(seed=st.integers(0, 10_000))
def test_batch_json_lines_are_strict_and_equal_each_fit(seed):
    frames = [_frame(seed + r, "gaussian", 0.3, 0.7).assign(rep=r) for r in range(3)]
    df = pd.concat(frames, ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", admbjax.AdmbjaxWarning)
        levels, results = admbjax.fit_formula_by("y ~ x + (x | g)", df, "rep")
    for line, fit in zip(results.json_lines(), results):
        parsed = json.loads(line, parse_constant=_reject_constant)
        assert parsed == json.loads(_strict(fit))
