"""The outer optimisers: Newton's method with Levenberg-Marquardt damping (:class:`Newton`),
and L-BFGS for many outer parameters (:class:`LBFGS`, ending in a Newton polish).

The outer parameters are few (variance parameters, plus ``beta`` for ML), so a damped Newton
method converges in a handful of iterations to machine precision, and needs the Hessian
anyway for standard errors. Where a Hessian costs ``2k + 1`` gradients (the Laplace engine's
finite differences, ``_engine.value_grad_hessian``), single fits update it by BFGS
between evaluations, which they make at the start, after steps that failed or fell short of
their quadratic model (:data:`POOR_STEPS`), and at the optimum. A step solves
``(H + lam I) d = -g``; it is accepted when the nll decreases, and
``lam`` shrinks after good steps and grows after rejected ones or when ``H + lam I`` is not
positive definite (Nocedal & Wright 2006, ch. 4; Nielsen 1999 for the damping update).
Every lane of a vmapped batch runs the same fixed sequence of operations, so batches stay in
lock-step, each lane freezing once it has converged.

Nothing depends on the units of the parameters (a ``beta`` in ms or in years, a response
multiplied by 1e12): each parameter has a length, its standard error ``1 / sqrt(H_jj)`` at
the last evaluated Hessian (:func:`lengths`); steps are taken in coordinates measured in
those lengths, where that Hessian has a unit diagonal (Marquardt 1963's scaling of the
damping), the objective's finite-difference steps follow them, and convergence is judged
by the Newton decrement ``sqrt(g' H^{-1} g) <= gtol``, the scaled gradient: the
distance to the optimum of the local quadratic model in units of the standard errors (with
the nll halving its square as the decrease still to come), invariant under any linear change
of the parameters (Boyd & Vandenberghe 2004, section 9.5.1). lme4 judges by the same scaled
gradient (``checkConv``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from . import _linalg
from ._options import GTOL

RUNNING, CONVERGED, MAX_ITER, STALLED, BAD_START = 0, 1, 2, 3, 4

STATUS_MESSAGES = {
    CONVERGED: "converged: scaled gradient (Newton decrement) below tolerance",
    MAX_ITER: "iteration limit reached before the scaled gradient fell below tolerance",
    STALLED: "no step decreases the objective any further, but the scaled gradient is above tolerance",
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
    scale: jax.Array  # each parameter's length (lengths): the units of steps and differences
    relength: jax.Array  # the last evaluated Hessian implies other lengths: evaluate it again
    dec: jax.Array       # the Newton decrement at x (decrement)
    poor: jax.Array      # steps on updated (BFGS) Hessians that failed or fell short of their model


#: After this many steps on an updated (BFGS) Hessian that were rejected or achieved less than
#: a quarter of their predicted decrease, the Hessian is evaluated afresh (it costs 2k + 1
#: gradients; one such step costs one).
POOR_STEPS = 2


#: A Jacobi-scaled Hessian (unit diagonal) with an eigenvalue below minus this (relative to
#: the largest) has a direction of negative curvature.
NEGATIVE_CURVATURE = 1e-6


#: Below this Newton decrement a point with negative curvature is near a saddle: the step
#: also follows the negative curvature (where the gradient alone no longer leads away).
SADDLE_DECREMENT = 1e-2


def _positive_definite(h):
    """``(h+, escape)``: ``h`` where it is positive definite, else ``h`` with its eigenvalues
    replaced by their absolute values (floored): a Newton step on it still follows the
    curvature along every eigenvector, and descends (Nocedal & Wright 2006, section 3.4).
    ``escape``: the eigenvector of the most negative eigenvalue where there is negative
    curvature (a way off a saddle point, where the gradient is zero), else zeros."""
    w, v = jnp.linalg.eigh(h)
    top = 1.0 + jnp.max(jnp.abs(w))
    modified = (v * jnp.maximum(jnp.abs(w), 1e-8 * top)) @ v.T
    escape = jnp.where(w[0] < -NEGATIVE_CURVATURE * top, v[:, 0], 0.0)
    return jnp.where(_linalg.cholesky(h)[1], h, 0.5 * (modified + modified.T)), escape


def initial_lengths(x):
    """Each parameter's length before any Hessian is known: ``1 + |x_j|``. A Hessian taken
    with steps that it puts far off is taken again with its own (:data:`RELENGTH`)."""
    return 1.0 + jnp.abs(x)


def lengths(h, x, old):
    """Each parameter's length from an evaluated Hessian: ``1 / sqrt(H_jj)`` (a standard
    error), at most ``1e3 max(1, |x_j|)`` (a nearly flat direction) and at least ``1e-8 |x_j|``
    (a difference step must change ``x_j`` in floating point); ``old`` where ``H_jj`` is not
    positive and finite."""
    d = jnp.diagonal(h)
    good = (d > 0) & jnp.isfinite(d)
    se = 1.0 / jnp.sqrt(jnp.where(good, d, 1.0))
    return jnp.where(good, jnp.clip(se, 1e-8 * jnp.abs(x), 1e3 * jnp.maximum(1.0, jnp.abs(x))), old)


#: A Hessian evaluated with lengths (finite-difference steps) that it puts more than this
#: factor off is evaluated again at the same point with its own: at the start of Newton's
#: method (at most twice), and under BFGS where it would end the fit.
RELENGTH = 10.0
#: The factor for BFGS's first Hessian: steps of ``FD_STEP = 1e-4`` lengths that are up to
#: 1e3 times too long are still a tenth of a standard error, good enough for a start that
#: BFGS corrects (a response in units 1e12 too small puts them 1e11 off).
RELENGTH_BFGS_START = 1e3


def jacobi_scale(h):
    """``s`` with ``diag(s) h diag(s)`` of unit diagonal (1 where a diagonal entry is 0)."""
    d = jnp.abs(jnp.diagonal(h))
    return 1.0 / jnp.sqrt(jnp.where(d > 0, d, 1.0))


def decrement(g, h):
    """The Newton decrement ``sqrt(g' H^{-1} g)`` at gradient ``g``: the scaled gradient of
    :data:`STATUS_MESSAGES`, in Jacobi-scaled coordinates (the same number, better rounded);
    infinite where ``H`` is not positive definite (no minimum of the quadratic model)."""
    s = jacobi_scale(h)
    chol, ok = _linalg.cholesky(h * jnp.outer(s, s))
    return jnp.where(ok, jnp.linalg.norm(_linalg.solve_lower(chol, (g * s)[:, None])[:, 0]), jnp.inf)


def _no_negative_curvature(h):
    """Whether ``h`` (Jacobi-scaled) has no eigenvalue below ``-NEGATIVE_CURVATURE``."""
    s = jacobi_scale(h)
    w = jnp.linalg.eigvalsh(h * jnp.outer(s, s))
    return w[0] >= -NEGATIVE_CURVATURE * (1.0 + jnp.max(jnp.abs(w)))


def bfgs_update(h, step, dg):
    """BFGS update of a Hessian approximation; skipped where the curvature ``dg's`` is not positive."""
    hs = h @ step
    shs = jnp.dot(step, hs)
    ys = jnp.dot(dg, step)
    good = (ys > 1e-12 * jnp.linalg.norm(dg) * jnp.linalg.norm(step)) & (shs > 0)
    new = h - jnp.outer(hs, hs) / jnp.where(good, shs, 1.0) + jnp.outer(dg, dg) / jnp.where(good, ys, 1.0)
    return jnp.where(good, 0.5 * (new + new.T), h)


def minimise(vgh: Callable, x0, warm0, warm_of: Callable, aux0, *, gtol: float = GTOL,
             max_iter: int = 100, quasi_newton: bool = False, modify: bool = True,
             relength: bool = True) -> OptState:
    """Minimise ``f`` given ``vgh(x, warm, need_hessian, length, search) -> (f, g, H, aux)``.

    ``length`` (``[k]``) is each parameter's length (:func:`lengths`; ``1 + |x_j|`` at the
    start), for an objective whose Hessian is taken by differences. ``search`` is False
    where the Hessian is taken again at the point just evaluated (:data:`RELENGTH`): an
    objective with several local inner solutions need not look for others there.

    ``warm`` is warm-start state for the objective (the inner modes): ``warm0`` at first,
    then ``warm_of(aux)`` of the last accepted point. The objective is traced once: the
    first iteration evaluates it at ``x0`` (a zero step from a placeholder state);
    ``aux0`` is a placeholder shaped like ``aux``.

    Every iteration evaluates the Hessian, unless ``quasi_newton`` (a Hessian that costs many
    gradients): then it is evaluated at the start, after :data:`POOR_STEPS` steps on updated
    Hessians that were rejected or achieved less than a quarter of their predicted decrease
    (a zero step: a fresh Hessian where BFGS's is off), and, once the scaled gradient is below
    ``gtol``, at the optimum (so that the result carries an accurate Hessian for standard
    errors), and in between updated by BFGS from gradients alone.
    With ``modify`` (single fits; it needs a ``k x k`` eigendecomposition) steps use the
    absolute-eigenvalue modification of an indefinite Hessian (far from the optimum of a
    non-convex objective), and at a stationary point where the evaluated Hessian has negative
    curvature (a saddle point, such as a start with a variance of exactly zero) the step
    follows that curvature downhill: such a point never counts as converged. Without it
    (batches, and the Gaussian closed form, whose fits alone and in a batch take the same
    steps) an indefinite Hessian is damped until positive definite, and a saddle point is
    flagged afterwards (``_results.curvature_check``).
    ``max_iter`` may be traced (a batch lane's budget).
    ``gtol`` bounds the Newton decrement (:func:`decrement`) at convergence.
    ``relength``: a first Hessian (Newton) or one at the optimum (BFGS) that puts the
    parameters' lengths far from those it was taken with is taken again (:data:`RELENGTH`);
    an objective whose differences do not depend on their steps (quadratic in the parameters
    with units) can do without.
    Returns the final :class:`OptState`; ``status`` is one of the codes above.
    """
    k = x0.shape[0]
    eye = jnp.eye(k, dtype=x0.dtype)
    inf = jnp.full((), jnp.inf, x0.dtype)
    state = OptState(x0, inf, jnp.zeros_like(x0), eye, aux0, aux0, warm0, jnp.zeros((), x0.dtype),
                     jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), jnp.asarray(RUNNING),
                     jnp.asarray(False), initial_lengths(x0), jnp.asarray(False), jnp.zeros((), x0.dtype),
                     jnp.zeros((), jnp.int32))

    def body(s: OptState) -> OptState:
        # the step in coordinates scaled by the last evaluated Hessian (unit diagonal there):
        # damping, floors and the modification of an indefinite Hessian do not depend on the
        # parameters' units; the scale is held between evaluations, so that the damping
        # keeps its meaning while BFGS updates the Hessian
        sc = s.scale
        hs = s.h * jnp.outer(sc, sc)
        scale = 1.0 + jnp.max(jnp.abs(jnp.diagonal(hs)))
        # a fresh Hessian at x (a zero step): converged on an updated Hessian, lengths to take
        # again, or an updated Hessian whose steps failed or fell short of their prediction
        refresh = (((s.dec <= gtol) | (s.poor >= POOR_STEPS)) & ~s.fresh) | s.relength
        need_h = (s.iterations == 0) | refresh | (not quasi_newton)
        hs, escape = _positive_definite(hs) if modify else (hs, jnp.zeros_like(s.x))
        h = hs / jnp.outer(sc, sc)
        chol, ok = _linalg.cholesky(hs + s.lam * eye)
        d = sc * jnp.where(ok & ~refresh, -_linalg.cho_solve(chol, s.g * sc), 0.0)
        # near a stationary point where the (evaluated) Hessian has negative curvature: a
        # step of about one standard error along it, downhill, shrinking as steps are rejected
        if modify:
            saddle = s.fresh & jnp.any(escape != 0) & (decrement(s.g, h) <= SADDLE_DECREMENT) & ~refresh
            downhill = jnp.where(jnp.dot(escape, s.g * sc) > 0, -1.0, 1.0)
            d = jnp.where(saddle, d + sc * escape * downhill / (1.0 + s.lam), d)
        else:
            saddle = jnp.asarray(False)
        ok = ok | refresh | saddle
        x1 = s.x + d
        # a Hessian taken again at the same point (relength) needs no new search of the inner modes
        search = need_h & ~s.relength
        f1, g1, h1, aux1 = jax.lax.cond(ok, lambda: vgh(x1, s.warm, need_h, sc, search),
                                        lambda: (inf, s.g, s.h, s.last_aux))
        h1 = jnp.where(need_h, h1, bfgs_update(h, d, g1 - s.g))
        finite = jnp.isfinite(f1) & jnp.all(jnp.isfinite(g1)) & jnp.all(jnp.isfinite(h1))
        noise = 1e-12 * (1.0 + jnp.abs(s.f))      # rounding of f: below it, the gradient decides
        flatter = jnp.max(jnp.abs(g1 * sc)) < jnp.max(jnp.abs(s.g * sc))
        better = (f1 < s.f) | ((f1 <= s.f + noise) & flatter)
        accept = ok & finite & (better | refresh)
        pred = -(jnp.dot(s.g, d) + 0.5 * jnp.dot(d, h @ d))
        rho = (s.f - f1) / jnp.where(pred > 0, pred, 1.0)
        rho = jnp.where(pred > 100.0 * noise, rho, jnp.where(better & flatter, 1.0, 0.0))   # f too flat to judge
        floor = 1e-6 * scale
        lam_good = jnp.where(rho > 0.75, s.lam / 10.0, jnp.where(rho < 0.25, jnp.maximum(2.0 * s.lam, floor), s.lam))
        lam_good = jnp.where(lam_good < 1e-3 * floor, 0.0, lam_good)
        lam_good = jnp.where(refresh, s.lam, lam_good)
        lam_bad = jnp.maximum(4.0 * s.lam, 1e3 * floor)  # a rejected step: the model is off by far
        lam_bad = jnp.where(ok, lam_bad, jnp.maximum(lam_bad, _linalg.gershgorin_shift(hs) + floor))
        lam = jnp.where(accept, lam_good, lam_bad)
        pick = lambda a, b: jax.tree.map(lambda u, v: jnp.where(accept, u, v), a, b)
        x, f, g, h, aux = pick((x1, f1, g1, h1, aux1), (s.x, s.f, s.g, s.h, s.aux))
        fresh = jnp.where(accept, need_h, s.fresh)
        implied = lengths(h1, x1, s.scale)
        units = jnp.where(accept & need_h, implied, s.scale)
        # a first Hessian is retaken where its lengths are off (Newton's steps follow it; BFGS
        # corrects it, unless it is far off), and under BFGS one that would end the fit (the
        # standard errors come from it)
        dec = decrement(g, h)
        first = s.iterations < 2
        off = jnp.max(jnp.abs(jnp.log(implied / s.scale)))
        limit = RELENGTH_BFGS_START if quasi_newton else RELENGTH
        at_end = ((dec <= gtol) & (off > jnp.log(RELENGTH))) if quasi_newton else False
        again = accept & need_h & ((first & (off > jnp.log(limit))) | at_end)
        again = again if relength else jnp.asarray(False)
        warm = pick(warm_of(aux1), s.warm)
        # batches (no eigendecompositions in their program) flag a saddle point afterwards
        minimum = _no_negative_curvature(h) if modify else True
        short = jnp.where(accept, (rho < 0.25) & ~need_h, ~s.fresh)
        poor = jnp.where(accept & need_h, 0, s.poor + short.astype(jnp.int32))
        status = jnp.where(
            (s.iterations == 0) & ~accept, BAD_START,
            jnp.where((dec <= gtol) & fresh & minimum & ~again, CONVERGED,
                      jnp.where(lam > 1e12 * scale, STALLED,
                                jnp.where(s.iterations + 1 >= max_iter, MAX_ITER, RUNNING))))
        return OptState(x, f, g, h, aux, aux1, warm, lam, s.iterations + 1, s.n_evals + ok.astype(jnp.int32),
                        status, fresh, units, again, dec, poor)

    return jax.lax.while_loop(lambda s: s.status == RUNNING, body, state)


