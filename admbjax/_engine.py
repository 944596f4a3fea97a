"""The Laplace engine: the objective of any user nll, by the Laplace approximation.

Like lme4's ``devFunOnly = TRUE`` and TMB's ``obj$fn``/``obj$gr``/``obj$he``: for ML the
outer vector ``x`` is ``(theta, beta)``; for REML it is ``theta`` alone and ``beta`` is
integrated out with the random effects. Every derivative is exact (see ``_laplace``).
:class:`Engine` implements the objective interface (``_objective``); the Gaussian closed
form (``_gaussian.ClosedForm``) is the other implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from . import _laplace
from ._model import Model, ParamLayout
from ._options import Options

METHODS = ("REML", "ML")
FD_STEP = 1e-4


def check_method(method: str) -> str:
    """Normalise ``method`` ("REML" or "ML", any case) or raise naming the argument."""
    m = str(method).upper()
    if m not in METHODS:
        raise ValueError(f"`method` must be 'REML' or 'ML', got {method!r}")
    return m


@dataclass(frozen=True)
class Engine:
    """The Laplace engine's objective: everything static about it, hashable, so that compiled
    programs are shared by every fit with the same model functions, layout and options.

    The objective interface (what the optimiser, inference, results and batches see; the
    Gaussian closed form implements the same):

    - ``layout``, ``reml``, ``n_random``, ``n_agq``, ``params(x, mode)``, ``x0(model)``,
      ``initial_mode(model, n_subjects)``: the outer parameters and the inner state;
    - ``start(x0, data)``: where the optimiser starts (traced);
    - ``vgh(x, warm, data, need_hessian, length, search) -> (f, g, H, aux)``: the value, the
      exact gradient and the Hessian at ``x``, the inner problem warm-started at ``warm``;
    - ``initial_warm(mode0)``, ``warm_of(aux)``, ``placeholder(x0, warm0)``: the warm inner
      state before the first evaluation and after one, and zeros shaped like ``aux``;
    - ``value(x, warm, data)``, ``mode(x, warm, data)``: the nll and the inner mode alone
      (the public ``Objective``'s calls);
    - ``state(x, aux, last_aux, data)``: ``(Laplace, InnerInfo, d beta / dx)`` at the
      optimum ``x`` and at the last point tried (for messages about a start that fails);
    - ``costly_hessian``, ``modify_steps``, ``relength``, ``closed_form``: what the optimiser
      should know of it (``_optimise.Newton.for_objective``).
    """

    nll: object
    layout: ParamLayout
    n_random: int
    reml: bool
    inner_tol: float = 1e-10
    inner_max_iter: int = 100
    hessian: str = "fd"
    n_agq: int = 1
    global_mode: bool = True
    n_global: int = 0      # m, the global random effects v shared by subjects (in the inner problem)

    #: A Hessian costs 2k + 1 gradients: single fits update it by BFGS between evaluations.
    costly_hessian = True
    #: Steps follow the absolute-eigenvalue modification of an indefinite Hessian and leave
    #: saddle points (single fits; batches flag them afterwards).
    modify_steps = True
    #: The finite differences follow the parameters' lengths: a Hessian taken with lengths it
    #: puts far off is taken again.
    relength = True
    closed_form = False

    @classmethod
    def of(cls, model: Model, method: str, options: Options, batched: bool = False, **fields) -> "Engine":
        reml = check_method(method) == "REML"
        n_agq = options.n_agq
        if n_agq > 1 and reml:
            raise ValueError("adaptive Gauss-Hermite quadrature (`n_agq` > 1) is for ML fits; use method='ML'")
        if n_agq > 1 and model.n_global:
            raise ValueError("adaptive Gauss-Hermite quadrature (`n_agq` > 1) integrates per subject; this model "
                             f"has {model.n_global} global random effects shared by subjects: use n_agq=1 (Laplace)")
        if n_agq > 1 and model.n_random > 2:
            raise ValueError(f"`n_agq` > 1 needs at most 2 random effects per subject (the grid has n_agq^q "
                             f"points); this model has {model.n_random}")
        nll = _laplace.WithGlobal(model.nll, model.global_nll) if model.n_global else model.nll
        return cls(nll, ParamLayout.of(model, beta_in_x=not reml), int(model.n_random), reml,
                   options.inner_tol, int(options.inner_max_iter), options.hessian_for(cls.closed_form, batched),
                   int(n_agq), bool(options.global_mode), int(model.n_global), **fields)

    def params(self, x, mode: _laplace.Mode):
        """``(theta, beta)`` at outer ``x`` (REML: ``beta`` from the inner mode)."""
        theta = self.layout.theta_of(x)
        beta = mode.beta if self.reml else self.layout.beta_of(x)
        return theta, beta

    def initial_mode(self, model: Model, n_subjects: int) -> _laplace.Mode:
        beta = np.asarray(model.beta) if self.reml else np.zeros((0,))
        return _laplace.Mode(beta, np.zeros((n_subjects, self.n_random)), np.zeros((self.n_global,)))

    def x0(self, model: Model) -> np.ndarray:
        return self.layout.flat(model.theta, model.beta)

    def start(self, x0, data):
        return x0

    def initial_warm(self, mode0):
        """The warm inner state before the first evaluation, from the initial mode."""
        return mode0

    def vgh(self, x, warm, data, need_hessian=True, length=None, search=True):
        """:func:`value_grad_hessian`, with ``aux = (Laplace, InnerInfo, d beta / dx)``."""
        f, g, h, lap, info, dbeta = value_grad_hessian(self, x, warm, data, need_hessian, length, search)
        return f, g, h, (lap, info, dbeta)

    def warm_of(self, aux):
        return aux[0].mode

    def placeholder(self, x0, warm0):
        return _laplace.placeholder(warm0) + (jnp.zeros((warm0.beta.shape[0], x0.shape[0]), x0.dtype),)

    def state(self, x, aux, last_aux, data):
        """``((Laplace, InnerInfo, d beta / dx) at the optimum x, the same at the last point
        tried)``, from what :meth:`vgh` returned there (``aux``, ``last_aux``)."""
        return aux, last_aux

    def value(self, x, warm, data):
        """The nll at ``x``, the inner problem solved from ``warm`` (``Objective.__call__``)."""
        return marginal(self, x, warm, data)[0].nll

    def mode(self, x, warm, data) -> _laplace.Mode:
        """The inner mode at ``x`` (``beta`` for REML, and ``u``)."""
        return marginal(self, x, warm, data)[0].mode


def marginal(spec: Engine, x, mode_init: _laplace.Mode, data, n_steps: int = 2, search=True):
    """Laplace marginal nll at ``x``, with the inner solve warm-started at ``mode_init``:
    :func:`inner_mode`, then :func:`laplace_at` (differentiable in ``x``)."""
    mode, info = inner_mode(spec, x, mode_init, data, search)
    return laplace_at(spec, x, mode, data, n_steps), info


def inner_mode(spec: Engine, x, mode_init: _laplace.Mode, data, search=True):
    """``(Mode, InnerInfo)``: the inner mode at ``x`` (held constant: not differentiated).

    With ``spec.global_mode``, ``search`` (a traced bool) says whether to look for the
    global inner mode (:func:`_laplace.solve_global_mode`) or only to follow ``mode_init``
    (enough when ``mode_init`` is the global mode at a nearby point: a finite-difference step
    away; every optimiser iterate searches). A followed mode is a smooth local solution
    until it nears a fold, where it vanishes and the Laplace nll dives to minus infinity;
    the search is made there whatever ``search`` says (:func:`_laplace.near_fold`).
    Solved outside the derivatives' trace (callers differentiate :func:`laplace_at` only),
    which keeps the solver out of the linearisation: programs trace and compile faster.
    """
    xs = jax.lax.stop_gradient(x)
    theta = spec.layout.theta_of(xs)
    beta = None if spec.reml else spec.layout.beta_of(xs)
    kw = dict(tol=spec.inner_tol, max_iter=spec.inner_max_iter)
    if spec.global_mode:
        return _laplace.solve_global_mode(spec.nll, theta, beta, data, mode_init, search, **kw)
    return _laplace.solve_mode(spec.nll, theta, beta, data, mode_init, **kw)


def laplace_at(spec: Engine, x, mode: _laplace.Mode, data, n_steps: int = 2) -> _laplace.Laplace:
    """The Laplace marginal nll at ``x`` from the converged inner ``mode`` (``_laplace.laplace``)."""
    beta_outer = None if spec.reml else spec.layout.beta_of(x)
    return _laplace.laplace(spec.nll, spec.layout.theta_of(x), beta_outer, data, mode, n_steps=n_steps,
                            n_agq=spec.n_agq)


def value_grad_hessian(spec: Engine, x, mode_init, data, need_hessian=True, length=None, search=True):
    """``(nll, gradient, Hessian, Laplace, InnerInfo, dbeta_dx)`` at ``x``.

    ``dbeta_dx`` (``[p_int, k]``) is the derivative of the inner mode's ``beta`` (REML's
    estimate) in ``x``, by the same differences (or AD) as the Hessian; empty for ML.
    The value and gradient are exact. The Hessian is, with ``spec.hessian``:

    - ``"fd"`` (default): central differences of the exact gradient, as TMB's ``sdreport``
      does by default (``optimHess`` on ``obj$gr``); relative error ~1e-8. Needs third
      derivatives of the user's nll only: programs compile ~3x faster and run faster.
    - ``"exact"``: forward-over-reverse AD through two Newton steps (fourth derivatives).

    ``need_hessian`` (a traced bool) False skips the Hessian (zeros returned in its place).
    ``length``: each parameter's scale for the differences (:func:`fd_shifts`).
    ``search`` (a traced bool; with ``spec.global_mode``): a Hessian's centre searches for the
    global inner mode (:func:`marginal`); False where ``mode_init`` is already the global mode
    at ``x`` (the Hessian taken again at the same point). Without the Hessian the modes of
    ``mode_init`` are followed, and searched only near a fold: the optimiser's checkpoints
    are its Hessians (every iteration of Newton's method; under BFGS the start, the refreshes
    after poor steps and the optimum), and a lower mode found at one continues the fit from
    there.
    """
    if spec.hessian != "exact":
        return _fd_value_grad_hessian(spec, x, mode_init, data, length, search, need_hessian)
    if need_hessian is True:
        return _exact_value_grad_hessian(spec, x, mode_init, data)

    def gradient_only():
        f, g, (lap, info) = _value_and_grad(spec, x, mode_init, data, search=False)
        k, p = x.shape[0], lap.mode.beta.shape[0]
        return f, g, jnp.zeros((k, k), x.dtype), lap, info, jnp.zeros((p, k), x.dtype)

    return jax.lax.cond(need_hessian, lambda: _exact_value_grad_hessian(spec, x, mode_init, data), gradient_only)


def _value_and_grad(spec, x, mode_init, data, search=True):
    mode, info = inner_mode(spec, x, mode_init, data, search)
    (f, lap), g = jax.value_and_grad(lambda x: _nll_with_aux(spec, x, mode, data, n_steps=1), has_aux=True)(x)
    return f, g, (lap, info)


def _fd_value_grad_hessian(spec, x, mode_init, data, length=None, search=True, need_hessian=True):
    # One traced body for the centre and the 2k shifted points, run as a loop over as many
    # points as are needed (the centre alone without the Hessian): a program holds one copy of
    # the gradient, whether the optimiser takes Hessians or not (a second copy for gradient-only
    # steps makes programs compile markedly slower). The centre (first) searches for
    # the global inner mode from ``mode_init`` (with ``search``); each shifted point starts
    # from the centre's mode and only follows it (a step away, it is one or two Newton
    # iterations from there). Only the centre's Laplace state is kept (memory: one copy).
    k = x.shape[0]
    steps, shifts = fd_shifts(x, length)
    p = mode_init.beta.shape[0]

    def point(i, carry):
        start, centre, fs, gs, betas = carry
        is_centre = i == 0
        f, g, aux = _value_and_grad(spec, x + shifts[i], start, data, search=is_centre & search)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(is_centre, a, b), new, old)
        start = keep(jax.lax.stop_gradient(aux[0].mode), start)
        put = lambda a, v: jax.lax.dynamic_update_index_in_dim(a, v, i, 0)     # no scatter: compiles faster
        return start, keep(aux, centre), put(fs, f), put(gs, g), put(betas, aux[0].mode.beta)

    n_points = jnp.where(need_hessian, 2 * k + 1, 1)
    zeros = lambda *shape: jnp.zeros(shape, x.dtype)
    init = (mode_init, _laplace.placeholder(mode_init), zeros(2 * k + 1), zeros(2 * k + 1, k), zeros(2 * k + 1, p))
    _, (lap, info), fs, gs, beta = jax.lax.fori_loop(0, n_points, point, init)
    h = central_differences(gs, steps)
    h = jnp.where(need_hessian, 0.5 * (h + h.T), 0.0)
    return fs[0], gs[0], h, lap, info, jnp.where(need_hessian, central_differences(beta, steps).T, 0.0)


def fd_shifts(x, length=None):
    """``(steps, shifts)``: the central-difference steps ``h_j`` at ``x`` and the ``2k + 1``
    shifts ``0, +h_j e_j, -h_j e_j`` (``[2k + 1, k]``).

    ``h_j = FD_STEP l_j`` with ``l_j`` the length over which the objective changes along
    ``x_j``: the optimiser passes ``1 / sqrt(H_jj)`` of its last Hessian (a standard error;
    ``_optimise.lengths``), so that steps follow the parameters' units (a ``beta`` of 1e-9 with
    a standard error of 1e-11 gets a step of 1e-15, not 1e-4). Default ``l_j = 1 + |x_j|``."""
    k = x.shape[0]
    steps = FD_STEP * ((1.0 + jnp.abs(x)) if length is None else length)
    return steps, jnp.concatenate([jnp.zeros((1, k), x.dtype), jnp.diag(steps), -jnp.diag(steps)])


def central_differences(values, steps):
    """``d values / d x`` (``[k, ...]``) from ``values`` at :func:`fd_shifts`' points."""
    k = steps.shape[0]
    scale = (2.0 * steps).reshape((k,) + (1,) * (values.ndim - 1))
    return (values[1:k + 1] - values[k + 1:]) / scale


def _exact_value_grad_hessian(spec, x, mode_init, data):
    mode, info = inner_mode(spec, x, mode_init, data)

    def grad_with_aux(x):
        g, lap = jax.grad(lambda x: _nll_with_aux(spec, x, mode, data), has_aux=True)(x)
        return g, (g, lap)

    h, (g, lap) = jax.jacfwd(grad_with_aux, has_aux=True)(x)
    dbeta = jax.jacfwd(lambda x: laplace_at(spec, x, lap.mode, data, n_steps=1).mode.beta)(x)
    return lap.nll, g, 0.5 * (h + h.T), lap, info, dbeta


def _nll_with_aux(spec, x, mode, data, n_steps=2):
    lap = laplace_at(spec, x, mode, data, n_steps)
    return lap.nll, lap
