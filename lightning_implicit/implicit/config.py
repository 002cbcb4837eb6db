"""Validated, per-instance solver settings (no class-level or global state)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

__all__ = ["SolverConfig", "AdjointConfig"]

TolMode = Literal["abs", "rel"]


def _check_common(name: str, tol: float, tol_mode: str, max_iter: int) -> None:
    if not tol > 0:
        raise ValueError(f"{name}.tol must be > 0, got {tol}")
    if tol_mode not in ("abs", "rel"):
        raise ValueError(f"{name}.tol_mode must be 'abs' or 'rel', got {tol_mode!r}")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"{name}.max_iter must be an integer >= 1, got {max_iter!r}")


@dataclass(frozen=True)
class SolverConfig:
    """Forward fixed-point solve of ``x = relu(A x + B u)``.

    A sample stops when its residual ``||f(x) - x||_inf`` (``f(x) = relu(A x + B u)``; for Picard this is the
    paper's ``||x_t - x_{t-1}||_inf``) falls below ``tol`` (``abs``, the paper: 3e-6) or below
    ``tol * max(1, ||x||_inf)`` (``rel``: scale-aware, reachable in float32 at large input scales).

    Attributes:
        solver: name in :data:`lightning_implicit.implicit.solvers.SOLVERS` (``picard``, ``anderson``, ``newton``).
        tol, tol_mode, max_iter: stopping rule (paper: 3e-6, ``abs``, 300; start at x = 0).
        check_every: iterations between host-side "is any sample still running?" checks; per-sample stopping is
            exact whatever its value, it only bounds the idle iterations after the last sample stops.
        anderson_m, anderson_beta, anderson_lam: Anderson memory, mixing and Tikhonov regularisation.
        warn: emit a :class:`ConvergenceWarning` (once per call) when some sample did not converge.
    """

    solver: str = "picard"
    tol: float = 3e-6
    tol_mode: TolMode = "abs"
    max_iter: int = 300
    check_every: int = 1
    anderson_m: int = 5
    anderson_beta: float = 1.0
    anderson_lam: float = 1e-6
    warn: bool = True

    def __post_init__(self) -> None:
        from .solvers import SOLVERS  # local import: the registry lives with the solvers

        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; choose one of {sorted(SOLVERS)}")
        _check_common("solver", self.tol, self.tol_mode, self.max_iter)
        if not (isinstance(self.check_every, int) and self.check_every >= 1):
            raise ValueError(f"solver.check_every must be an integer >= 1, got {self.check_every!r}")
        if not (isinstance(self.anderson_m, int) and self.anderson_m >= 1):
            raise ValueError(f"solver.anderson_m must be an integer >= 1, got {self.anderson_m!r}")
        if not 0 < self.anderson_beta <= 1:
            raise ValueError(f"solver.anderson_beta must be in (0, 1], got {self.anderson_beta}")

    def replace(self, **changes) -> SolverConfig:
        return replace(self, **changes)


@dataclass(frozen=True)
class AdjointConfig:
    """Backward (adjoint) solve ``w = g + A^T (Phi w)``, i.e. ``w = (I - A^T Phi)^{-1} g``.

    Attributes:
        mode: ``fixed_point`` (iteration, memory O(batch x n)), ``direct`` (exact batched LU solve,
            O(batch x n^2) memory, fastest for small n) or ``auto`` (``direct`` when ``n <= direct_max_n``).
        tol, tol_mode, max_iter: stopping rule of the fixed-point iteration (per sample, as in the forward).
        direct_max_n: hidden size up to which ``auto`` picks the direct solve (measured by ``make bench``).
    """

    mode: Literal["fixed_point", "direct", "auto"] = "auto"
    tol: float = 3e-6
    tol_mode: TolMode = "rel"
    max_iter: int = 300
    direct_max_n: int = 64
    warn: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("fixed_point", "direct", "auto"):
            raise ValueError(f"adjoint.mode must be 'fixed_point', 'direct' or 'auto', got {self.mode!r}")
        _check_common("adjoint", self.tol, self.tol_mode, self.max_iter)

    def resolved_mode(self, n: int) -> str:
        if self.mode == "auto":
            return "direct" if n <= self.direct_max_n else "fixed_point"
        return self.mode
