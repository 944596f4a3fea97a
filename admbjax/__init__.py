"""admbjax: Laplace-approximation mixed models on JAX, in the spirit of ADMB-RE and TMB.

Pipeline: data (:func:`group_data`) -> model (:class:`Model`) -> objective
(:func:`make_objective`) -> optimise/infer (:func:`fit`) -> result (:class:`FitResult`).

Importing admbjax changes no JAX setting: its own calls compute in float64 and compile into
its cache, and leave the caller's JAX configuration as they found it.
"""

from ._data import GroupedData as GroupedData
from ._data import group_data as group_data
from ._formula_batch import bootstrap as bootstrap
from ._batch_results import BatchResults as BatchResults
from ._batch import fit_batch as fit_batch
from ._formula_batch import fit_formula_by as fit_formula_by
from ._formula_batch import fit_formula_responses as fit_formula_responses
from ._families import Family as Family
from ._fit import fit as fit
from ._formula import fit_formula as fit_formula
from ._formula import formula_model as formula_model
from ._model import Model as Model
from ._objective import Objective as Objective
from ._objective import make_objective as make_objective
from ._optimise import LBFGS as LBFGS
from ._optimise import Newton as Newton
from ._options import Options as Options
from ._results import AdmbjaxWarning as AdmbjaxWarning
from ._results import FitResult as FitResult
from . import datasets as datasets

__version__ = "0.1.0"
