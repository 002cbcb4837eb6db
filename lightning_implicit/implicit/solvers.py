"""Fixed-point solvers for the state equation ``x = relu(A x + B u)``, batch-first.

Every solver stops **per sample**: once a sample's residual ``||f(x) - x||_inf`` (``f(x) = relu(x A^T + BU)``)
is below tolerance, that sample stops changing, and the solver reports for each sample the iterations it took,
its final residual and whether it converged. Solvers are registered by name in :data:`SOLVERS` (as in
torchdeq's registry); add one with :func:`register_solver`.

Shapes: ``A (n, n)``, ``BU (batch, n)`` (the input term ``B u``, computed once), ``x0 (batch, n)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .config import SolverConfig

__all__ = ["SOLVERS", "register_solver", "fixed_point_map", "threshold", "batched_solve"]

SolverFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, SolverConfig], tuple[torch.Tensor, ...]]
SOLVERS: dict[str, SolverFn] = {}


def register_solver(name: str) -> Callable[[SolverFn], SolverFn]:
    """Register ``fn(A, BU, x0, cfg) -> (x, iterations, residual, converged)`` under ``name``."""

    def deco(fn: SolverFn) -> SolverFn:
        SOLVERS[name] = fn
        return fn

    return deco


def fixed_point_map(A: torch.Tensor, BU: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``f(x) = relu(A x + B u)`` for a batch of row vectors: ``relu(x A^T + BU)``."""
    return torch.relu(torch.addmm(BU, x, A.t()))


def threshold(fx: torch.Tensor, tol: float, tol_mode: str) -> torch.Tensor | float:
    """Per-sample stopping threshold: ``tol`` (abs) or ``tol * max(1, ||f(x)||_inf)`` (rel)."""
    if tol_mode == "abs":
        return tol
    return tol * fx.abs().amax(dim=1).clamp(min=1.0)


# pytorch/pytorch#142815 (open; fix proposed in #181570): on CPU, a batched LU with more than one thread calls
# MKL getrf concurrently, which is not thread-safe for larger matrices (n >= 150 on the dev machine): wrong
# pivots ("Intel oneMKL ERROR: Parameter 6 was incorrect on entry to SLASWP"), wrong solutions, "Pivots given to
# lu_solve must all be greater or equal to 1" or a hang. Such solves run single-threaded (margin: n > 64).
_CPU_LU_MAX_PARALLEL_N = 64


def batched_solve(M: torch.Tensor, rhs: torch.Tensor, *, check_errors: bool = True):
    """``torch.linalg.solve`` (or ``solve_ex`` with ``check_errors=False``) for a batch of square systems,
    single-threaded on CPU where the batched LU is unsafe (see pytorch#142815 above)."""
    fn = torch.linalg.solve if check_errors else torch.linalg.solve_ex
    threads = torch.get_num_threads()
    if M.device.type != "cpu" or M.dim() < 3 or M.shape[-1] <= _CPU_LU_MAX_PARALLEL_N or threads == 1:
        return fn(M, rhs)
    torch.set_num_threads(1)
    try:
        return fn(M, rhs)
    finally:
        torch.set_num_threads(threads)


def _init(BU: torch.Tensor):
    b = BU.shape[0]
    iters = torch.zeros(b, dtype=torch.int32, device=BU.device)
    active = torch.ones(b, dtype=torch.bool, device=BU.device)
    residual = torch.full((b,), float("inf"), dtype=BU.dtype, device=BU.device)
    return iters, active, residual


@register_solver("picard")
def picard(A, BU, x0, cfg: SolverConfig):
    """The paper's iteration ``x_t = relu(A x_{t-1} + B u)``; residual ``||x_t - x_{t-1}||_inf``."""
    iters, active, residual = _init(BU)
    x = x0
    for t in range(cfg.max_iter):
        fx = fixed_point_map(A, BU, x)
        r = (fx - x).abs().amax(dim=1)
        done = r < threshold(fx, cfg.tol, cfg.tol_mode)
        x = torch.where(active[:, None], fx, x)
        residual = torch.where(active, r, residual)
        iters += active
        active &= ~done
        if (t + 1) % cfg.check_every == 0 and not bool(active.any()):
            break
    return x, iters, residual, ~active


def _solve_bordered(G: torch.Tensor, lam: float) -> torch.Tensor:
    """Anderson weights: ``argmin ||alpha^T G||^2 s.t. sum(alpha) = 1`` for ``G (batch, m, n)``."""
    b, m, _ = G.shape
    H = torch.bmm(G, G.transpose(1, 2))
    H = H + lam * H.diagonal(dim1=1, dim2=2).mean(dim=1).clamp(min=1e-30)[:, None, None] * torch.eye(
        m, dtype=G.dtype, device=G.device
    )
    ones = torch.ones(b, m, 1, dtype=G.dtype, device=G.device)
    z = torch.linalg.solve(H, ones)  # H^{-1} 1
    return (z / z.sum(dim=1, keepdim=True)).squeeze(-1)  # (b, m)


