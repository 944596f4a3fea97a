"""The results of a batch: one per dataset (or ``by`` level), kept as the batch's arrays.

A batch of 20,000 fits is 20,000 :class:`FitResult`s only when they are asked for: each is
built on access from its chunk's :class:`LaneTable`, while the numbers a batch is read for
(criterion, convergence, the fixed effects, JSON lines) come from the arrays directly, at
a few microseconds a fit instead of a hundred.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from ._optimise import BAD_START
from ._results import LaneTable, full_vcov_default, sd_corr


class BatchResults(Sequence):
    """A read-only sequence of :class:`FitResult` (``None`` for a fit that was not made).

    ``lanes`` gives each fitted lane's ``model(i)`` and ``data(i)`` (and ``n_subjects``,
    ``n_obs``: arrays); ``index[k]`` is position ``k``'s lane, or -1; ``tables`` holds
    ``(lanes, LaneTable)`` per chunk. Vector attributes (``criterion``, ``converged``,
    ``singular``, ``beta``) have one entry per position, NaN/False where not fitted.
    """

    def __init__(self, lanes, index, tables):
        self._lanes, self._index = lanes, np.asarray(index, dtype=np.int64)
        self._tables = tuple(table for _, table in tables)
        self._ids = tuple(np.asarray(ids) for ids, _ in tables)       # each table's lanes, by row
        n_lanes = len(lanes.n_obs)
        self._table_of, self._row_of = np.full(n_lanes, -1), np.full(n_lanes, -1)
        for t, (ids, _) in enumerate(tables):
            self._table_of[ids], self._row_of[ids] = t, np.arange(len(ids))
        started = np.zeros(n_lanes, bool)
        for ids, table in tables:
            started[ids] = table.status != BAD_START
        self._fitted = np.where(self._index >= 0, started[np.maximum(self._index, 0)], False)

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        k = range(len(self))[k]
        if not self._fitted[k]:
            return None
        lane = self._index[k]
        table = self._tables[self._table_of[lane]]
        return table.result(self._row_of[lane], self._lanes.model(lane), self._lanes.data(lane))

    @property
    def fitted(self) -> np.ndarray:
        """Whether each position has a result (its ``FitResult`` is not ``None``)."""
        return self._fitted.copy()

    def _column(self, per_table, fill, dtype=float):
        """One value (or row) per position: ``per_table(table, lanes)`` for each chunk's lanes."""
        out = None
        for lanes, table in zip(self._ids, self._tables):
            values = np.asarray(per_table(table, lanes))
            if out is None:
                out = np.full((len(self._lanes.n_obs),) + values.shape[1:], fill, dtype=dtype)
            out[lanes] = values
        column = np.full((len(self),) + out.shape[1:], fill, dtype=dtype)
        column[self._fitted] = out[self._index[self._fitted]]
        return column

    @property
    def criterion(self) -> np.ndarray:
        return self._column(lambda table, _: 2.0 * table.nll, np.nan)

    @property
    def converged(self) -> np.ndarray:
        return self._column(lambda table, lanes: table.converged(self._lanes.n_subjects[lanes]), False, bool)

    @property
    def singular(self) -> np.ndarray:
        return self._column(lambda table, _: table.singular, False, bool)

    @property
    def beta(self) -> np.ndarray:
        return self._column(lambda table, _: table.out.inference.beta, np.nan)

    def json_lines(self, extra=None) -> list[str]:
        """Each position's :meth:`FitResult.to_dict` as one line of JSON (the same text as
        ``json.dumps``), with ``extra[k]`` (a dict) added; an unfitted position is
        ``{"error": "not fitted (see warnings)"}`` with ``extra[k]``."""
        lines = [None] * len(self)
        lane_lines = {}
        for lanes, table in zip(self._ids, self._tables):
            lane_lines.update(zip(lanes.tolist(), _table_json(table, self._lanes, lanes)))
        for k in range(len(self)):
            tail = "" if not extra or not extra[k] else ", " + json.dumps(extra[k])[1:-1]
            lane = int(self._index[k])
            if self._fitted[k]:
                body = lane_lines[lane]
                lines[k] = body[:-1] + tail + "}"
            else:
                lines[k] = '{"error": "not fitted (see warnings)"' + tail + "}"
        return lines


