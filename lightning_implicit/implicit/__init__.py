"""The mathematics of implicit models: no Lightning imports here."""

from .config import AdjointConfig, SolverConfig
from .function import ImplicitFunction, fixed_point_solve
from .model import ImplicitLayer, ImplicitModel, ImplicitRNN, count_parameters
from .projection import inf_norm, project_rows_l1
from .solvers import SOLVERS, register_solver
from .stats import ConvergenceWarning, SolverStats

__all__ = [
    "AdjointConfig", "SolverConfig", "ImplicitFunction", "fixed_point_solve", "ImplicitLayer",
    "ImplicitModel", "ImplicitRNN", "count_parameters", "inf_norm", "project_rows_l1", "SOLVERS",
    "register_solver", "ConvergenceWarning", "SolverStats",
]  # fmt: skip