@register_solver("anderson")
def anderson(A, BU, x0, cfg: SolverConfig):
    """Anderson acceleration (type II, memory ``m``) with per-sample freezing.

    The iterate is a mix of the last ``m`` map values; the residual checked is the fixed-point residual
    ``||f(x) - x||_inf`` of the current iterate, and the returned point is ``f(x)`` (as for Picard).
    """
    iters, active, residual = _init(BU)
    b, n = BU.shape
    m = cfg.anderson_m
    X = torch.zeros(b, m, n, dtype=BU.dtype, device=BU.device)
    F = torch.zeros_like(X)
    x = x0
    out = x0
    for t in range(cfg.max_iter):
        fx = fixed_point_map(A, BU, x)
        g = fx - x
        r = g.abs().amax(dim=1)
        done = r < threshold(fx, cfg.tol, cfg.tol_mode)
        out = torch.where(active[:, None], fx, out)
        residual = torch.where(active, r, residual)
        iters += active
        active &= ~done
        if (t + 1) % cfg.check_every == 0 and not bool(active.any()):
            break
        k = t % m
        X[:, k] = x
        F[:, k] = fx
        mk = min(t + 1, m)
        if mk == 1:
            x_next = fx
        else:
            alpha = _solve_bordered(F[:, :mk] - X[:, :mk], cfg.anderson_lam)
            x_next = cfg.anderson_beta * torch.bmm(alpha[:, None], F[:, :mk]).squeeze(1)
            if cfg.anderson_beta < 1:
                x_next = x_next + (1 - cfg.anderson_beta) * torch.bmm(alpha[:, None], X[:, :mk]).squeeze(1)
            # A least-squares step can land on a non-finite point for a degenerate history: fall back.
            x_next = torch.where(torch.isfinite(x_next), x_next, fx)
        x = torch.where(active[:, None], x_next, x)
    return out, iters, residual, ~active


@register_solver("newton")
def newton(A, BU, x0, cfg: SolverConfig):
    """Active-set (semismooth) Newton: solve the linear system of the current ReLU pattern exactly.

    On the pattern ``P = diag(A x + B u > 0)`` the state equation is linear, ``(I - P A) x = P B u``; once the
    pattern is right, one solve lands on the fixed point. A step that does not reduce a sample's residual is
    replaced by a Picard step for that sample (the safeguard keeps the contraction's global convergence).
    Each iteration costs a batched ``n x n`` LU: the method of choice for small ``n``.
    """
    iters, active, residual = _init(BU)
    n = A.shape[0]
    eye = torch.eye(n, dtype=A.dtype, device=A.device)
    x = x0
    z = torch.addmm(BU, x, A.t())
    fx = torch.relu(z)
    r = (fx - x).abs().amax(dim=1)
    out = fx
    for t in range(cfg.max_iter):
        done = r < threshold(fx, cfg.tol, cfg.tol_mode)
        out = torch.where(active[:, None], fx, out)
        residual = torch.where(active, r, residual)
        iters += active
        active &= ~done
        if (t + 1) % cfg.check_every == 0 and not bool(active.any()):
            break
        p = (z > 0).to(A.dtype)
        M = eye - p[:, :, None] * A  # (batch, n, n): I - P A
        x_newton, info = batched_solve(M, (p * BU).unsqueeze(-1), check_errors=False)
        x_newton = x_newton.squeeze(-1)
        z_new = torch.addmm(BU, x_newton, A.t())
        fx_new = torch.relu(z_new)
        r_new = (fx_new - x_newton).abs().amax(dim=1)
        ok = (r_new < r) & (info == 0) & torch.isfinite(r_new)
        # safeguard: Picard step from x (its map value fx is known), i.e. x <- fx
        x_p = fx
        z_p = torch.addmm(BU, x_p, A.t())
        fx_p = torch.relu(z_p)
        r_p = (fx_p - x_p).abs().amax(dim=1)
        sel = (ok & active)[:, None]
        keep = (~active)[:, None]
        x = torch.where(keep, x, torch.where(sel, x_newton, x_p))
        z = torch.where(keep, z, torch.where(sel, z_new, z_p))
        fx = torch.where(keep, fx, torch.where(sel, fx_new, fx_p))
        r = torch.where(~active, r, torch.where(ok, r_new, r_p))
    return out, iters, residual, ~active
