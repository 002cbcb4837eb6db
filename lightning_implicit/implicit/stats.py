"""Per-sample solver statistics: the raw material of the depth-adaptability analysis."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

__all__ = ["SolverStats", "ConvergenceWarning", "warn_if_unconverged"]


class ConvergenceWarning(RuntimeWarning):
    """Some samples of a fixed-point solve did not reach the tolerance within ``max_iter``."""


@dataclass
class SolverStats:
    """Statistics of one forward (and, after ``backward``, adjoint) solve.

    Attributes:
        iterations: ``(batch,)`` int, iterations each sample needed (``(batch, time)`` for an ImplicitRNN).
        residual: ``(batch,)`` final residual ``||f(x) - x||_inf`` of each sample.
        converged: ``(batch,)`` bool.
        backward_iterations / backward_residual / backward_converged: the same for the adjoint solve, filled
            in by ``backward`` (``None`` before it ran; iterations are 0 for the direct solve).
        solver / adjoint_mode: what ran.
    """

    iterations: torch.Tensor
    residual: torch.Tensor
    converged: torch.Tensor
    solver: str = ""
    backward_iterations: torch.Tensor | None = None
    backward_residual: torch.Tensor | None = None
    backward_converged: torch.Tensor | None = None
    adjoint_mode: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return int(self.iterations.shape[0])

    @property
    def converged_fraction(self) -> float:
        return float(self.converged.float().mean()) if self.converged.numel() else 1.0

    @property
    def n_unconverged(self) -> int:
        return int((~self.converged).sum())

    def summary(self) -> dict[str, float]:
        """Scalar summary (mean/median/p95/max iterations, converged fraction; backward if available)."""
        it = self.iterations.float().flatten()
        out = {
            "iters_mean": float(it.mean()),
            "iters_median": float(it.median()),
            "iters_p95": float(torch.quantile(it, 0.95)),
            "iters_max": float(it.max()),
            "converged_frac": self.converged_fraction,
            "residual_max": float(self.residual.max()),
        }
        if self.backward_iterations is not None:
            bit = self.backward_iterations.float().flatten()
            out["bwd_iters_mean"] = float(bit.mean())
            out["bwd_iters_max"] = float(bit.max())
            out["bwd_converged_frac"] = float(self.backward_converged.float().mean())
        return out

    @staticmethod
    def stack(steps: list[SolverStats]) -> SolverStats:
        """Combine per-time-step stats into ``(batch, time)`` tensors (ImplicitRNN)."""
        if not steps:
            raise ValueError("no solver statistics to stack")
        out = SolverStats(
            iterations=torch.stack([s.iterations for s in steps], dim=1),
            residual=torch.stack([s.residual for s in steps], dim=1),
            converged=torch.stack([s.converged for s in steps], dim=1),
            solver=steps[0].solver,
        )
        out.extra["steps"] = steps
        return out

    def refresh_backward(self) -> None:
        """Gather the adjoint statistics of stacked per-step stats (after ``backward``)."""
        steps = self.extra.get("steps")
        if steps and all(s.backward_iterations is not None for s in steps):
            self.backward_iterations = torch.stack([s.backward_iterations for s in steps], dim=1)
            self.backward_residual = torch.stack([s.backward_residual for s in steps], dim=1)
            self.backward_converged = torch.stack([s.backward_converged for s in steps], dim=1)
            self.adjoint_mode = steps[0].adjoint_mode


def warn_if_unconverged(converged: torch.Tensor, residual: torch.Tensor, what: str, max_iter: int) -> None:
    """One warning per call (never per sample) naming the count and the fix."""
    if bool(converged.all()):
        return
    bad = int((~converged).sum())
    if bad:
        warnings.warn(
            f"{what}: {bad}/{converged.numel()} samples did not converge in {max_iter} iterations "
            f"(worst residual {float(residual.max()):.3g}). Raise max_iter, use tol_mode='rel' for large "
            f"inputs in float32, or lower kappa.",
            ConvergenceWarning,
            stacklevel=3,
        )
