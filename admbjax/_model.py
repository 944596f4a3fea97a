"""The model: a user's per-subject negative log joint density and its parameter blocks.

A model is written exactly as in ADMB-RE or TMB: one subject's negative log joint density
``nll(theta, beta, u, data)`` as a pure JAX function of

- ``theta``: the outer parameters (any pytree of arrays, unconstrained scale),
- ``beta``: the global (fixed-effect) vector,
- ``u``: that subject's random effects (a vector of length ``n_random``),
- ``data``: that subject's arrays, padded to a common length, plus ``data["mask"]``
  (1.0 for an observation, 0.0 for padding).

It must include every normalising constant (the Gaussian ``log(2 pi)`` terms and the density
of ``u``), so that the Laplace approximation gives the marginal likelihood on lme4's scale.
Which blocks are integrated out is said at fit time (``method="ML"`` or ``"REML"``), never
inside the function. An ``nll`` with a ``closed_form`` attribute (the formula front end's
Gaussian nll on sufficient statistics, whose marginal is known exactly) is fitted through
that closed form (``admbjax._gaussian``); the numbers are the Laplace engine's.
"""

from __future__ import annotations

import copy
import functools

from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True, eq=False)
class Model:
    """A separable mixed model.

    Attributes:
      nll: ``nll(theta, beta, u, data) -> scalar``, one subject's negative log joint density.
      theta: initial outer parameters (a pytree of arrays, unconstrained).
      beta: initial fixed effects, a vector of length p.
      n_random: q, the number of random effects per subject.
      report: optional ``report(theta, beta) -> dict`` of natural-scale quantities (TMB's
        ADREPORT); standard errors for them come by the delta method. The keys ``"sigma"``,
        ``"G"`` (q x q covariance of the random effects) and ``"df"`` fill the summary.
      ranef: optional ``ranef(theta, beta, u) -> b``, the random effects on the scale to
        report (for example ``b = sigma * Lambda u``); the identity by default.
      beta_names, random_names, group: labels for reporting.
      family, formula: labels for reporting.
      n_global: m, the number of global random effects ``v`` shared by subjects (the levels of
        crossed factors: items, sites, years; TMB's shared random effects); 0 for none. With
        them ``nll`` is ``nll(theta, beta, u, data, v)``: ``v`` is the subject's slice of the
        global effects and the data's index columns point into it (``group_data``'s
        ``global_index``), so ``v[data["item"]]`` is each row's effect. They are integrated by
        the Laplace approximation with ``u`` (and, for REML, ``beta``).
      global_nll: ``global_nll(theta, v) -> scalar``, the ``-log`` prior density of all of
        ``v`` (``[m]``), normalising constants included; required with ``n_global``.
      global_names: labels of the entries of ``v``.
      random_blocks: the sizes of the blocks of ``G`` (``report``'s ``"G"``) that are
        correlated within and independent of each other, in order: lme4's terms on the
        grouping factor (``(x || g)`` gives ``(1, 1)``); default one block of ``n_random``.
      random_terms: ``((group, names), ...)``, the blocks of ``G`` as lme4's terms: each
        one's grouping factor and effect names (lme4's ``VarCorr``). Default: every block
        of ``random_blocks`` on ``group``, named by ``random_names``. With it ``G`` may be
        larger than ``u`` (a formula with nested or crossed factors: ``G`` holds one level of
        every term).
      signs: optional ``signs(theta) -> (theta_signs, u_signs[, v_signs])``, a change of
        sign of entries of ``theta`` (a pytree of +-1 like ``theta``) and of components of
        ``u`` (``[q]``) and of ``v`` (``[m]``, models with global random effects; default
        none) that changes none of ``nll``, ``report`` and ``ranef``, chosen from
        ``theta`` to put it in a canonical form. Results are reported after it: the
        columns of lme4's ``Lambda`` have a free sign, and lme4 reports a non-negative
        diagonal. A ``signs`` with the attribute ``batched = True`` also takes a batch of
        thetas (a leading axis on every leaf); batch fits then call it once per chunk.
    """

    nll: Callable
    theta: Any
    beta: Any
    n_random: int
    report: Callable | None = None
    ranef: Callable | None = None
    beta_names: tuple = ()
    random_names: tuple = ()
    group: str = "group"
    family: str = "custom"
    formula: str | None = None
    signs: Callable | None = None
    n_global: int = 0
    global_nll: Callable | None = None
    global_names: tuple = ()
    random_blocks: tuple = ()
    random_terms: tuple = ()

    def __post_init__(self):
        if not callable(self.nll):
            raise TypeError("`nll` must be a function nll(theta, beta, u, data) -> scalar")
        if int(self.n_random) < 1:
            raise ValueError(f"`n_random` must be a positive integer, got {self.n_random!r}")
        if int(self.n_global) < 0:
            raise ValueError(f"`n_global` must be a non-negative integer, got {self.n_global!r}")
        if self.n_global and not callable(self.global_nll):
            raise TypeError(f"`n_global` = {self.n_global} global random effects need `global_nll(theta, v)`, "
                            "their -log prior density")
        if self.global_names and len(self.global_names) != int(self.n_global):
            raise ValueError(f"`global_names` has {len(self.global_names)} names for n_global = {self.n_global}")
        object.__setattr__(self, "beta", np.atleast_1d(np.asarray(self.beta, dtype=np.float64)))
        object.__setattr__(self, "theta", jax.tree.map(lambda a: np.asarray(a, dtype=np.float64), self.theta))
        if self.beta.ndim != 1:
            raise ValueError(f"`beta` must be a vector, got shape {self.beta.shape}")
        bad = [k for k, a in _named_leaves(self.theta) if not np.isfinite(a).all()]
        if bad or not np.isfinite(self.beta).all():
            raise ValueError(f"initial values are not finite: {bad or ['beta']}")
        p = self.beta.shape[0]
        if not self.beta_names:
            object.__setattr__(self, "beta_names", tuple(f"beta[{j}]" for j in range(p)))
        if not self.random_names:
            object.__setattr__(self, "random_names", tuple(f"u[{j}]" for j in range(self.n_random)))
        if self.random_terms:
            terms = tuple((str(g), tuple(names)) for g, names in self.random_terms)
            if any(not names for _, names in terms):
                raise ValueError(f"`random_terms` {self.random_terms} has a term without effect names")
            object.__setattr__(self, "random_terms", terms)
            object.__setattr__(self, "random_blocks", tuple(len(names) for _, names in terms))
        else:
            if not self.random_blocks:
                object.__setattr__(self, "random_blocks", (int(self.n_random),))
            if sum(self.random_blocks) != int(self.n_random) or min(self.random_blocks) < 1:
                raise ValueError(f"`random_blocks` {self.random_blocks} must be positive sizes adding up to "
                                 f"n_random = {self.n_random}")
            starts = np.cumsum((0,) + tuple(self.random_blocks))
            object.__setattr__(self, "random_terms", tuple(
                (self.group, tuple(self.random_names[a:b])) for a, b in zip(starts[:-1], starts[1:])))
        if len(self.beta_names) != p:
            raise ValueError(f"`beta_names` has {len(self.beta_names)} names for {p} fixed effects")

    @property
    def n_fixed(self) -> int:
        """p, the number of fixed effects."""
        return self.beta.shape[0]

    def with_start(self, theta, beta) -> "Model":
        """The same model with other initial values: a cheap copy for the many lanes of a
        batch. ``theta`` must be a pytree of finite float64 arrays shaped like ``self.theta``
        (the caller's responsibility: it is not checked again); ``beta`` is checked."""
        beta = np.asarray(beta, dtype=np.float64)
        if beta.shape != self.beta.shape or not np.isfinite(beta).all():
            raise ValueError(f"`beta` must be {self.beta.shape[0]} finite values, got {beta!r}")
        new = copy.copy(self)
        object.__setattr__(new, "theta", theta)
        object.__setattr__(new, "beta", beta)
        return new

    def ranef_of(self, theta, beta, u):
        """Random effects on the reporting scale."""
        return u if self.ranef is None else self.ranef(theta, beta, u)


