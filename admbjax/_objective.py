"""The objective: the one seam between a model and everything that fits it.

Stage 3 of the pipeline (lme4's ``devfun``, TMB's ``obj``): a function of the outer
parameters ``x`` (``theta``, and ``beta`` for ML) with its value, exact gradient and
Hessian, a start, a warm inner state and the inner modes. Two implementations share the
interface (documented on :class:`admbjax._engine.Engine`):

- the Laplace engine (``_engine.Engine``): any user nll, its random effects (and for REML
  ``beta``) integrated out by the Laplace approximation;
- the Gaussian closed form (``_gaussian.ClosedForm``): a linear mixed model on per-subject
  sufficient statistics, for a model whose ``nll`` carries a ``closed_form`` (the formula
  front end's Gaussian models).

:func:`make_objective` chooses; ``fit`` optimises exactly what it returns, and batches vmap
the same program over lanes. The optimiser, inference and results see only the interface.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np

from . import _laplace
from ._checks import check_model_on_data
from ._data import GroupedData
from ._engine import Engine
from ._gaussian import ClosedForm
from ._model import Model
from ._options import Options
from ._scope import scoped


def objective_spec(model: Model, method: str, options: Options, batched: bool = False) -> Engine:
    """The static objective of ``model``: the closed form where its ``nll`` has one (and
    ``options.closed_form``), else the Laplace engine (refused, with the reason, for an nll
    whose ``closed_form_only`` says that only its closed form can read its data)."""
    lambda_of = getattr(model.nll, "closed_form", None)
    if lambda_of is not None and options.closed_form:
        return ClosedForm.of(model, method, options, batched, lambda_of=lambda_of)
    only = getattr(model.nll, "closed_form_only", None)     # why the engine cannot integrate this nll
    if only:
        raise ValueError(only)
    return Engine.of(model, method, options, batched)


@dataclass(frozen=True, eq=False)
class Objective:
    """The marginal nll of ``model`` on ``data`` as a function of the outer vector ``x``.

    ``objective(x)`` returns the marginal nll (lme4's constants included: ``2 * nll`` is the
    REML criterion or the deviance); ``.grad(x)`` and ``.hessian(x)`` are exact. ``x0`` holds
    the model's initial values, ``start`` where ``fit`` starts from them, and ``names``
    labels the entries of ``x``. Each call solves the inner problem from the model's initial
    ``beta`` and ``u = 0``. ``spec`` is what ``fit`` optimises: ``closed_form`` says which.
    """

    model: Model
    data: GroupedData
    spec: Engine

    @property
    def x0(self) -> np.ndarray:
        return np.asarray(self.spec.x0(self.model))

    @property
    def closed_form(self) -> bool:
        return self.spec.closed_form

    @property
    def names(self) -> list[str]:
        return self.spec.layout.names(self.model.beta_names)

    def _args(self, x):
        """``(x, warm, data)``: each call starts the inner problem afresh."""
        warm = self.spec.initial_warm(self.spec.initial_mode(self.model, self.data.shape[0]))
        return jnp.asarray(x, dtype=jnp.float64), warm, self.data.tree()

    @property
    @scoped
    def start(self) -> np.ndarray:
        return np.asarray(_jit_start(self.spec, jnp.asarray(self.x0), self.data.tree()))

    @scoped
    def __call__(self, x):
        return _jit_value(self.spec, *self._args(x))

    @scoped
    def grad(self, x):
        return _jit_vgh(self.spec, *self._args(x), False)[1]

    @scoped
    def hessian(self, x):
        """The exact (AD) Hessian, whatever ``spec.hessian`` the fit uses."""
        return _jit_vgh(replace(self.spec, hessian="exact"), *self._args(x), True)[2]

    @scoped
    def mode(self, x) -> _laplace.Mode:
        """The inner mode (``beta`` for REML, and ``u``) at ``x``."""
        return _jit_mode(self.spec, *self._args(x))


_jit_start = jax.jit(lambda spec, x0, d: spec.start(x0, d), static_argnums=0)
_jit_value = jax.jit(lambda spec, x, m, d: spec.value(x, m, d), static_argnums=0)
_jit_vgh = jax.jit(lambda spec, x, m, d, h: spec.vgh(x, m, d, need_hessian=h)[:3], static_argnums=(0, 4))
_jit_mode = jax.jit(lambda spec, x, m, d: spec.mode(x, m, d), static_argnums=0)


def objective_of(model: Model, data: GroupedData, method: str, options: Options) -> Objective:
    """:func:`make_objective` from options already checked (``fit``'s)."""
    spec = objective_spec(model, method, options)
    check_model_on_data(model, data)
    return Objective(model, data, spec)


@scoped
def make_objective(model: Model, data: GroupedData, method: str = "REML", **options) -> Objective:
    """The objective of ``model`` on ``data`` (lme4's devfun): what :func:`admbjax.fit`
    optimises, with the same options (``closed_form=False`` asks for the Laplace engine on
    a model that has a closed form)."""
    return objective_of(model, data, method, Options.of("make_objective", **options))
