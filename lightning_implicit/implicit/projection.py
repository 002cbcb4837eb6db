"""Well-posedness of the state equation ``x = relu(A x + B u)``.

If the induced infinity norm of ``A`` (its largest row-wise L1 norm) is below 1, the Picard iteration is a
contraction and the implicit model is well posed (El Ghaoui et al. 2021). Training keeps
``||A||_inf <= kappa`` by projecting every row of ``A`` onto the L1 ball of radius ``kappa`` after each
optimiser step.

The projection of a row ``a`` is ``sign(a) max(|a| - theta, 0)`` with ``theta >= 0`` the root of
``sum_j max(|a_j| - theta, 0) = kappa`` (``theta = 0``: the row is inside). Three ways to find ``theta``, all
ending in the same formula ``theta = (sum of the entries above theta - kappa) / their number``, so they agree to
rounding:

- on CPU, Condat's algorithm in C++ (:mod:`.fused`; expected linear time per row, rows inside read once);
- elsewhere (and inside autograd), :func:`project_rows_l1_torch`: Michelot's fixed point on the active set, a few
  vectorised passes over all rows (linear time each);
- :func:`project_rows_l1_sorted`: the sort-and-threshold method of Duchi et al. (2008), ``O(n log n)`` per row,
  kept as the reference the tests compare the others with.
"""

from __future__ import annotations

import torch

from .fused import project_rows_l1 as fused_projection

__all__ = ["inf_norm", "project_rows_l1", "project_rows_l1_"]


def inf_norm(A: torch.Tensor) -> torch.Tensor:
    """The well-posedness certificate ``||A||_inf = max_i sum_j |A_ij|`` (a 0-d tensor)."""
    return A.abs().sum(dim=-1).amax(dim=-1)


def _check_kappa(kappa: float) -> None:
    if kappa <= 0:
        raise ValueError(f"kappa must be positive, got {kappa}")


def project_rows_l1(A: torch.Tensor, kappa: float, backend: str = "auto") -> torch.Tensor:
    """Euclidean projection of every row of ``A`` onto the L1 ball ``{a : ||a||_1 <= kappa}``.

    On ``A``'s own device and dtype. Rows already inside the ball are returned unchanged (bit for bit); a row
    with a non-finite entry becomes NaN. A 2-d CPU ``A`` outside autograd goes through the fused C++ loop of
    :mod:`.fused` (Condat's algorithm), anything else through :func:`project_rows_l1_torch`.

    Args:
        A: ``(rows, cols)`` matrix (or any ``(..., cols)`` batch of rows).
        kappa: radius of the ball, ``> 0``.
        backend: ``auto`` (the fused loop where it applies), ``fused`` (required) or ``python`` (torch only), as
            for the solvers (:class:`~.config.SolverConfig`).

    Returns:
        A new tensor of ``A``'s shape whose rows have L1 norm ``<= kappa`` (to rounding).
    """
    _check_kappa(kappa)
    out = fused_projection(A, kappa, backend)
    return project_rows_l1_torch(A, kappa) if out is None else out


def project_rows_l1_(A: torch.Tensor, kappa: float, backend: str = "auto") -> torch.Tensor:
    """:func:`project_rows_l1` in place, outside autograd (as an optimiser step changes a parameter): ``A``'s rows
    outside the ball are overwritten with their projections; on CPU rows inside are only read (no copy of ``A``).
    Returns ``A``."""
    _check_kappa(kappa)
    if fused_projection(A, kappa, backend, inplace=True) is None:
        with torch.no_grad():
            A.copy_(project_rows_l1_torch(A, kappa))
    return A


def project_rows_l1_torch(A: torch.Tensor, kappa: float) -> torch.Tensor:
    """:func:`project_rows_l1` in torch operations (any device, batched rows, differentiable almost everywhere).

    Michelot's algorithm (1986), vectorised over rows: from ``theta_0 = (||a||_1 - kappa) / n``, the threshold
    ``theta_{k+1} = (sum_{|a_j| > theta_k} |a_j| - kappa) / #{j : |a_j| > theta_k}`` increases to the root in
    finitely many steps (the active set only shrinks; a few passes on typical rows, at most ``n``). Each pass is
    one linear-time sweep over ``A``; the loop reads one flag per pass to stop (a host synchronisation on a GPU).
    """
    a = A.abs()
    l1 = a.sum(dim=-1, keepdim=True)
    inside = l1 <= kappa
    settled = inside | ~torch.isfinite(l1)  # (a non-finite row becomes NaN below)
    n = A.shape[-1]
    # rows inside never need a threshold: start them at +inf so that their (empty) active set never changes
    theta = torch.where(settled, torch.full_like(l1, float("inf")), (l1 - kappa) / max(n, 1))
    with torch.no_grad():
        active = a > theta
        for _ in range(n + 1):
            count = active.sum(dim=-1, keepdim=True)
            t = ((a * active).sum(dim=-1, keepdim=True) - kappa) / count.clamp(min=1)
            t = torch.where(settled, theta, t)
            new_active = a > t
            if torch.equal(new_active, active):
                break
            active, theta = new_active, t
    # the threshold of the final active set, with autograd (theta is a differentiable function of the entries)
    count = active.sum(dim=-1, keepdim=True).clamp(min=1)
    theta = ((a * active).sum(dim=-1, keepdim=True) - kappa) / count
    projected = torch.copysign((a - theta).clamp(min=0), A)
    projected = torch.where(torch.isfinite(l1), projected, torch.full_like(projected, float("nan")))
    return torch.where(inside, A, projected)


def project_rows_l1_sorted(A: torch.Tensor, kappa: float) -> torch.Tensor:
    """The sort-and-threshold projection of Duchi et al. (2008), ``O(n log n)`` per row: the reference the
    linear-time versions are tested against (same semantics as :func:`project_rows_l1`)."""
    _check_kappa(kappa)
    a = A.abs()
    l1 = a.sum(dim=-1, keepdim=True)
    inside = l1 <= kappa
    u = torch.sort(a, dim=-1, descending=True).values
    css = u.cumsum(dim=-1)
    j = torch.arange(1, A.shape[-1] + 1, device=A.device, dtype=A.dtype)
    # rho = number of sorted entries that stay positive after thresholding: u_j > (css_j - kappa) / j, i.e.
    # j u_j - css_j > -kappa (monotone in j, true for j = 1, so rho >= 1).
    rho = (torch.addcmul(-css, u, j) > -kappa).sum(dim=-1, keepdim=True).clamp_(min=1)
    theta = (css.gather(-1, rho - 1) - kappa) / rho
    projected = torch.copysign((a - theta).clamp_(min=0), A)
    projected = torch.where(torch.isfinite(l1), projected, torch.full_like(projected, float("nan")))
    return torch.where(inside, A, projected)
