"""Inference at the optimum: covariances, delta-method standard errors, conditional modes.

Follows TMB's ``sdreport`` (Kristensen et al. 2016) and lme4's ``vcov``/``ranef``:

- outer parameters: ``cov(x) = H^{-1}``, the inverse exact Hessian of the marginal nll;
- fixed effects, conditional on the variance parameters (lme4's ``vcov``): REML, the inverse
  Schur complement ``S^{-1}`` of the joint inner Hessian; ML, the inverse of the beta block
  of the marginal Hessian (``(X'V^{-1}X)^{-1}`` for Gaussian models);
- fixed effects, unconditionally (glmmTMB's ``sdreport``): ML, the beta block of ``H^{-1}``;
  REML, ``S^{-1} + J cov(theta) J'`` with ``J = d beta_hat / d theta`` (implicit derivative);
- reported quantities (``model.report``): ``J cov(x) J'`` with ``J`` their Jacobian in ``x``
  (for REML ``beta`` is held at its estimate);
- random effects: conditional modes and conditional covariances ``H_uu,i^{-1}`` given the
  estimated ``theta`` and ``beta`` (lme4's ``ranef(condVar = TRUE)``; for REML the
  uncertainty of ``beta`` would add ``W_i S^{-1} W_i'``, which lme4 leaves out).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import _linalg
from ._laplace import Laplace


class Inference(NamedTuple):
    x_cov: jax.Array        # [k, k], NaN where the Hessian is not positive definite
    hessian_pd: jax.Array   # [] bool
    beta: jax.Array         # [p]
    beta_cov: jax.Array     # [p, p] conditional on the variance parameters (lme4)
    beta_cov_full: jax.Array  # [p, p] including their uncertainty (glmmTMB)
    report: dict            # natural-scale quantities
    report_se: dict         # their delta-method standard errors
    u: jax.Array            # [N, q] conditional modes of the spherical random effects
    b: jax.Array            # [N, q] random effects on the reporting scale
    b_sd: jax.Array         # [N, q] conditional standard deviations of b
    v: jax.Array            # [m] conditional modes of the global random effects (spherical scale)


def _inverse(chol, ok, k):
    inv = _linalg.cho_solve(chol, jnp.eye(k, dtype=chol.dtype))
    return jnp.where(ok, inv, jnp.nan)


def outer_covariance(h):
    """``H^{-1}`` and whether ``H`` is positive definite."""
    chol, ok = _linalg.cholesky(h)
    return _inverse(chol, ok, h.shape[0]), ok


def beta_covariance(spec, h, lap: Laplace):
    """Covariance of ``beta`` conditional on the variance parameters (lme4's ``vcov``)."""
    if spec.reml:     # the beta block of S^{-1} (S: the border's Schur complement, beta first)
        p, size = lap.mode.beta.shape[0], lap.step.chol_s.shape[0]
        inv = _linalg.cho_solve(lap.step.chol_s, jnp.eye(size, p, dtype=lap.step.chol_s.dtype))[:p]
        return jnp.where(jnp.all(lap.ok), inv, jnp.nan)
    n_theta = spec.layout.n_theta
    h_bb = h[n_theta:, n_theta:]
    chol, ok = _linalg.cholesky(h_bb)
    return _inverse(chol, ok, h_bb.shape[0])


def u_covariance(lap: Laplace):
    """Conditional covariance of each ``u_i`` given ``theta`` and ``beta``: ``H_uu,i^{-1}``."""
    n, q, _ = lap.step.chol_uu.shape
    return _linalg.cho_solve(lap.step.chol_uu, jnp.broadcast_to(jnp.eye(q), (n, q, q)))


def beta_covariance_full(spec, x_cov, beta_cov, dbeta_dx):
    """Covariance of ``beta`` including the uncertainty of the variance parameters."""
    if not spec.reml:
        n_theta = spec.layout.n_theta
        return x_cov[n_theta:, n_theta:]
    return beta_cov + dbeta_dx @ x_cov @ dbeta_dx.T


def infer(spec, report_fn, ranef_fn, x, h, lap: Laplace, dbeta_dx) -> Inference:
    """Everything :class:`Inference` holds, at the optimum ``x``.

    ``dbeta_dx``: derivative of the REML estimate of ``beta`` in ``x`` (empty for ML).
    """
    x_cov, pd = outer_covariance(h)
    theta, beta = spec.params(x, lap.mode)
    beta = jax.lax.stop_gradient(beta)
    beta_cov = beta_covariance(spec, h, lap)
    beta_cov_full = beta_covariance_full(spec, x_cov, beta_cov, dbeta_dx)

    def rep(x):
        return report_fn(spec.layout.theta_of(x), beta) if report_fn else {}

    report = rep(x)
    jac = jax.jacfwd(rep)(x)
    report_se = jax.tree.map(lambda j: jnp.sqrt(jnp.einsum("...i,ij,...j->...", j, x_cov, j)), jac)
    u = lap.mode.u
    u_cov = u_covariance(lap)
    to_b = (lambda ui: ranef_fn(theta, beta, ui)) if ranef_fn else (lambda ui: ui)
    b = jax.vmap(to_b)(u)
    jb = jax.vmap(jax.jacfwd(to_b))(u)
    b_var = jnp.einsum("nij,njk,nik->ni", jb, u_cov, jb)
    return Inference(x_cov, pd, beta, beta_cov, beta_cov_full, report, report_se, u, b, jnp.sqrt(b_var), lap.mode.v)
