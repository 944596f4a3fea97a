"""The formula front end's batch fits: one formula per level of a column (``fit_formula_by``),
per response column (``fit_formula_responses``), and the parametric bootstrap.

Built above the engine's batch (``_batch.fit_lanes``): each builds its lanes (models and
data, or ``_by.SharedLanes`` from one design) and hands them to one batch.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np

from ._batch import BATCH_OPTIONS, ListLanes, fit_lanes
from ._by import lanes as by_lanes
from ._families import get_family
from ._fit import fit
from ._formula import constant_response, default_method, formula_model
from ._io import read_data
from ._options import check_options
from ._results import AdmbjaxWarning
from ._scope import scoped

@scoped
def fit_formula_by(formula: str, data, by: str, family="gaussian", method: str | None = None, categorical=(),
                   na_action: str = "fail", encoding: str = "utf-8", **options):
    """One fit of ``formula`` per level of column ``by``, all in one batch.

    Returns ``(levels, results)``; each result equals the fit of that level's rows alone. A
    level that cannot be fitted (too few groups, a rank-deficient design, bad data) gets
    ``None`` and a warning that names it and says why; the other levels are unaffected.
    ``method``, ``encoding``: as for :func:`admbjax.fit_formula` (default REML for the
    Gaussian family, else ML; UTF-8).
    """
    check_options(options, "fit_formula_by", BATCH_OPTIONS)
    method = default_method(family) if method is None else method
    df = read_data(data, encoding)
    if by not in df.columns:
        raise ValueError(f"`by` column {by!r} is not in `data`; available: {list(df.columns)}")
    levels, built, index, errors = by_lanes(formula, df, by, family, categorical, na_action)
    if built is None:
        raise ValueError(f"no level of {by!r} can be fitted: level {levels[0]!r}: {errors[0]}")
    for level, error in zip(levels, errors):
        if error is not None:
            warnings.warn(f"level {level!r} of {by!r} was not fitted: {error}", AdmbjaxWarning, stacklevel=2)
    options.setdefault("global_mode", not get_family(family).log_concave)
    return levels, fit_lanes(built, index, method, label=lambda k: f"level {levels[k]!r} of {by!r}", **options)


@scoped
def fit_formula_responses(formula: str, data, responses, family="gaussian", method: str | None = None,
                          categorical=(), na_action: str = "fail", encoding: str = "utf-8", **options):
    """One fit per response column (one model per gene), sharing the formula's design.

    ``formula``'s left-hand side is a placeholder replaced by each name in ``responses``;
    the design is built once. Returns a list of results in the order of ``responses``.
    ``method``, ``encoding``: as for :func:`admbjax.fit_formula` (default REML for the
    Gaussian family, else ML; UTF-8).
    """
    check_options(options, "fit_formula_responses", BATCH_OPTIONS)
    method = default_method(family) if method is None else method
    df = read_data(data, encoding)
    responses = list(responses)
    missing = [r for r in responses if r not in df.columns]
    if missing:
        raise ValueError(f"`responses` {missing[:10]} are not columns of `data`")
    rhs = formula.split("~", 1)[1]
    model, grouped, d = formula_model(f"{responses[0]} ~{rhs}", df, family, categorical, na_action, sufficient=False)
    Y = df.loc[:, responses].to_numpy(float)
    options.setdefault("global_mode", not get_family(family).log_concave)
    return _fit_responses(model, grouped, d, Y, get_family(family), method, rhs, responses, options,
                          label=lambda k: f"response {responses[k]!r}")


def _fit_responses(model, grouped, d, Y, family, method, rhs, names, options, label=None):
    """Fit the columns of ``Y`` (``[n_obs, B]``) as responses of one design, in one batch;
    warnings name position ``k`` by ``label(k)``."""
    packed = np.where(grouped.rows[..., None] >= 0, Y[np.maximum(grouped.rows, 0)], 0.0)
    finite = np.isfinite(Y).all(axis=0)
    beta0 = np.linalg.lstsq(d.X, np.where(np.isfinite(Y), Y, 0.0), rcond=None)[0].T
    models, datas, index = [], [], np.full(len(names), -1)
    label = label or (lambda k: f"batch fit {k}")
    for b, name in enumerate(names):
        error = constant_response(Y[:, b], family, name) if finite[b] else None
        if error:                      # as the fit alone: refused (a zero residual variance)
            warnings.warn(f"{label(b)} was not fitted: {error}", AdmbjaxWarning, stacklevel=3)
            continue
        usable = finite[b] and family.link == "identity"
        start = beta0[b] if usable else model.beta
        index[b] = len(models)
        models.append(replace(model, beta=start, formula=f"{name} ~{rhs}"))
        datas.append(replace(grouped, arrays=dict(grouped.arrays, y=packed[..., b])))
    if not models:
        raise ValueError(f"no response can be fitted: {constant_response(Y[:, 0], family, names[0])}")
    return fit_lanes(ListLanes(models, datas), index, method, label=label, **options)


def simulate(result, design, n_sim: int, seed: int = 0) -> np.ndarray:
    """``n_sim`` responses (``[n_obs, n_sim]``) simulated from a fitted formula model:
    new random effects ``b ~ N(0, G)`` and new observations given them (lme4's ``simulate``)."""
    rng = np.random.default_rng(seed)
    family = get_family(result.family)
    n_groups, q = len(design.groups.categories), design.Z.shape[1]
    chol = np.linalg.cholesky(result.G + 1e-300 * np.eye(q)) if np.all(np.linalg.eigvalsh(result.G) > 0) else \
        np.linalg.svd(result.G)[0] * np.sqrt(np.maximum(np.linalg.svd(result.G)[1], 0.0))
    b = np.einsum("qr,gsr->gsq", chol, rng.standard_normal((n_groups, n_sim, q)))
    code = np.asarray(design.groups.codes)
    eta = (design.X @ result.beta)[:, None] + np.einsum("nq,nsq->ns", design.Z, b[code])
    if family.name == "gaussian":
        return eta + result.sigma * rng.standard_normal(eta.shape)
    if family.name == "student_t":
        return eta + result.sigma * rng.standard_t(result.df, eta.shape)
    if family.name == "poisson":
        return rng.poisson(np.exp(eta)).astype(float)
    trials = design.trials if design.trials is not None else np.ones(len(design.y))
    return rng.binomial(trials.astype(int)[:, None], 1.0 / (1.0 + np.exp(-eta))).astype(float)


@scoped
def bootstrap(formula: str, data, n_boot: int = 1000, family="gaussian", method: str | None = None, categorical=(),
              na_action: str = "fail", seed: int = 0, encoding: str = "utf-8", **options):
    """Parametric bootstrap of a formula fit (lme4's ``bootMer``), all refits in one batch.

    Returns ``(fit, table, estimates)``: the original fit, a DataFrame with the bootstrap SE
    and percentile interval of every fixed effect and variance component, and the
    ``[n_boot, k]`` array of refitted estimates (NaN rows for refits that failed).
    ``method``, ``encoding``: as for :func:`admbjax.fit_formula` (default REML for the
    Gaussian family, else ML; UTF-8).
    """
    import pandas as pd

    check_options(options, "bootstrap", BATCH_OPTIONS)
    method = default_method(family) if method is None else method
    model, grouped, d = formula_model(formula, read_data(data, encoding), family, categorical, na_action, sufficient=False)
    options.setdefault("global_mode", not get_family(family).log_concave)
    original = fit(model, grouped, method, **{k: v for k, v in options.items() if k not in BATCH_OPTIONS})
    Y = simulate(original, d, n_boot, seed)
    rhs = formula.split("~", 1)[1]
    refits = _fit_responses(model, grouped, d, Y, get_family(family), method, rhs,
                            [f"y*{i}" for i in range(n_boot)], options, label=lambda k: f"bootstrap refit {k}")
    names = list(original.confint().index)
    est = np.array([r.confint()["Estimate"].to_numpy() if r is not None and r.converged
                    else np.full(len(names), np.nan) for r in refits])
    ok = ~np.isnan(est).any(axis=1)
    table = pd.DataFrame({"Estimate": original.confint()["Estimate"].to_numpy(),
                          "Bootstrap SE": est[ok].std(axis=0, ddof=1),
                          "2.5 %": np.percentile(est[ok], 2.5, axis=0),
                          "97.5 %": np.percentile(est[ok], 97.5, axis=0)}, index=names)
    return original, table, est
