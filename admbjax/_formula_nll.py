"""The per-subject nll of a formula model, for a family and a random-effect layout.

The model is lme4's (Bates et al. 2015, J. Stat. Softw. 67(1)): spherical random effects
``u, v ~ N(0, I)``, each term's effects ``b = s Lambda_t u`` (``s = sigma`` for families with
a scale, 1 otherwise; :mod:`admbjax._lambda`), and

    eta = X beta + Z (s Lambda_u u) + sum over global terms t of Z_t (s Lambda_t v[level]),

``Z`` the subject's local design (its own factor and the factors nested in it), ``v`` the
global terms' effects (crossed factors), ``Lambda_u`` the subject's tied block-diagonal
``Lambda``. The functions are cached by ``(family, layout)``, so that every fit with the
same structure shares its compiled programs.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

from ._families import FAMILIES, GAUSSIAN, Family
from ._lambda import LambdaMap, RandomLayout
from ._laplace import LOG_2PI


def lambda_signs(layout: RandomLayout, n_levels: tuple = ()):
    """``signs(theta)`` (see :class:`Model`) making every diagonal of ``Lambda`` non-negative:
    column ``j`` of a term's ``Lambda_t`` changes sign with the components of ``u`` (and of
    ``v``, a global term's, ``n_levels`` levels each, in order) that it multiplies, which
    leaves ``b`` and ``G`` as they are."""
    diag, cols = layout.diag, layout.columns
    u_cols = layout.local_columns
    v_cols = []
    for i, n in zip(layout.global_terms, n_levels):
        _, c = layout.offsets[i]
        v_cols += list(range(c, c + layout.terms[i].k)) * int(n)
    v_cols = np.asarray(v_cols, dtype=np.int64)
    diag_cols = cols[diag]                     # the column of each diagonal entry: 0..K-1 in order

    def signs(theta):   # also for a batch of thetas (leading axis)
        lam = np.asarray(theta["lambda"])
        col_sign = np.ones(lam.shape[:-1] + (layout.K,))
        col_sign[..., diag_cols] = np.where(lam[..., diag] < 0, -1.0, 1.0)
        theta_signs = {k: np.ones_like(np.asarray(a)) for k, a in theta.items()}
        theta_signs["lambda"] = col_sign[..., cols]
        if len(v_cols):
            return theta_signs, col_sign[..., u_cols], col_sign[..., v_cols]
        return theta_signs, col_sign[..., u_cols]

    signs.batched = True
    return signs


@functools.lru_cache(maxsize=None)
def model_functions(family: Family, layout: RandomLayout):
    """``(nll, report, ranef, global_nll)``; ``global_nll`` is ``None`` without global terms.

    ``report`` gives ``G`` (``[K, K]``, block diagonal: one level of every term, in order),
    ``sd`` (its diagonal's square roots) and ``corr`` (the correlations within each block,
    :meth:`RandomLayout.pairs`), with the family's own report (``sigma``, ``df``).
    """
    glob = layout.global_terms
    rows, cols = layout.pairs()

    def ranef(theta, beta, u):
        return family.scale(theta) * layout.local_lambda(theta["lambda"]) @ u

    def eta_of(theta, beta, u, data, v):
        eta = data["X"] @ beta + data["Z"] @ ranef(theta, beta, u)
        s = family.scale(theta)
        for j, i in enumerate(glob):
            k = layout.terms[i].k
            V = jnp.stack([v[data[f"v{j}_{e}"]] for e in range(k)], axis=-1)      # [rows, k]
            eta = eta + jnp.sum(data[f"Zg{j}"] * (s * V @ layout.term_lambda(theta["lambda"], i).T), axis=-1)
        return eta

    def nll(theta, beta, u, data, v=None):
        logpdf = family.logpdf(data["y"], eta_of(theta, beta, u, data, v), theta, data)
        return -jnp.sum(data["mask"] * logpdf) - jnp.sum(norm.logpdf(u))

    def report(theta, beta):
        L = family.scale(theta) * layout.full_lambda(theta["lambda"])
        G = L @ L.T
        sd = jnp.sqrt(jnp.diagonal(G))
        return dict(family.report(theta), G=G, sd=sd, corr=G[rows, cols] / (sd[rows] * sd[cols]))

    def global_nll(theta, v):
        return -jnp.sum(norm.logpdf(v))

    if FAMILIES.get(family.name) is family:   # a built-in family: the functions have a stable name
        name_functions(f"formula:{family.name}:{layout}", nll=nll, report=report, ranef=ranef,
                       global_nll=global_nll)
    return nll, report, ranef, (global_nll if glob else None)


def name_functions(prefix: str, **functions) -> None:
    """Give functions the ``admbjax_key`` that lets their compiled fits be stored on disk
    (``_cache.stable_key``): what they compute must follow from the key alone."""
    for name, fn in functions.items():
        fn.admbjax_key = f"{prefix}:{name}"


@functools.lru_cache(maxsize=None)
def gaussian_stats_functions(layout: RandomLayout):
    """``(nll, report, ranef)`` of the Gaussian model (local terms only) written on
    per-subject sufficient statistics: the same density as :func:`model_functions` for
    ``GAUSSIAN``, at a cost per subject that does not grow with its number of observations.

    With ``r = y - X beta0`` (``beta0`` least squares, for numerical accuracy) and
    ``d = beta - beta0``, ``b = sigma Lambda u``:

        ||y - X beta - Z b||^2 = r'r - 2 d'X'r - 2 b'Z'r + d'X'X d + 2 d'X'Z b + b'Z'Z b.
    """
    if layout.global_terms:
        raise ValueError("the sufficient-statistics Gaussian model has no global (crossed) terms")
    nll, report, ranef = _gaussian_stats_nll(layout)
    name_functions(f"gaussian_stats:{layout}", nll=nll)
    nll.closed_form = LambdaMap(layout)    # its exact marginal: the objective is _gaussian.ClosedForm
    return nll, report, ranef


def _gaussian_stats_nll(layout: RandomLayout):
    """``(nll, report, ranef)``: :func:`gaussian_stats_functions`' density, local terms only."""
    _, report, ranef, _ = model_functions(GAUSSIAN, layout)

    def nll(theta, beta, u, data):
        sigma = jnp.exp(theta["log_sigma"])
        b = ranef(theta, beta, u)
        d = beta - data["beta0"]                                   # [rows, p]
        rss = (data["rr"] - 2 * jnp.sum(d * data["Xr"], -1) - 2 * data["Zr"] @ b
               + jnp.einsum("ip,ipk,ik->i", d, data["XX"], d) + 2 * jnp.einsum("ip,ipq,q->i", d, data["XZ"], b)
               + jnp.einsum("q,iqk,k->i", b, data["ZZ"], b))
        per_row = data["n"] * (jnp.log(sigma) + 0.5 * LOG_2PI) + 0.5 * rss / sigma**2
        return jnp.sum(data["mask"] * per_row) - jnp.sum(norm.logpdf(u))

    return nll, report, ranef


