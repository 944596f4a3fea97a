"""The Laplace layer: per-subject modes, Hessian blocks and the Laplace marginal nll.

The inner variables are ``z = (beta_int, u_1, ..., u_N)``: the per-subject random effects,
plus, for REML, the fixed effects (integrated with a flat prior, as ADMB does when ``beta``
is a random effect and TMB with ``random = c("b", "beta")``). For ML ``beta_int`` is empty.

The joint Hessian over ``z`` is arrowhead: blocks ``H_uu,i`` (q x q), couplings ``H_ubeta,i``
(q x p) and ``H_betabeta = sum_i H_betabeta,i``. Every Newton step and the log-determinant go
through the p x p Schur complement

    S = H_betabeta - sum_i H_betau,i H_uu,i^{-1} H_ubeta,i,
    log det H = sum_i log det H_uu,i + log det S,

so no dense (Nq + p) x (Nq + p) matrix is formed: memory O(N(q^2 + pq)), time O(N(q^3 + pq^2) + p^3).

Global random effects ``v`` (``m`` of them, shared by subjects: the levels of crossed factors)
join ``beta`` in the border, with their prior added once. Subject ``i`` touches only the
``L_i`` effects its rows index (its local border), so its couplings are ``q x (p + L_i)`` and
its contributions to the border's ``(p + m) x (p + m)`` block and Schur complement are added
at their positions (:func:`border_sum2`); the formulas above hold with the border in place of
``beta``: ``log det H = sum_i log det H_uu,i + log det S``.

Derivatives of the marginal nll with respect to the outer parameters are exact by the
implicit function theorem: the mode found by the (non-differentiated) damped Newton solver
is held fixed with ``stop_gradient`` and ``n_steps`` undamped Newton steps are taken from it
inside the differentiated function. One step makes first derivatives exact, two steps second
derivatives (Kristensen et al. 2016, J. Stat. Softw. 70(5), section 2; Skaug & Fournier 2006).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _linalg

LOG_2PI = math.log(2.0 * math.pi)


class Mode(NamedTuple):
    """Inner variables: ``beta`` (``[p]`` for REML, ``[0]`` for ML), ``u`` (``[N, q]``) and the
    global random effects ``v`` (``[m]``; ``[0]`` in a model without them)."""

    beta: jax.Array
    u: jax.Array
    v: jax.Array


class Blocks(NamedTuple):
    """Value, gradient and arrowhead Hessian blocks of the joint nll at one ``z``.

    The border of the arrowhead is ``(beta, v)``: REML's ``beta``, then the global effects
    integrated with it, ``P`` entries in all. Subject ``i`` touches ``P_L`` of them, its
    local border ``(beta, v[local_i])``; ``index`` gives their positions in the border
    (``P`` and above: an unused local slot). Without global effects the local border is the
    border (``index`` is None) and the sums over subjects are plain sums.
    """

    f: jax.Array        # [N] per-subject nll (the prior of v is not in it)
    g_u: jax.Array      # [N, q]
    g_beta: jax.Array   # [P] border gradient, summed over subjects, the prior of v included
    h_uu: jax.Array     # [N, q, q]
    h_ubeta: jax.Array  # [N, q, P_L] couplings of each subject to its local border
    h_bb: jax.Array     # [P, P] border block, summed over subjects, the prior of v included
    index: jax.Array | None  # [N, P_L] border position of each local entry; None without v


class InnerInfo(NamedTuple):
    """Diagnostics of the inner solve (per subject; REML's global flag broadcast)."""

    converged: jax.Array  # [N] bool
    iterations: jax.Array  # [] int


@dataclass(frozen=True)
class WithGlobal:
    """A user's per-subject nll ``nll(theta, beta, u, data, v)`` whose subjects share global
    random effects ``v``, with their prior ``global_nll(theta, v)`` (``-log`` density of all
    of ``v``, added once, not per subject). The subject's ``v`` is its local slice
    (``_data.group_data``'s ``global_index``)."""

    nll: Callable
    global_nll: Callable

    def __call__(self, theta, beta, u, data, v):
        return self.nll(theta, beta, u, data, v)


def prior_nll(nll, theta, v):
    """The prior ``-log`` density of the global effects ``v`` (0 without them)."""
    return nll.global_nll(theta, v) if v.shape[0] else jnp.zeros((), v.dtype)


def subject_nll(nll, theta, beta, u, v_local, data_i):
    """One subject's nll; a padded subject contributes ``u'u / 2`` (mode 0, Hessian I)."""
    d = dict(data_i["arrays"], mask=data_i["mask"], **data_i.get("index", {}))
    s = data_i["subject_mask"]
    f = nll(theta, beta, u, d, v_local) if v_local.shape[0] else nll(theta, beta, u, d)
    return s * f + (1.0 - s) * 0.5 * jnp.dot(u, u)


def _per_subject(data):
    return {k: data[k] for k in ("arrays", "mask", "subject_mask", "index", "local") if k in data}


def local_v(v, d):
    """A subject's local slice of ``v`` (``[L]``; 0 in unused slots), or ``v`` (empty)."""
    if not v.shape[0]:
        return v
    local = d["local"]
    return jnp.take(v, jnp.where(local >= 0, local, v.shape[0]), mode="fill", fill_value=0.0)


def border_index(local, n_beta: int, m: int):
    """``[N, n_beta + L]``: the border position of each subject's local border entries
    (``beta``'s, then its global effects'); unused slots get ``n_beta + m`` (dropped)."""
    n = local.shape[0]
    beta_part = jnp.broadcast_to(jnp.arange(n_beta, dtype=local.dtype), (n, n_beta))
    return jnp.concatenate([beta_part, jnp.where(local >= 0, n_beta + local, n_beta + m)], axis=1)


def border_sum(vals, index, size: int):
    """``sum_i P_i' vals_i`` (``[size]``): the subjects' local border vectors added into the border."""
    return jnp.zeros((size,), vals.dtype).at[index].add(vals, mode="drop")


def border_sum2(vals, index, size: int):
    """``sum_i P_i' vals_i P_i`` (``[size, size]``) for local border matrices ``vals`` (``[N, L, L]``)."""
    return jnp.zeros((size, size), vals.dtype).at[index[:, :, None], index[:, None, :]].add(vals, mode="drop")


def border_gather(vec, index):
    """``P_i vec`` (``[N, L]``): each subject's local view of the border vector ``vec``."""
    return jnp.take(vec, index, mode="fill", fill_value=0.0)


@functools.partial(jax.jit, static_argnums=0)
def values(nll, theta, beta_outer, z: Mode, data):
    """Per-subject nll ``[N]`` at ``z`` (the prior of ``v``: :func:`prior_nll`)."""
    beta = z.beta if z.beta.shape[0] else beta_outer
    f = lambda u, d: subject_nll(nll, theta, beta, u, local_v(z.v, d), d)
    return jax.vmap(f)(z.u, _per_subject(data))


@functools.partial(jax.jit, static_argnums=0, static_argnames="border")
def blocks(nll, theta, beta_outer, z: Mode, data, border: bool = True) -> Blocks:
    """Gradient and arrowhead Hessian blocks at ``z`` (vmapped over subjects).

    The derivatives are in ``u`` and in the border: ``z.beta`` (REML) and, with ``border``,
    the global effects ``z.v``; without ``border`` these are held fixed (the subjects'
    problems apart, as the global mode search solves them).
    """
    p_int, m = z.beta.shape[0], z.v.shape[0]
    with_v = bool(m) and border

    def one(u, d):
        v_loc = local_v(z.v, d)
        n_v = v_loc.shape[0] if with_v else 0

        def f(w):
            beta = w[:p_int] if p_int else beta_outer
            v = w[p_int:p_int + n_v] if with_v else v_loc
            return subject_nll(nll, theta, beta, w[p_int + n_v:], v, d)

        def grad_aux(w):     # the gradient, with the value and the gradient as aux
            f_w, g_w = jax.value_and_grad(f)(w)
            return g_w, (f_w, g_w)

        # one forward-over-reverse pass gives all three (the value and gradient are its primal)
        w0 = jnp.concatenate([z.beta, v_loc, u] if with_v else [z.beta, u])
        h_w, (f_w, g_w) = jax.jacfwd(grad_aux, has_aux=True)(w0)
        return f_w, g_w, h_w

    f, g, h = jax.vmap(one)(z.u, _per_subject(data))
    b = g.shape[1] - z.u.shape[1]
    g_b, h_b = g[:, :b], h[:, :b, :b]
    if not with_v:
        index, g_b, h_b = None, g_b.sum(0), h_b.sum(0)
    else:
        size = p_int + m
        index = border_index(data["local"], p_int, m)
        g_prior, h_prior = _prior_derivatives(nll, theta, z.v)
        g_b = border_sum(g_b, index, size) + jnp.concatenate([jnp.zeros((p_int,), g.dtype), g_prior])
        h_b = border_sum2(h_b, index, size) + jnp.pad(h_prior, ((p_int, 0), (p_int, 0)))
    return Blocks(f=f, g_u=g[:, b:], g_beta=g_b, h_uu=h[:, b:, b:], h_ubeta=h[:, b:, :b], h_bb=h_b, index=index)


def _prior_derivatives(nll, theta, v):
    """Gradient ``[m]`` and Hessian ``[m, m]`` of the prior of ``v`` (:func:`prior_nll`)."""
    grad = lambda v: jax.grad(lambda v: prior_nll(nll, theta, v))(v)
    return grad(v), jax.jacfwd(grad)(v)


class Step(NamedTuple):
    """A (damped) Newton step and what came with it."""

    d: Mode
    ok: jax.Array          # [N] bool: every factorisation the subject needs succeeded
    decrement: jax.Array   # [N] Newton decrement -g'd per subject (the border's share on subject 0)
    logdet: jax.Array      # [] log det of the (damped) joint Hessian
    chol_uu: jax.Array     # [N, q, q]
    chol_s: jax.Array      # [P, P] the border's Schur complement S


@functools.partial(jax.jit, static_argnames="n_beta")
def newton_step(blk: Blocks, lam_u, lam_beta, n_beta: int = 0) -> Step:
    """Solve ``(H + lam I) d = -g`` through the Schur complement of the arrowhead ``H``.

    ``lam_u`` (``[N]``) damps the subject blocks, ``lam_beta`` (scalar) the border. The
    border's first ``n_beta`` entries are ``beta``'s, the rest ``v``'s. With global effects
    the subjects' contributions to ``S`` and to its right-hand side are added at their
    border positions (:func:`border_sum`); nothing over all subjects and the whole border
    is formed.
    """
    n, q = blk.g_u.shape
    size = blk.g_beta.shape[0]
    eye_q = jnp.eye(q, dtype=blk.h_uu.dtype)
    chol_uu, ok_u = _linalg.cholesky(blk.h_uu + lam_u[:, None, None] * eye_q)
    w_u = _linalg.cho_solve(chol_uu, blk.g_u)                         # A^{-1} g_u
    logdet_u = _linalg.logdet_from_cholesky(chol_uu)
    if size == 0:
        d_u = -w_u
        dec = -jnp.sum(blk.g_u * d_u, axis=1)
        empty = jnp.zeros((0,), blk.g_u.dtype)
        return Step(Mode(empty, d_u, empty), ok_u, dec, jnp.sum(logdet_u), chol_uu, jnp.zeros((0, 0), blk.g_u.dtype))
    w = _linalg.cho_solve(chol_uu, blk.h_ubeta)                        # A^{-1} C
    if blk.index is None:
        schur = jnp.einsum("nqp,nqr->pr", blk.h_ubeta, w)
        rhs = blk.g_beta - jnp.einsum("nqp,nq->p", blk.h_ubeta, w_u)
    else:
        schur = border_sum2(jnp.einsum("nqp,nqr->npr", blk.h_ubeta, w), blk.index, size)
        rhs = blk.g_beta - border_sum(jnp.einsum("nqp,nq->np", blk.h_ubeta, w_u), blk.index, size)
    s = blk.h_bb + lam_beta * jnp.eye(size, dtype=blk.h_bb.dtype) - schur
    s = 0.5 * (s + s.T)
    chol_s, ok_s = _linalg.cholesky(s)
    d_b = -_linalg.cho_solve(chol_s, rhs)
    if blk.index is None:
        d_u = -(w_u + jnp.einsum("nqp,p->nq", w, d_b))
    else:
        d_u = -(w_u + jnp.einsum("nqp,np->nq", w, border_gather(d_b, blk.index)))
    dec = -jnp.sum(blk.g_u * d_u, axis=1)
    dec = _add_to_first(dec, -jnp.dot(blk.g_beta, d_b))
    ok = ok_u & ok_s
    logdet = jnp.sum(logdet_u) + _linalg.logdet_from_cholesky(chol_s)
    return Step(Mode(d_b[:n_beta], d_u, d_b[n_beta:]), ok, dec, logdet, chol_uu, chol_s)


def _add_to_first(v, a):
    """``v`` (``[N]``) with ``a`` added to its first entry (beta's share on subject 0), without a
    scatter (XLA:CPU expands scatters into loops, which compile slowly)."""
    return v + jnp.where(jnp.arange(v.shape[0]) == 0, a, 0.0)


def _damping_floor(blk: Blocks):
    diag_u = jnp.abs(jnp.diagonal(blk.h_uu, axis1=1, axis2=2)).max(axis=1)
    return 1e-6 * (1.0 + diag_u)


def _sq_norm(d: Mode):
    """``[N]``: each subject's ``|d_u|^2`` (the border's share on subject 0)."""
    return _add_to_first(jnp.sum(d.u ** 2, axis=1), jnp.sum(d.beta ** 2) + jnp.sum(d.v ** 2))


@functools.partial(jax.jit, static_argnames=("nll", "tol", "max_iter", "border"))
def solve_mode(nll, theta, beta_outer, data, init: Mode, *, tol=1e-10, max_iter=100, border=True):
    """Inner modes by a damped (Levenberg-Marquardt) Newton method with guaranteed descent.

    A step solves ``(H + lam I) d = -g`` and is accepted only where every factorisation
    succeeds and the nll does not increase. ``lam`` follows the gain ratio ``rho`` of the
    actual to the predicted decrease, ``(g'(H + lam I)^{-1} g + lam |d|^2) / 2`` (Nielsen
    1999; Madsen, Nielsen & Tingleff 2004, section 3.2): divided by 10 where ``rho > 3/4``
    (down to 0, undamped Newton), doubled where ``rho < 1/4``; a rejected step multiplies it
    by 10, and where ``H + lam I`` is not positive definite (far from a mode of a density
    that is not log-concave) it jumps to the Gershgorin bound that makes it so.
    ML subjects are independent problems, each with its own damping and acceptance; with a
    border (REML's ``beta``, global effects ``v`` with ``border``) the joint problem over
    ``(beta, v, u_1..u_N)`` is damped and accepted as a whole, the prior of ``v`` included.
    Converged where the undamped Newton decrement ``g'H^{-1}g`` is at most ``tol`` (nll
    units; REML: ``tol`` times the subjects), whatever the damping of the step.
    Not differentiated: callers hold the result with ``stop_gradient``.
    """
    n, p_int = init.u.shape[0], init.beta.shape[0]
    joint = p_int > 0 or (init.v.shape[0] > 0 and border)
    val = lambda z: values(nll, theta, beta_outer, z, data)
    blk_of = lambda z: blocks(nll, theta, beta_outer, z, data, border=border)
    lam0 = jnp.zeros((), init.u.dtype) if joint else jnp.zeros((n,), init.u.dtype)
    total = (lambda a: a.sum()) if joint else (lambda a: a)
    prior = (lambda z: prior_nll(nll, theta, z.v)) if joint else (lambda z: 0.0)

    def body(state):
        z, lam, it, _ = state
        blk = blk_of(z)
        lam_u = jnp.broadcast_to(lam, (n,))
        step = newton_step(blk, lam_u, lam if joint else 0.0, p_int)
        undamped = newton_step(blk, jnp.zeros((n,), lam.dtype), 0.0, p_int)
        z_new = jax.tree.map(jnp.add, z, step.d) if joint else z._replace(u=z.u + step.d.u)
        f_new = val(z_new)
        # a step may raise f by rounding only (1e-12 relative): at the mode rounding decides
        slack = lambda f: 1e-12 * (1.0 + jnp.abs(f))
        f0, f1 = total(blk.f) + prior(z), total(f_new) + prior(z_new)
        ok = jnp.all(step.ok) if joint else step.ok
        accept = ok & jnp.isfinite(f1) & (f1 <= f0 + slack(f0))
        done = (jnp.all(undamped.ok) & (undamped.decrement.sum() <= tol * n)) if joint \
            else (undamped.ok & (undamped.decrement <= tol))
        if joint:
            z = jax.tree.map(lambda a, b: jnp.where(accept, a, b), z_new, z)
        else:
            z = z._replace(u=jnp.where(accept[:, None], z_new.u, z.u))
        pred = 0.5 * total(step.decrement + lam_u * _sq_norm(step.d))
        rho = (f0 - f1) / jnp.where(pred > 0, pred, 1.0)
        rho = jnp.where(pred > 100.0 * slack(f0), rho, 1.0)      # a decrease below rounding: at the mode
        floor = _damping_floor(blk)
        shift = _linalg.gershgorin_shift(blk.h_uu) + floor
        floor, shift = (floor.max(), shift.max()) if joint else (floor, shift)
        lam_good = jnp.where(rho > 0.75, lam * 0.1, jnp.where(rho < 0.25, jnp.maximum(2.0 * lam, floor), lam))
        lam_good = jnp.where(lam_good < floor, 0.0, lam_good)
        lam_bad = jnp.maximum(lam * 10.0, jnp.where(ok, 1e3 * floor, shift))
        lam = jnp.where(accept, lam_good, lam_bad)
        return z, lam, it + 1, jnp.broadcast_to(done, (n,))

    def cond(state):
        _, _, it, done = state
        return (it < max_iter) & ~jnp.all(done)

    state = (init, lam0, jnp.zeros((), jnp.int32), jnp.zeros((n,), bool))
    z, _, it, done = jax.lax.while_loop(cond, body, state)
    return z, InnerInfo(done, it)


#: Distance (in the whitened ``u``, where the prior has unit variance) from 0 of the extra
#: starts of the global mode search, one each way along each axis (:func:`search_starts`).
SEARCH_RADIUS = 1.5


def search_starts(u0):
    """Inner starts ``[2 + 2q, N, q]`` of the global mode search: the warm start ``u0``,
    ``u = 0``, and ``u = +-SEARCH_RADIUS`` along each axis (every subject alike)."""
    n, q = u0.shape
    eye = SEARCH_RADIUS * jnp.eye(q, dtype=u0.dtype)
    points = jnp.concatenate([jnp.zeros((1, q), u0.dtype), eye, -eye])
    return jnp.concatenate([u0[None], jnp.broadcast_to(points[:, None, :], (2 * q + 1, n, q))])


def _lowest(f, converged, axis=0):
    """Index of the lowest finite ``f`` along ``axis`` among the converged solves, or among
    all where none converged."""
    f = jnp.where(jnp.isfinite(f), f, jnp.inf)
    f_conv = jnp.where(converged, f, jnp.inf)
    return jnp.argmin(jnp.where(jnp.any(converged, axis=axis, keepdims=True), f_conv, f), axis=axis)


def _lowest_per_subject(modes_u, f, converged):
    """The ``u`` (``[N, q]``) and start index (``[N]``) of each subject's lowest ``f``
    (``[S, N]``), preferring converged solves (``[S, N]``)."""
    pick = _lowest(f, converged)
    return jnp.take_along_axis(modes_u, pick[None, :, None], axis=0)[0], pick


def search_subjects(nll, theta, beta, v, data, init_u, *, tol=1e-10, max_iter=100):
    """``(u, converged, iterations)``: each subject's lowest inner mode with ``beta`` and the
    global effects ``v`` held fixed, among those :func:`solve_mode` reaches from
    :func:`search_starts` (the warm start ``init_u``, ``u = 0`` and points around it)."""
    empty = jnp.zeros((0,), init_u.dtype)
    solve_u = lambda u0: solve_mode(nll, theta, beta, data, Mode(empty, u0, v), tol=tol, max_iter=max_iter,
                                    border=False)
    modes, infos = jax.vmap(solve_u)(search_starts(init_u))
    f = jax.vmap(lambda u: values(nll, theta, beta, Mode(empty, u, v), data))(modes.u)      # [S, N]
    u, pick = _lowest_per_subject(modes.u, f, infos.converged)
    return u, jnp.take_along_axis(infos.converged, pick[None], axis=0)[0], jnp.max(infos.iterations)


def solve_global_mode(nll, theta, beta_outer, data, init: Mode, search, *, tol=1e-10, max_iter=100):
    """The inner mode from ``init``, and with ``search`` (traced) or near a fold
    (:func:`near_fold`) the lowest of the modes that :func:`solve_mode` reaches from several
    starts.

    For densities that are not log-concave in ``u`` (Student-t errors) a subject's
    conditional density can have several modes (one fitting the bulk of its observations,
    others bent towards its outliers). Tracking one mode by warm starts follows it to where
    it vanishes (a fold, where ``H_uu,i`` becomes singular and the Laplace nll goes to minus
    infinity); the global mode does not. The starts are :func:`search_starts`: the warm
    start, ``u = 0`` and points around it; two (warm and cold) missed a subject's lower mode
    on contaminated sleepstudy data.

    ML picks per subject (:func:`search_subjects`). REML's joint problem couples the
    subjects through ``beta`` (and global effects ``v`` through ``v``): the joint mode
    followed from ``init`` is one candidate; each subject's lowest mode with the border
    held at that mode's is the start of a second joint
    solve, and the lower total nll wins (comparing only joint solves from a warm and a cold
    start kept a joint mode 8.8 higher than glmmTMB's). The two joint solves are two passes
    of one loop, so that the program holds one copy of the joint solver.
    """
    kw = dict(tol=tol, max_iter=max_iter)
    if init.beta.shape[0] == 0 and init.v.shape[0] == 0:
        mode, info = solve_mode(nll, theta, beta_outer, data, init, **kw)
        go = search | near_fold(nll, theta, beta_outer, data, mode)

        def searched():
            u, converged, iterations = search_subjects(nll, theta, beta_outer, mode.v, data, mode.u, **kw)
            return mode._replace(u=u), InnerInfo(converged, jnp.maximum(iterations, info.iterations))

        return jax.lax.cond(go, searched, lambda: (mode, info))

    def phase(carry):
        i, start, best, best_info, best_f, _ = carry
        mode, info = solve_mode(nll, theta, beta_outer, data, start, **kw)
        f = jnp.sum(values(nll, theta, beta_outer, mode, data)) + prior_nll(nll, theta, mode.v)
        converged = jnp.all(info.converged)
        pick = _lowest(jnp.stack([best_f, f]), jnp.stack([jnp.all(best_info.converged), converged])) == 1
        pick = pick | (i == 0)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(pick, a, b), new, old)
        best, best_info, best_f = keep((mode, info, f), (best, best_info, best_f))
        go = (i == 0) & (search | near_fold(nll, theta, beta_outer, data, mode))
        beta = mode.beta if mode.beta.shape[0] else beta_outer
        start = jax.lax.cond(go, lambda: mode._replace(u=search_subjects(nll, theta, beta, mode.v, data, mode.u,
                                                                         **kw)[0]), lambda: mode)
        iterations = jnp.maximum(best_info.iterations, info.iterations)
        return i + 1, start, best, best_info._replace(iterations=iterations), best_f, go

    n = init.u.shape[0]
    info0 = InnerInfo(jnp.zeros((n,), bool), jnp.zeros((), jnp.int32))
    carry = (jnp.zeros((), jnp.int32), init, init, info0, jnp.full((), jnp.inf, init.u.dtype), jnp.asarray(True))
    _, _, mode, info, _, _ = jax.lax.while_loop(lambda c: c[5], phase, carry)
    return mode, info


