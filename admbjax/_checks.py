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
    return {k: v[i] for k, v in {**data.arrays, **data.index}.items()} | {"mask": data.mask[i]}


def _call(model: Model):
    """``nll`` as ``f(theta, beta, u, data, v)``, whether the model has global effects or not."""
    return model.nll if model.n_global else _ignoring_v(model.nll)


@functools.lru_cache(maxsize=64)
def _ignoring_v(nll):
    """``nll(theta, beta, u, data)`` called as ``f(theta, beta, u, data, v)`` (one function per
    nll, so that its compiled checks are shared)."""
    return lambda theta, beta, u, d, v: nll(theta, beta, u, d)


def _local_v(data: GroupedData):
    """A local ``v`` of zeros (``[L]``; ``[0]`` without global effects)."""
    return jnp.zeros((0 if data.local is None else data.local.shape[1],))


def check_global_effects(model: Model, data: GroupedData) -> None:
    """A model with global effects needs data that index them, and the same number of them."""
    if model.n_global == data.n_global:
        return
    if not model.n_global:
        raise ValueError(f"`data` indexes {data.n_global} global random effects (group_data's `global_index`), "
                         "but the model has none: give the Model `n_global` and `global_nll`")
    if data.local is None:
        raise ValueError(f"the model has n_global = {model.n_global} global random effects, but `data` indexes "
                         "none: give group_data a `global_index` (each row's index into v)")
    raise ValueError(f"the model has n_global = {model.n_global} global random effects, but `data` indexes "
                     f"{data.n_global} (group_data's `n_global`)")


#: The most entries the border of the arrowhead (the global effects, with REML's beta) may
#: have: its Schur complement is a dense matrix of that size squared (20,000: 3.2 GB).
MAX_BORDER = 20_000
#: The most numbers the subjects' Hessian blocks over their local border and ``u`` may hold
#: together (``N (p + L + q)^2``; 5e8: 4 GB).
MAX_LOCAL = 5e8


def check_border_size(model: Model, data: GroupedData) -> None:
    """Refuse, with the sizes, global effects whose border or whose subjects' blocks would not fit."""
    if not model.n_global:
        return
    border = model.n_global + model.n_fixed
    if border > MAX_BORDER:
        raise ValueError(
            f"the model's {model.n_global} global random effects (with {model.n_fixed} fixed effects) make a "
            f"border of {border} entries, whose dense Schur complement would take {8 * border**2 / 2**30:.1f} GiB "
            f"(at most {MAX_BORDER} are allowed): make the factor with more levels the subjects (group_data's "
            "`groups`), so that fewer effects are global")
    n, width = data.shape[0], model.n_fixed + data.local.shape[1] + model.n_random
    if n * width**2 > MAX_LOCAL:
        raise ValueError(
            f"{n} subjects each touching up to {data.local.shape[1]} global random effects make Hessian blocks of "
            f"{width} x {width} per subject, {8 * n * width**2 / 2**30:.1f} GiB in all (at most {MAX_LOCAL:.0e} "
            "numbers): make the factor with more levels the subjects, or split the largest subjects")


def check_output_shape(model: Model, data: GroupedData) -> None:
    """``nll`` must run on one subject's arrays and return a scalar."""
    u = jnp.zeros((model.n_random,))
    try:
        out = jax.eval_shape(_call(model), model.theta, model.beta, u, _subject(data, 0), _local_v(data))
    except Exception as err:  # the user's code failed: say where, keep the cause
        call = "nll(theta, beta, u, data, v)" if model.n_global else "nll(theta, beta, u, data)"
        raise TypeError(
            f"`{call}` failed on subject {data.ids[0]!r} "
            f"(u of length n_random={model.n_random}, data keys {sorted(_subject(data, 0))}): "
            f"{type(err).__name__}: {err}"
        ) from err
    if getattr(out, "shape", None) != ():
        raise TypeError(f"`nll` must return a scalar per subject; it returned shape {getattr(out, 'shape', type(out))}")


@functools.partial(jax.jit, static_argnums=0)
def _subject_values(nll, theta, beta, u, v, arrays, mask):
    return jax.vmap(lambda a, m: nll(theta, beta, u, dict(a, mask=m), v))(arrays, mask)


def _values(model: Model, data: GroupedData, u) -> np.ndarray:
    """Each subject's nll at the initial values (compiled once per nll and shape; ``v = 0``)."""
    arrays = {**data.arrays, **data.index}
    return np.asarray(_subject_values(_call(model), model.theta, model.beta, u, _local_v(data), arrays, data.mask))


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
    check_global_effects(model, data)
    check_border_size(model, data)
    if hasattr(model.nll, "admbjax_key"):
        return
    check_output_shape(model, data)
    check_initial_values(model, data)
    check_padding(model, data)
