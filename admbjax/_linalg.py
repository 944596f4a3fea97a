"""Small dense linear algebra: elementwise for many small blocks, LAPACK for one matrix.

The per-subject blocks (q x q, a leading axis of N subjects) are tiny. Batched LAPACK calls
over many subjects were measured to deadlock on 2-core CPUs for N >= ~20,000 and to be ~3x
slower than plain elementwise code, so for them the Cholesky factorisation and the
triangular solves are written out over the (static) matrix size and act elementwise over
the leading axes. A single larger matrix (the p x p Schur complement, the outer Hessian of
many parameters) goes to LAPACK: written out, its k^3/6 scalar operations (k^3 for an
inverse) make programs whose compile time grows with the cube of the number of fixed effects.

A failed factorisation (a pivot that is not positive) is reported through the ``ok`` flag
instead of raising, so compiled code can turn it into a result code.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: Blocks with leading (batch) axes up to this size are factorised and solved elementwise,
#: and so are single matrices up to :data:`UNROLL_SINGLE_MAX`; anything larger by LAPACK.
UNROLL_MAX = 12
#: A single matrix this small (the outer Hessian of a few variance parameters) costs a few
#: dozen scalar operations written out, and gives the same rounding in a fit alone and in a
#: batch, where the lanes' matrices are vmapped.
UNROLL_SINGLE_MAX = 3


def _unrolled(a) -> bool:
    """Whether ``a`` (``[..., k, k]``) is factorised elementwise."""
    k = a.shape[-1]
    return k <= UNROLL_SINGLE_MAX or (a.ndim > 2 and k <= UNROLL_MAX)


def cholesky(a):
    """Lower Cholesky factor ``L`` of ``a`` (``[..., k, k]``) and a flag ``ok`` (``[...]``).

    ``ok`` is False where a pivot is not positive (``a`` is not numerically positive
    definite); ``L`` is then finite but meaningless there.
    """
    k = a.shape[-1]
    if not _unrolled(a):
        chol = jnp.linalg.cholesky(a)
        ok = jnp.all(jnp.isfinite(chol), axis=(-2, -1))
        return jnp.where(ok[..., None, None], chol, jnp.eye(k, dtype=a.dtype)), ok
    tiny = jnp.finfo(a.dtype).tiny
    cols = [[None] * k for _ in range(k)]
    ok = jnp.ones(a.shape[:-2], dtype=bool)
    for j in range(k):
        pivot = a[..., j, j] - sum((cols[j][m] ** 2 for m in range(j)), jnp.zeros_like(a[..., 0, 0]))
        good = (pivot > tiny) & jnp.isfinite(pivot)
        ok = ok & good
        d = jnp.sqrt(jnp.where(good, pivot, 1.0))
        cols[j][j] = d
        for i in range(j + 1, k):
            s = a[..., i, j] - sum((cols[i][m] * cols[j][m] for m in range(j)), jnp.zeros_like(d))
            cols[i][j] = s / d
    zero = jnp.zeros_like(a[..., 0, 0])
    rows = [jnp.stack([cols[i][j] if j <= i else zero for j in range(k)], axis=-1) for i in range(k)]
    return jnp.stack(rows, axis=-2), ok


def solve_lower(chol, rhs):
    """Solve ``L x = rhs`` for lower-triangular ``L`` (``[..., k, k]``), ``rhs`` ``[..., k, m]``."""
    k = chol.shape[-1]
    if not _unrolled(chol):
        return jax.lax.linalg.triangular_solve(_broadcast(chol, rhs), rhs, left_side=True, lower=True)
    xs = []
    for i in range(k):
        s = rhs[..., i, :]
        for m in range(i):
            s = s - chol[..., i, m, None] * xs[m]
        xs.append(s / chol[..., i, i, None])
    return jnp.stack(xs, axis=-2)


def solve_upper_t(chol, rhs):
    """Solve ``L' x = rhs`` for lower-triangular ``L`` (``[..., k, k]``), ``rhs`` ``[..., k, m]``."""
    k = chol.shape[-1]
    if not _unrolled(chol):
        return jax.lax.linalg.triangular_solve(_broadcast(chol, rhs), rhs, left_side=True, lower=True,
                                               transpose_a=True)
    xs = [None] * k
    for i in reversed(range(k)):
        s = rhs[..., i, :]
        for m in range(i + 1, k):
            s = s - chol[..., m, i, None] * xs[m]
        xs[i] = s / chol[..., i, i, None]
    return jnp.stack(xs, axis=-2)


def _broadcast(chol, rhs):
    """``chol`` with the leading axes of ``rhs`` (LAPACK's solve takes no broadcasting)."""
    return jnp.broadcast_to(chol, rhs.shape[:-2] + chol.shape[-2:])


def cho_solve(chol, rhs):
    """Solve ``A x = rhs`` given ``L`` with ``A = L L'``; ``rhs`` is ``[..., k]`` or ``[..., k, m]``."""
    vector = rhs.ndim == chol.ndim - 1
    r = rhs[..., None] if vector else rhs
    x = solve_upper_t(chol, solve_lower(chol, r))
    return x[..., 0] if vector else x


def gershgorin_shift(a):
    """``[...]``: a ``lam >= 0`` that makes each ``a + lam I`` (``[..., k, k]``, symmetric)
    positive semi-definite, by Gershgorin's circle theorem: every eigenvalue is at least
    ``min_i (a_ii - sum_{j != i} |a_ij|)``."""
    diag = jnp.diagonal(a, axis1=-2, axis2=-1)
    off = jnp.sum(jnp.abs(a), axis=-1) - jnp.abs(diag)
    return jnp.maximum(jnp.max(off - diag, axis=-1), 0.0)


def logdet_from_cholesky(chol):
    """``log det A`` from the Cholesky factor of ``A``."""
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)


@jax.custom_jvp
def logdet_quad(a, y):
    """``(log det A, y'A^{-1}y)`` for a symmetric positive definite ``A`` (``[k, k]``), with
    derivatives in closed form (``d log det A = tr(A^{-1} dA)``, ``d y'A^{-1}y = 2 z'dy -
    z'dA z`` with ``z = A^{-1}y``): reverse mode then costs one inverse, where differentiating
    through the factorisation of a large ``A`` costs several times more. Where ``A`` is not
    positive definite both values are NaN (their derivatives finite, and meaningless). Not
    batched: ``A`` is one matrix (``vmap`` maps it)."""
    chol, ok = cholesky(a)
    nan = jnp.where(ok, 0.0, jnp.nan)
    return logdet_from_cholesky(chol) + nan, jnp.dot(y, cho_solve(chol, y)) + nan


@logdet_quad.defjvp
def _logdet_quad_jvp(primals, tangents):
    a, y = primals
    da, dy = tangents
    chol, ok = cholesky(a)
    nan = jnp.where(ok, 0.0, jnp.nan)
    inv = cho_solve(chol, jnp.eye(a.shape[-1], dtype=a.dtype))
    z = inv @ y
    out = (logdet_from_cholesky(chol) + nan, jnp.dot(y, z) + nan)
    return out, (jnp.sum(inv * da), 2.0 * jnp.dot(z, dy) - z @ da @ z)
