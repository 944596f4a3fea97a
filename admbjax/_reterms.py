"""The random-effect terms of a formula on data (lme4's ``reTrms``), and the subject they
are fitted by.

A term is ``(expr | f)``: ``k`` effects (the columns of ``expr``'s model matrix) for each
level of the grouping factor ``f``, which is one column or an interaction of several
(``a:b``: the combinations that occur, labelled ``"a1:b1"``, ordered with the first column
slowest, as R's ``:``). Terms are in lme4's order (:func:`lme4_order`).

The engine integrates one *subject* at a time (``admbjax._laplace``). One grouping factor
is chosen as the subject; a factor nested in it (each of its levels within one subject)
is *local*: its effects join the subject's ``u``, one slot per level the subject holds.
Any other factor (crossed with the subject) is *global*: its effects are the shared ``v``,
which the Laplace approximation integrates through the arrowhead border. The subject is
the factor that leaves the cheapest problem (:func:`choose_subject`): with no global
effects where one factor nests the others, else the factor with the most levels, as
MixedModels.jl orders its factors (Bates, MixedModels.jl, ``linearmixedmodel.jl``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._lambda import RandomLayout, TermLayout


@dataclass(frozen=True, eq=False)
class Factor:
    """A grouping factor: lme4's ``name`` (``"cask:batch"``), each row's level (0-based
    ``codes``) and the ``levels``' labels."""

    name: str
    codes: np.ndarray
    levels: tuple

    @property
    def n_levels(self) -> int:
        return len(self.levels)


@dataclass(frozen=True, eq=False)
class Term:
    """A random-effect term: ``Z`` (``[rows, k]``, columns ``names``) for each level of
    ``factor``, correlated within the level (a ``||`` term is split into one term per
    effect before it gets here, as lme4 splits it)."""

    factor: Factor
    names: tuple
    Z: np.ndarray

    @property
    def blocks(self) -> tuple:
        return (len(self.names),)


def interaction(frame: pd.DataFrame, columns: tuple, name: str) -> Factor:
    """The factor of the combinations of ``columns`` (categoricals of ``frame``) that occur,
    ordered as R's ``a:b`` (first column slowest), unused combinations dropped."""
    codes = [np.asarray(frame[c].cat.codes, dtype=np.int64) for c in columns]
    cats = [list(frame[c].cat.categories) for c in columns]
    key = np.zeros(len(frame), dtype=np.int64)
    for c, n in zip(codes, cats):
        key = key * len(n) + c
    uniq, inverse = np.unique(key, return_inverse=True)
    labels = []
    for u in uniq:
        parts = []
        for n in reversed(cats):
            u, r = divmod(int(u), len(n))
            parts.append(str(n[r]))
        labels.append(":".join(reversed(parts)))
    return Factor(name, inverse.astype(np.int64), tuple(labels))


def nested_in(inner: Factor, outer: Factor) -> bool:
    """Whether every level of ``inner`` occurs within one level of ``outer``."""
    pairs = np.unique(inner.codes * outer.n_levels + outer.codes)
    return len(pairs) == inner.n_levels


def lme4_order(terms: list) -> list:
    """``terms`` in lme4's order (``mkReTrms``): as written where their numbers of levels
    never increase, else ``rev(order(nl))``, most levels first with ties reversed."""
    nl = [t.factor.n_levels for t in terms]
    if all(a >= b for a, b in zip(nl, nl[1:])):
        return list(terms)
    return [terms[i] for i in reversed(np.argsort(nl, kind="stable"))]


def factors_of(terms) -> list:
    """The distinct grouping factors of ``terms``, in order of first use."""
    out = {}
    for t in terms:
        out.setdefault(t.factor.name, t.factor)
    return list(out.values())


def slots_within(factor: Factor, subject: Factor) -> tuple[np.ndarray, int]:
    """``(slot of each row, most slots)``: each row's level of ``factor`` numbered within
    its subject (0, 1, ... in level order), for a ``factor`` nested in ``subject``."""
    level_subject = np.zeros(factor.n_levels, dtype=np.int64)
    level_subject[factor.codes] = subject.codes
    order = np.lexsort((np.arange(factor.n_levels), level_subject))
    counts = np.bincount(level_subject, minlength=subject.n_levels)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.empty(factor.n_levels, dtype=np.int64)
    slot[order] = np.arange(factor.n_levels) - starts[level_subject[order]]
    return slot[factor.codes], int(counts.max())


#: The largest subject block (``u``'s length) for which a factor that nests every other is
#: the subject regardless of cost: beyond it, many nested levels per subject make the dense
#: per-subject Hessians dearer than a border.
MAX_NESTED_Q = 256


