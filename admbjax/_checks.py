"""Checks of a user's model against the data, run before anything large is compiled.

They turn the usual failures of a hand-written nll into errors that name the argument and
the subjects: a non-scalar result, a function that fails on the data's shapes, values that
are not finite at the initial parameters, and an nll that counts padded observations.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ._data import GroupedData, _list
from ._model import Model


def _subject(data: GroupedData, i: int):
    return {k: v[i] for k, v in data.arrays.items()} | {"mask": data.mask[i]}


def check_output_shape(model: Model, data: GroupedData) -> None:
    """``nll`` must run on one subject's arrays and return a scalar."""
    u = jnp.zeros((model.n_random,))
    try:
        out = jax.eval_shape(model.nll, model.theta, model.beta, u, _subject(data, 0))
    except Exception as err:  # the user's code failed: say where, keep the cause
        raise TypeError(
            f"`nll(theta, beta, u, data)` failed on subject {data.ids[0]!r} "
            f"(u of length n_random={model.n_random}, data keys {sorted(_subject(data, 0))}): "
            f"{type(err).__name__}: {err}"
        ) from err
    if getattr(out, "shape", None) != ():
        raise TypeError(f"`nll` must return a scalar per subject; it returned shape {getattr(out, 'shape', type(out))}")


@functools.partial(jax.jit, static_argnums=0)
def _subject_values(nll, theta, beta, u, arrays, mask):
    return jax.vmap(lambda a, m: nll(theta, beta, u, dict(a, mask=m)))(arrays, mask)


def _values(model: Model, data: GroupedData, u) -> np.ndarray:
    """Each subject's nll at the initial values (compiled once per nll and shape)."""
    return np.asarray(_subject_values(model.nll, model.theta, model.beta, u, dict(data.arrays), data.mask))


def check_initial_values(model: Model, data: GroupedData) -> None:
    """``nll`` must be finite for every subject at the initial values (with ``u = 0``)."""
    f = _values(model, data, jnp.zeros((model.n_random,)))
    real = data.subject_mask > 0
    bad = [data.ids[i] for i in np.flatnonzero(~np.isfinite(f) & real)]
    if bad:
        raise ValueError(f"`nll` is not finite at the initial values for {len(bad)} subject(s): {_list(bad)}")


def check_padding(model: Model, data: GroupedData) -> None:
    """Padded observations must not change ``nll``: a silent wrong answer otherwise."""
    u = jnp.full((model.n_random,), 0.1)
    n_sub, n_max = data.shape
    f0 = _values(model, data, u)
    f1 = _values(model, data.padded(n_sub, n_max + 1), u)
    tol = 1e-10 * (1.0 + np.abs(f0))
    bad = [data.ids[i] for i in np.flatnonzero(np.abs(f1 - f0) > tol) if data.subject_mask[i] > 0]
    if bad:
        raise ValueError(
            "`nll` changes when padded (masked) rows are added, so subjects of different sizes "
            f"would get wrong answers (subjects {_list(bad)}): weight every per-observation term "
            "by data['mask'], e.g. `jnp.sum(data['mask'] * logpdf)`"
        )


def check_model_on_data(model: Model, data: GroupedData) -> None:
    """All checks of ``model`` against ``data``. The formula front end's own functions (those
    with an ``admbjax_key``) pass them by construction and are not checked again: each
    check compiles small programs, which a fresh process would wait for. A start where their
    nll is not finite is still caught, inside the fit, naming the subjects."""
    if hasattr(model.nll, "admbjax_key"):
        return
    check_output_shape(model, data)
    check_initial_values(model, data)
    check_padding(model, data)
