"""Families: the conditional density of one observation given its linear predictor.

A family is the one line of a model that changes between a Gaussian, a Student-t, a Poisson
and a binomial mixed model: ``logpdf(y, eta, theta, data)``, plus the dispersion parameters
it adds to ``theta`` (on the log scale), whether the random effects are scaled by ``sigma``
(lme4's relative parametrisation ``b = sigma Lambda u``), its natural-scale report and its
starting values. Families are looked up by name (``family="student_t"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln
from jax.scipy.stats import norm

from ._data import _list

LOG_PI = math.log(math.pi)


@dataclass(frozen=True)
class Family:
    """One conditional distribution of the response (see module docstring)."""

    name: str
    logpdf: Callable            # (y, eta, theta, data) -> elementwise log density
    dispersion: tuple           # names of the log-scale parameters it adds to theta
    scaled_random: bool         # b = sigma * Lambda u (True) or Lambda u (False)
    report: Callable            # theta -> {"sigma": ..., "df": ...}
    link: str = "identity"
    validate: Callable | None = None   # (y, trials) -> None, raises naming rows
    log_concave: bool = True           # in eta: then the inner mode is unique

    def scale(self, theta):
        """The factor multiplying ``Lambda u`` in ``b``."""
        return jnp.exp(theta["log_sigma"]) if self.scaled_random else 1.0


def _gaussian_logpdf(y, eta, theta, data):
    return norm.logpdf(y, eta, jnp.exp(theta["log_sigma"]))


#: Coefficients of Stirling's series, ``lgamma(z) = (z - 1/2) log z - z + log(2 pi)/2 + sum_k c_k z^(1 - 2k)``.
STIRLING = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188)


def _stirling_tail(z):
    w = 1.0 / z
    w2 = w * w
    c = STIRLING
    return w * (c[0] + w2 * (c[1] + w2 * (c[2] + w2 * (c[3] + w2 * c[4]))))


def log_gamma_ratio_half(x):
    """``lgamma(x + 1/2) - lgamma(x)`` to ~1e-15 absolute for every ``x > 0``, derivatives too.

    Below 10, the difference of ``lgamma`` (both are small, nothing cancels); from 10 up, from
    Stirling's series, ``x log1p(1/(2x)) - 1/2 + log(x)/2 + S(x + 1/2) - S(x)`` (truncation error
    below 1e-14 there), with no difference of large numbers. The difference of ``lgamma`` in
    ``jax.scipy.stats.t.logpdf`` loses every digit for large ``x`` (at ``x = 5e16`` it is 0, not
    19.6), and ``jax.scipy.special.betaln`` (jaxlib 0.10.2) is off by 6e-7 from ``x = 8``.
    """
    big = x >= 10.0
    xs = jnp.where(big, x, 10.0)          # each branch at an argument where it is finite
    xd = jnp.where(big, 10.0, x)
    series = xs * jnp.log1p(0.5 / xs) - 0.5 + 0.5 * jnp.log(xs) + _stirling_tail(xs + 0.5) - _stirling_tail(xs)
    return jnp.where(big, series, gammaln(xd + 0.5) - gammaln(xd))


def _student_t_logpdf(y, eta, theta, data):
    """``log t_nu((y - eta) / sigma) - log sigma``, accurate for every ``nu``.

    The normalising constant ``lgamma((nu + 1)/2) - lgamma(nu/2) - log(nu pi)/2`` takes its
    first term from :func:`log_gamma_ratio_half`. As the difference of two ``lgamma`` (as in
    ``jax.scipy.stats.t.logpdf``) it loses every digit for large ``nu``: at ``nu = 1e17`` a
    residual's density came out as about 1 whatever ``sigma``, so the likelihood grew without
    bound as ``sigma`` and ``nu`` went to infinity together (issue 11: logLik -200.8 at
    ``sigma`` = 4e22, ``nu`` = 7e56, where the optimum is near -907.8 with ``nu`` = 1.47).
    """
    nu = jnp.exp(theta["log_df"])
    z = (y - eta) / jnp.exp(theta["log_sigma"])
    return (log_gamma_ratio_half(0.5 * nu) - 0.5 * (theta["log_df"] + LOG_PI) - theta["log_sigma"]
            - 0.5 * (nu + 1.0) * jnp.log1p(z * z / nu))


def _poisson_logpdf(y, eta, theta, data):
    return y * eta - jnp.exp(eta) - gammaln(y + 1.0)


def _binomial_logpdf(y, eta, theta, data):
    n = data["trials"]
    log_choose = gammaln(n + 1.0) - gammaln(y + 1.0) - gammaln(n - y + 1.0)
    return log_choose - y * jax.nn.softplus(-eta) - (n - y) * jax.nn.softplus(eta)


def _rows(mask) -> str:
    return _list(np.flatnonzero(mask))


def _validate_poisson(y, trials):
    bad = (y < 0) | (y != np.round(y))
    if bad.any():
        raise ValueError(f"poisson response must be a non-negative integer count; {bad.sum()} row(s) are not "
                         f"(0-based): {_rows(bad)}")


def _validate_binomial(y, trials):
    bad = (y < 0) | (y != np.round(y)) | (trials != np.round(trials)) | (y > trials)
    if bad.any():
        raise ValueError(f"binomial response must be integer successes between 0 and the trials; {bad.sum()} "
                         f"row(s) are not (0-based): {_rows(bad)}" + ("; for 0/1 data give a 0/1 response, "
                         "for counts cbind(successes, failures)" if (y > trials).any() else ""))


GAUSSIAN = Family("gaussian", _gaussian_logpdf, ("log_sigma",), True,
                  lambda th: {"sigma": jnp.exp(th["log_sigma"])})
STUDENT_T = Family("student_t", _student_t_logpdf, ("log_sigma", "log_df"), True,
                   lambda th: {"sigma": jnp.exp(th["log_sigma"]), "df": jnp.exp(th["log_df"])},
                   log_concave=False)
POISSON = Family("poisson", _poisson_logpdf, (), False, lambda th: {}, "log", _validate_poisson)
BINOMIAL = Family("binomial", _binomial_logpdf, (), False, lambda th: {}, "logit", _validate_binomial)

FAMILIES = {f.name: f for f in (GAUSSIAN, STUDENT_T, POISSON, BINOMIAL)}


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


def glm_start(family: Family, y: np.ndarray, X: np.ndarray, trials=None, iterations: int = 25):
    """Starting ``beta`` for a GLMM: the GLM without random effects, by IRLS (numpy)."""
    if family.link == "identity":
        return ols(y, X)[0]
    n = np.ones_like(y) if trials is None else trials
    mean = (y + 0.5) / (n + 1.0)
    eta = np.log(mean) if family.link == "log" else np.log(mean / (1 - mean))
    beta = np.linalg.lstsq(X, eta, rcond=None)[0]
    for _ in range(iterations):
        eta = np.clip(X @ beta, -30, 30)
        if family.link == "log":
            mu = np.exp(eta)
            w, z = mu, eta + (y - mu) / mu
        else:
            p = 1 / (1 + np.exp(-eta))
            w = np.maximum(n * p * (1 - p), 1e-10)
            z = eta + (y - n * p) / w
        sw = np.sqrt(w)
        beta = np.linalg.lstsq(X * sw[:, None], z * sw, rcond=None)[0]
    return beta
