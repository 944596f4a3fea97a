"""The Gaussian fast path (per-subject sufficient statistics) equals the general engine."""

import numpy as np
import pytest

import admbjax
from conftest import ROOT


@pytest.mark.parametrize("formula, data, method", [
    ("Reaction ~ Days + (Days | Subject)", "sleepstudy", "ML"),
    ("distance ~ age * Sex + (1 | Subject)", str(ROOT / "tests/reference/data/orthodont_sex.csv"), "REML"),
])
def test_sufficient_statistics_equal_the_per_observation_model(formula, data, method):
    fast_model, fast_data, _ = admbjax.formula_model(formula, data)
    slow_model, slow_data, _ = admbjax.formula_model(formula, data, sufficient=False)
    assert fast_data.shape[1] == 1 and slow_data.shape[1] > 1     # one row per subject
    assert fast_data.n_obs == slow_data.n_obs
    fast, slow = (admbjax.fit(m, d, method, global_mode=False) for m, d in
                  [(fast_model, fast_data), (slow_model, slow_data)])
    assert fast.criterion == pytest.approx(slow.criterion, rel=1e-11)
    np.testing.assert_allclose(fast.beta, slow.beta, rtol=1e-8)
    np.testing.assert_allclose(fast.beta_se, slow.beta_se, rtol=1e-6)
    np.testing.assert_allclose(fast.b, slow.b, rtol=1e-6, atol=1e-9)
    # and the objective agrees away from the optimum too
    x = fast.x + 0.1
    f_fast = admbjax.make_objective(fast_model, fast_data, method)(x)
    f_slow = admbjax.make_objective(slow_model, slow_data, method)(x)
    assert float(f_fast) == pytest.approx(float(f_slow), rel=1e-11)