#: A followed mode whose ``H_uu,i`` has an eigenvalue below this (in the whitened ``u``, where
#: the prior alone gives 1) is close to a fold: :func:`near_fold`.
FOLD_CURVATURE = 0.1


def near_fold(nll, theta, beta_outer, data, z: Mode):
    """Whether some subject's ``H_uu,i`` at ``z`` has an eigenvalue below ``FOLD_CURVATURE``.

    A conditional density that is not log-concave can have two modes; as the parameters
    move, one of them can merge with the saddle between them and vanish (a fold). Near a
    fold the mode's curvature goes to zero; far from one it stays near the prior's.
    """
    beta = z.beta if z.beta.shape[0] else beta_outer      # H_uu alone: no derivatives in the border
    h_uu = blocks(nll, theta, beta, Mode(z.beta[:0], z.u, z.v), data, border=False).h_uu
    eye = jnp.eye(h_uu.shape[-1], dtype=h_uu.dtype)
    return ~jnp.all(_linalg.cholesky(h_uu - FOLD_CURVATURE * eye)[1])


class Laplace(NamedTuple):
    """The Laplace marginal nll and what the inference stage needs from it."""

    nll: jax.Array       # [] marginal nll, lme4's constants included
    mode: Mode           # polished mode
    ok: jax.Array        # [N] Hessian positive definite at the mode
    step: Step           # undamped factorisation at the mode


