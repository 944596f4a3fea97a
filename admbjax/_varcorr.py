"""The random-effect terms of a fit as lme4 reports them: ``VarCorr``'s terms and rows.

The random effects' covariance ``G`` (one level of every term) is block diagonal over lme4's
terms (the blocks of ``Lambda``: ``(Days || Subject)`` is two terms, ``Subject`` and
``Subject.1``; ``(1 | batch/cask)`` two, ``cask:batch`` and ``batch``);
:func:`random_record` splits it into them and :func:`varcorr_rows` writes lme4's
``as.data.frame(VarCorr(m))`` (Bates et al. 2015, J. Stat. Softw. 67(1), section 5.1).
"""

from __future__ import annotations

import numpy as np


def sd_corr(G):
    """SDs and correlation matrix of covariance matrices ``G`` (``[..., q, q]``), as
    :meth:`FitResult.to_dict` reports them: a unit diagonal, 0 where an SD is 0."""
    G = np.asarray(G, dtype=float)
    sd = np.sqrt(np.diagonal(G, axis1=-2, axis2=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = G / (sd[..., :, None] * sd[..., None, :])
    q = G.shape[-1]
    corr[..., np.arange(q), np.arange(q)] = 1.0
    return sd, np.where(np.isfinite(corr), corr, 0.0)


def random_record(terms, G) -> list:
    """The ``random`` entry of :func:`record`: one object per term (``group``, ``names``,
    ``cov``, ``sd``, ``corr``), the blocks of the random effects' covariance ``G`` in the
    order of ``terms`` (``((group, names), ...)``, :attr:`Model.random_terms`; ``[]``
    without ``G``). A grouping factor with several terms is named as lme4 names them:
    ``Subject``, ``Subject.1``, ..."""
    if G is None:
        return []
    G = np.asarray(G, dtype=float)
    out, start, seen = [], 0, {}
    for group, names in terms:
        k = len(names)
        g = G[start:start + k, start:start + k]
        sd, corr = sd_corr(g)
        n = seen[group] = seen.get(group, -1) + 1
        out.append({"group": group if n == 0 else f"{group}.{n}", "names": list(names),
                    "cov": g.tolist(), "sd": sd.tolist(), "corr": corr.tolist()})
        start += k
    return out


def groups_line(terms, n_levels) -> str:
    """lme4's ``Number of obs`` tail: ``groups:  cask:batch, 30; batch, 10``, each grouping
    factor once, in the order of ``terms``; ``n_levels``: group name -> its levels."""
    groups = dict.fromkeys(g for g, _ in terms)
    return "groups:  " + "; ".join(f"{g}, {n_levels[g]}" for g in groups)


def varcorr_rows(terms, sigma) -> list:
    """lme4's ``as.data.frame(VarCorr(m))``: for each term its variances (``var2`` null),
    then its covariances in the order (1, 2), (1, 3), ..., (2, 3), ... with the correlation
    as ``sdcor``; then ``Residual`` (``vcov = sigma^2``, ``sdcor = sigma``) where the fit
    has a residual scale (``sigma`` not None: Gaussian, Student-t)."""
    rows = []
    for t in terms:
        names, cov, sd, corr = t["names"], t["cov"], t["sd"], t["corr"]
        rows += [{"group": t["group"], "var1": n, "var2": None, "vcov": cov[i][i], "sdcor": sd[i]}
                 for i, n in enumerate(names)]
        rows += [{"group": t["group"], "var1": names[i], "var2": names[j], "vcov": cov[i][j], "sdcor": corr[i][j]}
                 for i in range(len(names)) for j in range(i + 1, len(names))]
    if sigma is not None:
        rows.append({"group": "Residual", "var1": None, "var2": None, "vcov": sigma ** 2, "sdcor": sigma})
    return rows
