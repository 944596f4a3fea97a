"""Batch fits: many models of one structure in one compiled, vmapped program.

Every lane runs the same lock-step damped Newton iterations (``_optimise``), freezing once
it has converged, so a batch costs about as much as its slowest lane and no line search
makes lanes wait for each other. Datasets are padded to one shape
(padding never changes a likelihood) and processed in chunks of ``chunk_size`` lanes, so
peak memory is bounded by the chunk; a progress bar over chunks is shown on a terminal.
A lane whose data are bad is not fitted and cannot affect any other lane.
"""

from __future__ import annotations

import re
import sys
import time
import warnings

import jax
import numpy as np

from . import _optimise
from ._checks import check_model_on_data
from ._data import _list
from ._fit import FitSpec, fit_program, run
from ._options import Options, check_options
from ._results import AdmbjaxWarning, LaneTable
from ._scope import scoped


#: The keyword options of a batch beyond :func:`admbjax.fit`'s (``admbjax.Options``).
BATCH_OPTIONS = ("chunk_size", "progress")


def _batched(fs: FitSpec):
    return jax.vmap(lambda x0, mode0, data, budget: fit_program(fs, x0, mode0, data, budget))


def _common_shape(datas) -> tuple[int, int]:
    return max(d.shape[0] for d in datas), max(d.shape[1] for d in datas)


def _stack(trees):
    return jax.tree.map(lambda *a: np.stack(a), *trees)


def _check_same_structure(models) -> None:
    first = models[0]
    for i, m in enumerate(models[1:], 1):
        if (m.nll is not first.nll or m.report is not first.report or m.ranef is not first.ranef
                or m.n_random != first.n_random or m.n_fixed != first.n_fixed
                or jax.tree.structure(m.theta) != jax.tree.structure(first.theta)):
            raise ValueError(f"`models[{i}]` differs in structure from `models[0]` (functions, parameters or "
                             "random effects): a batch fits one model structure")


class ListLanes:
    """The lanes of a batch given as one model and one dataset each (:func:`fit_batch`).

    A batch's lanes provide ``model(i)`` and ``data(i)`` (lane ``i``'s :class:`Model` and
    :class:`GroupedData`, for its result), the arrays ``n_subjects`` and ``n_obs``,
    ``formula_varies``, ``signs`` (the model's ``signs`` where every lane shares it) and
    ``inputs(spec, idx)``: the program's stacked ``(x0, mode0, data)`` for lanes ``idx``.
    ``_by.SharedLanes`` provides the same from one design split by level.
    """

    def __init__(self, models, datas):
        self.models, self.datas = models, datas
        self.n_subjects = np.array([d.n_subjects for d in datas])
        self.n_obs = np.array([d.n_obs for d in datas])
        self.formula_varies = any(m.formula != models[0].formula for m in models)
        self.signs = models[0].signs if all(m.signs is models[0].signs for m in models) else None
        self._shape = _common_shape(datas)

    def model(self, i):
        return self.models[i]

    def data(self, i):
        return self.datas[i]

    def inputs(self, spec, idx):
        n_sub, n_max = self._shape
        return _stack([(spec.x0(self.models[i]), spec.initial_mode(self.models[i], n_sub),
                        self.datas[i].padded(n_sub, n_max).tree()) for i in idx])


class _Progress:
    """A minimal progress bar over chunks on stderr, shown only on a terminal."""

    def __init__(self, total: int, enabled: bool | None):
        self.total, self.done, self.t0 = total, 0, time.perf_counter()
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    def step(self, lanes: int) -> None:
        self.done += lanes
        if self.enabled:
            frac = self.done / self.total
            bar = "#" * int(30 * frac)
            sys.stderr.write(f"\radmbjax batch [{bar:<30}] {self.done}/{self.total} fits, "
                             f"{time.perf_counter() - self.t0:.1f} s")
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


