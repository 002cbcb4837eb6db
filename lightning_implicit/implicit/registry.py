"""The solver registry (as in torchdeq's): ``SOLVERS[name] = fn(A, BU, x0, cfg) -> (x, iterations, residual,
converged)``. The solvers themselves live in :mod:`.solvers` (importing the package registers them); this
module has no dependencies, so that :class:`~.config.SolverConfig` can validate a name without importing them."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["SOLVERS", "register_solver"]

SolverFn = Callable[..., tuple]
SOLVERS: dict[str, SolverFn] = {}


def register_solver(name: str) -> Callable[[SolverFn], SolverFn]:
    """Register ``fn(A, BU, x0, cfg) -> (x, iterations, residual, converged)`` under ``name``.

    ``x`` must be an image ``phi(A x' + B u)`` of the activation (as Picard's, Anderson's and Newton's are:
    each returns the map value of its last point): the implicit backward reads ``phi'(z)`` at the fixed point
    from it (``sign(x)`` for ReLU)."""

    def deco(fn: SolverFn) -> SolverFn:
        SOLVERS[name] = fn
        return fn

    return deco
