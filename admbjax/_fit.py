"""``fit``: the composition data -> model -> objective -> optimise -> infer -> result.

The optimisation and the inference run as one compiled program. Programs are cached by
everything static about a fit (the model's functions, parameter layout, method, options)
and the shapes of its arrays, so a second fit of the same model to data of the same padded
shape compiles nothing; compile time and fit time are measured and reported separately.
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _cache, _gaussian, _laplace, _objective, _optimise
from ._data import GroupedData
from ._inference import Inference, infer
from ._model import Model
from ._objective import Spec, value_grad_hessian
from ._scope import scoped


@dataclass(frozen=True)
class FitSpec:
    """The static part of a fit: hashable, the key of the compiled-program cache."""

    spec: Spec
    report: Callable | None
    ranef: Callable | None
    gtol: float
    max_iter: int
    quasi_newton: bool = False            # BFGS between Hessians (single engine fits)
    batched: bool = False                 # lanes of a vmapped batch: no eigendecompositions
    closed_form: Callable | None = None   # Model.closed_form: fit by ``_gaussian``


#: Every keyword option of :func:`fit` (and of the front ends that pass options on to it):
#: the fields of :class:`FitSpec` and of :class:`_objective.Spec` a user sets
#: (``closed_form`` as a bool: whether to use the model's closed form).
OPTIONS = tuple(f.name for f in dataclasses.fields(FitSpec) if f.name in ("gtol", "max_iter", "closed_form")) \
    + _objective.OPTIONS


def check_options(options, caller: str = "fit", extra=()) -> None:
    """``TypeError`` for an option of ``caller`` (``fit`` or a front end, whose own keyword
    arguments are ``extra``) that is not one; nothing is built or compiled before it."""
    _objective.check_options(options, caller, valid=tuple(extra) + OPTIONS)


class FitOutput(NamedTuple):
    """What the compiled program returns."""

    opt: _optimise.OptState     # opt.aux = (Laplace, InnerInfo) at the optimum
    inference: Inference


def fit_program(fs: FitSpec, x0, mode0, data, budget=None) -> FitOutput:
    """Optimise and infer: a pure function of the initial values and the data.

    ``budget`` (traced) caps the iterations below ``fs.max_iter``: a batch runs every lane a
    few iterations first, then only the unfinished ones again, from the start, in full.
    """
    max_iter = fs.max_iter if budget is None else budget
    if fs.closed_form is not None:
        return _gaussian.fit_program(fs, x0, data, max_iter)

    def vgh(x, mode, need_hessian, length, search):
        f, g, h, lap, info, dbeta = value_grad_hessian(fs.spec, x, mode, data, need_hessian, length, search)
        return f, g, h, (lap, info, dbeta)

    placeholder = _laplace.placeholder(mode0) + (jnp.zeros((mode0.beta.shape[0], x0.shape[0])),)
    opt = _optimise.minimise(vgh, x0, mode0, lambda aux: aux[0].mode, placeholder,
                             gtol=fs.gtol, max_iter=max_iter, quasi_newton=fs.quasi_newton, modify=not fs.batched)
    lap, _, dbeta = opt.aux
    inference = infer(fs.spec, fs.report, fs.ranef, opt.x, opt.h, lap, dbeta)
    return FitOutput(opt, inference)


#: Compiled programs, least recently used first; bounded, because every live executable
#: holds native code and memory maps (hundreds of them aborted a long test process).
_PROGRAMS: "OrderedDict" = OrderedDict()
MAX_PROGRAMS = 32


def _shapes(tree):
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((np.shape(a), str(a.dtype if hasattr(a, "dtype") else np.result_type(a))) for a in leaves)


#: XLA options for every program: XLA:CPU's newer fusion emitters compile about twice as
#: slowly, for programs of many small fusions like these, and run no faster (measured on
#: sleepstudy, N = 1e5 subjects and batches; jaxlib 0.10.2).
COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}
#: A single fit with at most this many observations (entries of ``data["mask"]``: rows, or
#: subjects for the Gaussian closed form's per-subject statistics) is compiled for a quick
#: compile: LLVM's optimisations off, and without XLA's while-loop invariant code motion and
#: loop simplification (:data:`QUICK_COMPILE_OPTIONS`). It runs in milliseconds either way
#: and compiles in about half the time (sleepstudy's closed form: 1.1 s instead of 1.9 s;
#: the engine: 1.3 s instead of 2.0 s of XLA); the run is up to 3x slower, so larger data keep
#: them (from about 300 subjects in closed form: N = 1,000 runs in 12 ms instead of 35 ms),
#: as do batches, whose wait is their run. Counting observations, not numbers, keeps many
#: fixed effects (p x p statistics per subject, handled by LAPACK either way) on the quick side.
QUICK_COMPILE_MAX = 500
QUICK_COMPILE_OPTIONS = {"xla_backend_optimization_level": 0,
                         "xla_disable_hlo_passes": "while-loop-invariant-code-motion,simplify-while-loops"}


def _compile(lowered, args, transform):
    """``lowered.compile()`` with :data:`COMPILER_OPTIONS` (and :data:`QUICK_COMPILE_OPTIONS`
    for small single fits); without them where this jaxlib does not know them."""
    options = dict(COMPILER_OPTIONS)
    if transform is None and int(np.size(args[2]["mask"])) <= QUICK_COMPILE_MAX:
        options.update(QUICK_COMPILE_OPTIONS)
    try:
        return lowered.compile(options)
    except Exception as err:  # an option this version does not have
        if "compile option" not in str(err):
            raise
        return lowered.compile()


def compiled(fs: FitSpec, args, transform=None, disk: bool = True):
    """The compiled ``fit_program`` (or ``transform(fit_program)``) for ``args``' shapes.

    Returns ``(executable, compile_seconds)``; ``compile_seconds`` is 0.0 on a hit in memory,
    and the load time on a hit on disk (``_cache.load_executable``: formula fits only).
    """
    key = (fs, transform, _shapes(args))
    if key in _PROGRAMS:
        _PROGRAMS.move_to_end(key)
        return _PROGRAMS[key], 0.0
    t0 = time.perf_counter()
    disk_key = _cache.stable_key(key) if disk else None     # None: a function has no stable name
    exe = _cache.load_executable(disk_key)
    if exe is None:
        program = (lambda *a: fit_program(fs, *a)) if transform is None else transform(fs)
        with _cache.jax_cache(), _cache.jax_cache_off(disk_key is not None and _cache.cache_dir() is not None):
            exe = _compile(jax.jit(program).lower(*args), args, transform)
        _cache.store_executable(disk_key, exe)
    else:
        _LOADED[key] = disk_key
    _PROGRAMS[key] = exe
    while len(_PROGRAMS) > MAX_PROGRAMS:
        _PROGRAMS.popitem(last=False)
    return exe, time.perf_counter() - t0


#: Programs loaded from the disk store, by key: if one fails to run, it is dropped and rebuilt.
_LOADED: dict = {}


def run(fs: FitSpec, args, transform=None):
    """Compile (or reuse) and run; returns ``(FitOutput as numpy, compile_s, fit_s)``."""
    exe, t_compile = compiled(fs, args, transform)
    t0 = time.perf_counter()
    try:
        out = jax.block_until_ready(exe(*args))
    except Exception:
        key = (fs, transform, _shapes(args))
        if key not in _LOADED:
            raise
        _cache.drop_executable(_LOADED.pop(key))     # a stored program that does not run
        _PROGRAMS.pop(key, None)
        exe, t_again = compiled(fs, args, transform, disk=False)
        t_compile += t_again
        t0 = time.perf_counter()
        out = jax.block_until_ready(exe(*args))
    t_fit = time.perf_counter() - t0
    return jax.tree.map(np.asarray, out), t_compile, t_fit


def pop_closed_form(model: Model, options: dict):
    """Remove the ``closed_form`` option from ``options``; the model's closed form to fit
    by (:mod:`admbjax._gaussian`), or ``None`` (no closed form, or turned off)."""
    return model.closed_form if options.pop("closed_form", True) else None


@scoped
def fit(model: Model, data: GroupedData, method: str = "REML", *, gtol: float = _optimise.GTOL,
        max_iter: int = 100, **options):
    """Fit ``model`` to ``data`` by Laplace-approximated ML or REML.

    Args:
      model: a :class:`Model` (the user's per-subject nll and initial values).
      data: a :class:`GroupedData` from :func:`group_data`.
      method: ``"REML"`` integrates out ``u`` and ``beta`` (flat prior); ``"ML"`` integrates
        out ``u`` and optimises ``beta`` with ``theta``.
      gtol: convergence tolerance on the scaled gradient of the marginal nll, the Newton
        decrement ``sqrt(g' H^{-1} g)`` (free of the parameters' units; ``_optimise``).
      max_iter: limit on outer Newton iterations.
      options: ``inner_tol``, ``inner_max_iter`` for the inner Newton solver;
        ``global_mode`` (default True; False only for densities log-concave in ``u``, where the
        inner mode is unique: then one inner solve instead of two); ``hessian``
        ("fd", default, or "exact"; see :func:`admbjax._objective.value_grad_hessian`);
        ``closed_form`` (default True): a model with ``closed_form`` (a Gaussian formula
        model) is fitted through its exact closed-form likelihood (``_gaussian``), the same
        numbers as the Laplace engine; False fits it by the engine.

    Returns:
      An immutable :class:`FitResult`.
    """
    from ._results import make_result

    check_options(options, "fit")
    closed_form = pop_closed_form(model, options)
    objective = _objective.make_objective(model, data, method, **options)
    fs = FitSpec(objective.spec, model.report, model.ranef, float(gtol), int(max_iter),
                 quasi_newton=closed_form is None, closed_form=closed_form)
    args = (objective.spec.x0(model), objective.spec.initial_mode(model, data.shape[0]), data.tree())
    out, t_compile, t_fit = run(fs, args)
    return make_result(model, data, objective.spec.layout, fs, out, t_compile, t_fit)