def gauss_hermite_grid(n_points: int, q: int):
    """Nodes ``[K^q, q]`` and log-weights ``[K^q]`` of the tensor Gauss-Hermite rule for the
    standard normal density (weights sum to one)."""
    t, w = np.polynomial.hermite_e.hermegauss(n_points)
    w = w / w.sum()
    grids = np.meshgrid(*([t] * q), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=1)
    log_w = sum(np.log(g.ravel()) for g in np.meshgrid(*([w] * q), indexing="ij"))
    return nodes, log_w


#: The quadrature nodes of a subject are scaled by a curvature of at least this times the
#: median over subjects of the smallest eigenvalue of ``H_i`` (:func:`agq_nll`).
AGQ_MIN_CURVATURE = 0.1


def min_eigenvalue(h):
    """Smallest eigenvalue of each symmetric ``[..., q, q]`` block, ``q <= 2`` in closed form
    (no LAPACK; a gradient that stays finite where the two eigenvalues are equal)."""
    q = h.shape[-1]
    if q == 1:
        return h[..., 0, 0]
    if q > 2:
        return jnp.linalg.eigvalsh(h)[..., 0]
    a, b, d = h[..., 0, 0], h[..., 0, 1], h[..., 1, 1]
    r2 = 0.25 * (a - d) ** 2 + b * b
    r = jnp.where(r2 > 0, jnp.sqrt(jnp.where(r2 > 0, r2, 1.0)), 0.0)
    return 0.5 * (a + d) - r


