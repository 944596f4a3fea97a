"""The outer optimiser: Newton's method with Levenberg-Marquardt damping.

The outer parameters are few (variance parameters, plus ``beta`` for ML) and their exact
Hessian is cheap (``_objective.value_grad_hessian``), so a damped Newton method converges in
a handful of iterations to machine precision, and needs that Hessian anyway for standard
errors. A step solves ``(H + lam I) d = -g``; it is accepted when the nll decreases, and
``lam`` shrinks after good steps and grows after rejected ones or when ``H + lam I`` is not
positive definite (Nocedal & Wright 2006, ch. 4; Nielsen 1999 for the damping update).
Every lane of a vmapped batch runs the same fixed sequence of operations, so batches stay in
lock-step, each lane freezing once it has converged (DESIGN.md section 5).

Convergence is judged by the gradient: ``max |g| <= gtol`` (nll units).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from . import _linalg

RUNNING, CONVERGED, MAX_ITER, STALLED, BAD_START = 0, 1, 2, 3, 4
STATUS_MESSAGES = {
    CONVERGED: "converged: max|grad| below tolerance",
    MAX_ITER: "iteration limit reached before max|grad| fell below tolerance",
    STALLED: "no step decreases the objective any further, but max|grad| is above tolerance",
    BAD_START: "the objective or its derivatives are not finite at the initial values",
}


class OptState(NamedTuple):
    """State (and final summary) of the outer optimiser."""

    x: jax.Array
    f: jax.Array
    g: jax.Array
    h: jax.Array
    aux: object       # what the objective returned with f at x (the Laplace fit, ...)
    last_aux: object  # what the objective returned at the last point tried
    warm: object      # warm-start state for the next evaluation (the inner modes)
    lam: jax.Array
    iterations: jax.Array
    n_evals: jax.Array
    status: jax.Array
    fresh: jax.Array  # h was evaluated (not updated) at x


def _gershgorin_shift(h):
    """A ``lam`` that makes ``h + lam I`` positive definite (Gershgorin's circle theorem)."""
    off = jnp.sum(jnp.abs(h), axis=1) - jnp.abs(jnp.diagonal(h))
    return jnp.maximum(jnp.max(off - jnp.diagonal(h)), 0.0)


def _positive_definite(h):
    """``h`` where it is positive definite; else ``h`` with its eigenvalues replaced by their
    absolute values (floored): a Newton step on it still follows the curvature along every
    eigenvector, and descends (Nocedal & Wright 2006, section 3.4)."""
    w, v = jnp.linalg.eigh(h)
    floor = 1e-8 * (1.0 + jnp.max(jnp.abs(w)))
    modified = (v * jnp.maximum(jnp.abs(w), floor)) @ v.T
    return jnp.where(_linalg.cholesky(h)[1], h, 0.5 * (modified + modified.T))


def bfgs_update(h, step, dg):
    """BFGS update of a Hessian approximation; skipped where the curvature ``dg's`` is not positive."""
    hs = h @ step
    shs = jnp.dot(step, hs)
    ys = jnp.dot(dg, step)
    good = (ys > 1e-12 * jnp.linalg.norm(dg) * jnp.linalg.norm(step)) & (shs > 0)
    new = h - jnp.outer(hs, hs) / jnp.where(good, shs, 1.0) + jnp.outer(dg, dg) / jnp.where(good, ys, 1.0)
    return jnp.where(good, 0.5 * (new + new.T), h)


def minimise(vgh: Callable, x0, warm0, warm_of: Callable, aux0, *, gtol: float = 1e-6,
             max_iter: int = 100, quasi_newton: bool = True) -> OptState:
    """Minimise ``f`` given ``vgh(x, warm, need_hessian) -> (f, g, H, aux)``.

    ``warm`` is warm-start state for the objective (the inner modes): ``warm0`` at first,
    then ``warm_of(aux)`` of the last accepted point. The objective is traced once: the
    first iteration evaluates it at ``x0`` (a zero step from a placeholder state);
    ``aux0`` is a placeholder shaped like ``aux``.

    With ``quasi_newton`` the Hessian is evaluated at the start and, once ``max|g| <= gtol``,
    at the optimum (one more zero step, so that the result carries an accurate Hessian for
    standard errors); in between it is updated by BFGS from gradients alone, each of which
    costs a fraction of a Hessian. Where the Hessian is indefinite (far from the optimum of
    a non-convex objective) the steps use its absolute-eigenvalue modification, which the
    BFGS updates then keep positive definite. Without it (batches, where every lane computes every
    branch anyway) every iteration evaluates the Hessian.
    ``max_iter`` may be traced (a batch lane's budget).
    Returns the final :class:`OptState`; ``status`` is one of the codes above.
    """
    k = x0.shape[0]
    eye = jnp.eye(k, dtype=x0.dtype)
    inf = jnp.full((), jnp.inf, x0.dtype)
    state = OptState(x0, inf, jnp.zeros_like(x0), eye, aux0, aux0, warm0, jnp.zeros((), x0.dtype),
                     jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), jnp.asarray(RUNNING),
                     jnp.asarray(False))

    def body(s: OptState) -> OptState:
        scale = 1.0 + jnp.max(jnp.abs(jnp.diagonal(s.h)))
        refresh = (jnp.max(jnp.abs(s.g)) <= gtol) & ~s.fresh        # converged on an updated Hessian
        need_h = (s.iterations == 0) | refresh | (not quasi_newton)
        h = _positive_definite(s.h) if quasi_newton else s.h
        chol, ok = _linalg.cholesky(h + s.lam * eye)
        d = jnp.where(ok & ~refresh, -_linalg.cho_solve(chol, s.g), 0.0)
        ok = ok | refresh
        x1 = s.x + d
        f1, g1, h1, aux1 = jax.lax.cond(ok, lambda: vgh(x1, s.warm, need_h), lambda: (inf, s.g, s.h, s.last_aux))
        h1 = jnp.where(need_h, h1, bfgs_update(h, d, g1 - s.g))
        finite = jnp.isfinite(f1) & jnp.all(jnp.isfinite(g1)) & jnp.all(jnp.isfinite(h1))
        better = (f1 < s.f) | ((f1 <= s.f + 1e-12 * (1.0 + jnp.abs(s.f))) & (jnp.max(jnp.abs(g1)) < jnp.max(jnp.abs(s.g))))
        accept = ok & finite & (better | refresh)
        pred = -(jnp.dot(s.g, d) + 0.5 * jnp.dot(d, h @ d))
        rho = (s.f - f1) / jnp.where(pred > 0, pred, 1.0)
        floor = 1e-6 * scale
        lam_good = jnp.where(rho > 0.75, s.lam / 10.0, jnp.where(rho < 0.25, jnp.maximum(2.0 * s.lam, floor), s.lam))
        lam_good = jnp.where(lam_good < 1e-3 * floor, 0.0, lam_good)
        lam_good = jnp.where(refresh, s.lam, lam_good)
        lam_bad = jnp.maximum(4.0 * s.lam, 1e3 * floor)  # a rejected step: the model is off by far
        lam_bad = jnp.where(ok, lam_bad, jnp.maximum(lam_bad, _gershgorin_shift(h) + floor))
        lam = jnp.where(accept, lam_good, lam_bad)
        pick = lambda a, b: jax.tree.map(lambda u, v: jnp.where(accept, u, v), a, b)
        x, f, g, h, aux = pick((x1, f1, g1, h1, aux1), (s.x, s.f, s.g, s.h, s.aux))
        fresh = jnp.where(accept, need_h, s.fresh)
        warm = pick(warm_of(aux1), s.warm)
        status = jnp.where(
            (s.iterations == 0) & ~accept, BAD_START,
            jnp.where((jnp.max(jnp.abs(g)) <= gtol) & fresh, CONVERGED,
                      jnp.where(lam > 1e12 * scale, STALLED,
                                jnp.where(s.iterations + 1 >= max_iter, MAX_ITER, RUNNING))))
        return OptState(x, f, g, h, aux, aux1, warm, lam, s.iterations + 1, s.n_evals + ok.astype(jnp.int32),
                        status, fresh)

    return jax.lax.while_loop(lambda s: s.status == RUNNING, body, state)
