"""The paper's forward iteration, as the paper writes it: the reference every fast backend must agree with.

    x_0 = 0,    x_{t+1} = phi(A x_t + B u),    stop when ||x_{t+1} - x_t||_inf < tol

per sample: each sample keeps its first iterate that meets the tolerance, with its iteration count and
residual. Batch-first: ``A (n, n)``, ``BU = u B^T (batch, n)``, ``x0 (batch, n)`` or ``None`` (zeros).
The fast paths (the blocked Python loop and the fused C++ loop of :mod:`.solvers` / :mod:`.fused`) compute the
same thing with fewer host synchronisations; ``tests/test_solvers.py`` compares them with this one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["picard"]


def picard(
    A: torch.Tensor,
    BU: torch.Tensor,
    x0: torch.Tensor | None = None,
    *,
    phi: Callable[[torch.Tensor], torch.Tensor] = torch.relu,
    tol: float = 3e-6,
    tol_mode: str = "abs",
    max_iter: int = 300,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Picard iteration with per-sample stopping.

    ``tol_mode="abs"``: the paper's ``||x_{t+1} - x_t||_inf < tol``; ``"rel"``: ``< tol * max(1, ||x_{t+1}||_inf)``.

    Returns ``(x, iterations, residual, converged)``: ``x (batch, n)`` each sample's first iterate below the
    threshold (or its last), the iterations ``t + 1`` that produced it ``(batch,)``, its residual ``(batch,)``
    and whether it met the threshold ``(batch,)``.
    """
    x = torch.zeros_like(BU) if x0 is None else x0
    out, residual = x.clone(), torch.full_like(BU[:, 0], float("inf"))
    iterations = torch.zeros(BU.shape[0], dtype=torch.int64, device=BU.device)
    running = torch.ones(BU.shape[0], dtype=torch.bool, device=BU.device)
    for _ in range(max_iter):
        x_next = phi(x @ A.T + BU)
        r = (x_next - x).abs().amax(dim=1)
        scale = 1.0 if tol_mode == "abs" else x_next.abs().amax(dim=1).clamp(min=1.0)
        out = torch.where(running[:, None], x_next, out)
        residual = torch.where(running, r, residual)
        iterations += running
        running &= ~(r < tol * scale)  # a sample stops at its first iterate below the threshold
        if not running.any():
            break
        x = x_next
    return out, iterations, residual, ~running