@scoped
def fit_batch(models, datas, method: str = "REML", *, chunk_size: int = 512, progress: bool | None = None,
              **options):
    """Fit many datasets (and/or starting values) of one model structure in one program.

    Args:
      models: a :class:`Model`, or a list of models of one structure (one per dataset, for
        per-dataset starting values, as the formula front end makes them).
      datas: a list of :class:`GroupedData`; padded to a common shape.
      method, options: as for :func:`admbjax.fit`.
      chunk_size: lanes per compiled call; bounds peak memory.
      progress: show a progress bar over chunks (default: when stderr is a terminal).

    Returns:
      A :class:`BatchResults`: a sequence of :class:`FitResult`, one per dataset, each equal
      to the same fit done alone, with the batch's numbers also as arrays (``criterion``,
      ``converged``, ...). A lane whose model does not run on its data gets ``None`` and a
      warning naming it.
    """
    check_options(options, "fit_batch", BATCH_OPTIONS)
    datas = list(datas)
    models = list(models) if isinstance(models, (list, tuple)) else [models] * len(datas)
    if len(models) != len(datas) or not datas:
        raise ValueError(f"`models` ({len(models)}) and `datas` ({len(datas)}) must be non-empty and match")
    _check_same_structure(models)
    if models[0].n_global:
        raise ValueError(f"`models` have {models[0].n_global} global random effects: fit_batch does not take "
                         "models with global (crossed) random effects yet; fit each dataset with admbjax.fit")
    return fit_lanes(ListLanes(models, datas), np.arange(len(datas)), method, chunk_size=chunk_size,
                     progress=progress, **options)


def fit_lanes(lanes, index, method: str, *, chunk_size: int = 512, progress: bool | None = None,
              label=None, **options):
    """Fit every lane of ``lanes`` (:class:`ListLanes` or ``_by.SharedLanes``) in one batch;
    a :class:`BatchResults` over positions ``index`` (a lane each, or -1), with warnings
    that name positions by ``label(k)`` (default: "batch fit k")."""
    from ._batch_results import BatchResults

    n = len(lanes.n_obs)
    base = lanes.model(0)
    check_model_on_data(base, lanes.data(0))   # structure (scalar nll, padding) once; data per lane below
    opts = Options.of("fit_batch", **options)
    # every lane runs every branch of a vmapped program: full Newton steps, no BFGS phase
    fs = FitSpec.of(base, method, opts, batched=True)
    spec, max_iter = fs.spec, fs.max_iter
    tables, bad = [], {}
    bar = _Progress(n, progress)
    # lanes per call rounded up to a power of two: batches of similar size share one program
    chunk = max(1, min(int(chunk_size), 1 << (n - 1).bit_length()))
    pending, owed, compile_s = np.arange(n), np.zeros(n), 0.0   # owed: fit s of lanes run again
    # closed-form fits mostly converge at once: a short first pass, then the rest again
    budgets = sorted({min(FIRST_PASS, max_iter), max_iter}) if spec.closed_form else [max_iter]
    for budget in budgets:
        unfinished = []
        for start in range(0, len(pending), chunk):
            idx = pending[start:start + chunk]
            args = _pad_lanes(lanes.inputs(spec, idx), chunk)   # same shape every chunk: one compile
            # a lane with non-finite data runs (lanes are independent) but is reported as not fitted
            finite = np.all([np.isfinite(a).reshape(chunk, -1).all(axis=1) for a in jax.tree.leaves(args[2])],
                            axis=0)[:len(idx)]
            out, t_compile, t_fit = run(fs, args + (np.full(chunk, budget, np.int32),), transform=_batched)
            again = finite & (out.opt.status[:len(idx)] == _optimise.MAX_ITER) & (budget < max_iter)
            per_lane, compile_s = t_fit / len(idx), compile_s + t_compile
            unfinished.append(idx[again])
            owed[idx[again]] += per_lane
            keep = ~again & finite
            for i in idx[~finite]:
                bad[int(i)] = _nonfinite(lanes.data(int(i)), lanes.model(int(i)))
            done = idx[keep]
            if len(done):
                fit_s = (per_lane * len(done) + owed[done].sum()) / len(done)
                table_out = jax.tree.map(lambda a: a[np.flatnonzero(keep)], out)
                tables.append((done, LaneTable.of(table_out, spec.layout, fs, lanes.signs, compile_s, fit_s)))
                compile_s = 0.0
            bar.step(int((~again).sum()))
        pending = np.concatenate(unfinished) if unfinished else pending[:0]
    if len(bad) == n:
        raise ValueError(f"no dataset of the batch can be fitted: {bad[0]}")
    results = BatchResults(lanes, index, tables)
    _warn_summary(results, index, bad, label or (lambda k: f"batch fit {k}"))
    return results


def _pad_lanes(args, chunk: int):
    """``args`` (leading axis: lanes) padded to ``chunk`` lanes with copies of the first."""
    return jax.tree.map(lambda a: np.concatenate([a, np.repeat(a[:1], chunk - len(a), axis=0)])
                        if len(a) < chunk else a, args)


