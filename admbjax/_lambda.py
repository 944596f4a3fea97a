"""Lambda, lme4's relative covariance factor, over the random-effect terms of a formula.

Each random-effect term ``t`` (one grouping factor, ``k_t`` effects per level) has a lower
triangular block ``Lambda_t`` (``k_t x k_t``; an uncorrelated ``||`` term is diagonal, one
``1 x 1`` block per effect). Its free entries are ``theta["lambda"][offset_t:offset_t + n_t]``,
column by column down the lower triangle, as lme4's ``theta``, terms in order. A level's
random effects are ``b = s Lambda_t u`` with ``u ~ N(0, I)`` (``s = sigma`` for families with
a scale), so ``G_t = s^2 Lambda_t Lambda_t'`` (Bates et al. 2015, J. Stat. Softw. 67(1),
section 2.2).

Terms are *local* or *global* (:class:`TermLayout`). A subject's vector ``u`` holds the
local terms' effects: for each, ``slots`` copies, one per level of the term within the
subject (the subject's own factor has one; a factor nested in it as many as a subject holds
at most), level by level. So the subject's ``Lambda`` is block diagonal with each
``Lambda_t`` repeated ``slots`` times, the copies sharing their parameters. A global
term's effects are in ``v``, level by level, and ``Lambda_t`` applies to each level's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np


def lambda_index(blocks: tuple):
    """Row and column indices of the free entries of the block lower-triangular ``Lambda``
    with diagonal blocks of sizes ``blocks``, and whether each is on the diagonal."""
    rows, cols, diag, start = [], [], [], 0
    for k in blocks:
        for j in range(k):
            for i in range(j, k):
                rows.append(start + i)
                cols.append(start + j)
                diag.append(i == j)
        start += k
    return tuple(rows), tuple(cols), np.array(diag, dtype=bool)


@dataclass(frozen=True)
class TermLayout:
    """One term: ``blocks``, the sizes of its correlated blocks (``(k,)``, or ``(1,) * k``
    for ``||``); ``slots``, its levels per subject (local) or 0 (global: in ``v``)."""

    blocks: tuple
    slots: int = 1

    @property
    def k(self) -> int:
        return int(sum(self.blocks))

    @property
    def n_free(self) -> int:
        return int(sum(b * (b + 1) // 2 for b in self.blocks))

    @property
    def is_global(self) -> bool:
        return self.slots == 0


@dataclass(frozen=True)
class RandomLayout:
    """The terms of ``Lambda``, in order (hashable: fits of one layout share programs)."""

    terms: tuple

    @classmethod
    def single(cls, blocks: tuple) -> "RandomLayout":
        """One grouping factor, the subject, with blocks ``blocks``."""
        return cls((TermLayout(tuple(int(b) for b in blocks), 1),))

    @property
    def blocks(self) -> tuple:
        """Every term's blocks, in order: the blocks of ``G`` (all terms, one level each)."""
        return tuple(b for t in self.terms for b in t.blocks)

    @property
    def K(self) -> int:
        """The size of ``G``: one level of every term."""
        return sum(t.k for t in self.terms)

    @property
    def q(self) -> int:
        """The length of a subject's ``u``."""
        return sum(t.k * t.slots for t in self.terms)

    @property
    def local(self) -> tuple:
        return tuple(i for i, t in enumerate(self.terms) if not t.is_global)

    @property
    def global_terms(self) -> tuple:
        return tuple(i for i, t in enumerate(self.terms) if t.is_global)

    @functools.cached_property
    def _free(self):
        """``(rows, cols, diag)`` of the free entries in the ``K x K`` block-diagonal ``Lambda``
        of one level of every term (:func:`lambda_index` of :attr:`blocks`)."""
        return lambda_index(self.blocks)

    @property
    def diag(self) -> np.ndarray:
        """Whether each free entry is on the diagonal."""
        return self._free[2]

    @property
    def columns(self) -> np.ndarray:
        """The column of ``G`` (``0..K-1``) of each free entry."""
        return np.asarray(self._free[1])

    @functools.cached_property
    def offsets(self) -> tuple:
        """``(start of theta, start of the columns of G)`` of each term."""
        out, f, c = [], 0, 0
        for t in self.terms:
            out.append((f, c))
            f, c = f + t.n_free, c + t.k
        return tuple(out)

    @functools.cached_property
    def local_columns(self) -> np.ndarray:
        """The column of ``G`` that each component of ``u`` (``[q]``) belongs to."""
        out = []
        for i in self.local:
            t, (_, c) = self.terms[i], self.offsets[i]
            out += list(range(c, c + t.k)) * t.slots
        return np.asarray(out, dtype=np.int64)

    @functools.cached_property
    def _place_local(self) -> np.ndarray:
        """``[q * q, n_free]``: 0/1, ``vec(Lambda_u) = place @ theta["lambda"]``, the subject's
        block-diagonal ``Lambda`` with each local term repeated ``slots`` times."""
        rows, cols, _ = self._free
        q = self.q
        place = np.zeros((q * q, len(rows)))
        start = 0
        for i in self.local:
            t, (f, c) = self.terms[i], self.offsets[i]
            for s in range(t.slots):
                base = start + s * t.k
                for j in range(f, f + t.n_free):
                    place[(base + rows[j] - c) * q + base + cols[j] - c, j] = 1.0
            start += t.k * t.slots
        return place

    def local_lambda(self, lam):
        """The subject's ``Lambda`` (``[q, q]``) from ``theta["lambda"]``: a constant 0/1
        placement matrix rather than a scatter, cheaper to differentiate four times."""
        return jnp.reshape(self._place_local @ lam, (self.q, self.q))

    def term_lambda(self, lam, i: int):
        """``Lambda_t`` of term ``i`` (``[k_t, k_t]``)."""
        t, (f, c) = self.terms[i], self.offsets[i]
        rows, cols, _ = self._free
        k = t.k
        place = np.zeros((k * k, t.n_free))
        for j in range(t.n_free):
            place[(rows[f + j] - c) * k + cols[f + j] - c, j] = 1.0
        return jnp.reshape(place @ lam[f:f + t.n_free], (k, k))

    def full_lambda(self, lam):
        """``[K, K]``: block diagonal, one level of every term (so ``G = s^2 L L'``)."""
        rows, cols, _ = self._free
        K = self.K
        place = np.zeros((K * K, len(rows)))
        place[np.asarray(rows) * K + np.asarray(cols), np.arange(len(rows))] = 1.0
        return jnp.reshape(place @ lam, (K, K))

    def pairs(self) -> tuple:
        """``(rows, cols)`` of the correlations within each block of ``G``, below the
        diagonal, block by block, in lme4's order ((2, 1), (3, 1), ..., (3, 2), ...)."""
        rows, cols, start = [], [], 0
        for k in self.blocks:
            for j in range(k):
                for i in range(j + 1, k):
                    rows.append(start + i)
                    cols.append(start + j)
            start += k
        return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)


