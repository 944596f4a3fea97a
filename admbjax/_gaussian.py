"""Gaussian linear mixed models in closed form: the fast path of the objective.

For ``y_i = X_i beta + Z_i b_i + e_i`` with ``b_i = sigma Lambda u_i``, ``u_i ~ N(0, I)`` and
``e_i ~ N(0, sigma^2 I)`` the Laplace approximation is exact, and the marginal nll has a
closed form in per-subject sufficient statistics (lme4's penalised least squares; Bates et
al. 2015, J. Stat. Softw. 67(1), section 3.6). With ``r_i = y_i - X_i beta0`` (``beta0`` the
least-squares fit, for accuracy), ``d = beta - beta0``,

    M_i = Lambda' Z_i'Z_i Lambda + I = L_i L_i',
    c_i = L_i^{-1} Lambda' Z_i'r_i,      C_i = L_i^{-1} Lambda' Z_i'X_i,
    rss(d) = sum_i [r_i'r_i - 2 d'X_i'r_i + d'X_i'X_i d - |c_i - C_i d|^2]   (penalised RSS),
    nll_ML = n/2 log(2 pi sigma^2) + rss(d) / (2 sigma^2) + sum_i log det L_i.

REML integrates ``beta`` out: ``d`` is the minimiser ``A^{-1} a`` of ``rss``
(``A = sum_i X_i'X_i - C_i'C_i``, ``a = sum_i X_i'r_i - C_i'c_i``) and the nll gains
``1/2 log det A - p log sigma - p/2 log(2 pi)``. The conditional modes are
``u_i = L_i^{-T} (c_i - C_i d) / sigma``, with conditional covariance ``M_i^{-1}``.

These are the numbers of the general Laplace engine on the same model (a test holds them
equal), from a few q x q operations per subject: no inner Newton iterations, and small
programs that compile in a fraction of the engine's time. The outer parameters and the
results are the engine's: ``x = (theta, [beta for ML])`` with ``theta = {"lambda",
"log_sigma"}``, optimised by the same damped Newton method with the exact Hessian.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _laplace, _linalg, _optimise
from ._inference import infer
from ._laplace import LOG_2PI

#: The per-subject sufficient statistics the formula front end writes (``_formula``).
STATS = ("n", "rr", "Xr", "Zr", "XX", "XZ", "ZZ")


def totals(data):
    """Per-subject statistics summed over their rows (``[N, ...]``), and ``beta0``."""
    w = data["mask"] * data["subject_mask"][:, None]
    s = {k: jnp.einsum("nm,nm...->n...", w, data["arrays"][k]) for k in STATS}
    beta0 = jnp.einsum("nm,nmp->p", w, data["arrays"]["beta0"]) / jnp.sum(w)
    return s, beta0


def pls(lam, s):
    """``(L, ok, c, C, A, a)`` of penalised least squares at ``Lambda = lam``."""
    q = lam.shape[0]
    chol, ok = _linalg.cholesky(jnp.einsum("ji,njk,kl->nil", lam, s["ZZ"], lam) + jnp.eye(q, dtype=lam.dtype))
    c = _linalg.solve_lower(chol, jnp.einsum("ji,nj->ni", lam, s["Zr"])[..., None])[..., 0]
    C = _linalg.solve_lower(chol, jnp.einsum("ji,npj->nip", lam, s["XZ"]))
    A = jnp.sum(s["XX"], 0) - jnp.einsum("nqp,nqr->pr", C, C)
    a = jnp.sum(s["Xr"], 0) - jnp.einsum("nqp,nq->p", C, c)
    return chol, ok, c, C, 0.5 * (A + A.T), a


def _rss(s, e, d):
    """The penalised RSS at ``d``, given ``e = c - C d`` (``[N, q]``)."""
    return (jnp.sum(s["rr"]) - 2.0 * jnp.dot(d, jnp.sum(s["Xr"], 0)) + d @ jnp.sum(s["XX"], 0) @ d
            - jnp.sum(e * e))


def marginal(lambda_of, spec, x, data):
    """``(nll, (beta, u, L, chol_A, C, ok))``: the exact marginal nll (REML or ML) at ``x``."""
    theta = spec.layout.theta_of(x)
    log_sigma = theta["log_sigma"]
    s, beta0 = totals(data)
    chol, ok, c, C, A, a = pls(lambda_of(theta), s)
    n = jnp.sum(s["n"])
    chol_a, ok_a = _linalg.cholesky(A)
    d = _linalg.cho_solve(chol_a, a) if spec.reml else spec.layout.beta_of(x) - beta0
    e = c - jnp.einsum("nqp,p->nq", C, d)
    nll = (0.5 * n * LOG_2PI + n * log_sigma + 0.5 * _rss(s, e, d) * jnp.exp(-2.0 * log_sigma)
           + 0.5 * jnp.sum(_linalg.logdet_from_cholesky(chol)))
    if spec.reml:
        p = A.shape[0]
        nll = nll + 0.5 * _linalg.logdet_from_cholesky(chol_a) - p * log_sigma - 0.5 * p * LOG_2PI
    ok = ok & ok_a
    u = _linalg.solve_upper_t(chol, e[..., None])[..., 0] * jnp.exp(-log_sigma)
    return jnp.where(jnp.all(ok), nll, jnp.inf), (beta0 + d, u, chol, chol_a, C, ok)


def _laplace_state(lambda_of, spec, x, data):
    """The engine's :class:`Laplace` and :class:`InnerInfo` at ``x``, from the closed form."""
    nll, (beta, u, chol, chol_a, C, ok) = marginal(lambda_of, spec, x, data)
    sigma = jnp.exp(spec.layout.theta_of(x)["log_sigma"])
    n, q = u.shape
    zeros = jnp.zeros_like
    if spec.reml:     # the engine's Schur complement S = A / sigma^2; H_uu^{-1} H_ubeta
        beta_int, chol_s, w = beta, chol_a / sigma, _linalg.solve_upper_t(chol, C) / sigma
    else:
        beta_int, chol_s, w = beta[:0], jnp.zeros((0, 0), u.dtype), jnp.zeros((n, q, 0), u.dtype)
    mode = _laplace.Mode(beta_int, u)
    logdet = jnp.sum(_linalg.logdet_from_cholesky(chol)) + _linalg.logdet_from_cholesky(chol_s)
    step = _laplace.Step(_laplace.Mode(zeros(beta_int), zeros(u)), ok, jnp.zeros((n,), u.dtype), logdet,
                         chol, chol_s, w)
    return _laplace.Laplace(nll, mode, ok, step), _laplace.InnerInfo(ok, jnp.zeros((), jnp.int32))


def fit_program(fs, x0, data):
    """``_fit.fit_program`` for a Gaussian model with ``fs.closed_form`` (``theta -> Lambda``)."""
    from ._fit import FitOutput

    spec, lambda_of = fs.spec, fs.closed_form
    f = lambda x: marginal(lambda_of, spec, x, data)[0]

    def vgh(x, warm, need_hessian):
        value, grad = jax.value_and_grad(f)(x)
        return value, grad, jax.hessian(f)(x), ()

    # the Hessian is exact and cheap: full Newton steps throughout (no BFGS phase)
    opt = _optimise.minimise(vgh, x0, (), lambda aux: (), (), gtol=fs.gtol, max_iter=fs.max_iter,
                             quasi_newton=False)
    lap, info = _laplace_state(lambda_of, spec, opt.x, data)
    if spec.reml:
        dbeta = jax.jacfwd(lambda x: marginal(lambda_of, spec, x, data)[1][0])(opt.x)
    else:
        dbeta = jnp.zeros((0, x0.shape[0]), x0.dtype)
    opt = opt._replace(aux=(lap, info, dbeta), last_aux=(lap, info, dbeta))
    return FitOutput(opt, infer(spec, fs.report, fs.ranef, opt.x, opt.h, lap, dbeta))
