"""The lanes of ``fit_formula_by``: one model and dataset per level of a ``by`` column.

Each lane is what :func:`admbjax._formula.formula_model` gives for that level's rows alone.
Building a formulaic design per level costs about 20 ms a level, so for a Gaussian model
the design is built once, on all rows, and split: the per-level checks (rank of ``X``,
number of groups, identifiability) and the per-subject sufficient statistics of every
level come from a few ``bincount`` calls. That split equals the per-level design when no
term's encoding depends on the rows it sees: no stateful transform (``scale()``,
``center()``, ``poly()``, splines: their parameters would come from all levels) and every
level has every category of every factor (else a level would have a different reference
level). Otherwise, and for other families, the design is built level by level.

A level that cannot be fitted (too few groups, a rank-deficient ``X``, ...) becomes an
error message for that level; the other levels are fitted as usual.
"""

from __future__ import annotations

import re
import warnings

import jax
import numpy as np
import pandas as pd

from . import _formula, _syntax
from ._batch import ListLanes
from ._families import GAUSSIAN, get_family
from ._formula_nll import gaussian_stats_functions, lambda_signs, subject_totals
from ._lambda import RandomLayout
from ._model import Model
from ._results import AdmbjaxWarning


#: A level's ``X`` is full rank, without the exact check (``drop_aliased``), when the
#: smallest eigenvalue of its column-scaled ``X'X`` exceeds this fraction of the largest.
FULL_RANK = 1e-10


def level_codes(values: pd.Series, by: str):
    """``(levels, codes)``: the sorted distinct values of column ``by`` and each row's index."""
    if values.isna().any():
        raise ValueError(f"`by` column {by!r} has {int(values.isna().sum())} missing value(s)")
    if pd.api.types.is_numeric_dtype(values):
        codes, uniques = pd.factorize(values, sort=True)
        return uniques.tolist(), codes.astype(np.int64)
    levels = sorted(values.unique().tolist(), key=lambda v: (str(type(v)), v))
    return levels, pd.Categorical(values, categories=levels).codes.astype(np.int64)


def lanes(formula: str, df: pd.DataFrame, by: str, family, categorical, na_action):
    """``(levels, lanes, index, errors)``: the batch's lanes (``SharedLanes`` or
    ``_batch.ListLanes``), each level's lane (-1: not fitted) and why a level is not fitted."""
    df = df.reset_index(drop=True)
    levels, codes = level_codes(df[by], by)
    unusable = _unusable_levels(formula, df, codes, na_action)
    usable = ~np.isin(codes, list(unusable))
    df, codes = df[usable].reset_index(drop=True), codes[usable]
    shared = _shared_lanes(formula, df, codes, levels, by, family, categorical, na_action)
    if shared is not None:
        built, errors = shared
        return (levels,) + _index(built, [unusable.get(i, e) for i, e in enumerate(errors)])
    built = [unusable.get(i) or _level_lane(formula, df[codes == i], family, categorical, na_action)
             for i in range(len(levels))]
    errors = [lane if isinstance(lane, str) else None for lane in built]
    good = [lane for lane in built if not isinstance(lane, str)]
    return (levels,) + _index(ListLanes([m for m, _ in good], [d for _, d in good]) if good else None, errors)


def _unusable_levels(formula, df, codes, na_action) -> dict:
    """``{level: why}`` for the levels with rows that cannot be used (missing values unless
    omitted, inf: :func:`_formula.unusable_rows`), named by their rows in ``df``."""
    columns = _formula.translate(_formula.parse_formula(formula), df.columns).names.columns
    used = df[list(columns)]
    bad = _formula.unusable_mask(used, na_action)
    out = {}
    for i in np.unique(codes[bad]):
        level = used[codes == i]
        out[int(i)] = _formula.unusable_rows(level, na_action, rows=level.index)
    return out


def _index(built, errors):
    fitted = np.array([e is None for e in errors])
    index = np.where(fitted, np.cumsum(fitted) - 1, -1)
    return built, index, errors


def _level_lane(formula, rows, family, categorical, na_action):
    try:
        model, grouped, _ = _formula.formula_model(formula, rows, family, categorical, na_action)
    except ValueError as err:
        return str(err)
    return model, grouped


def _stateless(formula: str) -> bool:
    """Whether every function ``formula`` calls transforms each row on its own."""
    rhs = re.sub("`[^`]*`", "x", formula.split("~", 1)[1])      # a quoted column is no call
    names = re.findall(r"((?:[^\W\d]|\.)[\w.]*)\s*\(", rhs)
    return all(re.sub(r"^(np|numpy)\.", "", name) in _syntax.STATELESS for name in names)