#: Iterations every lane of a closed-form batch gets first. Lanes run in lock-step, so a chunk
#: costs as many iterations as its slowest lane; most closed-form fits converge at the first
#: (balanced data start at the optimum), and only the rest run again, from their start, in
#: full: the same iterations as a fit done alone.
FIRST_PASS = 1


def _nonfinite(data, model=None) -> str:
    """Why a lane's data cannot be fitted: its non-finite entries, named as the user knows
    them. A formula model's arrays are named by their columns (the response, the fixed- and
    random-effect columns) and their input rows, or, for per-subject sums of squares and
    products (Gaussian models), by the subjects; a hand-written model's by ``arrays[name]``."""
    for name, a in list(data.arrays.items()) + [("mask", data.mask)]:
        bad = ~np.isfinite(a.reshape(a.shape[:2] + (-1,)))             # [subjects, rows, entries]
        if not bad.any():
            continue
        what = _array_label(name, model, np.flatnonzero(bad.any(axis=(0, 1))))
        if data.observations is None:         # one input row each
            rows = np.sort(data.rows[bad.any(axis=2) & (data.rows >= 0)])
            return f"{what} has NaN or inf in {len(rows)} row(s) (0-based): {_list(rows)}"
        subjects = [data.ids[i] for i in np.flatnonzero(bad.any(axis=(1, 2))) if i < data.n_subjects]
        group = f" of {model.group!r}" if model is not None else ""
        return (f"the per-subject sums of squares and products of {what} are not finite (NaN or inf: values "
                f"too large to square?) for {len(subjects)} subject(s){group}: {_list(subjects)}")
    return "its data are not finite"


#: What the arrays of a formula model hold (``_formula.formula_model``): per observation, or
#: per subject (sums of squares and products of the response residual ``r``, ``X`` and ``Z``).
_FORMULA_ARRAYS = {"y": ("response",), "trials": ("trials",), "X": ("X",), "Z": ("Z",), "n": ("rows",),
                   "rr": ("response",), "Xr": ("response", "X"), "Zr": ("response", "Z"), "XX": ("X",),
                   "XZ": ("X", "Z"), "ZZ": ("Z",), "beta0": ("X",)}


def _array_label(name: str, model, entries) -> str:
    """The user's name for array ``name`` of ``model`` (its non-finite ``entries``, flat)."""
    parts = _FORMULA_ARRAYS.get(name) if model is not None and model.formula else None
    if parts is None:
        return f"`arrays[{name!r}]`"
    response = model.formula.split("~", 1)[0].strip()
    labels = []
    for part in parts:
        if part == "response":
            labels.append(f"column {response!r}" if re.fullmatch(r"[A-Za-z_.][\w.]*", response)
                          else f"the response {response!r}")
        elif part == "trials":
            labels.append(f"the trials of {response!r}")
        elif part == "rows":
            labels.append("the row counts")
        else:
            names = list(model.beta_names if part == "X" else model.random_names)
            columns = [names[j] for j in entries if j < len(names)] if name in ("X", "Z") else names
            labels.append(f"{'fixed' if part == 'X' else 'random'}-effect column(s) {_list(repr(c) for c in columns)}")
    return " and ".join(dict.fromkeys(labels))


def _warn_summary(results, index, bad, label) -> None:
    """One warning per kind of failure in a batch, naming the positions by ``label``."""
    position = {int(lane): k for k, lane in enumerate(index) if lane >= 0}
    for i, msg in bad.items():
        warnings.warn(f"{label(position[i])} was not fitted: {msg}", AdmbjaxWarning, stacklevel=4)
    bad_positions = {position[i] for i in bad}
    no_start = [k for k in np.flatnonzero(~results.fitted & (np.asarray(index) >= 0)) if k not in bad_positions]
    if no_start:
        warnings.warn(f"{_list([label(k) for k in no_start])} could not start: the objective or its derivatives "
                      "are not finite at their initial values", AdmbjaxWarning, stacklevel=4)
    failed = np.flatnonzero(results.fitted & ~results.converged)
    if len(failed):
        warnings.warn(f"{len(failed)} of {len(results)} batch fits did not converge "
                      f"({', '.join(label(k) for k in failed[:10])}{'...' if len(failed) > 10 else ''}); "
                      "see each result's `messages`", AdmbjaxWarning, stacklevel=4)
    singular = int(np.sum(results.singular))
    if singular:
        warnings.warn(f"{singular} of {len(results)} batch fits are boundary (singular) fits", AdmbjaxWarning,
                      stacklevel=4)
