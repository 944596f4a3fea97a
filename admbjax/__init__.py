"""admbjax: Laplace-approximation mixed models on JAX, in the spirit of ADMB-RE and TMB.

Pipeline: data (:func:`group_data`) -> model (:class:`Model`) -> objective
(:func:`make_objective`) -> optimise/infer (:func:`fit`) -> result (:class:`FitResult`).
"""

import jax as _jax

import os as _os

# Laplace log-determinants and finite-difference Hessians need float64; ADMBJAX_X64=0 leaves JAX in float32, to
# measure what float32 costs (GPU benchmarks)
_jax.config.update("jax_enable_x64", _os.environ.get("ADMBJAX_X64", "1") != "0")

from ._cache import enable_compilation_cache as enable_compilation_cache  # noqa: E402

enable_compilation_cache()

from ._data import GroupedData as GroupedData  # noqa: E402
from ._data import group_data as group_data  # noqa: E402
from ._batch import bootstrap as bootstrap  # noqa: E402
from ._batch_results import BatchResults as BatchResults  # noqa: E402
from ._batch import fit_batch as fit_batch  # noqa: E402
from ._batch import fit_formula_by as fit_formula_by  # noqa: E402
from ._batch import fit_formula_responses as fit_formula_responses  # noqa: E402
from ._families import Family as Family  # noqa: E402
from ._fit import fit as fit  # noqa: E402
from ._formula import fit_formula as fit_formula  # noqa: E402
from ._formula import formula_model as formula_model  # noqa: E402
from ._model import Model as Model  # noqa: E402
from ._objective import Objective as Objective  # noqa: E402
from ._objective import make_objective as make_objective  # noqa: E402
from ._results import AdmbjaxWarning as AdmbjaxWarning  # noqa: E402
from ._results import FitResult as FitResult  # noqa: E402
from . import datasets as datasets  # noqa: E402

__version__ = "0.1.0"
