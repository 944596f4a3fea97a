"""Exact derivatives: AD gradients and Hessians of the marginal nll against central differences.

Gaussian (sleepstudy) and Student-t (its one-line twin) models, ML and REML, at a point away
from the optimum. Gradients to 1e-6 relative, Hessians to 1e-5 (issue 2); the Student-t exact
Hessians (slow to compile) run with ``-m slow``; fits use finite differences of the gradient,
checked against glmmTMB's standard errors in test_robust_glmm.py.
"""

import numpy as np
import pytest

import admbjax


def central_difference(fun, x, h):
    out = []
    for j in range(len(x)):
        e = np.zeros_like(x)
        e[j] = h * max(1.0, abs(x[j]))
        out.append((np.asarray(fun(x + e)) - np.asarray(fun(x - e))) / (2 * e[j]))
    return np.stack(out, axis=-1)


def _rel_err(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def _objective_away_from_optimum(request, which, method):
    model, data = request.getfixturevalue(which).build()
    obj = admbjax.make_objective(model, data, method)
    x = np.array(obj.x0, dtype=float)
    x[: obj.spec.layout.n_theta] += 0.1 * np.cos(np.arange(obj.spec.layout.n_theta))  # away from any optimum
    return obj, x


# Every model and method in the slow run; the default run checks each model and each method
# once (the t model's REML gradient compiles for ~15 s).
@pytest.mark.parametrize("which, method", [("sleepstudy", "ML"), ("sleepstudy", "REML"), ("sleepstudy_t", "ML"),
                                           pytest.param("sleepstudy_t", "REML", marks=pytest.mark.slow)])
def test_gradient_matches_finite_differences(request, which, method):
    obj, x = _objective_away_from_optimum(request, which, method)
    g_fd = central_difference(lambda z: float(obj(z)), x, 1e-5)
    assert _rel_err(np.asarray(obj.grad(x)), g_fd) < 1e-6


# The exact (fourth-derivative) Hessian compiles for ~15 s (REML) to ~30 s (the t model) a
# case: the default run checks the Gaussian ML one, -m slow the others.
@pytest.mark.parametrize("which, method", [("sleepstudy", "ML"),
                                           pytest.param("sleepstudy", "REML", marks=pytest.mark.slow),
                                           pytest.param("sleepstudy_t", "ML", marks=pytest.mark.slow),
                                           pytest.param("sleepstudy_t", "REML", marks=pytest.mark.slow)])
def test_exact_hessian_matches_finite_differences(request, which, method):
    obj, x = _objective_away_from_optimum(request, which, method)
    h = np.asarray(obj.hessian(x))
    h_fd = central_difference(lambda z: np.asarray(obj.grad(z)), x, 1e-5)
    assert _rel_err(h, h_fd) < 1e-5
    np.testing.assert_allclose(h, h.T, rtol=1e-12, atol=1e-12 * np.abs(h).max())
