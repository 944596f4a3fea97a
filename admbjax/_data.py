"""Grouped data: ragged subjects packed into padded arrays with a mask.

All input validation of the data lives here, before anything is traced.
Padded observations are zero in every array and zero in ``mask``; padded subjects (added to
reach a size bucket) have ``subject_mask`` zero and contribute nothing to any likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from ._scope import scoped

RESERVED = ("mask",)


@dataclass(frozen=True, eq=False)
class GroupedData:
    """Per-subject data, padded to ``[n_subjects, n_max, ...]``.

    Attributes:
      arrays: name -> float64 array ``[n_subjects, n_max, ...]``; padded entries are zero.
      mask: ``[n_subjects, n_max]``, 1.0 for an observation, 0.0 for padding.
      subject_mask: ``[n_subjects]``, 1.0 for a real subject, 0.0 for a padded one.
      ids: the subject ids of the real subjects, in the order of the leading axis.
      rows: ``[n_subjects, n_max]`` row of the input each entry came from, -1 for padding.
      observations: the number of observations the rows stand for, when a row summarises
        several (sufficient statistics); ``None``: one observation per row.
      index: name -> int32 ``[n_subjects, n_max]``, for each row the subject's *local slot*
        of the global random effect it indexes (``group_data``'s ``global_index``); padded
        rows point at slot 0.
      local: int32 ``[n_subjects, L]``, the global random effect (0-based, into ``v``) held
        in each local slot, -1 for an unused slot; ``L`` is the most any subject touches.
      n_global: the number of global random effects ``v`` the indices point into.
      shared: name -> array that belongs to no one subject (summaries over all of them, such
        as the closed form's border statistics; ``_formula_nll.crossed_totals``).
    """

    arrays: Mapping[str, np.ndarray]
    mask: np.ndarray
    subject_mask: np.ndarray
    ids: tuple
    rows: np.ndarray
    observations: int | None = None
    index: Mapping[str, np.ndarray] = field(default_factory=dict)
    local: np.ndarray | None = None
    n_global: int = 0
    shared: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_subjects(self) -> int:
        """Number of real subjects (padded ones excluded)."""
        return len(self.ids)

    @property
    def n_obs(self) -> int:
        """Number of real observations."""
        return int(self.mask.sum()) if self.observations is None else self.observations

    @property
    def shape(self) -> tuple[int, int]:
        """``(subjects incl. padding, observations per subject incl. padding)``."""
        return self.mask.shape

    def tree(self) -> dict[str, Any]:
        """The arrays the compiled objective consumes: a pytree of numpy arrays (with
        ``"index"`` and ``"local"`` where the data index global random effects, and
        ``"shared"`` where there are :attr:`shared` arrays)."""
        tree = {"arrays": dict(self.arrays), "mask": self.mask, "subject_mask": self.subject_mask}
        if self.local is not None:
            tree.update(index=dict(self.index), local=self.local)
        if self.shared:
            tree["shared"] = dict(self.shared)
        return tree

    def padded(self, n_subjects: int | None = None, n_max: int | None = None) -> "GroupedData":
        """The same data padded further, to ``n_subjects`` subjects of ``n_max`` rows.

        Padding never changes any likelihood; it lets datasets of similar size share one
        compiled program.
        """
        n0, m0 = self.shape
        n1 = n0 if n_subjects is None else int(n_subjects)
        m1 = m0 if n_max is None else int(n_max)
        if n1 < n0 or m1 < m0:
            raise ValueError(f"cannot pad data of shape {(n0, m0)} down to {(n1, m1)}")
        if (n1, m1) == (n0, m0):
            return self

        def pad(a, fill=0.0):
            widths = [(0, n1 - n0), (0, m1 - m0)] + [(0, 0)] * (a.ndim - 2)
            return np.pad(a, widths, constant_values=fill)

        return replace(
            self,
            arrays={k: pad(v) for k, v in self.arrays.items()},
            mask=pad(self.mask),
            subject_mask=np.pad(self.subject_mask, (0, n1 - n0)),
            rows=pad(self.rows, -1),
            index={k: pad(v, 0) for k, v in self.index.items()},
            local=None if self.local is None else np.pad(self.local, [(0, n1 - n0), (0, 0)], constant_values=-1),
        )


def _as_float_array(name: str, value) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`arrays[{name!r}]` is not numeric: {err}") from None
    if a.ndim == 0:
        raise ValueError(f"`arrays[{name!r}]` is a scalar; give one value (or row) per observation")
    return a


def _list(items, limit: int = 10) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _check_finite(name: str, a: np.ndarray) -> None:
    bad = ~np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"`arrays[{name!r}]` has NaN or inf in {len(rows)} row(s) (0-based): {_list(rows)}"
        )


def _group_codes(groups, n_rows: int, levels):
    g = np.asarray(groups, dtype=object)
    if g.ndim != 1 or len(g) != n_rows:
        raise ValueError(f"`groups` has shape {g.shape}; expected one id per observation ({n_rows})")
    missing = np.array([x is None or (isinstance(x, float) and np.isnan(x)) for x in g], dtype=bool)
    if missing.any():
        raise ValueError(f"`groups` is missing for {missing.sum()} row(s) (0-based): {_list(np.flatnonzero(missing))}")
    if levels is None:
        ids, codes = np.unique(g.astype(str) if _mixed(g) else g, return_inverse=True)
        return tuple(ids.tolist()), codes
    levels = list(levels)
    index = {lev: i for i, lev in enumerate(levels)}
    unknown = [x for x in dict.fromkeys(g.tolist()) if x not in index]
    if unknown:
        raise ValueError(f"`groups` has ids not in `levels`: {_list(unknown)}")
    codes = np.array([index[x] for x in g.tolist()], dtype=np.int64)
    empty = [lev for lev, c in zip(levels, np.bincount(codes, minlength=len(levels))) if c == 0]
    if empty:
        raise ValueError(f"`data` has {len(empty)} subject(s) with no observations: {_list(empty)}")
    return tuple(levels), codes


def _mixed(g: np.ndarray) -> bool:
    return len({type(x) for x in g.tolist()}) > 1


def _global_codes(global_index, n_rows: int, n_global: int | None, names) -> tuple[dict, int]:
    """``(name -> int64 codes per row, n_global)``, checked: integers in ``[0, n_global)``."""
    if not isinstance(global_index, Mapping) or not global_index:
        raise TypeError("`global_index` must be a non-empty mapping of name -> per-observation index into v")
    clash = [k for k in global_index if k in names or k in RESERVED]
    if clash:
        raise ValueError(f"`global_index` names {clash} are also in `arrays` (or reserved): give them other names")
    codes = {}
    for k, v in global_index.items():
        a = np.asarray(v)
        if a.shape != (n_rows,):
            raise ValueError(f"`global_index[{k!r}]` has shape {a.shape}; expected one index per observation ({n_rows})")
        as_float = np.asarray(a, dtype=np.float64) if a.dtype.kind in "biuf" else None
        bad = np.ones(n_rows, bool) if as_float is None else ~(np.isfinite(as_float) & (as_float == np.round(as_float)))
        if bad.any():
            raise ValueError(f"`global_index[{k!r}]` must hold integers (0-based indices into v); rows (0-based) "
                             f"{_list(np.flatnonzero(bad))} do not")
        codes[k] = as_float.astype(np.int64)
    top = max(int(c.max()) for c in codes.values()) + 1
    n_global = top if n_global is None else int(n_global)
    for k, c in codes.items():
        out = np.flatnonzero((c < 0) | (c >= n_global))
        if len(out):
            raise ValueError(f"`global_index[{k!r}]` is outside [0, n_global = {n_global}) in rows (0-based) {_list(out)}")
    return codes, n_global


def _local_slots(codes: dict, subject: np.ndarray, n_sub: int, n_global: int):
    """``(name -> local slot per row, local [n_sub, L])``: each subject's distinct global
    effects, sorted, numbered 0..L_i - 1."""
    keys = subject[:, None] * n_global + np.stack(list(codes.values()), axis=1)     # [rows, r]
    uniq = np.unique(keys)
    subj, glob = uniq // n_global, uniq % n_global
    counts = np.bincount(subj, minlength=n_sub)
    slot = np.arange(len(uniq)) - np.concatenate([[0], np.cumsum(counts)[:-1]])[subj]
    local = np.full((n_sub, int(counts.max())), -1, dtype=np.int32)
    local[subj, slot] = glob
    row_slot = slot[np.searchsorted(uniq, keys)]
    return {k: row_slot[:, j] for j, k in enumerate(codes)}, local


@scoped
def group_data(arrays: Mapping[str, Any], groups, *, levels=None, observations: int | None = None,
               global_index: Mapping[str, Any] | None = None, n_global: int | None = None) -> GroupedData:
    """Pack per-observation arrays into per-subject padded arrays.

    Args:
      arrays: name -> array with one entry (or row) per observation, e.g. ``{"y": y,
        "X": X, "Z": Z}``. Every array must have the same length and be finite.
      groups: the subject id of each observation.
      levels: optional full list of subject ids (for example a categorical's categories);
        a level without observations is an error.
      observations: how many observations the rows stand for, if not one each (rows of
        per-subject sufficient statistics).
      global_index: optional name -> integer array, for each observation the 0-based index
        into the model's global random effects ``v`` (shared by subjects: crossed factors such
        as items or sites). The subject's nll receives the subject's own slice of ``v`` and
        ``data[name]`` indexing into it, so that ``v[data[name]]`` is each row's effect, as if
        ``v`` were whole (a subject's derivatives touch only the effects in its rows).
      n_global: the length of ``v`` (default: the largest index plus one).

    Returns:
      A :class:`GroupedData`, subjects sorted by id (or in the order of ``levels``), rows
      within a subject in input order.
    """
    if not isinstance(arrays, Mapping) or not arrays:
        raise TypeError("`arrays` must be a non-empty mapping of name -> per-observation array")
    clash = [k for k in arrays if k in RESERVED]
    if clash:
        raise ValueError(f"`arrays` may not use the reserved name(s) {clash}: the mask is added for you")
    data = {k: _as_float_array(k, v) for k, v in arrays.items()}
    lengths = {k: v.shape[0] for k, v in data.items()}
    n_rows = len(groups) if hasattr(groups, "__len__") else None
    if len(set(lengths.values()) | {n_rows}) != 1:
        raise ValueError(f"`arrays` and `groups` have mismatched lengths: {dict(lengths, groups=n_rows)}")
    if n_rows == 0:
        raise ValueError("`arrays` has no observations")
    for k, v in data.items():
        _check_finite(k, v)
    ids, codes = _group_codes(groups, n_rows, levels)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=len(ids))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(n_rows) - starts[codes[order]]
    n_sub, n_max = len(ids), int(counts.max())
    rows = np.full((n_sub, n_max), -1, dtype=np.int64)
    rows[codes[order], slot] = order
    mask = (rows >= 0).astype(np.float64)
    def pack(v, dtype=np.float64):
        out = np.zeros((n_sub, n_max) + v.shape[1:], dtype=dtype)
        out[codes[order], slot] = v[order]
        return out

    packed = {k: pack(v) for k, v in data.items()}
    if global_index is None:
        return GroupedData(packed, mask, np.ones(n_sub), ids, rows, observations)
    g_codes, m = _global_codes(global_index, n_rows, n_global, data)
    row_slot, local = _local_slots(g_codes, codes, n_sub, m)
    index = {k: pack(v, np.int32) for k, v in row_slot.items()}
    return GroupedData(packed, mask, np.ones(n_sub), ids, rows, observations, index, local, m)