@dataclass(frozen=True)
class Newton:
    """The damped Newton method of :func:`minimise`, as an optimiser object.

    Fields left ``None`` are chosen for the objective (:meth:`for_objective`): BFGS updates
    between Hessians (``quasi_newton``) where a Hessian costs many gradients, the
    absolute-eigenvalue modification and saddle escape (``modify``) and retaking Hessians
    whose difference steps were off (``relength``) as the objective says, in single fits;
    a batch's lanes take full Newton steps with none of them (lock-step, no
    eigendecompositions).
    """

    quasi_newton: bool | None = None
    modify: bool | None = None
    relength: bool | None = None

    @property
    def name(self) -> str:
        """How the summary names it."""
        return "damped Newton" + (" (BFGS between Hessians)" if self.quasi_newton else "")

    def for_objective(self, spec, batched: bool) -> "Newton":
        """This optimiser with its unset fields chosen for ``spec`` (``_engine.Engine``)."""
        chosen = {"quasi_newton": spec.costly_hessian and not batched,
                  "modify": spec.modify_steps and not batched, "relength": spec.relength}
        return replace(self, **{k: v for k, v in chosen.items() if getattr(self, k) is None})

    def minimise(self, vgh, x0, warm0, warm_of, aux0, *, gtol: float = GTOL, max_iter=100) -> OptState:
        return minimise(vgh, x0, warm0, warm_of, aux0, gtol=gtol, max_iter=max_iter,
                        quasi_newton=bool(self.quasi_newton), modify=bool(self.modify), relength=bool(self.relength))