@dataclass(frozen=True)
class LambdaMap:
    """``theta -> Lambda`` of a subject (local terms only), and back (``free``): the closed
    form of a Gaussian formula model (:class:`Model`'s ``closed_form``). Equal for equal
    layouts, so that fits of one structure share one compiled program.

    With global terms, ``n_levels`` holds each one's number of levels (in order) and
    :meth:`border_t` applies ``Lambda_b' = blockdiag(Lambda_g, I)'`` to the border of the
    arrowhead, the global effects ``v`` (each global term's ``Lambda_t`` per level, levels
    in order) followed by anything that is not scaled (``beta``).
    """

    layout: RandomLayout
    n_levels: tuple = ()

    def __call__(self, theta):
        return self.layout.local_lambda(theta["lambda"])

    @property
    def placed(self) -> np.ndarray:
        """Whether each free entry of ``theta["lambda"]`` is in the subject's ``Lambda``
        (a local term's); the global terms' are not."""
        return self.layout._place_local.sum(axis=0) > 0

    def free(self, L):
        """``theta["lambda"]`` from a subject's ``Lambda`` (``[..., q, q]``): each free
        entry the mean of its copies (a least-squares fit of the tied structure); 0 for the
        entries of global terms (:attr:`placed`)."""
        place = self.layout._place_local
        q = self.layout.q
        flat = jnp.reshape(L, L.shape[:-2] + (q * q,))
        return flat @ place / np.maximum(place.sum(axis=0), 1.0)

    @property
    def pattern(self) -> np.ndarray:
        """``[q, q]`` 1.0 where the blocks of ``Lambda Lambda'`` may be non-zero."""
        q = self.layout.q
        mask = (self.layout._place_local.sum(axis=1) > 0).reshape(q, q).astype(float)
        return ((mask + mask.T) > 0).astype(float)

    @property
    def n_global(self) -> int:
        """``m``, the number of global random effects."""
        return sum(self.layout.terms[i].k * n for i, n in zip(self.layout.global_terms, self.n_levels))

    def _global_blocks(self, theta):
        """``[(start, levels, Lambda_t)]`` of each global term's block of ``v``."""
        out, start = [], 0
        for i, n in zip(self.layout.global_terms, self.n_levels):
            k = self.layout.terms[i].k
            out.append((start, n, self.layout.term_lambda(theta["lambda"], i)))
            start += k * n
        return out

    def border_t(self, theta, M):
        """``Lambda_b' M`` for ``M`` of ``[P, ...]`` (``P >= m``): the rows of each global
        level's effects multiplied by ``Lambda_t'``, the rows past ``m`` left as they are."""
        parts, end = [], 0
        for start, n, lam in self._global_blocks(theta):
            k = lam.shape[0]
            block = jnp.reshape(M[start:start + n * k], (n, k) + M.shape[1:])
            parts.append(jnp.reshape(jnp.einsum("ec,ne...->nc...", lam, block), (n * k,) + M.shape[1:]))
            end = start + n * k
        return jnp.concatenate(parts + [M[end:]], axis=0) if parts else M

    def border(self, theta, w):
        """``Lambda_b w`` for a border vector ``w`` (``[P]``): each global level's effects
        multiplied by ``Lambda_t``."""
        parts, end = [], 0
        for start, n, lam in self._global_blocks(theta):
            k = lam.shape[0]
            parts.append(jnp.reshape(jnp.reshape(w[start:start + n * k], (n, k)) @ lam.T, (n * k,)))
            end = start + n * k
        return jnp.concatenate(parts + [w[end:]]) if parts else w