def _named_leaves(tree):
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(jax.tree_util.keystr(path), np.asarray(a)) for path, a in leaves]


@dataclass(frozen=True)
class ParamLayout:
    """How the unconstrained outer vector ``x`` maps to ``(theta, beta)``.

    Hashable, so that compiled programs can be shared by every fit with the same layout.
    For REML ``beta`` is integrated out and is not part of ``x``.
    """

    treedef: Any
    shapes: tuple
    p: int
    beta_in_x: bool

    @classmethod
    def of(cls, model: Model, beta_in_x: bool) -> "ParamLayout":
        leaves, treedef = jax.tree.flatten(model.theta)
        return cls(treedef, tuple(np.shape(a) for a in leaves), model.n_fixed, beta_in_x)

    @functools.cached_property
    def _slices(self) -> tuple:
        """``(start, stop, shape)`` of each leaf of ``theta`` in ``x``."""
        out, start = [], 0
        for shape in self.shapes:
            n = int(np.prod(shape))
            out.append((start, start + n, shape))
            start += n
        return tuple(out)

    @property
    def n_theta(self) -> int:
        return self._slices[-1][1] if self.shapes else 0

    @property
    def size(self) -> int:
        return self.n_theta + (self.p if self.beta_in_x else 0)

    def theta_of(self, x):
        """The ``theta`` pytree from ``x``."""
        leaves = [x[start:stop].reshape(shape) for start, stop, shape in self._slices]   # numpy in, numpy out
        return jax.tree.unflatten(self.treedef, leaves)

    def beta_of(self, x):
        """``beta`` from ``x`` (ML only)."""
        return x[self.n_theta:]

    def flat(self, theta, beta=None):
        """``x`` from ``theta`` (and ``beta`` when it is an outer parameter); numpy unless an
        input is a JAX array (or traced)."""
        parts = jax.tree.leaves(theta) + ([beta] if self.beta_in_x else [])
        xp = jnp if any(isinstance(a, jax.Array) for a in parts) else np
        return xp.concatenate([xp.ravel(xp.asarray(a, dtype=xp.float64)) for a in parts])

    def flat_lanes(self, theta, beta):
        """``x`` of many lanes (``[lanes, size]``, numpy) from ``theta``'s leaves and ``beta``
        with a leading lane axis: :meth:`flat` of each lane."""
        beta = np.asarray(beta, dtype=np.float64)
        parts = [np.asarray(a, dtype=np.float64).reshape(len(beta), -1) for a in jax.tree.leaves(theta)]
        return np.concatenate(parts + ([beta] if self.beta_in_x else []), axis=1)

    def theta_lanes(self, X):
        """``theta`` of many lanes (leaves ``[lanes, ...]``) from their ``x`` (``[lanes, size]``)."""
        leaves = [X[:, a:b].reshape((X.shape[0],) + tuple(shape)) for a, b, shape in self._slices]
        return jax.tree.unflatten(self.treedef, leaves)

    def names(self, beta_names) -> list[str]:
        """Names of the entries of ``x``."""
        names = []
        for (path, a) in _named_leaves(jax.tree.unflatten(self.treedef, [np.zeros(s) for s in self.shapes])):
            names += [path] if a.ndim == 0 else [f"{path}[{i}]" for i in range(a.size)]
        return names + (list(beta_names) if self.beta_in_x else [])