#: Single fits by the Laplace engine with at least this many outer parameters default to
#: :class:`LBFGS` (``benchmarks/bench_optimisers.py``, Student-t ML on 50 groups: 44 outer
#: parameters run in 0.12 s against Newton's 0.18 s, 84 in 0.22 s against 0.39 s; the
#: program compiles in 3.4-3.7 s against 2.3-2.4 s, and the run grows with the data while
#: the compile does not). The Gaussian closed form's Hessian costs little (differences of a
#: cheap gradient): Newton's method is within 0.1 s of L-BFGS up to 153 outer parameters
#: and compiles 0.3-0.8 s faster, so it stays the default there.
LBFGS_MIN_OUTER = 50


def default_optimiser(spec, batched: bool, k: int):
    """The optimiser for ``spec`` with ``k`` outer parameters when the user names none:
    :class:`LBFGS` for a single fit whose Hessian is costly (the engine's) with
    ``k >= LBFGS_MIN_OUTER``, else :class:`Newton`."""
    if not batched and spec.costly_hessian and k >= LBFGS_MIN_OUTER:
        return LBFGS().for_objective(spec, batched)
    return Newton().for_objective(spec, batched)


#: L-BFGS hands over to Newton's method once its own estimate of the Newton decrement
#: (``sqrt(g'd)``, ``d = H^{-1} g`` its quasi-Newton step) is below this: from there Newton's
#: method converges in one or two steps, and it takes the Hessian the standard errors need.
LBFGS_HANDOFF = 1e-2