def subject_totals(index: np.ndarray, n_slots: int, r, X, Z) -> dict:
    """Sums over the rows of each slot (``index``: row -> slot, a subject) of ``n, r'r, X'r,
    Z'r, X'X, X'Z, Z'Z``: one row of statistics per slot (``[n_slots, ...]``)."""

    def total(a, b):  # per-slot sums of a[:, j] * b[:, k]: [n_slots, ja, kb]
        out = np.empty((n_slots, a.shape[1], b.shape[1]))
        for j in range(a.shape[1]):
            for k in range(b.shape[1]):
                out[:, j, k] = np.bincount(index, weights=a[:, j] * b[:, k], minlength=n_slots)
        return out

    r1 = r[:, None]
    return {"n": np.bincount(index, minlength=n_slots).astype(float), "rr": total(r1, r1)[:, 0, 0],
            "Xr": total(X, r1)[..., 0], "Zr": total(Z, r1)[..., 0], "XX": total(X, X), "XZ": total(X, Z),
            "ZZ": total(Z, Z)}


@functools.lru_cache(maxsize=None)
def gaussian_crossed_stats_functions(layout: RandomLayout, n_levels: tuple):
    """``(nll, report, ranef, global_nll)`` of the Gaussian model with global (crossed) terms
    on the statistics of :func:`crossed_totals`, which only its closed form
    (``_gaussian.ClosedForm``) reads: the ``nll`` is a marker, not a density the Laplace
    engine can integrate (``formula_model(..., sufficient=False)`` gives that one)."""
    lambda_of = LambdaMap(layout, tuple(int(n) for n in n_levels))
    _, report, ranef, global_nll = model_functions(GAUSSIAN, layout)

    def nll(theta, beta, u, data, v):
        raise ValueError(CLOSED_FORM_ONLY)

    name_functions(f"gaussian_crossed_stats:{layout}:{n_levels}", nll=nll)
    nll.closed_form = lambda_of
    nll.closed_form_only = CLOSED_FORM_ONLY
    return nll, report, ranef, global_nll


