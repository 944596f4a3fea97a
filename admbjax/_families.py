"""Families: the conditional density of one observation given its linear predictor.

A family is the one line of a model that changes between a Gaussian, a Student-t, a Poisson
and a binomial mixed model: ``logpdf(y, eta, theta, data)``, plus the dispersion parameters
it adds to ``theta`` (on the log scale), whether the random effects are scaled by ``sigma``
(lme4's relative parametrisation ``b = sigma Lambda u``), its natural-scale report and its
starting values. Families are looked up by name (``family="student_t"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm
from jax.scipy.stats import t as student_t


@dataclass(frozen=True)
class Family:
    """One conditional distribution of the response (see module docstring)."""

    name: str
    logpdf: Callable            # (y, eta, theta, data) -> elementwise log density
    dispersion: tuple           # names of the log-scale parameters it adds to theta
    scaled_random: bool         # b = sigma * Lambda u (True) or Lambda u (False)
    report: Callable            # theta -> {"sigma": ..., "df": ...}
    statistic: str = "t value"

    def scale(self, theta):
        """The factor multiplying ``Lambda u`` in ``b``."""
        return jnp.exp(theta["log_sigma"]) if self.scaled_random else 1.0


def _gaussian_logpdf(y, eta, theta, data):
    return norm.logpdf(y, eta, jnp.exp(theta["log_sigma"]))


def _student_t_logpdf(y, eta, theta, data):
    return student_t.logpdf(y, jnp.exp(theta["log_df"]), eta, jnp.exp(theta["log_sigma"]))


GAUSSIAN = Family("gaussian", _gaussian_logpdf, ("log_sigma",), True,
                  lambda th: {"sigma": jnp.exp(th["log_sigma"])})
STUDENT_T = Family("student_t", _student_t_logpdf, ("log_sigma", "log_df"), True,
                   lambda th: {"sigma": jnp.exp(th["log_sigma"]), "df": jnp.exp(th["log_df"])})

FAMILIES = {f.name: f for f in (GAUSSIAN, STUDENT_T)}


def get_family(name) -> Family:
    """The family called ``name`` (or ``name`` itself if it is a :class:`Family`)."""
    if isinstance(name, Family):
        return name
    key = str(name).lower().replace("-", "_")
    key = {"normal": "gaussian", "t": "student_t"}.get(key, key)
    if key not in FAMILIES:
        raise ValueError(f"unknown `family` {name!r}; available: {', '.join(FAMILIES)}")
    return FAMILIES[key]


def ols(y: np.ndarray, X: np.ndarray):
    """Least-squares ``beta`` and residual SD: the Gaussian starting values."""
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    return beta, float(np.sqrt(np.mean(resid**2)) + 1e-8 * (np.std(y) + 1.0))
