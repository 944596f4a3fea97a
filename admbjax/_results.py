"""The result of a fit: immutable, with an lme4-like ``summary()`` and ``to_dict()``."""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from . import _optimise
from ._data import GroupedData, _list
from ._varcorr import random_record, varcorr_rows


POSITIVE = ("sd", "sigma", "df")


def _normal_quantile(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


class AdmbjaxWarning(UserWarning):
    """A statistical condition of a fit: not converged, singular, Hessian not positive definite."""


@dataclass(frozen=True, eq=False)
class FitResult:
    """An immutable fitted model.

    ``nll`` is the Laplace marginal negative log-likelihood (restricted for REML), with
    lme4's constants; ``criterion = 2 nll`` (REML criterion or deviance); ``loglik = -nll``.
    ``beta_cov`` is conditional on the variance parameters (lme4's ``vcov`` of ``lmer``);
    ``beta_cov_full`` includes their uncertainty (``glmer``'s ``vcov``, glmmTMB's
    ``sdreport``). ``vcov()``, ``beta_se``, the tables, ``to_dict`` and the summary use the
    one lme4 and glmmTMB report for the family (:func:`full_vcov_default`). ``x_cov`` is
    the inverse Hessian of the marginal nll in the outer parameters ``x`` (named
    ``x_names``); ``report``/``report_se`` hold the model's natural-scale quantities and
    their delta-method standard errors. ``u`` are conditional modes of the spherical random
    effects, ``b``/``b_sd`` those on the reporting scale with conditional SDs; a model with
    global random effects has their conditional modes (spherical scale) in ``extra["v"]``.
    ``random_terms``: ``G``'s independent blocks as lme4's terms, ``((group, names), ...)``
    (:attr:`Model.random_terms`; JSON ``random``).
    """

    method: str
    family: str
    formula: str | None
    group: str
    ids: tuple
    n_obs: int
    theta: Any
    beta: np.ndarray
    beta_names: tuple
    beta_cov: np.ndarray
    beta_cov_full: np.ndarray
    x: np.ndarray
    x_names: tuple
    x_cov: np.ndarray
    report: dict
    report_se: dict
    nll: float
    u: np.ndarray
    b: np.ndarray
    b_sd: np.ndarray
    random_names: tuple
    converged: bool
    status: str
    iterations: int
    max_abs_grad: float
    hessian_pd: bool
    inner_converged: np.ndarray
    singular: bool
    n_params: int
    time_compile: float
    time_fit: float
    scaled_grad: float = float("nan")
    messages: tuple = ()
    extra: dict = field(default_factory=dict)
    random_terms: tuple = ()      # G's independent blocks: lme4's terms (Model.random_terms)

    @property
    def criterion(self) -> float:
        """-2 log L: the REML criterion (REML) or the deviance (ML), lme4's constants."""
        return 2.0 * self.nll

    @property
    def loglik(self) -> float:
        return -self.nll

    @property
    def n_groups(self) -> int:
        return len(self.ids)

    @property
    def vcov_full(self) -> bool:
        """Whether :meth:`vcov` and :attr:`beta_se` include the variance parameters'
        uncertainty by default (every family but the Gaussian: :func:`full_vcov_default`)."""
        return full_vcov_default(self.family)

    @property
    def beta_se(self) -> np.ndarray:
        """Fixed-effect SEs as lme4 and glmmTMB report them for the family: conditional on
        the variance parameters for a Gaussian model (``lmer``), else including their
        uncertainty (``glmer``, glmmTMB). See :attr:`vcov_full`."""
        return np.sqrt(np.diag(self.vcov()))

    @property
    def beta_se_full(self) -> np.ndarray:
        """Fixed-effect SEs including the variance parameters' uncertainty, as glmmTMB's."""
        return np.sqrt(np.diag(self.beta_cov_full))

    @property
    def beta_se_conditional(self) -> np.ndarray:
        """Fixed-effect SEs conditional on the variance parameters, as ``lmer``'s ``vcov``."""
        return np.sqrt(np.diag(self.beta_cov))

    def vcov(self, full: bool | None = None) -> np.ndarray:
        """Covariance of ``beta``: ``full=True`` including the variance parameters'
        uncertainty (``glmer``, glmmTMB), ``False`` conditional on them (``lmer``); default
        the family's convention (:attr:`vcov_full`)."""
        full = self.vcov_full if full is None else full
        return self.beta_cov_full if full else self.beta_cov

    def confint(self, level: float = 0.95, full: bool | None = None):
        """Wald intervals (DataFrame) for the fixed effects and the natural-scale report.

        Variance components get delta-method SEs from the inverse Hessian of the marginal
        nll (TMB's ``sdreport``); the intervals of positive quantities (``sd``, ``sigma``,
        ``df``) are Wald intervals on the log scale, mapped back, so they stay positive.
        ``full``: the fixed effects' SEs, as for :meth:`vcov`.
        """
        import pandas as pd

        z = _normal_quantile(0.5 + level / 2)
        rows = {}
        se = np.sqrt(np.diag(self.vcov(full)))
        for name, est, s in zip(self.beta_names, self.beta, se):
            rows[name] = (est, s, est - z * s, est + z * s)
        for key, est in self.report.items():
            if key == "G":
                continue
            est, s = np.atleast_1d(est), np.atleast_1d(self.report_se[key])
            labels = _report_labels(key, self.random_terms, est.size)
            for lab, e, v in zip(labels, est, s):
                if key in POSITIVE and e > 0:
                    with np.errstate(over="ignore"):     # an SD at the boundary: up to inf, as it should
                        lo, hi = e * np.exp(-z * v / e), e * np.exp(z * v / e)
                else:
                    lo, hi = e - z * v, e + z * v
                    lo, hi = (max(lo, -1.0), min(hi, 1.0)) if key == "corr" else (lo, hi)
                rows[lab] = (e, v, lo, hi)
        est, s, lo, hi = (np.array(v, dtype=float) for v in zip(*rows.values()))
        lo_name, hi_name = f"{50 * (1 - level):.1f} %", f"{100 - 50 * (1 - level):.1f} %"
        return pd.DataFrame({"Estimate": est, "Std. Error": s, lo_name: lo, hi_name: hi}, index=list(rows))

    def varcorr(self):
        """lme4's ``VarCorr`` table as a DataFrame (Groups, Name, Variance, Std.Dev., Corr.*),
        one row per effect of every term, then the residual."""
        import pandas as pd

        rows = []
        for t in random_record(self.random_terms, self.G):
            names, cov, sd, corr = t["names"], t["cov"], t["sd"], t["corr"]
            rows += [{"Groups": t["group"], "Name": n, "Variance": cov[i][i], "Std.Dev.": sd[i],
                      **{f"Corr.{names[j]}": corr[i][j] for j in range(i)}} for i, n in enumerate(names)]
        if self.sigma is not None:
            rows.append({"Groups": "Residual", "Name": "", "Variance": self.sigma**2, "Std.Dev.": self.sigma})
        return pd.DataFrame(rows)

    @property
    def sigma(self) -> float | None:
        s = self.report.get("sigma")
        return None if s is None else float(s)

    @property
    def df(self) -> float | None:
        d = self.report.get("df")
        return None if d is None else float(d)

    @property
    def G(self) -> np.ndarray | None:
        """Covariance matrix of the random effects, if the model reports one."""
        g = self.report.get("G")
        return None if g is None else np.asarray(g)

    @property
    def aic(self) -> float:
        return self.criterion + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        return self.criterion + math.log(self.n_obs) * self.n_params

    def ranef(self, group: str | None = None):
        """Conditional modes of the random effects on the reporting scale (lme4's ``ranef``).

        With one grouping factor, a DataFrame (rows: its levels; columns: its effects). A
        formula fit with several holds one such table per grouping factor, in lme4's order:
        ``ranef()`` returns them as a dict (lme4's named list), ``ranef(group)`` one of them.
        A hand-written model's table has the subjects as rows and its ``random_names``.
        """
        import pandas as pd

        tables = self.extra.get("ranef") or {self.group: pd.DataFrame(
            self.b, index=pd.Index(self.ids, name=self.group), columns=list(self.random_names))}
        if group is not None:
            if group not in tables:
                raise ValueError(f"`group` {group!r} is not a grouping factor of this fit; it has {list(tables)}")
            return tables[group]
        return next(iter(tables.values())) if len(tables) == 1 else dict(tables)

    def fixef_table(self):
        """Fixed-effects table (Estimate, Std. Error, t value) as a DataFrame."""
        import pandas as pd

        se = self.beta_se
        return pd.DataFrame({"Estimate": self.beta, "Std. Error": se, "t value": self.beta / se},
                            index=list(self.beta_names))

    def summary(self) -> str:
        from ._summary import summary

        return summary(self)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict:
        """The JSON of a fit, as the README documents it ("The JSON of a fit"): :func:`record`."""
        G = self.G
        return record(self.method, self.family, self.formula, self.n_obs, self.n_groups, self.nll,
                      self.beta_names, self.beta.tolist(), self.beta_se.tolist(),
                      random_record(self.random_terms, G),
                      self.sigma, self.df, self.converged, self.singular, self.max_abs_grad, self.scaled_grad,
                      self.iterations, self.time_compile, self.time_fit)


#: The version of :func:`record`'s JSON: 2 has ``"schema"``, ``"random"`` as a list of terms
#: and ``"varcorr"`` (1: ``"random"`` one object or null, no ``"varcorr"``).
SCHEMA = 2


def record(method, family, formula, n_obs, n_groups, nll, beta_names, beta, se, random, sigma, df, converged,
           singular, max_abs_grad, scaled_grad, iterations, time_compile, time_fit) -> dict:
    """The JSON object of one fit (the README's "The JSON of a fit"): the schema in one place,
    for :meth:`FitResult.to_dict` and a batch's JSON lines (``BatchResults.json_lines``).
    ``nll`` is the marginal nll (``criterion = 2 nll``); ``se`` and ``scaled_grad`` that
    are not finite are ``null``; ``random`` is :func:`random_record`'s list of terms."""
    return {
        "schema": SCHEMA, "method": method, "family": family, "formula": formula, "n_obs": n_obs,
        "n_groups": n_groups, "criterion": 2.0 * nll, "loglik": -nll,
        "fixed": {"names": list(beta_names), "estimate": beta, "se": _finite_or_none(se)},
        "random": random, "varcorr": varcorr_rows(random, sigma),
        "sigma": sigma, "df": df, "converged": converged, "singular": singular,
        "max_abs_grad": max_abs_grad, "scaled_grad": _finite_or_none([scaled_grad])[0], "iterations": iterations,
        "time_s": {"compile": time_compile, "fit": time_fit},
    }


#: Families whose fixed-effect SEs are by default conditional on the variance parameters:
#: the Gaussian (lme4's ``lmer`` reports ``RX``'s), and a hand-written :class:`Model`'s
#: default label, whose family is not known. ``glmer`` (its ``vcov`` takes the beta block of
#: the inverse Hessian in all parameters) and glmmTMB (``sdreport``) include their
#: uncertainty for every other family.
CONDITIONAL_VCOV_FAMILIES = ("gaussian", "custom")


def full_vcov_default(family: str) -> bool:
    """Whether a fit of ``family`` reports fixed-effect SEs that include the uncertainty of
    the variance parameters (``beta_cov_full``) rather than conditional ones (``beta_cov``)."""
    return family not in CONDITIONAL_VCOV_FAMILIES


def _report_labels(key, terms, size):
    """Labels of a report entry: ``sd`` and ``corr`` (the formula models') by lme4's
    terms (``Subject.sd_Days``, ``Subject.cor_Days.(Intercept)``), else ``key[i]``."""
    sd = [(g, n) for g, names in terms for n in names]
    corr = [(g, names[j], names[i]) for g, names in terms for j in range(len(names)) for i in range(j + 1, len(names))]
    if key == "sd" and size == len(sd):
        return [f"{g}.sd_{n}" for g, n in sd]
    if key == "corr" and size == len(corr):
        return [f"{g}.cor_{a}.{b}" for g, a, b in corr]
    return [key] if size == 1 else [f"{key}[{i}]" for i in range(size)]


def _finite_or_none(a):
    return [float(v) if np.isfinite(v) else None for v in np.asarray(a)]


def is_singular(report: dict, tol: float = 1e-4):
    """lme4's ``isSingular``: a relative random-effect SD (Cholesky diagonal) below ``tol``.

    ``report`` may carry a leading batch axis; the answer then has it too."""
    G = report.get("G")
    if G is None:
        return False
    G = np.asarray(G, dtype=float)
    if G.ndim < 2:                                  # one variance (per lane)
        G = G.reshape(G.shape + (1, 1))
    sigma = report.get("sigma")
    scale = np.asarray(sigma, dtype=float)[..., None, None] ** 2 if sigma is not None else 1.0
    eig = np.linalg.eigvalsh(G / scale)
    return eig[..., 0] < tol**2


def _subjects(data: GroupedData, flags) -> list:
    return [data.ids[i] for i in np.flatnonzero(~np.asarray(flags, bool)[: data.n_subjects])]


def _check_start(data: GroupedData, out) -> None:
    if int(out.opt.status) != _optimise.BAD_START:
        return
    lap, info = out.opt.last_aux[:2]
    not_pd, not_conv = _subjects(data, lap.ok), _subjects(data, info.converged)
    raise ValueError(
        "the Laplace approximation is not finite at the initial values: "
        + (f"the Hessian in u is not positive definite at the inner mode for subjects {_list(not_pd)}; " if not_pd else "")
        + (f"the inner Newton solve did not converge for subjects {_list(not_conv)}; " if not_conv else "")
        + "choose other initial values (`theta`, `beta`)"
    )


#: Below this smallest eigenvalue of H_uu,i (in the whitened u, where the prior alone gives 1)
#: a subject's conditional density is nearly flat at its mode: the Laplace approximation of
#: its integral is unreliable (it diverges where the mode is about to vanish).
FLAT_CURVATURE = 1e-2


def curvature_check(g, h):
    """``(scaled gradient, saddle)`` of each lane's gradient ``g`` (``[..., k]``) and Hessian
    ``h`` at the optimum: the Newton decrement ``sqrt(g' |H|^{-1} g)``, free of the
    parameters' units (``_optimise.decrement``; ``|H|`` takes absolute eigenvalues, in
    Jacobi-scaled coordinates), and whether ``H`` has a direction of negative curvature
    (``_optimise.NEGATIVE_CURVATURE``): a stationary point there is a saddle point or a
    maximum, not a minimum."""
    g, h = np.asarray(g, dtype=float), np.asarray(h, dtype=float)
    if g.shape[-1] == 0:
        return np.zeros(g.shape[:-1]), np.zeros(g.shape[:-1], bool)
    d = np.abs(np.diagonal(h, axis1=-2, axis2=-1))
    s = 1.0 / np.sqrt(np.where(d > 0, d, 1.0))
    hs = h * s[..., :, None] * s[..., None, :]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        w, v = np.linalg.eigh(np.where(np.isfinite(hs), hs, 0.0))
        top = np.maximum(1.0, np.max(np.abs(w), axis=-1))
        proj = np.einsum("...ji,...j->...i", v, g * s)
        scaled = np.sqrt(np.sum(proj**2 / np.maximum(np.abs(w), 1e-12 * top[..., None]), axis=-1))
    saddle = w[..., 0] < -_optimise.NEGATIVE_CURVATURE * top
    return np.where(np.isfinite(scaled), scaled, np.inf), saddle & np.all(np.isfinite(hs), axis=(-2, -1))


def min_curvature(chol) -> np.ndarray:
    """Smallest eigenvalue of each subject's ``H_uu`` at the mode, from its Cholesky factor
    ``chol`` (``[..., N, q, q]``)."""
    chol = np.asarray(chol)
    return np.linalg.eigvalsh(chol @ np.swapaxes(chol, -1, -2))[..., 0]


def _se_unavailable(beta_covs) -> str:
    """What is lost when the Hessian of the marginal nll is not positive definite: the SEs of
    the variance parameters always; those of the fixed effects where they include their
    uncertainty. ``beta_covs``: the fit's default fixed-effect covariance and the
    conditional one (``None``: not known)."""
    if beta_covs is None:
        return "standard errors unavailable"
    shown, conditional = (bool(np.all(np.isfinite(np.diagonal(c)))) for c in beta_covs)
    if shown:
        return ("standard errors of the variance parameters unavailable (the fixed-effect standard errors "
                "are conditional on them)")
    return ("standard errors of the fixed effects and the variance parameters unavailable"
            + (" (vcov(full=False) gives fixed-effect ones conditional on the variance parameters)"
               if conditional else ""))


def _conditions(data: GroupedData, ok, inner_converged, curvature, grad: float, converged: bool, status: str,
                hessian_pd: bool, singular: bool, beta_covs=None, scaled_grad: float = float("nan"),
                saddle: bool = False) -> list[str]:
    msgs = []
    not_pd, not_conv = _subjects(data, ok), _subjects(data, inner_converged)
    flat = _subjects(data, ~(curvature < FLAT_CURVATURE) | ~np.asarray(ok, bool))
    if not_pd:
        msgs.append(f"Hessian in u not positive definite at the mode for subjects {_list(not_pd)}")
    if flat:
        msgs.append(f"Laplace approximation unreliable for subjects {_list(flat)}: their conditional density "
                    "is nearly flat at the mode (smallest curvature below 1% of the prior's); "
                    "use adaptive Gauss-Hermite quadrature (n_agq) for ML")
    if not_conv:
        msgs.append(f"inner Newton solve did not converge for subjects {_list(not_conv)}")
    if saddle:
        msgs.append("Model failed to converge: the optimiser stopped where the gradient is zero but the Hessian "
                    "has a direction of negative curvature (a saddle point or a maximum, not a minimum); try other "
                    "starting values")
    elif not converged:
        msgs.append(f"Model failed to converge with max|grad| = {grad:.3g}, scaled gradient {scaled_grad:.3g} "
                    f"({status})")
    if not hessian_pd:
        msgs.append(f"Hessian of the marginal nll is not positive definite: {_se_unavailable(beta_covs)}")
    if singular:
        msgs.append("boundary (singular) fit: see help('isSingular')")
    return msgs


def _canonical(model, layout, x, x_cov, u, v):
    """``x``, its covariance, ``u`` and ``v`` after ``model.signs`` (unchanged without it)."""
    if model.signs is None:
        return x, x_cov, u, v
    theta_signs, u_signs, *v_signs = model.signs(jax.tree.map(np.asarray, layout.theta_of(x)))
    sx = np.asarray(layout.flat(theta_signs, np.ones(model.n_fixed)))
    v = v * np.asarray(v_signs[0]) if v_signs else v
    return x * sx, x_cov * np.outer(sx, sx), u * np.asarray(u_signs), v


def _batch_signs(signs, layout, X):
    """``(sx [lanes, k], su [lanes, q])``: every lane's ``signs`` at once, where ``signs``
    (shared by all lanes) takes a batch of thetas (``signs.batched``); else ``None``."""
    if signs is None or not getattr(signs, "batched", False):
        return None
    lanes = X.shape[0]
    theta_signs, u_signs = signs(layout.theta_lanes(X))[:2]     # a batch has no global effects
    parts = [np.reshape(a, (lanes, -1)) for a in jax.tree.leaves(theta_signs)]
    sx = np.concatenate(parts + [np.ones((lanes, X.shape[1] - layout.n_theta))], axis=1)
    return sx, np.asarray(u_signs)


@functools.lru_cache(maxsize=64)
def _x_names(layout, beta_names: tuple) -> tuple:
    return tuple(layout.names(beta_names))


def make_result(model, data: GroupedData, layout, fs, out, t_compile: float, t_fit: float) -> FitResult:
    """Build the :class:`FitResult` from the compiled program's output; warn once per condition."""
    _check_start(data, out)
    table = LaneTable.of(jax.tree.map(lambda a: np.asarray(a)[None], out), layout, fs, None, t_compile, t_fit)
    result = table.result(0, model, data)
    for m in result.messages:
        warnings.warn(m, AdmbjaxWarning, stacklevel=3)
    return result


@dataclass(frozen=True, eq=False)
class LaneTable:
    """The fitted lanes of a batch chunk (leading axis: lanes), and what their results are
    computed from, vectorised over lanes. :meth:`result` builds one lane's
    :class:`FitResult`; a batch builds them on access (``_batch_results.BatchResults``)."""

    out: Any                  # the program's FitOutput, numpy; opt.aux = (lap.ok, inner converged)
    layout: Any
    fs: Any
    status: np.ndarray
    curvature: np.ndarray     # [lanes, N] smallest eigenvalue of H_uu
    singular: np.ndarray
    grad: np.ndarray          # max |gradient|
    scaled_grad: np.ndarray   # Newton decrement at the optimum (curvature_check)
    saddle: np.ndarray        # the Hessian there has negative curvature
    signs: tuple | None       # (sx, su) of every lane (a shared batched ``signs``), or None
    t_compile: float          # reported by lane 0
    t_fit: float              # each lane's

    @classmethod
    def of(cls, out, layout, fs, signs, t_compile: float, t_fit: float) -> "LaneTable":
        """``signs``: the lanes' shared ``model.signs`` if it takes a batch, else ``None``."""
        opt = out.opt
        status = np.asarray(opt.status)
        lap, info = opt.aux[:2]
        # keep what results read: a batch holds every lane's until it is done with
        kept = out._replace(opt=opt._replace(aux=(lap.ok, info.converged), last_aux=None, warm=None))
        scaled, saddle = curvature_check(opt.g, opt.h)
        return cls(kept, layout, fs, status, min_curvature(lap.step.chol_uu),
                   np.broadcast_to(is_singular(out.inference.report), status.shape),
                   np.max(np.abs(np.asarray(opt.g)), axis=-1), scaled, saddle & (status == _optimise.CONVERGED),
                   _batch_signs(signs, layout, np.asarray(opt.x)), t_compile, t_fit)

    def __len__(self) -> int:
        return len(self.status)

    @property
    def nll(self) -> np.ndarray:
        return np.asarray(self.out.opt.f)

    def converged(self, n_subjects) -> np.ndarray:
        """Whether each lane converged, inner solves included (``n_subjects`` per lane)."""
        inner = self.out.opt.aux[1]
        real = np.arange(inner.shape[1]) < np.asarray(n_subjects)[:, None]
        return (self.status == _optimise.CONVERGED) & ~self.saddle & np.all(inner | ~real, axis=1)

    def result(self, j: int, model, data: GroupedData) -> FitResult | None:
        """Lane ``j``'s :class:`FitResult` (``None`` if it could not start); no warnings."""
        if self.status[j] == _optimise.BAD_START:
            return None
        inf, opt, layout = self.out.inference, self.out.opt, self.layout
        ok, inner = opt.aux
        n = data.n_subjects
        inner_converged = inner[j, :n]
        saddle = bool(self.saddle[j])
        converged = bool(self.status[j] == _optimise.CONVERGED) and bool(np.all(inner_converged)) and not saddle
        status_text = _optimise.STATUS_MESSAGES.get(int(self.status[j]), "running")
        if self.saddle[j]:
            status_text = "stopped at a stationary point that is not a minimum (negative curvature)"
        reliable = bool(np.all(self.curvature[j, :n] >= FLAT_CURVATURE))
        singular, grad, hessian_pd = bool(self.singular[j]), float(self.grad[j]), bool(inf.hessian_pd[j])
        clean = converged and reliable and hessian_pd and not singular and bool(np.all(ok[j, :n]))
        msgs = [] if clean else _conditions(data, ok[j], inner[j], self.curvature[j], grad, converged,
                                            status_text, hessian_pd, singular,
                                            ((inf.beta_cov_full if full_vcov_default(model.family) else inf.beta_cov)[j],
                                             inf.beta_cov[j]), float(self.scaled_grad[j]), saddle)
        v = inf.v[j]
        if self.signs is None:
            x, x_cov, u, v = _canonical(model, layout, opt.x[j], inf.x_cov[j], inf.u[j, :n], v)
        else:
            sx, su = self.signs[0][j], self.signs[1][j]
            x, x_cov, u = opt.x[j] * sx, inf.x_cov[j] * np.outer(sx, sx), inf.u[j, :n] * su
        return FitResult(
            method="REML" if self.fs.spec.reml else "ML", family=model.family, formula=model.formula,
            group=model.group, ids=data.ids, n_obs=data.n_obs,
            theta=layout.theta_of(x), beta=inf.beta[j],
            beta_names=tuple(model.beta_names), beta_cov=inf.beta_cov[j], beta_cov_full=inf.beta_cov_full[j],
            x=x, x_names=_x_names(layout, tuple(model.beta_names)), x_cov=x_cov,
            report=jax.tree.map(lambda a: a[j], inf.report), report_se=jax.tree.map(lambda a: a[j], inf.report_se),
            nll=float(opt.f[j]), u=u, b=inf.b[j, :n], b_sd=inf.b_sd[j, :n],
            random_names=tuple(model.random_names), random_terms=tuple(model.random_terms),
            converged=converged, status=status_text,
            iterations=int(opt.iterations[j]), max_abs_grad=grad,
            hessian_pd=hessian_pd, inner_converged=inner_converged,
            singular=singular, n_params=layout.n_theta + model.n_fixed,
            time_compile=self.t_compile if j == 0 else 0.0, time_fit=self.t_fit,
            scaled_grad=float(self.scaled_grad[j]), messages=tuple(msgs),
            extra={"laplace_reliable": reliable, "n_agq": self.fs.spec.n_agq, "optimiser": self.fs.optimiser.name,
                   **({"v": v} if inf.v.shape[-1] else {})},
        )
