"""The mathematics of implicit models: no Lightning imports here.

Start with :mod:`.reference` (the paper's iteration on one screen) and :mod:`.model` (the layer and models).
"""

from .activations import ACTIVATIONS, Activation, register_activation
from .config import AdjointConfig, SolverConfig
from .function import ImplicitFunction, fixed_point_solve
from .model import ImplicitLayer, ImplicitModel, ImplicitRNN, count_parameters
from .projection import inf_norm, project_rows_l1
from .solvers import BACKENDS, SOLVERS, register_backend, register_solver
from .stats import ConvergenceWarning, SolverStats
from .structures import STRUCTURES, Structure, register_structure

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "register_activation",
    "AdjointConfig",
    "SolverConfig",
    "ImplicitFunction",
    "fixed_point_solve",
    "ImplicitLayer",
    "ImplicitModel",
    "ImplicitRNN",
    "count_parameters",
    "inf_norm",
    "project_rows_l1",
    "BACKENDS",
    "SOLVERS",
    "register_backend",
    "register_solver",
    "ConvergenceWarning",
    "SolverStats",
    "STRUCTURES",
    "Structure",
    "register_structure",
]