def _sizes(terms, subject: Factor) -> tuple[int, int, int]:
    """``(q, border, touched)`` with ``subject`` as subject: the length of its ``u``, the
    number of global effects, and the most global effects one subject touches."""
    q, border, touched = 0, 0, 0
    for t in terms:
        k = len(t.names)
        if t.factor is subject or nested_in(t.factor, subject):
            q += k * slots_within(t.factor, subject)[1]
        else:
            border += k * t.factor.n_levels
            pairs = np.unique(subject.codes * t.factor.n_levels + t.factor.codes)
            touched += k * int(np.bincount(pairs // t.factor.n_levels).max())
    return q, border, touched


def _cost(sizes: tuple, subject: Factor, n_rows: int, n_fixed: int) -> float:
    """Floating-point work of a Laplace step with ``subject`` as subject (``sizes``: its
    :func:`_sizes`): per subject Hessians of width ``d`` (its ``u``, the global effects it
    touches and ``beta``) and their factorisations, and the factorisation of the border."""
    q, border, touched = sizes
    d = q + touched + n_fixed
    return n_rows * d + subject.n_levels * d ** 3 + border ** 3 / 3.0


#: A factor that nests every other is the subject unless another is this many times cheaper
#: (:func:`_cost`): lme4's grouseticks, ``(1 | BROOD) + (1 | INDEX) + (1 | LOCATION)`` with one
#: INDEX level per row, nests all in LOCATION with up to 32 effects per subject, where BROOD as
#: the subject (INDEX nested in it, LOCATION global) costs a sixth as much.
NESTED_COST_RATIO = 4.0


def choose_subject(terms, n_rows: int, n_fixed: int) -> Factor:
    """The grouping factor to fit by (see the module's docstring): one that nests every
    other (no global effects: separable) where its block is at most :data:`MAX_NESTED_Q`
    and no factor is :data:`NESTED_COST_RATIO` times cheaper by :func:`_cost`; else the
    cheapest; ties to the factor with more levels."""
    factors = factors_of(terms)
    sizes = {f.name: _sizes(terms, f) for f in factors}
    key = lambda f: (_cost(sizes[f.name], f, n_rows, n_fixed), -f.n_levels)
    cheapest = min(factors, key=key)
    nesting = [f for f in factors if sizes[f.name][1] == 0 and sizes[f.name][0] <= MAX_NESTED_Q]
    if nesting and key(min(nesting, key=key))[0] <= NESTED_COST_RATIO * key(cheapest)[0]:
        return min(nesting, key=key)
    return cheapest


@dataclass(frozen=True, eq=False)
class Structure:
    """The terms (lme4's order) arranged for the engine around ``subject``.

    ``layout``: the terms' :class:`RandomLayout` (local terms with their slots, global ones).
    ``Z``: ``[rows, q]``, each row's local design, the columns of a local term's slot
    holding its ``Z`` (zero elsewhere), so that ``Z @ b`` is the local part of ``eta``.
    ``u_names``: labels of ``u``'s components. For each global term ``j`` (in order),
    ``global_index["v{j}_{e}"]`` is each row's index into ``v`` of its level's effect ``e``
    and ``global_Z["Zg{j}"]`` its design (``[rows, k]``); ``v`` holds the global terms'
    effects level by level (``global_names``).
    """

    terms: tuple
    subject: Factor
    layout: RandomLayout
    Z: np.ndarray
    u_names: tuple
    global_index: dict
    global_Z: dict
    global_names: tuple

    @property
    def n_global(self) -> int:
        return len(self.global_names)

    @property
    def factors(self) -> list:
        return factors_of(self.terms)

    def term_names(self) -> tuple:
        """``(group, names)`` of each of lme4's terms (:attr:`Model.random_terms`; repeats of
        a group, as a split ``||`` term's, are named ``g``, ``g.1``, ... by ``random_record``)."""
        return tuple((t.factor.name, tuple(t.names)) for t in self.terms)


def structure(terms: list, n_fixed: int) -> Structure:
    """The :class:`Structure` of ``terms`` (any order): lme4's order, the subject chosen."""
    terms = lme4_order(terms)
    n_rows = len(terms[0].factor.codes)
    subject = choose_subject(terms, n_rows, n_fixed)
    layouts, local_Z, u_names = [], [], []
    g_index, g_Z, g_names, offset = {}, {}, [], 0
    for t in terms:
        k = len(t.names)
        if t.factor is subject or nested_in(t.factor, subject):
            slot, slots = (np.zeros(n_rows, np.int64), 1) if t.factor is subject else slots_within(t.factor, subject)
            wide = np.zeros((n_rows, slots * k))
            for e in range(k):
                wide[np.arange(n_rows), slot * k + e] = t.Z[:, e]
            local_Z.append(wide)
            u_names += (list(t.names) if t.factor is subject
                        else [f"{n}|{t.factor.name}[{s}]" for s in range(slots) for n in t.names])
            layouts.append(TermLayout(t.blocks, slots))
        else:
            j = len(g_Z)
            for e in range(k):
                g_index[f"v{j}_{e}"] = offset + t.factor.codes * k + e
            g_Z[f"Zg{j}"] = t.Z
            g_names += [f"{n}|{t.factor.name}:{lev}" for lev in t.factor.levels for n in t.names]
            offset += k * t.factor.n_levels
            layouts.append(TermLayout(t.blocks, 0))
    return Structure(tuple(terms), subject, RandomLayout(tuple(layouts)), np.concatenate(local_Z, axis=1),
                     tuple(u_names), g_index, g_Z, tuple(g_names))
