"""Optimisers are objects: Newton's method and L-BFGS (optax) reach the same optimum, the
default is chosen by the outer dimension, and a wrong choice is a clear error."""

import numpy as np
import pytest

import admbjax
from admbjax import _optimise
from conftest import load_model

SLEEP = "Reaction ~ Days + (Days | Subject)"


def _same_fit(a, b):
    """Equal fits, in what does not depend on the free signs of Lambda's columns (a
    hand-written model has no ``signs``)."""
    assert a.converged and b.converged
    assert a.criterion == pytest.approx(b.criterion, rel=1e-11)
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-7)
    np.testing.assert_allclose(a.beta_se, b.beta_se, rtol=1e-5)
    np.testing.assert_allclose(a.G, b.G, rtol=1e-6)
    assert a.sigma == pytest.approx(b.sigma, rel=1e-7)


def test_lbfgs_reaches_newtons_optimum_in_closed_form_and_in_the_engine(sleepstudy_fits):
    model, data = load_model("sleepstudy_lmm").build()
    engine = admbjax.fit(model, data, "ML", optimiser=admbjax.LBFGS())
    _same_fit(engine, sleepstudy_fits["ML"])
    newton = admbjax.fit_formula(SLEEP, "sleepstudy", method="ML", optimiser=admbjax.Newton())
    lbfgs = admbjax.fit_formula(SLEEP, "sleepstudy", method="ML", optimiser=admbjax.LBFGS())
    _same_fit(lbfgs, newton)
    np.testing.assert_allclose(lbfgs.x, newton.x, rtol=1e-6, atol=1e-8)      # canonical signs (Model.signs)
    assert lbfgs.criterion == pytest.approx(engine.criterion, rel=1e-11)
    assert "Optimizer: L-BFGS, then damped Newton" in lbfgs.summary()       # the summary says which ran
    assert "L-BFGS" not in newton.summary() and "Optimizer: damped Newton," in newton.summary()


def test_the_default_is_chosen_by_outer_dimension():
    from admbjax import _engine, _objective, _options
    model, _ = load_model("sleepstudy_lmm").build()
    spec = _engine.Engine.of(model, "ML", _options.Options())
    small = _optimise.default_optimiser(spec, batched=False, k=_optimise.LBFGS_MIN_OUTER - 1)
    large = _optimise.default_optimiser(spec, batched=False, k=_optimise.LBFGS_MIN_OUTER)
    assert isinstance(small, admbjax.Newton) and small.quasi_newton      # BFGS between FD Hessians
    assert isinstance(large, admbjax.LBFGS)
    batch = _optimise.default_optimiser(spec, batched=True, k=10 * _optimise.LBFGS_MIN_OUTER)
    assert isinstance(batch, admbjax.Newton) and not batch.quasi_newton and not batch.modify
    fast, _, _ = admbjax.formula_model("Reaction ~ Days + (Days | Subject)", "sleepstudy")
    closed = _objective.objective_spec(fast, "ML", _options.Options())
    assert closed.closed_form        # a cheap Hessian: Newton's method whatever the dimension
    assert isinstance(_optimise.default_optimiser(closed, batched=False, k=10 * _optimise.LBFGS_MIN_OUTER), admbjax.Newton)


def test_optimisers_are_objects_not_strings():
    with pytest.raises(TypeError, match="`optimiser` must be an optimiser object"):
        admbjax.fit_formula(SLEEP, "sleepstudy", optimiser="lbfgs")
    df = admbjax.datasets.load("sleepstudy").assign(rep=lambda d: d.Days % 2)
    with pytest.raises(ValueError, match="L-BFGS optimiser is for single fits"):
        admbjax.fit_formula_by(SLEEP, df, by="rep", optimiser=admbjax.LBFGS())