def agq_nll(nll, theta, beta_outer, data, z: Mode, h_uu, n_points: int):
    """Adaptive Gauss-Hermite quadrature of each subject's marginal nll (ML only).

        -log int exp(-f_i(u)) du = -(q/2) log(2 pi) + 1/2 log det A_i
                                   - log sum_k w_k exp(-f_i(u_hat + C_i t_k) + |t_k|^2 / 2),

    with ``C_i = R_i^{-T}`` for ``A_i = R_i R_i'`` (Liu & Pierce 1994; lme4's nAGQ, here for
    one or more random effects per subject). ``A_i`` is ``H_i``, the Hessian at the mode,
    shifted up where its smallest eigenvalue is below :data:`AGQ_MIN_CURVATURE` times the
    median subject's (a floor that follows the units of ``u``): any positive definite ``A_i``
    gives a quadrature rule of the same integral, and this one is bounded. With ``A_i = H_i``
    the rule inherits the Laplace approximation's singularity: where a mode turns flat
    (``H_i`` nearly singular, as Student-t outliers make it) the nodes spread out to where
    only the centre one counts, and the nll goes to minus infinity with ``1/2 log det H_i``.
    """
    n, q = z.u.shape
    nodes, log_w = gauss_hermite_grid(n_points, q)
    nodes = jnp.asarray(nodes, z.u.dtype)
    lam = min_eigenvalue(h_uu)
    typical = jnp.nanmedian(jnp.where(data["subject_mask"] > 0, lam, jnp.nan))
    shift = jnp.maximum(AGQ_MIN_CURVATURE * jnp.maximum(typical, 0.0) - lam, 0.0)
    chol, _ = _linalg.cholesky(h_uu + shift[:, None, None] * jnp.eye(q, dtype=h_uu.dtype))
    # u_k = u_hat + R^{-T} t_k for every subject and node: [N, K, q]
    offsets = jnp.swapaxes(_linalg.solve_upper_t(chol, jnp.broadcast_to(nodes.T, (n, q, nodes.shape[0]))), 1, 2)
    beta = beta_outer

    def subject(u_hat, off, d):
        f = jax.vmap(lambda o: subject_nll(nll, theta, beta, u_hat + o, z.v, d))(off)
        return -jax.scipy.special.logsumexp(log_w - f + 0.5 * jnp.sum(nodes**2, axis=1))

    lse = jax.vmap(subject)(z.u, offsets, _per_subject(data))
    logdet = _linalg.logdet_from_cholesky(chol)
    per_subject = lse + 0.5 * logdet - 0.5 * q * LOG_2PI
    return jnp.sum(data["subject_mask"] * per_subject)


