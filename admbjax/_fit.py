"""``fit``: the composition data -> model -> objective -> optimise -> infer -> result.

The stages, as lme4 names its four (``lFormula``, ``mkLmerDevfun``, ``optimizeLmer``,
``mkMerMod``): the model and its grouped data (``Model``, ``group_data``; the formula front
end's ``formula_model``), the objective (:func:`make_objective`), the optimiser
(``FitSpec.optimiser``: ``_optimise.Newton``) with inference (``_inference.infer``) in one
compiled program (:func:`fit_program`), and the result (``_results.make_result``).

The optimisation and the inference run as one compiled program. Programs are cached by
everything static about a fit (the model's functions, parameter layout, method, options)
and the shapes of its arrays, so a second fit of the same model to data of the same padded
shape compiles nothing; compile time and fit time are measured and reported separately.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _cache, _optimise
from ._data import GroupedData
from ._engine import Engine
from ._inference import Inference, infer
from ._model import Model
from ._objective import objective_of, objective_spec
from ._options import Options
from ._scope import scoped


@dataclass(frozen=True)
class FitSpec:
    """The static part of a fit: hashable, the key of the compiled-program cache."""

    spec: Engine                  # the objective (the engine, or the Gaussian closed form)
    report: Callable | None
    ranef: Callable | None
    optimiser: object             # _optimise.Newton, chosen for the objective
    gtol: float
    max_iter: int
    batched: bool = False         # lanes of a vmapped batch

    @classmethod
    def of(cls, model: Model, method: str, options: Options, batched: bool = False) -> "FitSpec":
        spec = objective_spec(model, method, options, batched)
        return cls.for_spec(spec, model, options, batched)

    @classmethod
    def for_spec(cls, spec, model: Model, options: Options, batched: bool = False) -> "FitSpec":
        optimiser = (_optimise.default_optimiser(spec, batched, spec.layout.size) if options.optimiser is None
                     else options.optimiser.for_objective(spec, batched))
        return cls(spec, model.report, model.ranef, optimiser, options.gtol, int(options.max_iter), batched)


class FitOutput(NamedTuple):
    """What the compiled program returns."""

    opt: _optimise.OptState     # opt.aux = (Laplace, InnerInfo, d beta / dx) at the optimum
    inference: Inference


def fit_program(fs: FitSpec, x0, mode0, data, budget=None) -> FitOutput:
    """Optimise and infer: a pure function of the initial values and the data, through the
    objective interface alone (``_engine.Engine``), whichever objective ``fs.spec`` is.

    ``budget`` (traced) caps the iterations below ``fs.max_iter``: a batch runs every lane a
    few iterations first, then only the unfinished ones again, from the start, in full.
    """
    spec = fs.spec
    max_iter = fs.max_iter if budget is None else budget

    def vgh(x, warm, need_hessian, length, search):
        return spec.vgh(x, warm, data, need_hessian, length, search)

    opt = fs.optimiser.minimise(vgh, spec.start(x0, data), spec.initial_warm(mode0), spec.warm_of,
                                spec.placeholder(x0, mode0), gtol=fs.gtol, max_iter=max_iter)
    state, last = spec.state(opt.x, opt.aux, opt.last_aux, data)
    opt = opt._replace(aux=state, last_aux=last)
    lap, _, dbeta = state
    return FitOutput(opt, infer(spec, fs.report, fs.ranef, opt.x, opt.h, lap, dbeta))


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
#: loop simplification (:data:`QUICK_COMPILE_OPTIONS`), unless its finite-difference
#: Hessian's work is large (:data:`QUICK_COMPILE_WORK`). It runs in milliseconds either way
#: and compiles in about half the time (sleepstudy's closed form: 1.1 s instead of 1.9 s;
#: the engine: 1.3 s instead of 2.0 s of XLA); the run is 3-15x slower, so larger data keep
#: them (from about 300 subjects in closed form: N = 1,000 runs in 12 ms instead of 35 ms),
#: as do batches, whose wait is their run.
QUICK_COMPILE_MAX = 500
#: ... and at most this many numbers of data times the ``2k + 1`` gradients of a Hessian:
#: 60 fixed effects of ML (50 subjects; 2.3e7) compile in 1.2 s and run in 0.26 s quick,
#: against 3.0 s and 0.06 s; 150 (3.4e8) run in 37 s quick, against 2.3 s.
QUICK_COMPILE_WORK = 5e7
QUICK_COMPILE_OPTIONS = {"xla_backend_optimization_level": 0,
                         "xla_disable_hlo_passes": "while-loop-invariant-code-motion,simplify-while-loops"}


def quick_compile(args, transform) -> bool:
    """Whether a program for ``args`` (``(x0, mode0, data)``) is compiled quick."""
    if transform is not None:
        return False
    numbers = sum(int(np.size(a)) for a in jax.tree.leaves(args[2]))
    k = int(np.shape(args[0])[-1])
    return int(np.size(args[2]["mask"])) <= QUICK_COMPILE_MAX and numbers * (2 * k + 1) <= QUICK_COMPILE_WORK


def _compile(lowered, args, transform):
    """``lowered.compile()`` with :data:`COMPILER_OPTIONS` (and :data:`QUICK_COMPILE_OPTIONS`
    for small single fits); without them where this jaxlib does not know them."""
    options = dict(COMPILER_OPTIONS)
    if quick_compile(args, transform):
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
        # a program admbjax's own store keeps is compiled with JAX's cache off; any other in JAX's
        kept = disk_key is not None and _cache.cache_dir() is not None
        with _cache.jax_cache_off(True) if kept else _cache.jax_cache():
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


@scoped
def fit(model: Model, data: GroupedData, method: str = "REML", **options):
    """Fit ``model`` to ``data`` by Laplace-approximated ML or REML: :func:`make_objective`,
    then optimise, then infer, then the result.

    Args:
      model: a :class:`Model` (the user's per-subject nll and initial values).
      data: a :class:`GroupedData` from :func:`group_data`.
      method: ``"REML"`` integrates out ``u`` and ``beta`` (flat prior); ``"ML"`` integrates
        out ``u`` and optimises ``beta`` with ``theta``.
      options: the fields of :class:`admbjax.Options` (``gtol``, ``max_iter``, ``optimiser``,
        ``inner_tol``, ``inner_max_iter``, ``global_mode``, ``hessian``, ``n_agq``,
        ``closed_form``); an unknown one is a ``TypeError``.

    Returns:
      An immutable :class:`FitResult`.
    """
    from ._results import make_result

    opts = Options.of("fit", **options)
    objective = objective_of(model, data, method, opts)
    fs = FitSpec.for_spec(objective.spec, model, opts)
    args = (objective.spec.x0(model), objective.spec.initial_mode(model, data.shape[0]), data.tree())
    out, t_compile, t_fit = run(fs, args)
    return make_result(model, data, objective.spec.layout, fs, out, t_compile, t_fit)