@dataclass(frozen=True)
class LBFGS:
    """L-BFGS for a large outer dimension (optax's limited-memory direction,
    ``optax.scale_by_lbfgs``, with a backtracking Armijo line search), then the damped Newton
    method from where it ends (``polish``) to converge to ``gtol`` and take the Hessian for
    the standard errors.

    Each L-BFGS step costs a gradient or a few (the line search's), against ``2k + 1`` for a
    finite-difference Hessian: with 150 outer parameters, a Newton step costs 301 gradients
    (Nocedal & Wright 2006, ch. 7). The inner modes are warm-started from the last accepted
    iterate and followed (the global mode search at the start only; the Newton phase makes
    it at its Hessians). Single fits only: batch lanes in lock-step would wait for every
    lane's line search.
    """

    memory: int = 10
    max_steps: int = 1000
    polish: Newton = Newton(quasi_newton=True)

    @property
    def name(self) -> str:
        """How the summary names it (the iterations it reports are the Newton polish's)."""
        return f"L-BFGS, then {self.polish.name}"

    def for_objective(self, spec, batched: bool) -> "LBFGS":
        if batched:
            raise ValueError("the L-BFGS optimiser is for single fits; a batch's lanes use admbjax.Newton()")
        return replace(self, polish=self.polish.for_objective(spec, batched))

    def minimise(self, vgh, x0, warm0, warm_of, aux0, *, gtol: float = GTOL, max_iter=100) -> OptState:
        x, warm, _ = lbfgs_phase(vgh, x0, warm0, warm_of, memory=self.memory, max_steps=self.max_steps)
        return self.polish.minimise(vgh, x, warm, warm_of, aux0, gtol=gtol, max_iter=max_iter)