def _floats(a, null: bool = False) -> list:
    """JSON text of each float of ``a`` (``[lanes, ...]``), per lane, as ``json.dumps``
    writes it; nested like ``a[j].tolist()``. ``null``: non-finite values as ``null``."""
    a = np.asarray(a, dtype=float)
    flat = a.reshape(len(a), -1)
    if np.isfinite(flat).all():
        text = [list(map(float.__repr__, row)) for row in flat.tolist()]
    else:
        one = (lambda v: float.__repr__(v) if np.isfinite(v) else "null") if null else json.dumps
        text = [[one(v) for v in row] for row in flat.tolist()]
    shape = a.shape[1:]
    if not shape:
        return [row[0] for row in text]
    if len(shape) == 1:
        return ["[" + ", ".join(row) + "]" for row in text]
    width = int(np.prod(shape[1:]))
    return ["[" + ", ".join("[" + ", ".join(row[i:i + width]) + "]" for i in range(0, len(row), width)) + "]"
            for row in text]


def _bools(a) -> list:
    return ["true" if v else "false" for v in np.asarray(a, bool).tolist()]


def _table_json(table: LaneTable, lanes_info, lanes) -> list:
    """:meth:`FitResult.to_dict` of every lane of ``table`` as JSON text, from its arrays."""
    inf, opt = table.out.inference, table.out.opt
    n = len(table)
    first = lanes_info.model(int(lanes[0]))
    head = json.dumps({"method": "REML" if table.fs.spec.reml else "ML", "family": first.family})[:-1]
    formulas = [json.dumps(lanes_info.model(int(i)).formula) for i in lanes] if lanes_info.formula_varies \
        else [json.dumps(first.formula)] * n
    n_sub = np.asarray(lanes_info.n_subjects)[lanes]
    n_obs = np.asarray(lanes_info.n_obs)[lanes]
    nll = np.asarray(opt.f, dtype=float)
    fixed = '"fixed": {"names": ' + json.dumps(list(first.beta_names)) + ', "estimate": '
    cov = inf.beta_cov_full if full_vcov_default(first.family) else inf.beta_cov   # FitResult.beta_se's
    beta, se = _floats(inf.beta), _floats(np.sqrt(np.diagonal(cov, axis1=1, axis2=2)), null=True)
    random = _random_json(inf.report.get("G"), first) if "G" in inf.report else ["null"] * n
    sigma = _floats(inf.report["sigma"]) if "sigma" in inf.report else ["null"] * n
    df = _floats(inf.report["df"]) if "df" in inf.report else ["null"] * n
    converged, singular = _bools(table.converged(n_sub)), _bools(table.singular)
    compile_s = _floats(np.where(np.arange(n) == 0, table.t_compile, 0.0))
    fit_s = float.__repr__(float(table.t_fit))
    scaled = _floats(table.scaled_grad, null=True)
    out = []
    for j, (crit, loglik, grad, its) in enumerate(zip(_floats(2.0 * nll), _floats(-nll), _floats(table.grad),
                                                      np.asarray(opt.iterations).tolist())):
        out.append(f'{head}, "formula": {formulas[j]}, "n_obs": {int(n_obs[j])}, "n_groups": {int(n_sub[j])}, '
                   f'"criterion": {crit}, "loglik": {loglik}, {fixed}{beta[j]}, "se": {se[j]}}}, '
                   f'"random": {random[j]}, "sigma": {sigma[j]}, "df": {df[j]}, "converged": {converged[j]}, '
                   f'"singular": {singular[j]}, "max_abs_grad": {grad}, "scaled_grad": {scaled[j]}, "iterations": {its}, '
                   f'"time_s": {{"compile": {compile_s[j]}, "fit": {fit_s}}}}}')
    return out


def _random_json(G, model) -> list:
    """The ``random`` entry of :meth:`FitResult.to_dict` for every lane's ``G``."""
    G = np.asarray(G, dtype=float)
    sd, corr = sd_corr(G)
    head = json.dumps({"group": model.group, "names": list(model.random_names)})[:-1]
    return [f'{head}, "cov": {c}, "sd": {s}, "corr": {r}}}' for c, s, r in zip(_floats(G), _floats(sd), _floats(corr))]
