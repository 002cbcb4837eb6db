"""Fixed-point solvers for the state equation ``x = phi(A x + B u)``, batch-first.

Every solver stops **per sample**: once a sample's residual ``||f(x) - x||_inf`` (``f(x) = phi(x A^T + BU)``)
is below tolerance, that sample stops changing, and the solver reports for each sample the iterations it took,
its final residual and whether it converged. Solvers are registered by name in :data:`SOLVERS` (as in
torchdeq's registry); add one with :func:`register_solver`.

Shapes: ``A (n, n)``, ``BU (batch, n)`` (the input term ``B u``, computed once), ``x0 (batch, n)``.

Picard is the paper's iteration, written out in :func:`.reference.picard` (one screen). The loops below are
backends of it (:data:`BACKENDS`, add one with :func:`register_backend`) with the same rule (each sample's
first iterate below the threshold, its count and residual), chosen by ``backend``
(:class:`~.config.SolverConfig`); ``tests/test_solvers.py`` checks each against the reference. The fixed-point
adjoint uses the same loops:

- the **fused** C++ loop (:mod:`.fused`, CPU float32/float64, the default there): one BLAS product per
  iteration and one pass over it (ReLU, residuals, recording; finished samples leave where :func:`fused_layout`
  finds that cheaper), no
  Python per iteration. Profile (CPU, 1 thread, ``make bench``): at n = 20-36, batch 64 a product costs ~1 us of
  arithmetic and ~2 us per Python dispatch, so the Python loops below spend most of their time on dispatch; a
  fused call costs 1.1-1.4x the bare loop of its products (about 3-4 us of fixed cost per call, then 1.05-1.3x
  per iteration), and with compaction at n = 190, batch 1024 less than the bare loop.
- the **blocked** Python loop (:func:`blocked_iteration`, any device; ``backend="python"``): ``k`` iterations
  write their iterates into a preallocated ``(k + 1, n, batch)`` buffer (one ``addmm(..., out=)`` and an in-place
  ReLU each); then one vectorised pass computes the ``k`` residuals of every sample and finds each sample's first
  iterate below the threshold. One host synchronisation per block; the first block is sized by the previous
  solve's iteration count (``hint``), later ones from the residuals' linear rate. Column-major (``x^T``): the
  per-sample ``amax`` over ``n`` is then a vectorised reduction.
- the **compacting** Python loop (:func:`compacting_iteration`) for problems of at least ``LARGE_WORK``, where a
  host synchronisation per iteration is free next to the product and finished samples leave the batch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import torch

from . import fused, reference
from .activations import get_activation
from .config import SolverConfig
from .registry import BACKENDS, SOLVERS, register_backend, register_solver

__all__ = [
    "SOLVERS",
    "register_solver",
    "BACKENDS",
    "register_backend",
    "select_backend",
    "BackendFallbackWarning",
    "fixed_point_map",
    "threshold",
    "batched_solve",
    "blocked_iteration",
]


def fixed_point_map(A: torch.Tensor, BU: torch.Tensor, x: torch.Tensor, phi=torch.relu) -> torch.Tensor:
    """``f(x) = phi(A x + B u)`` for a batch of row vectors: ``phi(x A^T + BU)``."""
    return phi(torch.addmm(BU, x, A.t()))


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


# ------------------------------------------------------------------------------------------ blocked iteration

FIRST_BLOCK = 8  # iterations of the first block when the block size is adaptive (and no hint applies)
MAX_BLOCK = 128  # largest adaptive block
# The iterate buffer of a block holds at most this many elements (more iterations per block only where they
# fit): peak memory stays O(batch x n), independent of the iteration count (8 MiB in float32).
BLOCK_BUFFER_ELEMENTS = 1 << 21
# "Large" problems (n * n * batch multiply-adds per iteration at least this) run one iteration at a time
# (:func:`compacting_iteration`): a host synchronisation per iteration is then free, and finished samples leave
# the batch (the saved products pay for a nonzero + index_select). Below this, the blocked loop: every sample
# runs until the last one stops (it sits on its fixed point: its result is its first iterate below the
# threshold anyway), which also makes each sample's result independent of the block schedule bit for bit (with
# compaction, a column's matmul rounding can depend on the batch's width).
LARGE_WORK = 1 << 21


def is_large(n: int, batch: int) -> bool:
    """A problem of at least ``LARGE_WORK`` multiply-adds per iteration: its loops drop finished samples."""
    return n * n * batch >= LARGE_WORK


# The fused C++ loop's layouts (:mod:`.fused`), by measured crossovers (1 thread, trained-like weights whose
# slowest sample needs 2-2.5x the mean iterations, and signed ones where all need about the same; ``make bench``):
# the batch-first rows (finished rows leave every iteration) beat the (n, batch) columns from n >= 32 and
# n^2 batch >= 2^19 (at n = 36, batch 1024: 0.3-0.6x with slow weights, 0.8-1.1x with signed; at n = 20 the rows'
# products and per-row passes cost 1.5-4x the columns' at every batch); below that, the columns drop their
# finished samples from n^2 batch >= 2^16 (dropping costs a pass over the arrays a few times per solve; below,
# results stay independent of the batch bit for bit, as the Python loop's, which the tests check).
FUSED_ROWS_MIN_N = 32
FUSED_ROWS_WORK = 1 << 19
FUSED_DROP_WORK = 1 << 16


def fused_layout(n: int, batch: int) -> int:
    """The fused loop's layout for ``n`` states and ``batch`` samples (:data:`.fused.ROWS`, ``COLUMNS_DROPPING``
    or ``COLUMNS``; see ``FUSED_ROWS_WORK``)."""
    work = n * n * batch
    if is_large(n, batch) or (n >= FUSED_ROWS_MIN_N and work >= FUSED_ROWS_WORK):
        return fused.ROWS
    return fused.COLUMNS_DROPPING if work >= FUSED_DROP_WORK else fused.COLUMNS


# Compact once this fraction of the batch has finished (~ the share of each later product it saves).
COMPACT_FRACTION = 1 / 16

StepFn = Callable[[torch.Tensor, torch.Tensor, Sequence[torch.Tensor]], object]
_TOL_CACHE: dict[tuple, torch.Tensor] = {}


def _tol_tensor(like: torch.Tensor, tol: float) -> torch.Tensor:
    """``tol`` as a 0-d tensor (comparing with one is ~2x cheaper than with a Python float); cached."""
    key = (tol, like.dtype, like.device)
    t = _TOL_CACHE.get(key)
    if t is None:
        t = _TOL_CACHE[key] = torch.tensor(tol, dtype=like.dtype, device=like.device)
    return t


_ALIGN_ELEMENTS = 16  # 64 bytes in float32, 128 in float64


def _aligned_buffer(like: torch.Tensor, k: int, n: int, m: int) -> torch.Tensor:
    """A ``(k, n, m)`` tensor whose ``(n, m)`` slices each start on a 64-byte boundary (like a fresh tensor).

    BLAS kernels may round differently for differently aligned operands; with every iterate aligned, an
    iterate's value does not depend on its slot in a block, so the block schedule (and the hint) cannot change
    results, bit for bit (where no compaction happens)."""
    stride = -(-n * m // _ALIGN_ELEMENTS) * _ALIGN_ELEMENTS
    return like.new_empty(k * stride).as_strided((k, n, m), (stride, m, 1))


def _predict_block(n_left_and_r: list[float], kk: int, gap: int, tol: float) -> int:
    """Iterations for one more block: enough for the slowest running sample if its linear rate holds.

    ``n_left_and_r = [running, max r_j, max r_k]`` over the running samples, ``j = k - 1 - gap``; the rate is
    ``rho = (r_k / r_j)^(1 / gap)`` and the remaining iterations ``log(tol / r_k) / log(rho)`` (an upper bound
    in ``rel`` mode, whose threshold is ``>= tol``). Residuals that do not decrease: grow the block geometrically.
    """
    _, r_j, r_k = n_left_and_r
    if gap < 1 or not (0 < r_k < r_j) or not math.isfinite(r_j):
        return min(MAX_BLOCK, 2 * kk)
    need = math.log(tol / r_k) / (math.log(r_k / r_j) / gap) if r_k > tol else 1.0
    return int(max(2, min(MAX_BLOCK, math.ceil(need) + 1)))


def blocked_iteration(
    step: StepFn,
    x0t: torch.Tensor | None,
    cols: Sequence[torch.Tensor],
    *,
    tol: float,
    tol_mode: str,
    max_iter: int,
    block: int | None = None,
    hint: list[int] | None = None,
    nonneg: bool = False,
):
    """Run ``x_{t+1} = step(x_t)`` for every sample (column) until its residual ``||x_{t+1} - x_t||_inf`` is below
    ``tol`` (``abs``) or ``tol * max(1, ||x_{t+1}||_inf)`` (``rel``), or ``max_iter`` iterations.

    Args:
        step: ``step(x_in, x_out, cols)`` writes one iterate into ``x_out``; both are ``(n, m)`` (``m`` the
            samples in the batch), ``cols`` the per-sample constants restricted to those samples.
        x0t: ``(n, batch)`` start (column-major: one sample per column); ``None``: zeros (then ``cols[0]``
            gives the shape).
        cols: per-sample constants, ``(*, batch)`` each (compacted with the running samples).
        block: iterations per block (``None``: adaptive: the hint, else ``FIRST_BLOCK``, then the iterations
            predicted from the residuals' linear rate); capped by ``BLOCK_BUFFER_ELEMENTS``.
        hint: ``[iterations]`` of the previous solve of this kind (its slowest sample), read for the first block
            and updated in place.
        nonneg: iterates are ``>= 0`` (ReLU images): the ``rel`` scale needs no ``abs``.

    Problems of at least ``LARGE_WORK`` multiply-adds per iteration go to :func:`compacting_iteration` (same
    rule, same results up to rounding; ``block`` and ``hint`` do not apply there).

    Returns:
        ``(x, iterations, residual, converged)`` with ``x`` of shape ``(batch, n)`` (row-major, contiguous): for
        each sample its first iterate ``x_{t+1}`` whose residual met the threshold (or the last one), the number
        ``t + 1`` of ``step`` calls that produced it, that residual, and whether it met the threshold.
    """
    ref = cols[0] if x0t is None else x0t
    n, b = ref.shape
    if is_large(n, b):
        return compacting_iteration(
            step, x0t, cols, tol=tol, tol_mode=tol_mode, max_iter=max_iter, nonneg=nonneg
        )
    x_out = ref.new_empty(b, n)
    xo_t = x_out.t()
    tol_t = _tol_tensor(ref, tol)
    rel = tol_mode != "abs"
    res = its = conv = None
    x = x0t
    t = 0
    if block is not None:
        k = block
    elif hint:
        k = max(1, hint[0])
    else:
        k = FIRST_BLOCK
    while True:
        kk = max(1, min(k, max_iter - t, BLOCK_BUFFER_ELEMENTS // (n * b)))
        buf = _aligned_buffer(ref, kk + 1, n, b)
        if x is None:
            buf[0].zero_()
        else:
            buf[0].copy_(x)
        views = buf.unbind(0)
        for i in range(kk):  # the products only; all bookkeeping in one vectorised pass below
            step(views[i], views[i + 1], cols)
        r = torch.diff(buf, dim=0).abs_().amax(dim=1)  # (kk, b)
        if rel:
            scale = buf[1:].amax(dim=1) if nonneg else buf[1:].abs().amax(dim=1)
        ok = r < (scale.clamp_(min=1.0).mul_(tol) if rel else tol_t)
        hit, first = ok.max(dim=0)  # max returns the first maximal index: the first iterate below threshold
        t0 = t
        t += kk
        final = t >= max_iter
        if final:
            first = torch.where(hit, first, kk - 1)  # unconverged: the last iterate
        # (samples still running get a placeholder here, overwritten by a later block)
        index = first.view(1, 1, b).expand(1, n, b)
        rs = r.gather(0, first.view(1, b))[0]
        it_s = first + (t0 + 1)
        if res is None:  # first block: every sample is new
            torch.gather(buf[1:], 0, index, out=xo_t.unsqueeze(0))
            res, its, conv = rs, it_s, hit
        else:  # update the samples that were still running (every sample runs until the last one stops: it
            # sits on its fixed point, and its result is its first iterate below the threshold anyway)
            upd = ~conv
            torch.where(upd, buf[1:].gather(0, index)[0], xo_t, out=xo_t)
            res = torch.where(upd, rs, res)
            its = torch.where(upd, it_s, its)
            conv = conv | hit
            hit = conv
        if final or bool(hit.all()):
            break
        # --- some samples still run: size the next block
        if block is None and kk >= 2:
            gap = min(4, kk - 1)
            r_run = torch.where(hit, 0.0, r[kk - 1 - gap :: gap]).amax(dim=1)  # rows k-1-gap and k-1
            k = _predict_block([0.0, *r_run.tolist()], kk, gap, tol)
        else:
            k = block or min(MAX_BLOCK, 2 * kk)
        x = buf[kk]
    if hint is not None:
        hint[:] = [int(its.max())]
    return x_out, its, res, conv


def compacting_iteration(
    step: StepFn,
    x0t: torch.Tensor | None,
    cols: Sequence[torch.Tensor],
    *,
    tol: float,
    tol_mode: str,
    max_iter: int,
    nonneg: bool = False,
):
    """:func:`blocked_iteration`'s rule for large problems, one iteration at a time, dropping finished samples.

    Where an iteration's products cost far more than a host synchronisation (``LARGE_WORK``: ~1 ms at n = 190,
    batch 1024 on one CPU thread), checking every iteration is free, and samples leave the batch as soon as
    enough of them have finished (``COMPACT_FRACTION`` of the running batch; the rest keep iterating on the
    narrower batch), so the products cost about the *mean* iteration count instead of the slowest sample's.
    A finished sample's result, count and residual are recorded the iteration it first meets the threshold,
    exactly as in the step-by-step loop; only rounding may differ (a column's matmul rounding can depend on the
    batch's width). Memory: two iterates and the constants, O(batch x n).
    """
    ref = cols[0] if x0t is None else x0t
    n, b = ref.shape
    x_out = ref.new_empty(b, n)
    xo_t = x_out.t()
    res = ref.new_empty(b)
    its = torch.empty(b, dtype=torch.int64, device=ref.device)
    conv = torch.zeros(b, dtype=torch.bool, device=ref.device)
    tol_t = _tol_tensor(ref, tol)
    rel = tol_mode != "abs"
    cols = list(cols)
    x = ref.new_zeros(n, b) if x0t is None else x0t
    idx = None  # original columns of the samples in the batch (None: all, in order)
    live = None  # samples of the batch not yet recorded (None: all)
    n_live = b  # samples of the batch not yet recorded
    for t in range(1, max_iter + 1):
        x_new = x.new_empty(x.shape)  # contiguous (n, m), whatever the layout of the start
        step(x, x_new, cols)
        r = (x_new - x).abs_().amax(dim=0)  # (m,): reduced while the iterate is in cache
        if rel:
            done = r < (x_new if nonneg else x_new.abs()).amax(dim=0).clamp_(min=1.0).mul_(tol)
        else:
            done = r < tol_t
        if t == max_iter:  # every sample still running ends here (converged or not)
            new = torch.ones_like(done) if live is None else live
        else:
            new = done if live is None else done & live
        sel = new.nonzero().squeeze(1)  # the one host synchronisation of an iteration
        k = sel.numel()
        x = x_new
        if not k:
            continue
        where = sel if idx is None else idx[sel]
        xo_t.index_copy_(1, where, x_new.index_select(1, sel))
        res.index_copy_(0, where, r.index_select(0, sel))
        its.index_fill_(0, where, t)
        conv.index_copy_(0, where, done.index_select(0, sel))
        n_live -= k
        if n_live == 0:
            break
        live = ~new if live is None else live & ~new
        m = x.shape[1]
        if m - n_live >= COMPACT_FRACTION * m:  # drop the recorded samples from the batch
            keep = live.nonzero().squeeze(1)
            idx = keep if idx is None else idx[keep]
            x = x.index_select(1, keep)
            cols = [c.index_select(-1, keep) for c in cols]
            live = None
    return x_out, its, res, conv


def _init(BU: torch.Tensor):
    b = BU.shape[0]
    iters = torch.zeros(b, dtype=torch.int64, device=BU.device)
    active = torch.ones(b, dtype=torch.bool, device=BU.device)
    residual = torch.full((b,), float("inf"), dtype=BU.dtype, device=BU.device)
    return iters, active, residual


# ----------------------------------------------------------------------------------------- picard backends


class BackendFallbackWarning(RuntimeWarning):
    """The backend asked for does not support a choice (e.g. the activation); the reference loop runs."""


@register_backend("reference")
def _reference(A, BU, x0, cfg: SolverConfig, hint=None):
    return reference.picard(
        A,
        BU,
        x0,
        phi=get_activation(cfg.activation).fn,
        tol=cfg.tol,
        tol_mode=cfg.tol_mode,
        max_iter=cfg.max_iter,
    )


@register_backend("python")
def _blocked(A, BU, x0, cfg: SolverConfig, hint=None):
    """The blocked loop (:func:`blocked_iteration`) in the transposed form ``x^T <- phi(A x^T + (B u)^T)``."""
    act = get_activation(cfg.activation)
    relu = act.name == "relu"

    def step(x_in, x_out, cols):
        torch.addmm(cols[0], A, x_in, out=x_out)
        x_out.relu_() if relu else x_out.copy_(act.fn(x_out))

    x0t = None if x0 is None else x0.t()
    return blocked_iteration(
        step,
        x0t,
        [BU.t().contiguous()],
        tol=cfg.tol,
        tol_mode=cfg.tol_mode,
        max_iter=cfg.max_iter,
        block=cfg.check_every,
        hint=hint,
        nonneg=act.nonneg,
    )


def _fused_unsupported(BU, cfg: SolverConfig) -> str | None:
    return None if cfg.activation == "relu" else f"implements activation 'relu' only, not {cfg.activation!r}"


@register_backend("fused", _fused_unsupported)
def _fused(A, BU, x0, cfg: SolverConfig, hint=None):
    module = fused.usable(BU, "fused")
    return fused.picard(
        module, A, BU, x0, cfg.tol, cfg.tol_mode, cfg.max_iter, fused_layout(A.shape[0], BU.shape[0])
    )


def select_backend(BU: torch.Tensor, cfg: SolverConfig) -> str:
    """The backend that runs Picard for ``cfg``: ``auto`` picks the fused loop where it applies (CPU
    float32/float64, ReLU, the extension builds), else ``python``; a named backend that does not support the
    case warns (:class:`BackendFallbackWarning`) and the ``reference`` loop runs."""
    if cfg.backend == "auto":
        if _fused_unsupported(BU, cfg) is None and fused.usable(BU, "auto") is not None:
            return "fused"
        return "python"
    reason = BACKENDS[cfg.backend].unsupported(BU, cfg)
    if reason is not None:
        warnings.warn(
            f"backend {cfg.backend!r} {reason}: the reference loop runs (slower, same results)",
            BackendFallbackWarning,
            stacklevel=3,
        )
        return "reference"
    return cfg.backend


@register_solver("picard")
def picard(A, BU, x0, cfg: SolverConfig, hint: list[int] | None = None):
    """The paper's iteration ``x_t = phi(A x_{t-1} + B u)`` (:func:`.reference.picard`), run by the backend
    :func:`select_backend` picks; ``hint``: see :func:`blocked_iteration`."""
    return BACKENDS[select_backend(BU, cfg)].fn(A, BU, x0, cfg, hint)


picard.accepts_hint = True
picard.accepts_zero_start = True  # x0 = None: zeros, without materialising them


def _solve_bordered(G: torch.Tensor, lam: float) -> torch.Tensor:
    """Anderson weights: ``argmin ||alpha^T G||^2 s.t. sum(alpha) = 1`` for ``G (batch, m, n)``."""
    b, m, _ = G.shape
    H = torch.bmm(G, G.transpose(1, 2))
    H = H + lam * H.diagonal(dim1=1, dim2=2).mean(dim=1).clamp(min=1e-30)[:, None, None] * torch.eye(
        m, dtype=G.dtype, device=G.device
    )
    ones = torch.ones(b, m, 1, dtype=G.dtype, device=G.device)
    z = torch.linalg.solve_ex(H, ones)[0]  # H^{-1} 1 (a singular H gives non-finite weights: caught below)
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
    phi = get_activation(cfg.activation).fn
    X = torch.zeros(b, m, n, dtype=BU.dtype, device=BU.device)
    F = torch.zeros_like(X)
    x = x0
    out = x0
    check_every = cfg.check_every or 1
    for t in range(cfg.max_iter):
        fx = fixed_point_map(A, BU, x, phi)
        g = fx - x
        r = g.abs().amax(dim=1)
        done = r < threshold(fx, cfg.tol, cfg.tol_mode)
        out = torch.where(active[:, None], fx, out)
        residual = torch.where(active, r, residual)
        iters += active
        active &= ~done
        if (t + 1) % check_every == 0 and not bool(active.any()):
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
    """Active-set (semismooth) Newton from the Picard image: solve the linear system of the ReLU pattern exactly.

    On a pattern ``P = diag(A x + B u > 0)`` the state equation is linear, ``(I - P A) x = P B u``; once the
    pattern is right, one solve lands on the fixed point. Each iteration takes, for the current point ``x`` (with
    ``f(x) = relu(A x + B u)`` known), one Picard step ``f(f(x))`` and the Newton point for the pattern *at*
    ``f(x)`` (one step closer to the fixed point than ``x``, so its pattern is more often the right one: 2-3
    iterations where the pattern at ``x`` needs 3-4, at the same cost). Per sample, the Newton point is kept if
    its residual is below the current point's, else the Picard step (residual at most ``kappa`` times the
    current one): the residual never grows. (Requiring the Newton point to beat the Picard step instead rejects
    Newton points one step short of the exact solution: 20+ iterations instead of 4-5 on positive ``A`` with
    ``kappa = 0.9``, ``tests/test_solvers.py``.) Each iteration costs
    a batched ``n x n`` LU for the samples still running (finished ones leave the batch): few iterations, but on
    CPU each costs tens of Picard iterations (see ``make bench``).
    """
    b, n = BU.shape
    x_out = torch.empty_like(BU)
    res = BU.new_empty(b)
    its = torch.empty(b, dtype=torch.int64, device=BU.device)
    conv = torch.zeros(b, dtype=torch.bool, device=BU.device)
    eye = torch.eye(n, dtype=A.dtype, device=A.device)
    At = A.t()
    idx = torch.arange(b, device=BU.device)
    bu = BU
    x = x0
    fx = torch.relu(torch.addmm(bu, x, At))
    r = (fx - x).abs().amax(dim=1)
    for t in range(1, cfg.max_iter + 1):
        done = r < threshold(fx, cfg.tol, cfg.tol_mode)
        stop = done if t < cfg.max_iter else torch.ones_like(done)
        # Finished samples are recorded and leave the batch (one host sync per iteration: each iteration costs
        # a batched LU anyway).
        fin = stop.nonzero().squeeze(1)
        if fin.numel():
            sel = idx[fin]
            x_out.index_copy_(0, sel, fx[fin])
            res.index_copy_(0, sel, r[fin])
            its.index_fill_(0, sel, t)
            conv.index_copy_(0, sel, done[fin])
            if fin.numel() == idx.numel():
                break
            keep = (~stop).nonzero().squeeze(1)
            idx, bu, fx, r = idx[keep], bu[keep], fx[keep], r[keep]
        # the Picard step from f(x), and the pattern there
        z_p = torch.addmm(bu, fx, At)
        fx_p = torch.relu(z_p)
        r_p = (fx_p - fx).abs().amax(dim=1)
        p = (z_p > 0).to(A.dtype)
        M = eye - p[:, :, None] * A  # (running, n, n): I - P A
        x_newton, info = batched_solve(M, (p * bu).unsqueeze(-1), check_errors=False)
        x_newton = x_newton.squeeze(-1)
        fx_new = torch.relu(torch.addmm(bu, x_newton, At))
        r_new = (fx_new - x_newton).abs().amax(dim=1)
        ok = (r_new < r) & (info == 0) & torch.isfinite(r_new)
        okc = ok[:, None]
        fx = torch.where(okc, fx_new, fx_p)
        r = torch.where(ok, r_new, r_p)
    return x_out, its, res, conv