#: Armijo's sufficient-decrease constant for the L-BFGS backtracking line search.
ARMIJO = 1e-4


def lbfgs_phase(vgh, x0, warm0, warm_of, *, memory: int = 10, max_steps: int = 1000):
    """``(x, warm, steps)``: L-BFGS from ``x0`` until its decrement estimate ``g'H^{-1}g`` (H
    optax's limited-memory approximation, ``optax.scale_by_lbfgs``) is below
    ``LBFGS_HANDOFF^2``, ``max_steps`` evaluations, or a step that backtracking cannot make
    decrease the objective (Armijo's condition, halving the step); ``x0`` where the objective
    is not finite there. One evaluation per loop pass, the first at ``x0`` (with the inner
    mode search), the others at trial points: the program holds one copy of the gradient."""
    import optax       # here, not at the top: importing it adds to `import admbjax` what only L-BFGS fits use

    tx = optax.scale_by_lbfgs(memory_size=memory)
    inf = jnp.full((), jnp.inf, x0.dtype)

    def body(carry):
        x, f, g, warm, d, state, alpha, steps, _ = carry
        first = steps == 0
        x_t = jnp.where(first, x, x - alpha * d)
        f_t, g_t, _, aux_t = vgh(x_t, warm, False, None, first)
        finite = jnp.isfinite(f_t) & jnp.all(jnp.isfinite(g_t))
        accept = finite & (first | (f_t <= f - ARMIJO * alpha * jnp.dot(g, d)))
        d_t, state_t = tx.update(g_t, state, x_t)
        pick = lambda a, b: jax.tree.map(lambda u, v: jnp.where(accept, u, v), a, b)
        x, f, g, warm, d, state = pick((x_t, f_t, g_t, warm_of(aux_t), d_t, state_t), (x, f, g, warm, d, state))
        alpha = jnp.where(accept, 1.0, 0.5 * alpha)
        progress = jnp.where(accept, jnp.dot(g, d) >= LBFGS_HANDOFF ** 2, alpha > 1e-10)
        more = progress & (steps + 1 < max_steps) & ~(first & ~finite)
        return x, f, g, warm, d, state, alpha, steps + 1, more

    zeros = jnp.zeros_like(x0)
    carry = (x0, inf, zeros, warm0, zeros, tx.init(x0), jnp.ones((), x0.dtype), jnp.zeros((), jnp.int32),
             jnp.asarray(True))
    x, _, _, warm, _, _, _, steps, _ = jax.lax.while_loop(lambda c: c[-1], body, carry)
    return x, warm, steps
