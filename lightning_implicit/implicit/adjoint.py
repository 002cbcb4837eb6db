"""The implicit backward: the adjoint equation of ``x = relu(A x + B u)``.

With ``z = A x + B u``, ``Phi = diag(relu'(z))`` and ``g = dL/dx``, the adjoint ``w`` solves

    w = g + A^T (Phi w)        i.e.   w = (I - A^T Phi)^{-1} g,

and with ``v = Phi w``:  ``dL/dA = v x^T``,  ``dL/dB = v u^T``,  ``dL/du = B^T v`` (summed over the batch for
the parameters). No graph of the forward iterations is needed: memory is O(batch x n).
Row-vector (batch-first) form: ``w = g + (d * w) A`` with ``d = relu'(z)`` of shape ``(batch, n)``.
"""

from __future__ import annotations

import torch

from . import fused
from .config import AdjointConfig
from .solvers import batched_solve, blocked_iteration, fused_layout

__all__ = ["solve_adjoint", "finish_unconverged"]


def _fixed_point(A, d, g, cfg: AdjointConfig, hint=None):
    """The blocked fixed-point iteration (:func:`.solvers.blocked_iteration`), column-major:
    ``w^T <- g^T + A^T (d^T * w^T)``. Returns ``(w, iterations, residual, converged)``."""
    At = A.t()

    def step(w_in, w_out, cols):
        torch.addmm(cols[0], At, cols[1] * w_in, out=w_out)

    gt = g.t().contiguous()
    return blocked_iteration(
        step,
        gt,
        [gt, d.t().contiguous()],
        tol=cfg.tol,
        tol_mode=cfg.tol_mode,
        max_iter=cfg.max_iter,
        block=cfg.check_every,
        hint=hint,
    )


def _direct(A, d, g):
    n = A.shape[0]
    eye = torch.eye(n, dtype=A.dtype, device=A.device)
    # Row form: w (I - Phi A) = g  <=>  (I - A^T Phi) w^T = g^T; batched over samples.
    M = eye - A.t()[None] * d[:, None, :]
    w = batched_solve(M, g.unsqueeze(-1)).squeeze(-1)
    b = g.shape[0]
    zeros = torch.zeros(b, dtype=torch.int64, device=g.device)
    r = (torch.addmm(g, d * w, A) - w).abs().amax(dim=1)
    return w, zeros, r, torch.isfinite(r)


def solve_adjoint(A: torch.Tensor, d: torch.Tensor, g: torch.Tensor, cfg: AdjointConfig, hint=None):
    """Solve the adjoint for ``A (n, n)``, ``d (batch, n)`` (ReLU derivative at z), ``g (batch, n)``.

    Returns ``(w, iterations, residual, converged, mode)``; ``w`` has shape ``(batch, n)``; ``mode`` is
    ``direct``, ``fixed_point`` or ``fixed_point+direct`` (``auto``: the samples the iteration did not converge
    within ``max_iter`` were then solved directly; their iteration count stays that of the iteration). ``hint``:
    iterations of the previous fixed-point adjoint solve (sizes its first block, see
    :func:`.solvers.blocked_iteration`).
    """
    module = None if cfg.mode == "direct" else fused.usable(g, cfg.backend)
    device_type = "cpu" if g.is_cpu else g.device.type
    n = A.shape[0]
    mode = cfg.resolved_mode(n, g.shape[0], device_type, fused=module is not None)
    if mode == "direct":
        return (*_direct(A, d, g), mode)
    if module is not None:  # the fused C++ loop (it counts the unconverged samples: no host sync for that)
        w, iters, residual, converged, n_bad = fused.adjoint(
            module, A, d, g, cfg.tol, cfg.tol_mode, cfg.max_iter, fused_layout(n, g.shape[0])
        )
    else:
        (w, iters, residual, converged), n_bad = _fixed_point(A, d, g, cfg, hint), None
    if n_bad is None or n_bad > 0:
        w, residual, converged, mode = finish_unconverged(A, d, g, w, residual, converged, cfg, mode)
    return w, iters, residual, converged, mode


def finish_unconverged(A, d, g, w, residual, converged, cfg: AdjointConfig, mode: str):
    """``auto``: samples the iteration left unconverged after max_iter (a contraction close to 1) solved exactly
    where a direct solve is affordable (the limits of the Python loop's rule). Returns ``(w, residual, converged,
    mode)``, the same objects where nothing changed."""
    device_type = "cpu" if g.is_cpu else g.device.type
    if cfg.mode == "auto" and A.shape[0] <= cfg.direct_limit_n(device_type):
        bad = (~converged).nonzero().squeeze(1)
        if bad.numel():
            w_d, _, r_d, c_d = _direct(A, d[bad], g[bad])
            w, residual = w.index_copy(0, bad, w_d), residual.index_copy(0, bad, r_d)
            converged = converged.index_copy(0, bad, c_d)
            mode = "fixed_point+direct"
    return w, residual, converged, mode
