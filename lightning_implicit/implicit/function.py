"""The autograd function of the implicit layer: forward fixed-point solve, implicit backward.

``ImplicitFunction.apply(A, B, u, x0, solver_cfg, adjoint_cfg, stats_sink[, hints[, C, D]])`` (``x0``: ``None``
starts at zero) returns the fixed point ``x (batch, n)`` of ``x = phi(A x + B u)`` (``phi``: ``solver_cfg.activation``), or, with ``C (q, n)`` and
``D (q, p)`` given, the prediction ``y = C x + D u (batch, q)`` computed in the same autograd node (one node
instead of four: about 35 us less per training step at the paper's small sizes, where autograd's per-node cost
is comparable to the solves). The forward runs without building a graph over iterations; the
backward solves the adjoint equation (:mod:`.adjoint`). Parameters are never modified here. ``hints`` (optional):
two lists ``(forward, adjoint)`` holding the iterations of the previous solves, which size the first block of
the blocked iterations (a pure speed-up; see :func:`.solvers.blocked_iteration`).
"""

from __future__ import annotations

import torch

from . import fused
from .activations import get_activation
from .adjoint import finish_unconverged, solve_adjoint
from .config import AdjointConfig, SolverConfig
from .solvers import SOLVERS, fused_layout, picard
from .stats import SolverStats, warn_if_unconverged

__all__ = ["ImplicitFunction", "fixed_point_solve"]


def fixed_point_solve(
    A, BU, x0, cfg: SolverConfig, hint: list[int] | None = None
) -> tuple[torch.Tensor, SolverStats]:
    """Run the configured solver (no autograd) and package its per-sample statistics.

    ``BU (batch, n)``; ``x0 (batch, n)`` or ``None`` (start at zero).

    ``hint`` goes to solvers that declare ``accepts_hint`` (the blocked ``picard``): see
    :func:`.solvers.blocked_iteration`."""
    try:
        fn = SOLVERS[cfg.method]
    except KeyError:
        raise ValueError(f"unknown solver {cfg.method!r}; choose one of {sorted(SOLVERS)}") from None
    if x0 is None and not getattr(fn, "accepts_zero_start", False):
        x0 = BU.new_zeros(BU.shape)
    kwargs = {"hint": hint} if hint is not None and getattr(fn, "accepts_hint", False) else {}
    if torch.is_grad_enabled():
        with torch.no_grad():
            x, iters, residual, converged = fn(A, BU, x0, cfg, **kwargs)
    else:  # (inside autograd.Function.forward: already off, and the context manager costs a few us per call)
        x, iters, residual, converged = fn(A, BU, x0, cfg, **kwargs)
    stats = SolverStats(iterations=iters, residual=residual, converged=converged, solver=cfg.method)
    if cfg.warn:
        warn_if_unconverged(converged, residual, f"forward solve ({cfg.method})", cfg.max_iter)
    return x, stats


def _fused_forward(cfg: SolverConfig, u: torch.Tensor):
    """The fused module where the forward is the built-in Picard with ReLU that :func:`.solvers.select_backend`
    would run in the fused loop (then :func:`fused.layer_forward` makes the whole node's forward in one call), else
    ``None``."""
    if cfg.method != "picard" or cfg.activation != "relu" or cfg.backend not in ("auto", "fused"):
        return None
    if SOLVERS.get("picard") is not picard:  # (a solver registered over the built-in one)
        return None
    return fused.usable(u, cfg.backend)


def _fused_backward(cfg: AdjointConfig, relu: bool, n: int, g: torch.Tensor):
    """The fused module where the backward is the ReLU layer's fixed-point adjoint in the fused loop (as
    :func:`.adjoint.solve_adjoint` would run it), else ``None``."""
    if not relu or cfg.mode == "direct" or cfg.backend not in ("auto", "fused"):
        return None
    module = fused.usable(g, cfg.backend)
    if module is None or cfg.resolved_mode(n, g.shape[0], "cpu", fused=True) != "fixed_point":
        return None
    return module


class ImplicitFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        A,
        B,
        u,
        x0,
        solver_cfg: SolverConfig,
        adjoint_cfg: AdjointConfig,
        sink: list,
        hints=None,
        C=None,
        D=None,
    ):
        module = _fused_forward(solver_cfg, u)
        if module is not None:  # u B^T, the solve and the readout in one call (no Python between)
            y, x, iters, residual, converged = fused.layer_forward(
                module, A, B, u, x0, C, D, solver_cfg, fused_layout(A.shape[0], u.shape[0])
            )
            stats = SolverStats(
                iterations=iters, residual=residual, converged=converged, solver=solver_cfg.method
            )
            if solver_cfg.warn:
                warn_if_unconverged(converged, residual, "forward solve (picard)", solver_cfg.max_iter)
        else:
            BU = u @ B.t()
            x, stats = fixed_point_solve(A, BU, x0, solver_cfg, None if hints is None else hints[0])
            y = None if C is None else torch.addmm(u @ D.t(), x, C.t())
        ctx.save_for_backward(A, B, u, x, C, D)
        ctx.adjoint_cfg = adjoint_cfg
        ctx.activation = get_activation(solver_cfg.activation)
        ctx.relu = solver_cfg.activation == "relu"
        ctx.hint = None if hints is None else hints[1]
        ctx.stats = stats
        sink.append(stats)
        # with C and D: the prediction equation y = C x + D u in the same autograd node
        return x if C is None else y

    @staticmethod
    def backward(ctx, g_out):
        A, B, u, x, C, D = ctx.saved_tensors
        cfg: AdjointConfig = ctx.adjoint_cfg
        need = ctx.needs_input_grad
        module = _fused_backward(cfg, ctx.relu, A.shape[0], g_out)
        if module is not None:  # the adjoint and every product around it in one call
            gA, gB, gu, gC, gD, w, d, g, iters, residual, converged, n_bad = fused.layer_backward(
                module,
                A,
                B,
                u,
                x,
                C,
                D,
                g_out,
                (need[0], need[1], need[2], C is not None and need[8], D is not None and need[9]),
                cfg,
                fused_layout(A.shape[0], g_out.shape[0]),
            )
            mode = "fixed_point"
            if n_bad:  # ``auto``: the unconverged samples solved directly where affordable (as solve_adjoint)
                w2, residual, converged, mode = finish_unconverged(A, d, g, w, residual, converged, cfg, mode)
                if w2 is not w:
                    gA, gB, gu = _input_grads(d * w2, x, u, B, C, D, g_out, need)
            _record_adjoint(ctx, cfg, iters, residual, converged, mode)
            return gA, gB, gu, None, None, None, None, None, gC, gD
        gC = gD = None
        if C is None:
            g = g_out  # dL/dx
        else:  # y = x C^T + u D^T
            gC = g_out.t() @ x if need[8] else None
            gD = g_out.t() @ u if need[9] else None
            g = g_out @ C
        # phi'(z) at the fixed point, z = A x + B u (x is the image phi(z) of the solver's last iterate). Where x
        # determines it, no product is needed: ReLU's is sign(x) (1 where x > 0, else 0) in one kernel (~1 us).
        act = ctx.activation
        if act.output_derivative is not None:
            d = act.output_derivative(x)
        else:
            d = act.derivative(torch.addmm(u @ B.t(), x, A.t()))
        w, iters, residual, converged, mode = solve_adjoint(A, d, g, cfg, hint=ctx.hint)
        _record_adjoint(ctx, cfg, iters, residual, converged, mode)
        gA, gB, gu = _input_grads(d * w, x, u, B, C, D, g_out, need)
        return gA, gB, gu, None, None, None, None, None, gC, gD


def _input_grads(v, x, u, B, C, D, g_out, need):
    """The gradients of ``A (n, n)``, ``B (n, p)`` and ``u (batch, p)`` from ``v = phi'(z) * w (batch, n)``, the
    adjoint solution ``w`` weighted by the activation's derivative at the fixed point: ``dL/dA = v^T x``,
    ``dL/dB = v^T u`` and ``dL/du = v B`` (plus ``g_out D`` when the node also computes ``y = C x + D u``);
    ``None`` where autograd does not need one (``need``: ``ctx.needs_input_grad``)."""
    gA = v.t() @ x if need[0] else None
    gB = v.t() @ u if need[1] else None
    gu = None
    if need[2]:
        gu = v @ B if C is None else torch.addmm(g_out @ D, v, B)
    return gA, gB, gu


def _record_adjoint(ctx, cfg: AdjointConfig, iters, residual, converged, mode: str) -> None:
    """The adjoint solve's statistics into the forward's :class:`SolverStats` (and its warning)."""
    st: SolverStats = ctx.stats
    st.backward_iterations, st.backward_residual, st.backward_converged = iters, residual, converged
    st.adjoint_mode = mode
    if cfg.warn:
        warn_if_unconverged(converged, residual, f"adjoint solve ({mode})", cfg.max_iter)
