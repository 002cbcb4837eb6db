"""Well-posedness of the state equation ``x = relu(A x + B u)``.

If the induced infinity norm of ``A`` (its largest row-wise L1 norm) is below 1, the Picard iteration is a
contraction and the implicit model is well posed (El Ghaoui et al. 2021). Training keeps
``||A||_inf <= kappa`` by projecting every row of ``A`` onto the L1 ball of radius ``kappa`` after each
optimiser step.
"""

from __future__ import annotations

import torch

from .fused import project_rows_l1 as fused_projection

__all__ = ["inf_norm", "project_rows_l1"]


def inf_norm(A: torch.Tensor) -> torch.Tensor:
    """The well-posedness certificate ``||A||_inf = max_i sum_j |A_ij|`` (a 0-d tensor)."""
    return A.abs().sum(dim=-1).amax(dim=-1)


def project_rows_l1(A: torch.Tensor, kappa: float, backend: str = "auto") -> torch.Tensor:
    """Euclidean projection of every row of ``A`` onto the L1 ball ``{a : ||a||_1 <= kappa}``.

    Sort-and-threshold algorithm of Duchi et al. (2008), vectorised over rows, on ``A``'s own device and
    dtype. Rows already inside the ball are returned unchanged (bit for bit). A 2-d CPU ``A`` outside autograd
    goes through the fused C++ loop of :mod:`.fused` (the same algorithm, row by row).

    Args:
        A: ``(rows, cols)`` matrix (or any ``(..., cols)`` batch of rows).
        kappa: radius of the ball, ``> 0``.
        backend: ``auto`` (the fused loop where it applies), ``fused`` (required) or ``python`` (torch only), as
            for the solvers (:class:`~.config.SolverConfig`).

    Returns:
        A new tensor of ``A``'s shape whose rows have L1 norm ``<= kappa`` (to rounding).
    """
    if kappa <= 0:
        raise ValueError(f"kappa must be positive, got {kappa}")
    out = fused_projection(
        A, kappa, backend
    )  # one C++ call on CPU (the same algorithm), else the torch version
    return project_rows_l1_torch(A, kappa) if out is None else out


def project_rows_l1_torch(A: torch.Tensor, kappa: float) -> torch.Tensor:
    """:func:`project_rows_l1` in torch operations (any device, batched rows, differentiable almost everywhere)."""
    a = A.abs()
    inside = a.sum(dim=-1, keepdim=True) <= kappa
    u = torch.sort(a, dim=-1, descending=True).values
    css = u.cumsum(dim=-1)
    j = torch.arange(1, A.shape[-1] + 1, device=A.device, dtype=A.dtype)
    # rho = number of sorted entries that stay positive after thresholding: u_j > (css_j - kappa) / j, i.e.
    # j u_j - css_j > -kappa (monotone in j, true for j = 1, so rho >= 1).
    # (clamped: a row with a NaN has no such entry; it becomes NaN, as in the fused version)
    rho = (torch.addcmul(-css, u, j) > -kappa).sum(dim=-1, keepdim=True).clamp_(min=1)
    theta = (css.gather(-1, rho - 1) - kappa) / rho
    projected = torch.copysign((a - theta).clamp_(min=0), A)
    return torch.where(inside, A, projected)
