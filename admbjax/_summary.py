"""lme4-like printed summary of a :class:`FitResult` (the layout of ``summary(lmer(...))``)."""

from __future__ import annotations

import numpy as np

from ._varcorr import groups_line, random_record

_FAMILY_TITLE = {
    "gaussian": "Linear mixed model fit by {method}",
    "student_t": "Student-t mixed model fit by {method} ({approximation})",
    "custom": "Mixed model fit by {method} ({approximation})",
}


def _title(res) -> str:
    method = "REML" if res.method == "REML" else "maximum likelihood"
    n_agq = res.extra.get("n_agq") or 1
    approximation = ("Laplace Approximation" if n_agq == 1
                     else f"Adaptive Gauss-Hermite Quadrature, nAGQ = {n_agq}")
    template = _FAMILY_TITLE.get(res.family, "Generalized linear mixed model fit by {method} ({approximation})")
    return template.format(method=method, approximation=approximation)


def _family_line(res) -> list[str]:
    """lme4's `` Family: binomial  ( logit )``, for every family but the Gaussian."""
    if res.family in ("gaussian", "custom"):
        return []
    from ._families import FAMILIES

    link = res.extra.get("link") or getattr(FAMILIES.get(res.family), "link", None)
    return [f" Family: {res.family}" + (f"  ( {link} )" if link else "")]


def _criterion_lines(res) -> list[str]:
    if res.method == "REML":
        return [f"REML criterion at convergence: {res.criterion:.4f}"]
    head = f"{'AIC':>10} {'BIC':>10} {'logLik':>10} {'deviance':>10} {'df.resid':>9}"
    vals = f"{res.aic:10.4f} {res.bic:10.4f} {res.loglik:10.4f} {res.criterion:10.4f} {res.n_obs - res.n_params:9d}"
    return [head, vals]


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    return [" " + " ".join(c.rjust(w) if j in right else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def _random_lines(res) -> list[str]:
    G = res.G
    if G is None:
        return []
    terms = random_record(res.random_terms, G)
    correlated = any(len(t["names"]) > 1 for t in terms)
    rows = [["Groups", "Name", "Variance", "Std.Dev.", "Corr" if correlated else ""]]
    for t in terms:            # lme4's layout: one group label per term, correlations below the diagonal
        cov, sd = np.asarray(t["cov"]), np.asarray(t["sd"])
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = cov / np.outer(sd, sd)          # NaN where an SD is 0, as lme4 prints it
        for i, name in enumerate(t["names"]):
            c = " ".join(f"{corr[i, j]:5.2f}" if np.isfinite(corr[i, j]) else "  NaN" for j in range(i))
            rows.append([t["group"] if i == 0 else "", name, f"{cov[i, i]:.5g}", f"{sd[i]:.5g}", c])
    if res.sigma is not None:
        label = "Residual" if res.family == "gaussian" else "Scale"
        rows.append([label, "", f"{res.sigma ** 2:.5g}", f"{res.sigma:.5g}", ""])
    out = ["Random effects:"] + _table(rows, right={2, 3})
    n_levels = res.extra.get("groups") or {res.group: res.n_groups}
    out.append(f"Number of obs: {res.n_obs}, " + groups_line(res.random_terms, n_levels))
    if res.df is not None:
        ci = res.confint().loc["df"]
        out.append(f"Student-t degrees of freedom: {res.df:.4g} (SE {ci['Std. Error']:.3g}; "
                   f"95% Wald CI on the log scale {ci['2.5 %']:.3g} to {ci['97.5 %']:.3g})")
    return out


def _residual_lines(res) -> list[str]:
    r = res.extra.get("scaled_residuals")
    if r is None:
        return []
    q = np.quantile(r, [0, 0.25, 0.5, 0.75, 1.0])
    rows = [["Min", "1Q", "Median", "3Q", "Max"], [f"{v:.4f}" for v in q]]
    return ["Scaled residuals:"] + _table(rows, right={0, 1, 2, 3, 4}) + [""]


def _correlation_lines(res) -> list[str]:
    p = len(res.beta_names)
    if p < 2:
        return []
    se = res.beta_se
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = res.vcov() / np.outer(se, se)
    short = [n[:6] for n in res.beta_names]
    rows = [[""] + short[:-1]]
    for i in range(1, p):
        rows.append([short[i]] + [f"{corr[i, j]:.3f}" if np.isfinite(corr[i, j]) else "NaN" for j in range(i)]
                    + [""] * (p - 1 - i))
    return ["", "Correlation of Fixed Effects:"] + _table(rows, right=set(range(1, p)))


def _fixed_lines(res) -> list[str]:
    se = res.beta_se
    stat = "t value" if res.sigma is not None else "z value"
    rows = [["", "Estimate", "Std. Error", stat]]
    for name, est, s in zip(res.beta_names, res.beta, se):
        rows.append([name, f"{est:.6g}", f"{s:.6g}" if np.isfinite(s) else "NaN", f"{est / s:.3f}" if s > 0 else "NaN"])
    return ["Fixed effects:"] + _table(rows, right={1, 2, 3})


def summary(res) -> str:
    """The summary text, in the order lme4 prints it."""
    lines = [_title(res)] + _family_line(res)
    if res.formula:
        lines.append(f"Formula: {res.formula}")
    lines += [""] + _criterion_lines(res) + [""] + _residual_lines(res) + _random_lines(res) + [""]
    lines += _fixed_lines(res) + _correlation_lines(res)
    optimiser = res.extra.get("optimiser", "damped Newton")
    lines += ["", f"Optimizer: {optimiser}, {res.iterations} iterations, max|grad| = {res.max_abs_grad:.2g}; "
                  f"compile {res.time_compile:.2f} s, fit {res.time_fit:.3f} s"]
    lines += list(res.messages)
    return "\n".join(lines)
