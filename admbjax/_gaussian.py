"""Gaussian linear mixed models in closed form: the second implementation of the objective.

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

Global random effects ``v`` (crossed factors, shared by subjects; ``b_v = sigma Lambda_g v``)
join ``d`` in the border ``w = (sigma v, d)`` of the same arrowhead, as in the Laplace engine
and in MixedModels.jl's blocked Cholesky (Bates et al., MixedModels.jl): the subject's ``X_i``
becomes its local border ``B_i = (G_i, X_i)``, ``G_i`` the raw design of the global effects
it touches, and with ``C_i = L_i^{-1} Lambda' Z_i'B_i``, ``c_i`` as before,

    A = Lambda_b' [sum_i P_i'(B_i'B_i - C_i'C_i)P_i] Lambda_b + diag(I_m, 0),
    a = Lambda_b' sum_i P_i'(B_i'r_i - C_i'c_i),
    rss(w) = sum_i (r_i'r_i - |c_i|^2) - 2 w'a + w'A w,

(``P_i`` places a subject's local border in the whole one, ``Lambda_b = blockdiag(Lambda_g,
I_p)``). ``v`` is always at its minimiser (given ``d`` for ML), and the random effects' log
determinant gains ``log det A_vv``; REML's term is the log determinant of ``A``'s Schur
complement on ``d``. No matrix over all random effects is formed: the border's is
``(m + p) x (m + p)``.

These are the numbers of the general Laplace engine on the same model (a test holds them
equal), from a few q x q operations per subject: no inner Newton iterations, and small
programs that compile in a fraction of the engine's time. The outer parameters and the
results are the engine's: ``x = (theta, [beta for ML])`` with ``theta = {"lambda",
"log_sigma"}``, optimised by the same damped Newton method with the exact Hessian, from
a moment estimate of ``Lambda`` with ``sigma`` (and ``beta`` for ML) at their optimum
given it (lme4's profiled deviance): for balanced data that start is the optimum.
:class:`ClosedForm` is this objective; ``make_objective`` returns it for a model whose
``nll`` carries a ``closed_form`` (the formula front end's Gaussian nll on sufficient
statistics).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from . import _laplace, _linalg
from ._laplace import LOG_2PI
from ._engine import Engine, central_differences, fd_shifts

#: The per-subject sufficient statistics the formula front end writes (``_formula``).
STATS = ("n", "rr", "Xr", "Zr", "XX", "XZ", "ZZ")
#: With global (crossed) effects, each subject's statistics over its local slots of ``v``
#: (``G``: the raw design of the global terms, a subject's ``L`` slots), beside the shared
#: ones over the whole border (``_formula_nll.crossed_totals``).
GLOBAL_STATS = ("Gr", "GZ")


def totals(data):
    """Per-subject statistics summed over their rows (``[N, ...]``), and ``beta0``."""
    w = data["mask"] * data["subject_mask"][:, None]
    keys = STATS + (GLOBAL_STATS if "GZ" in data["arrays"] else ())
    s = {k: jnp.einsum("nm,nm...->n...", w, data["arrays"][k]) for k in keys}
    beta0 = jnp.einsum("nm,nmp->p", w, data["arrays"]["beta0"]) / jnp.sum(w)
    return s, beta0


def _border_stats(s):
    """``(B'r [N, P_L], Z'B [N, q, P_L])`` of each subject's local border ``B = (G, X)``: its
    slots of the global effects (none without them), then ``X``."""
    if "GZ" not in s:
        return s["Xr"], jnp.swapaxes(s["XZ"], 1, 2)
    br = jnp.concatenate([s["Gr"], s["Xr"]], axis=1)
    zb = jnp.swapaxes(jnp.concatenate([s["GZ"], s["XZ"]], axis=1), 1, 2)
    return br, zb


class _PLS(NamedTuple):
    """The penalised least-squares system at one ``theta``, over the border ``w = (v~, d)``
    (``v~ = sigma v``, the global effects; ``d = beta - beta0``): ``rss(w) = r0 - 2 w'a + w'A w``."""

    chol: jax.Array      # [N, q, q] L_i
    ok: jax.Array        # [N]
    c: jax.Array         # [N, q]
    C: jax.Array         # [N, q, P_L] against the raw local border
    A: jax.Array         # [m + p, m + p]
    a: jax.Array         # [m + p]
    r0: jax.Array        # sum_i r_i'r_i - |c_i|^2
    index: jax.Array | None  # [N, P_L] border positions of the local border; None without v


def pls(lambda_of, theta, data, s) -> _PLS:
    """:class:`_PLS` at ``theta``: each subject's ``M_i = L_i L_i'`` eliminated, the border
    scaled by ``Lambda_b`` once, outside the sum over subjects.

    With global effects the sum ``sum_i P_i'C_i'C_i P_i`` runs over the pairs of border
    entries each subject couples (``data["shared"]``, :func:`_formula_nll.crossed_totals`):
    ``C_i'C_i = (Z_i'B_i)' Q_i (Z_i'B_i)`` with ``Q_i = Lambda M_i^{-1} Lambda'``, so a pair's
    share is ``<Q_i, pair_zz>``, added at its position (a segment sum); the raw ``B'B`` of
    all rows is ``gram``. No subject's ``P_L x P_L`` block is formed.
    """
    lam = lambda_of(theta)
    q = lam.shape[0]
    br, zb = _border_stats(s)
    chol, ok = _linalg.cholesky(jnp.einsum("ji,njk,kl->nil", lam, s["ZZ"], lam) + jnp.eye(q, dtype=lam.dtype))
    c = _linalg.solve_lower(chol, jnp.einsum("ji,nj->ni", lam, s["Zr"])[..., None])[..., 0]
    C = _linalg.solve_lower(chol, jnp.einsum("ji,njb->nib", lam, zb))
    a_loc = br - jnp.einsum("nqb,nq->nb", C, c)
    m = lambda_of.n_global
    if m:
        p = s["Xr"].shape[1]
        local, shared = data["local"], data["shared"]
        index = jnp.concatenate([jnp.where(local >= 0, local, m + p),        # the border: v, then beta
                                 jnp.broadcast_to(m + jnp.arange(p, dtype=local.dtype), (local.shape[0], p))], axis=1)
        W = _linalg.solve_lower(chol, jnp.broadcast_to(lam.T, chol.shape))   # L_i^{-1} Lambda'
        Q = jnp.einsum("nji,njk->nik", W, W)
        Q_pairs = jnp.take(Q, shared["pair_subject"], axis=0, indices_are_sorted=True)     # pairs by subject
        share = jnp.einsum("rjk,rjk->r", Q_pairs, shared["pair_zz"])
        U = jax.ops.segment_sum(share, shared["pair_target"], num_segments=(m + p) ** 2).reshape(m + p, m + p)
        T = shared["gram"] - (U + U.T - jnp.diag(jnp.diagonal(U)))
        t = _laplace.border_sum(a_loc, index, m + p)
        A = lambda_of.border_t(theta, lambda_of.border_t(theta, T).T) + jnp.diag(
            jnp.concatenate([jnp.ones((m,), T.dtype), jnp.zeros((p,), T.dtype)]))
        a = lambda_of.border_t(theta, t)
    else:
        index = None
        A = jnp.sum(s["XX"], 0) - jnp.einsum("nqb,nqc->bc", C, C)
        a = jnp.sum(a_loc, 0)
    r0 = jnp.sum(s["rr"]) - jnp.sum(c * c)
    return _PLS(chol, ok, c, C, 0.5 * (A + A.T), a, r0, index)


class _Solution(NamedTuple):
    """Penalised least squares at one ``Lambda``: everything but ``sigma``."""

    n: jax.Array         # observations
    beta0: jax.Array
    w: jax.Array         # the border at its solution: (sigma v, beta - beta0)
    e: jax.Array         # c - C w (the border's raw local part), [N, q]
    rss: jax.Array       # penalised residual sum of squares at w
    logdet: jax.Array    # sum_i log det M_i + log det A_vv: the random effects' (u, v) factor
    logdet_beta: jax.Array   # log det of A's Schur complement on beta (REML's term)
    chol: jax.Array      # L_i
    A: jax.Array         # the border's matrix (v first, then beta)
    chol_a: jax.Array    # its Cholesky factor
    ok: jax.Array        # [N] every factorisation succeeded


def solve(lambda_of, theta, data, beta=None):
    """:class:`_Solution` at ``theta``; ``beta=None`` takes the PLS minimiser ``A^{-1} a``;
    a given ``beta`` (ML) takes ``v`` at its minimiser given ``beta``.

    The rss at the minimiser and the log determinants come from ``_linalg.logdet_quad``
    (``r0 - a'A^{-1}a`` and ``log det A`` for REML; for ML, with ``h = a_v - A_vd d``,
    ``r0 - 2 d'a_d + d'A_dd d - h'A_vv^{-1}h`` and ``log det A_vv``), whose derivatives cost one
    inverse of the border's matrix; the solution ``w`` gives the modes (and REML's ``beta``).
    """
    s, beta0 = totals(data)
    sys = pls(lambda_of, theta, data, s)
    m = lambda_of.n_global
    A, a = sys.A, sys.a
    chol_a, ok_a = _linalg.cholesky(A)          # for the modes (and inference), not for the nll
    log_diag = 2.0 * jnp.log(jnp.diagonal(chol_a))
    if beta is None:
        logdet_a, quad = _linalg.logdet_quad(A, a)
        rss = sys.r0 - quad
        logdet_v = jax.lax.stop_gradient(jnp.sum(log_diag[:m]))     # cancels in the REML nll
        logdet_beta = logdet_a - logdet_v
        w = _linalg.cho_solve(chol_a, a)
    else:
        d = beta - beta0
        h = a[:m] - A[:m, m:] @ d
        rss = sys.r0 - 2.0 * jnp.dot(d, a[m:]) + d @ A[m:, m:] @ d
        if m:
            logdet_v, quad = _linalg.logdet_quad(A[:m, :m], h)
            rss = rss - quad
            v = _linalg.cho_solve(chol_a[:m, :m], h)       # chol(A)'s leading block is chol(A_vv)
        else:
            logdet_v, v = jnp.zeros((), A.dtype), jnp.zeros((0,), A.dtype)
        w = jnp.concatenate([v, d])
        logdet_beta = jnp.sum(log_diag[m:])
    w_raw = lambda_of.border(theta, w)
    w_loc = w_raw[None, :] if sys.index is None else _laplace.border_gather(w_raw, sys.index)
    e = sys.c - jnp.einsum("nqb,nb->nq", sys.C, jnp.broadcast_to(w_loc, sys.C.shape[:1] + sys.C.shape[2:]))
    logdet = jnp.sum(_linalg.logdet_from_cholesky(sys.chol)) + logdet_v
    return _Solution(jnp.sum(s["n"]), beta0, w, e, rss, logdet, logdet_beta, sys.chol, A, chol_a, sys.ok & ok_a)


def _nll(spec, sol: _Solution, log_sigma):
    """The marginal nll (REML or ML) from a solution and ``log sigma``."""
    nll = (0.5 * sol.n * LOG_2PI + sol.n * log_sigma + 0.5 * sol.rss * jnp.exp(-2.0 * log_sigma)
           + 0.5 * sol.logdet)
    if spec.reml:
        p = sol.beta0.shape[0]
        nll = nll + 0.5 * sol.logdet_beta - p * log_sigma - 0.5 * p * LOG_2PI
    return jnp.where(jnp.all(sol.ok), nll, jnp.inf)


def marginal(lambda_of, spec, x, data):
    """``(nll, (beta, u, v, solution))``: the exact marginal nll (REML or ML) at ``x``, with
    the conditional modes of the spherical ``u`` and ``v``."""
    theta = spec.layout.theta_of(x)
    log_sigma = theta["log_sigma"]
    sol = solve(lambda_of, theta, data, None if spec.reml else spec.layout.beta_of(x))
    m = lambda_of.n_global
    u = _linalg.solve_upper_t(sol.chol, sol.e[..., None])[..., 0] * jnp.exp(-log_sigma)
    return _nll(spec, sol, log_sigma), (sol.beta0 + sol.w[m:], u, sol.w[:m] * jnp.exp(-log_sigma), sol)


def profiled_x(lambda_of, spec, lam, data):
    """The outer ``x`` at ``Lambda``'s free entries ``lam`` with ``sigma`` (and ``beta`` for
    ML) where the nll is least given ``Lambda`` (lme4's profiled deviance): ``beta`` the PLS
    solution, ``sigma^2 = rss / (n - p)`` for REML and ``rss / n`` for ML."""
    sol = solve(lambda_of, {"lambda": lam}, data)
    p = sol.beta0.shape[0]
    dof = sol.n - (p if spec.reml else 0)
    beta = sol.beta0 + sol.w[lambda_of.n_global:]
    return spec.layout.flat({"lambda": lam, "log_sigma": 0.5 * jnp.log(sol.rss / dof)}, beta)


def _laplace_state(lambda_of, spec, x, data):
    """The engine's :class:`Laplace` and :class:`InnerInfo` at ``x``, from the closed form.

    The engine's border Schur complement ``S`` is over ``(beta, v)`` (REML) or ``v`` (ML),
    in ``beta`` and the spherical ``v``: ``S = [[A_dd, A_dv sigma], [A_vd sigma, A_vv sigma^2]]
    / sigma^2`` in the blocks of ``A`` (``v`` first there)."""
    nll, (beta, u, v, sol) = marginal(lambda_of, spec, x, data)
    sigma = jnp.exp(spec.layout.theta_of(x)["log_sigma"])
    m, n, A = lambda_of.n_global, u.shape[0], sol.A
    if spec.reml:
        order = jnp.concatenate([jnp.arange(m, A.shape[0]), jnp.arange(m)])
        scale = jnp.concatenate([jnp.full((A.shape[0] - m,), 1.0 / sigma), jnp.ones((m,), A.dtype)])
        beta_int = beta
    else:
        order, scale, beta_int = jnp.arange(m), jnp.ones((m,), A.dtype), beta[:0]
    if order.shape[0]:
        chol_s, ok_s = _linalg.cholesky(A[order][:, order] * jnp.outer(scale, scale))
    else:             # ML without global effects: no border
        chol_s, ok_s = jnp.zeros((0, 0), A.dtype), True
    ok = sol.ok & ok_s
    mode = _laplace.Mode(beta_int, u, v)
    logdet = sol.logdet + (sol.logdet_beta - 2.0 * beta.shape[0] * jnp.log(sigma) if spec.reml else 0.0)
    zeros = jnp.zeros_like
    step = _laplace.Step(_laplace.Mode(zeros(beta_int), zeros(u), zeros(v)), ok, jnp.zeros((n,), u.dtype), logdet,
                         sol.chol, chol_s)
    return _laplace.Laplace(nll, mode, ok, step), _laplace.InnerInfo(ok, jnp.zeros((), jnp.int32))


#: Subjects whose ``Z_i'Z_i`` has a Cholesky pivot below this fraction of its diagonal
#: (too few or collinear observations) take no part in the moment estimate of the start.
START_PIVOT = 1e-8
#: Correlations of the moment start are clipped to this magnitude.
START_CORR = 0.99


def moment_start(lambda_of, s, lam0):
    """A starting ``theta["lambda"]`` from the method of moments (Swamy 1970).

    Each subject whose ``Z_i'Z_i`` is well conditioned (``m`` of them) gets its own least-
    squares coefficients ``b_i = (Z_i'Z_i)^{-1} Z_i'(r_i - X_i d)``, where ``d`` corrects
    ``beta0`` by the within-subject regression on ``X`` (:func:`_within_beta`; ``p_w`` the
    directions of ``X`` not in the span of the subjects' ``Z``). Then
    ``sigma0^2 = sum_i (|r_i - X_i d|^2 - b_i'Z_i'(r_i - X_i d)) / (sum_i n_i - q m - p_w)`` and
    ``G0 = cov(b_i) - sigma0^2 mean_i (Z_i'Z_i)^{-1}``, and ``Lambda0`` is the Cholesky factor
    of ``G0 / sigma0^2`` restricted to the blocks of ``Lambda``. Where ``G0`` is not positive
    definite (the fit is then likely singular) its variances are floored at 1e-4 of the
    largest and its correlations clipped to +-``START_CORR``, which puts the start near that
    boundary; if that is still not positive definite, the correlations are dropped. Where
    no estimate can be made (fewer than two such subjects, no residual degrees of freedom, no
    positive variance) the start is ``lam0``, lme4's ``Lambda = I``.

    For balanced data whose REML estimate is interior this is that estimate (the ANOVA
    estimator), and Newton's method starts converged; otherwise it starts close.
    """
    zz, zr = s["ZZ"], s["Zr"]
    q = zz.shape[-1]
    eye = jnp.eye(q, dtype=zz.dtype)
    chol, ok = _linalg.cholesky(zz)
    pivots = jnp.diagonal(chol, axis1=-2, axis2=-1) ** 2
    ok = ok & jnp.all(pivots > START_PIVOT * jnp.diagonal(zz, axis1=-2, axis2=-1), axis=-1)
    chol = jnp.where(ok[:, None, None], chol, eye)
    w = ok.astype(zz.dtype)
    m = jnp.sum(w)
    d, p_within = _within_beta(s, chol, w)
    zr = zr - jnp.einsum("npq,p->nq", s["XZ"], d)                   # Z_i'(r_i - X_i d)
    b = _linalg.cho_solve(chol, zr)
    rr = s["rr"] - 2.0 * s["Xr"] @ d + jnp.einsum("p,npk,k->n", d, s["XX"], d)
    dof = jnp.sum(w * s["n"]) - q * m - p_within
    sigma2 = jnp.sum(w * (rr - jnp.sum(b * zr, -1))) / jnp.where(dof > 0, dof, 1.0)
    dev = (b - jnp.sum(w[:, None] * b, 0) / jnp.maximum(m, 1.0)) * w[:, None]
    cov = dev.T @ dev / jnp.maximum(m - 1.0, 1.0)
    zz_inv = jnp.sum(w[:, None, None] * _linalg.cho_solve(chol, jnp.broadcast_to(eye, zz.shape)), 0)
    R = (cov / jnp.where(sigma2 > 0, sigma2, 1.0) - zz_inv / jnp.maximum(m, 1.0)) * lambda_of.pattern
    diag = jnp.diagonal(R)
    sd = jnp.sqrt(jnp.maximum(diag, 1e-4 * jnp.max(diag)))
    corr = jnp.clip(R / jnp.outer(sd, sd), -START_CORR, START_CORR)
    L, pd = _linalg.cholesky(jnp.fill_diagonal(corr, 1.0, inplace=False) * jnp.outer(sd, sd))
    lam = jnp.where(lambda_of.placed, lambda_of.free(jnp.where(pd, L, jnp.diag(sd))), lam0)
    usable = (m >= 2) & (dof > 0) & (sigma2 > 0) & (jnp.max(diag) > 0) & jnp.all(jnp.isfinite(lam))
    return jnp.where(usable, lam, lam0)


#: Directions of ``X`` whose within-subject sum of squares is below this fraction of their
#: total lie in the span of the subjects' ``Z`` (an intercept, a between-subject covariate).
WITHIN_RANK = 1e-8


def _within_beta(s, chol_zz, w):
    """``(d, p_w)``: the within-subject least-squares correction of ``beta0`` (residuals ``r``
    regressed on ``X`` after each subject's own ``Z`` fit is removed) and the number of
    directions of ``X`` it estimates (pseudo-inverse of the within cross-product ``W``)."""
    zx = jnp.swapaxes(s["XZ"], -1, -2)                                          # [N, q, p]
    proj = _linalg.cho_solve(chol_zz, zx)                                       # (Z'Z)^-1 Z'X
    W = jnp.einsum("n,npk->pk", w, s["XX"] - jnp.einsum("npq,nqk->npk", s["XZ"], proj))
    v = jnp.einsum("n,np->p", w, s["Xr"] - jnp.einsum("npq,nq->np", s["XZ"], _linalg.cho_solve(chol_zz, s["Zr"])))
    scale = jnp.sqrt(jnp.maximum(jnp.einsum("n,npp->p", w, s["XX"]), jnp.finfo(W.dtype).tiny))
    ev, vec = jnp.linalg.eigh(W / jnp.outer(scale, scale))
    keep = ev > WITHIN_RANK
    inv = (vec * jnp.where(keep, 1.0 / jnp.where(keep, ev, 1.0), 0.0)) @ vec.T
    return (inv @ (v / scale)) / scale, jnp.sum(keep)


def _nll_beta(lambda_of, spec, x, data):
    """``(nll, beta)`` at ``x``: REML's ``beta`` (the PLS solution) is empty for ML."""
    nll, aux = marginal(lambda_of, spec, x, data)
    return nll, (aux[0] if spec.reml else aux[0][:0])


def fd_hessian(value_grad_aux, x, length=None):
    """``((value, aux), gradient, Hessian, d aux / dx)`` at ``x`` from ``value_grad_aux`` (a
    ``value_and_grad`` with ``aux``, exact, mapped over points) at ``x`` and ``x +- h e_j``:
    the Hessian by central differences of the exact gradient, as the engine's default
    (relative error ~1e-8). One gradient traced once compiles to a program about half the
    size of forward-over-reverse AD's; mapped one point after another (``lax.map``), its
    memory is one gradient's (N = 1e5 subjects: 580 MB at peak instead of 1,039 MB)."""
    steps, shifts = fd_shifts(x, length)
    (values, aux), grads = value_grad_aux(x + shifts)
    h = central_differences(grads, steps)
    return (values[0], aux[0]), grads[0], 0.5 * (h + h.T), central_differences(aux, steps).T


@dataclass(frozen=True)
class ClosedForm(Engine):
    """The objective of a Gaussian linear mixed model in closed form: the interface of
    :class:`admbjax._engine.Engine` (the Laplace engine), implemented on per-subject
    sufficient statistics with ``lambda_of`` (``theta -> Lambda``; the formula front end's
    ``LambdaMap``).

    The optimiser starts where the profiled nll (``sigma``, and ``beta`` for ML, at their
    optimum given ``Lambda``) is at :func:`moment_start`'s ``Lambda`` (``x0``'s is the
    fallback): for balanced data that is the optimum already. Its Hessian is cheap, so
    Newton's method takes full steps throughout, alone and in a batch alike. The Hessian is,
    with ``hessian``, central differences of the exact gradient (``"fd"``, the default: the
    program compiles in about half the time) or forward-over-reverse AD (``"exact"``: it runs
    about 30% faster, which is what matters in a batch of thousands of fits).
    """

    lambda_of: Callable | None = None

    #: Without global effects: Newton's method with an exact Hessian every step, no
    #: eigendecompositions (a fit alone and the same fit in a batch take the same steps), and
    #: differences whose accuracy does not depend on their steps (the nll is quadratic in
    #: ``beta``). With global effects (crossed factors, never batched) the nll need not be
    #: convex where the fit starts: steps follow negative curvature downhill, as the engine's.
    relength = False
    closed_form = True

    costly_hessian = False

    @property
    def modify_steps(self) -> bool:
        return self.n_global > 0

    def _nll_beta(self, x, data):
        return _nll_beta(self.lambda_of, self, x, data)

    def start(self, x0, data):
        lam_x0 = self.layout.theta_of(x0)["lambda"]
        lam_moments = moment_start(self.lambda_of, totals(data)[0], lam_x0)
        if not self.n_global:
            start = profiled_x(self.lambda_of, self, lam_moments, data)
            return jnp.where(jnp.all(jnp.isfinite(start)), start, x0)
        # the subject's moment estimate counts the crossed effects as noise, which can put it
        # far below the optimum: the lower profiled nll of it and of x0's Lambda starts
        starts = jax.lax.map(lambda lam: profiled_x(self.lambda_of, self, lam, data), jnp.stack([lam_moments, lam_x0]))
        values = jax.lax.map(lambda x: self._nll_beta(x, data)[0], starts)
        values = jnp.where(jnp.all(jnp.isfinite(starts), axis=1), values, jnp.inf)
        best = starts[jnp.argmin(values)]
        return jnp.where(jnp.isfinite(jnp.min(values)), best, x0)

    def placeholder(self, x0, warm0):
        return jnp.zeros((self.layout.p if self.reml else 0, x0.shape[0]), x0.dtype)

    def warm_of(self, aux):
        return ()

    def initial_warm(self, mode0):
        return ()          # no inner problem: nothing to warm-start

    def vgh(self, x, warm, data, need_hessian=True, length=None, search=True):
        """``(nll, gradient, Hessian, d beta / dx)`` (the last: by the same differences; zeros
        with ``hessian="exact"``, whose derivative :meth:`state` takes by AD)."""
        k, p = x.shape[0], self.layout.p if self.reml else 0
        value_grad_beta = jax.value_and_grad(lambda x: self._nll_beta(x, data), has_aux=True)
        if need_hessian is False:             # a gradient alone (Objective.grad)
            (value, _), grad = value_grad_beta(x)
            return value, grad, jnp.zeros((k, k), x.dtype), jnp.zeros((p, k), x.dtype)
        if self.hessian == "exact":
            (value, _), grad = value_grad_beta(x)
            return value, grad, jax.hessian(lambda x: self._nll_beta(x, data)[0])(x), jnp.zeros((p, k), x.dtype)
        (value, _), grad, hessian, dbeta = fd_hessian(lambda xs: jax.lax.map(value_grad_beta, xs), x, length)
        return value, grad, hessian, dbeta

    def state(self, x, aux, last_aux, data):
        """``(Laplace, InnerInfo, d beta / dx)`` at the optimum ``x``, for inference (twice:
        the closed form has no inner state at other points)."""
        lap, info = _laplace_state(self.lambda_of, self, x, data)
        exact = self.hessian == "exact"
        dbeta = jax.jacfwd(lambda x: self._nll_beta(x, data)[1])(x) if exact else aux
        return (lap, info, dbeta), (lap, info, dbeta)

    def value(self, x, warm, data):
        return self._nll_beta(x, data)[0]

    def mode(self, x, warm, data) -> _laplace.Mode:
        _, (beta, u, v, _) = marginal(self.lambda_of, self, x, data)
        return _laplace.Mode(beta if self.reml else beta[:0], u, v)
