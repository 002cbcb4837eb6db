"""The implicit backward: the adjoint equation of ``x = relu(A x + B u)``.

With ``z = A x + B u``, ``Phi = diag(relu'(z))`` and ``g = dL/dx``, the adjoint ``w`` solves

    w = g + A^T (Phi w)        i.e.   w = (I - A^T Phi)^{-1} g,

and with ``v = Phi w``:  ``dL/dA = v x^T``,  ``dL/dB = v u^T``,  ``dL/du = B^T v`` (summed over the batch for
the parameters). No graph of the forward iterations is needed: memory is O(batch x n).
Row-vector (batch-first) form: ``w = g + (d * w) A`` with ``d = relu'(z)`` of shape ``(batch, n)``.
"""

from __future__ import annotations

import torch

from .config import AdjointConfig
from .solvers import batched_solve, threshold

__all__ = ["solve_adjoint"]


def _fixed_point(A, d, g, cfg: AdjointConfig):
    b = g.shape[0]
    iters = torch.zeros(b, dtype=torch.int32, device=g.device)
    active = torch.ones(b, dtype=torch.bool, device=g.device)
    residual = torch.full((b,), float("inf"), dtype=g.dtype, device=g.device)
    w = g
    for _ in range(cfg.max_iter):
        w_new = torch.addmm(g, d * w, A)
        r = (w_new - w).abs().amax(dim=1)
        done = r < threshold(w_new, cfg.tol, cfg.tol_mode)
        w = torch.where(active[:, None], w_new, w)
        residual = torch.where(active, r, residual)
        iters += active
        active &= ~done
        if not bool(active.any()):
            break
    return w, iters, residual, ~active


def _direct(A, d, g):
    n = A.shape[0]
    eye = torch.eye(n, dtype=A.dtype, device=A.device)
    # Row form: w (I - Phi A) = g  <=>  (I - A^T Phi) w^T = g^T; batched over samples.
    M = eye - A.t()[None] * d[:, None, :]
    w = batched_solve(M, g.unsqueeze(-1)).squeeze(-1)
    b = g.shape[0]
    zeros = torch.zeros(b, dtype=torch.int32, device=g.device)
    r = (torch.addmm(g, d * w, A) - w).abs().amax(dim=1)
    return w, zeros, r, torch.isfinite(r)


def solve_adjoint(A: torch.Tensor, d: torch.Tensor, g: torch.Tensor, cfg: AdjointConfig):
    """Solve the adjoint for ``A (n, n)``, ``d (batch, n)`` (ReLU derivative at z), ``g (batch, n)``.

    Returns ``(w, iterations, residual, converged, mode)``; ``w`` has shape ``(batch, n)``.
    """
    mode = cfg.resolved_mode(A.shape[0])
    if mode == "direct":
        return (*_direct(A, d, g), mode)
    return (*_fixed_point(A, d, g, cfg), mode)
