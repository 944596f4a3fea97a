"""The options of a fit: one typed, immutable object, checked once where the user gives them.

Every keyword option of :func:`admbjax.fit` and of the front ends that pass options on to it
(``fit_formula``, the batch fits) is a field of :class:`Options`; an option that is not one
is a ``TypeError`` naming it (with the closest valid name) before anything is built or
compiled, and a value out of range a ``ValueError`` naming the option.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

#: Default tolerance on the scaled gradient (Newton decrement) at convergence: estimates
#: within about 1e-8 standard errors of the optimum, and a nll within 1e-16 of it.
GTOL = 1e-8
HESSIANS = ("fd", "exact")


@dataclass(frozen=True)
class Options:
    """What a user may set about a fit (hashable: part of the compiled program's key).

    Attributes:
      gtol: tolerance on the scaled gradient of the marginal nll at convergence, the Newton
        decrement ``sqrt(g' H^{-1} g)`` (free of the parameters' units; ``_optimise``).
      max_iter: limit on outer iterations.
      closed_form: a model whose ``nll`` has a closed-form marginal (the formula front end's
        Gaussian models) is fitted through it (``_gaussian``), the same numbers as the
        Laplace engine; False fits it by the engine.
      inner_tol, inner_max_iter: the inner Newton solver's tolerance (Newton decrement, nll
        units) and iteration limit.
      hessian: ``"fd"`` (central differences of the exact gradient) or ``"exact"``
        (forward-over-reverse AD); see ``_engine.value_grad_hessian``. None (default): "fd",
        except for batches of closed-form fits, which wait for their run, not their compile:
        "exact" (:func:`hessian_for`).
      n_agq: adaptive Gauss-Hermite points per random effect (1: the Laplace approximation).
      global_mode: search for the global inner mode at the optimiser's checkpoints (default);
        False only for densities log-concave in ``u``, whose inner mode is unique.
      optimiser: an optimiser object (``admbjax.Newton()``, ``admbjax.LBFGS()``), or None for
        the default by outer dimension (``_optimise.default_optimiser``).
    """

    gtol: float = GTOL
    max_iter: int = 100
    closed_form: bool = True
    inner_tol: float = 1e-10
    inner_max_iter: int = 100
    hessian: str | None = None
    n_agq: int = 1
    global_mode: bool = True
    optimiser: Any = None

    def __post_init__(self):
        if not (isinstance(self.gtol, (int, float, np.floating)) and self.gtol > 0):
            raise ValueError(f"`gtol` must be a positive number, got {self.gtol!r}")
        for name in ("max_iter", "inner_max_iter", "n_agq"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
        if self.hessian is not None and self.hessian not in HESSIANS:
            raise ValueError(f"`hessian` must be one of {HESSIANS}, got {self.hessian!r}")
        if self.optimiser is not None and not hasattr(self.optimiser, "minimise"):
            raise TypeError(f"`optimiser` must be an optimiser object such as admbjax.Newton() or "
                            f"admbjax.LBFGS(), got {self.optimiser!r}")
        object.__setattr__(self, "gtol", float(self.gtol))
        object.__setattr__(self, "inner_tol", float(self.inner_tol))

    @classmethod
    def of(cls, caller: str = "fit", extra=(), **options) -> "Options":
        """The options of ``caller`` (whose own keyword arguments are ``extra``) from keywords."""
        check_options(options, caller, extra)
        return cls(**options)

    def hessian_for(self, closed_form: bool, batched: bool) -> str:
        """The Hessian to take: the user's, else "exact" for a batch of closed-form fits
        (it runs about 30% faster; the compile is a batch's smaller wait), else "fd"."""
        if self.hessian is not None:
            return self.hessian
        return "exact" if closed_form and batched else "fd"


#: Every keyword option, in the order of :class:`Options`.
NAMES = tuple(f.name for f in fields(Options))


def check_options(options, caller: str = "fit", extra=()) -> None:
    """Raise ``TypeError`` naming the first of ``options`` (a mapping of keyword options)
    that is not an option of ``caller`` (:data:`NAMES` and its own ``extra``), listing them."""
    valid = tuple(extra) + NAMES
    unknown = [k for k in options if k not in valid]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TypeError(f"{caller}() got an unknown option {unknown[0]!r}{hint}; valid options: {', '.join(valid)}")
