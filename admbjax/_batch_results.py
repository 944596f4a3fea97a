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
from ._results import LaneTable, full_vcov_default, record
from ._varcorr import random_record


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


def _table_json(table: LaneTable, lanes_info, lanes) -> list:
    """:meth:`FitResult.to_dict` of every lane of ``table`` as JSON text: the same
    ``_results.record``, from the table's arrays (read once for all lanes, not per result)."""
    inf, opt = table.out.inference, table.out.opt
    n = len(table)
    first = lanes_info.model(int(lanes[0]))
    method = "REML" if table.fs.spec.reml else "ML"
    formulas = [lanes_info.model(int(i)).formula for i in lanes] if lanes_info.formula_varies else [first.formula] * n
    n_sub = np.asarray(lanes_info.n_subjects)[lanes].tolist()
    n_obs = np.asarray(lanes_info.n_obs)[lanes].tolist()
    cov = inf.beta_cov_full if full_vcov_default(first.family) else inf.beta_cov   # FitResult.beta_se's
    beta, se = np.asarray(inf.beta, float).tolist(), np.sqrt(np.diagonal(cov, axis1=1, axis2=2)).tolist()
    G = np.asarray(inf.report["G"], float) if "G" in inf.report else None
    random = [[]] * n if G is None else [random_record(first.random_terms, g) for g in G]
    column = lambda key: np.asarray(inf.report[key], float).tolist() if key in inf.report else [None] * n
    sigma, df = column("sigma"), column("df")
    converged, singular = np.asarray(table.converged(n_sub), bool).tolist(), np.asarray(table.singular, bool).tolist()
    nll, grad = np.asarray(opt.f, float).tolist(), np.asarray(table.grad, float).tolist()
    scaled, iterations = np.asarray(table.scaled_grad, float).tolist(), np.asarray(opt.iterations).tolist()
    fit_s = float(table.t_fit)
    return [json.dumps(record(method, first.family, formulas[j], n_obs[j], n_sub[j], nll[j], first.beta_names,
                              beta[j], se[j], random[j], sigma[j], df[j], converged[j], singular[j], grad[j],
                              scaled[j], iterations[j], table.t_compile if j == 0 else 0.0, fit_s))
            for j in range(n)]