CLOSED_FORM_ONLY = ("a Gaussian formula model with crossed factors is written on border statistics that only its "
                    "closed form reads (closed_form=False cannot use them): for the Laplace engine, build the model "
                    "with formula_model(..., sufficient=False)")


def crossed_totals(grouped, r, names: dict, X_rows, rows_global: dict) -> tuple[dict, dict]:
    """``(per-subject statistics, shared statistics)`` of the global effects for the closed
    form (``_gaussian``), from the per-observation :class:`GroupedData` ``grouped`` (with
    the global index) and the residual ``r = y - X beta0`` packed as its rows.

    Per subject, over its ``L`` local slots of ``v`` (``grouped.local``; ``G``: the raw global
    design of its rows): ``Gr = G'r`` (``[N, L]``) and ``GZ = G'Z`` (``[N, L, q]``). Shared,
    over the border ``(v, beta)`` (``P = m + p`` entries): ``gram``, ``B'B`` of the raw border
    design of all rows (``[P, P]``), and the pairs of local border entries that each
    subject's ``Z'B`` couples, each unordered pair once: ``pair_target`` (the flat position
    ``P a + b`` of the pair's border entries), ``pair_subject`` and ``pair_zz``
    (``[pairs, q, q]``: ``(Z'B)[:, a] (Z'B)[:, b]'``). ``names``: each global column
    (``"Zg{j}"``, effect ``e``) -> its index name in ``grouped``; ``X_rows`` and
    ``rows_global`` (name -> each row's global index) give the gram from the rows.
    """
    n, n_max = grouped.shape
    m, L = grouped.n_global, grouped.local.shape[1]
    X, Z = grouped.arrays["X"], grouped.arrays["Z"]
    p = X.shape[-1]
    gr, gz = [], []
    chunk = max(1, int(4e6 // max(1, n_max * L)))          # G of a chunk: at most 32 MB
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        G = np.zeros((hi - lo, n_max, L))
        sub, row = np.indices((hi - lo, n_max))
        for (column, e), name in names.items():
            np.add.at(G, (sub, row, grouped.index[name][lo:hi]), grouped.arrays[column][lo:hi, :, e])
        Gt = np.swapaxes(G, 1, 2)
        gr.append(np.einsum("nlm,nm->nl", Gt, r[lo:hi]))
        gz.append(Gt @ Z[lo:hi])
    per_subject = {"Gr": np.concatenate(gr), "GZ": np.concatenate(gz)}
    zb = np.concatenate([per_subject["GZ"], np.einsum("nmp,nmq->npq", X, Z)], axis=1)      # [N, L + p, q]
    shared = dict(_pairs(grouped.local, m, p, zb), gram=_gram(X_rows, rows_global, m))
    return per_subject, shared


def _pairs(local, m: int, p: int, zb) -> dict:
    """:func:`crossed_totals`' pair lists: every pair ``(a, b)`` of a subject's used local
    border entries with ``a <= b`` (the closed form adds the transpose)."""
    n = local.shape[0]
    pos = np.concatenate([np.where(local >= 0, local, -1), np.broadcast_to(m + np.arange(p), (n, p))], axis=1)
    used = pos >= 0
    K = pos.shape[1]
    upper = np.triu(np.ones((K, K), bool))
    i, a, b = np.nonzero(used[:, :, None] & used[:, None, :] & upper)
    size = m + p
    return {"pair_target": (pos[i, a] * size + pos[i, b]).astype(np.int64), "pair_subject": i.astype(np.int64),
            "pair_zz": zb[i, a, :, None] * zb[i, b, None, :]}


def _gram(X, rows_global: dict, m: int):
    """``B'B`` (``[m + p, m + p]``) of the raw border design ``B = (G, X)`` of all rows:
    ``rows_global`` maps each global column to ``(each row's index into v, its value)``."""
    p = X.shape[1]
    size = m + p
    gram = np.zeros((size, size))
    cols = list(rows_global.values())
    for idx1, z1 in cols:
        for idx2, z2 in cols:
            gram[:m, :m] += np.bincount(idx1 * m + idx2, weights=z1 * z2, minlength=m * m).reshape(m, m)
        for j in range(p):
            gram[:m, m + j] += np.bincount(idx1, weights=z1 * X[:, j], minlength=m)
    gram[m:, :m] = gram[:m, m:].T
    gram[m:, m:] = X.T @ X
    return gram