def _shared_lanes(formula, df, codes, levels, by, family, categorical, na_action):
    """``(SharedLanes, errors)`` from one design, or ``None`` where that would differ from
    per-level designs."""
    if get_family(family) is not GAUSSIAN or not _stateless(formula):
        return None
    group, frame, y, _, X, Z, blocks = _formula.design_frames(formula, df, categorical, na_action)
    codes = codes[frame.index.to_numpy()]
    if not _every_category_in_every_level(frame, group, codes, len(levels)):
        return None
    split = _Split(codes, frame[group].cat.codes.to_numpy().astype(np.int64), len(levels))
    names, Xn = tuple(X.columns), X.to_numpy()
    beta0, errors, dropped = _level_ols(split, Xn, y, names, levels, by)
    if len(dropped) == len(levels) and len(set(dropped.values())) == 1:   # all drop the same: as alone
        gone = dropped[0]
        warnings.warn(_formula.dropped_warning(gone), AdmbjaxWarning, stacklevel=4)
        keep = [j for j, name in enumerate(names) if name not in gone]
        names, Xn = tuple(names[j] for j in keep), Xn[:, keep]
        beta0, errors, _ = _level_ols(split, Xn, y, names, levels, by)
    low, high = np.full(len(levels), np.inf), np.full(len(levels), -np.inf)
    np.minimum.at(low, codes, y)
    np.maximum.at(high, codes, y)
    constant = low == high
    for i, n_groups in enumerate(split.n_groups):
        errors[i] = (errors[i] or _formula.too_few_groups(group, int(n_groups))
                     or _formula.unidentifiable(int(split.n_rows[i]), int(n_groups), tuple(Z.columns), group, GAUSSIAN,
                                                blocks)
                     or _formula.no_residual_dof(int(split.n_rows[i]), len(names), GAUSSIAN)
                     or (_formula.constant_response(y[codes == i], GAUSSIAN, formula.split("~")[0].strip())
                         if constant[i] else None))
    kept = np.flatnonzero([e is None for e in errors])
    if not len(kept):
        return None, errors
    # sums of squares that overflow (a response of 1e160) are reported for their level by the batch
    with np.errstate(over="ignore", invalid="ignore"):
        stats = _level_statistics(split, y, Xn, Z.to_numpy(), beta0)
        sigma = np.sqrt(stats["rr"].sum(axis=1) / np.maximum(split.n_rows, 1)) + 1e-8
    base = _base_model(formula, names, tuple(Z.columns), group, blocks)
    categories = np.asarray(frame[group].cat.categories, dtype=object)
    return SharedLanes(base, split, stats, beta0, np.log(sigma), kept, categories), errors


class SharedLanes:
    """The lanes of ``fit_formula_by`` from one design split by level (the levels ``kept``),
    as :class:`_batch.ListLanes` gives them from per-level models and data."""

    formula_varies = False

    def __init__(self, base: Model, split, stats, beta0, log_sigma0, kept, categories):
        self.base, self.split, self.stats, self.kept, self.categories = base, split, stats, kept, categories
        self.beta0, self.log_sigma0 = beta0[kept], log_sigma0[kept]
        self.n_subjects, self.n_obs = split.n_groups[kept], split.n_rows[kept]
        self.signs = base.signs

    def _theta(self, lanes):
        lam = self.base.theta["lambda"]
        return {"lambda": np.broadcast_to(lam, (len(lanes),) + lam.shape), "log_sigma": self.log_sigma0[lanes]}

    def model(self, i):
        theta = jax.tree.map(lambda a: np.asarray(a[0]), self._theta([i]))
        return self.base.with_start(theta, self.beta0[i])

    def data(self, i):
        level = self.kept[i]
        ids = self.categories[self.split.subject_codes(level)]
        return self.split.grouped(self.stats, level, ids, int(self.n_subjects[i]))

    def inputs(self, spec, idx):
        """The program's ``(x0, mode0, data)`` for lanes ``idx``, stacked: what
        ``ListLanes.inputs`` gives for :meth:`model` and :meth:`data`, without building them."""
        from ._laplace import Mode

        levels, width = self.kept[idx], self.split.width
        beta = self.beta0[idx]
        x0 = spec.layout.flat_lanes(self._theta(idx), beta)
        mode0 = Mode(beta if spec.reml else np.zeros((len(idx), 0)), np.zeros((len(idx), width, spec.n_random)),
                     np.zeros((len(idx), 0)))
        real = (np.arange(width) < self.n_subjects[idx][:, None]).astype(float)
        data = {"arrays": {k: v[levels][:, :, None] for k, v in self.stats.items()},
                "mask": real[:, :, None], "subject_mask": real}
        return x0, mode0, data


def _every_category_in_every_level(frame, group, codes, n_levels) -> bool:
    for column in frame.columns:
        if column != group and isinstance(frame[column].dtype, pd.CategoricalDtype):
            k = len(frame[column].cat.categories)
            seen = np.bincount(codes * k + frame[column].cat.codes.to_numpy(), minlength=n_levels * k)
            if not seen.all():
                return False
    return True