def laplace(nll, theta, beta_outer, data, mode0: Mode, *, n_steps: int = 2, n_agq: int = 1) -> Laplace:
    """Laplace approximation of the marginal nll, differentiable in ``theta``/``beta_outer``.

        nll_LA = sum_i f_i(z_hat) + f_v(v_hat) + 1/2 log det H(z_hat) - (q N + p_int + m)/2 log(2 pi)

    (``f_v``: the prior of the ``m`` global effects, :func:`prior_nll`).

    ``mode0`` must be the converged mode at the current parameters; ``n_steps`` Newton steps
    from ``stop_gradient(mode0)`` make the derivatives exact to order ``n_steps``.
    ``n_agq > 1`` (ML only) replaces the Laplace value by adaptive Gauss-Hermite quadrature.
    """
    z = jax.lax.stop_gradient(mode0)
    n, q = z.u.shape
    zero_n = jnp.zeros((n,), z.u.dtype)

    def newton(z, _):
        blk = blocks(nll, theta, beta_outer, z, data)
        step = newton_step(blk, zero_n, 0.0, z.beta.shape[0])
        return jax.tree.map(jnp.add, z, step.d), (z, blk, step)

    # n_steps + 1 passes through one traced body (smaller programs than unrolling): the
    # last pass evaluates the value and the factorisation at z_{n_steps}; its step is unused.
    _, (zs, blks, steps) = jax.lax.scan(newton, z, None, length=n_steps + 1)
    z, blk, step = jax.tree.map(lambda a: a[-1], (zs, blks, steps))
    n_real = jnp.sum(data["subject_mask"])
    const = 0.5 * LOG_2PI * (q * n_real + z.beta.shape[0] + z.v.shape[0])
    value = jnp.sum(blk.f) + prior_nll(nll, theta, z.v) + 0.5 * step.logdet - const
    if n_agq > 1:
        value = agq_nll(nll, theta, beta_outer, data, z, blk.h_uu, n_agq)
    value = jnp.where(jnp.all(step.ok), value, jnp.inf)
    return Laplace(value, z, step.ok, step)


def placeholder(mode: Mode):
    """Zeros shaped like ``(Laplace, InnerInfo)`` for ``mode``: the optimiser's initial state."""
    n, q = mode.u.shape
    p, m = mode.beta.shape[0], mode.v.shape[0]
    z = lambda *shape: jnp.zeros(shape, mode.u.dtype)
    false = jnp.zeros((n,), bool)
    zero_mode = Mode(z(p), z(n, q), z(m))
    step = Step(zero_mode, false, z(n), z(), z(n, q, q), z(p + m, p + m))
    return Laplace(z(), zero_mode, false, step), InnerInfo(false, jnp.zeros((), jnp.int32))