class _Split:
    """Rows of all levels, indexed by ``(level, subject within the level)``."""

    def __init__(self, codes, group_codes, n_levels):
        n_cat = int(group_codes.max()) + 1
        key = codes * n_cat + group_codes
        if n_levels * n_cat <= 4 * len(key):       # dense: rank the (level, group) pairs by counting
            present = np.bincount(key, minlength=n_levels * n_cat) > 0
            pairs, rank = np.flatnonzero(present), np.cumsum(present) - 1
            subject = rank[key]
        else:
            pairs, subject = np.unique(key, return_inverse=True)
        self.pair_level, self.pair_group = pairs // n_cat, pairs % n_cat
        self.n_groups = np.bincount(self.pair_level, minlength=n_levels)
        self.first = np.concatenate([[0], np.cumsum(self.n_groups)[:-1]])
        self.width = int(self.n_groups.max())
        position = np.arange(len(pairs)) - self.first[self.pair_level]
        self.codes, self.n_levels = codes, n_levels
        self.n_rows = np.bincount(codes, minlength=n_levels)
        self.slot = codes * self.width + position[subject]       # row -> level * width + subject
        self._pads = {}

    def subject_codes(self, i):
        return self.pair_group[self.first[i]:self.first[i] + self.n_groups[i]]

    def grouped(self, stats, i, ids, n_g):
        from ._data import GroupedData

        mask, subject_mask, rows = self._padding(n_g)
        return GroupedData({k: v[i][:, None] for k, v in stats.items()}, mask, subject_mask, tuple(ids.tolist()),
                           rows, int(self.n_rows[i]))

    def _padding(self, n_g):
        """``(mask, subject_mask, rows)`` of a level with ``n_g`` subjects (shared, read-only)."""
        if n_g not in self._pads:
            real = np.arange(self.width) < n_g
            self._pads[n_g] = (real[:, None].astype(float), real.astype(float),
                               np.where(real, np.arange(self.width), -1)[:, None])
        return self._pads[n_g]


def _level_ols(split: _Split, X, y, names, levels, by):
    """Least-squares ``beta`` of every level (normal equations), per-level errors for levels
    whose ``X`` is rank deficient (checked exactly where it is in doubt), and the columns
    each such level would drop."""
    p = X.shape[1]
    with np.errstate(over="ignore", invalid="ignore"):   # y'y, unused here, may overflow (see _level_statistics)
        totals = subject_totals(split.codes, split.n_levels, y, X, X[:, :0])   # per level, not subject
    XX, Xy = totals["XX"], totals["Xr"]
    scale = np.sqrt(np.maximum(np.diagonal(XX, axis1=1, axis2=2), 1e-300))
    eig = np.linalg.eigvalsh(XX / (scale[:, :, None] * scale[:, None, :]))
    errors = [None if n else f"level {levels[i]!r} of {by!r} has no rows left" for i, n in enumerate(split.n_rows)]
    dropped = {}
    for i in np.flatnonzero(~(eig[:, 0] > FULL_RANK * eig[:, -1]) & (split.n_rows > 0)):
        kept, dropped[i] = _formula.drop_aliased(pd.DataFrame(X[split.codes == i], columns=list(names)))
        if dropped[i]:
            errors[i] = (f"level {levels[i]!r} of {by!r} gives fixed effects {list(kept.columns)} "
                         f"({_formula.dropped_warning(dropped[i])}), the design {list(names)}: every level "
                         "must give the same design columns")
        else:
            del dropped[i]
    ok = np.array([e is None for e in errors])
    beta = np.zeros((split.n_levels, p))
    beta[ok] = np.linalg.solve(XX[ok], Xy[ok][..., None])[..., 0]
    return beta, errors, dropped


def _level_statistics(split: _Split, y, X, Z, beta0):
    """``_formula.sufficient_statistics`` of every level at once: ``[levels, width, ...]``."""
    r = y - np.einsum("np,np->n", X, beta0[split.codes])
    stats = subject_totals(split.slot, split.n_levels * split.width, r, X, Z)
    stats = {k: v.reshape((split.n_levels, split.width) + v.shape[1:]) for k, v in stats.items()}
    return dict(stats, beta0=np.broadcast_to(beta0[:, None, :], (split.n_levels, split.width, X.shape[1])))


def _base_model(formula, beta_names, random_names, group, blocks) -> Model:
    layout = RandomLayout.single(blocks)
    nll, report, ranef = gaussian_stats_functions(layout)
    return Model(nll=nll, theta={"lambda": layout.diag.astype(float), "log_sigma": 0.0},
                 beta=np.zeros(len(beta_names)), n_random=len(random_names), report=report, ranef=ranef,
                 beta_names=beta_names, random_names=random_names, group=group, family=GAUSSIAN.name,
                 formula=formula, signs=lambda_signs(layout), random_blocks=tuple(blocks))
