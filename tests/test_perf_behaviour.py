"""The fast paths keep the paper's semantics: blocked Picard / fixed-point adjoint against step-by-step loops,
block schedules and hints that change nothing, bounded block memory, the measured ``auto`` adjoint rule, and the
ImplicitRNN's exact first-step warm start."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import make_problem
from hypothesis import given, settings
from hypothesis import strategies as st

import lightning_implicit.implicit.solvers as solvers_mod
from lightning_implicit.implicit import (
    AdjointConfig,
    ImplicitRNN,
    SolverConfig,
    fixed_point_solve,
    project_rows_l1,
)
from lightning_implicit.implicit.adjoint import solve_adjoint
from lightning_implicit.implicit.stats import ConvergenceWarning

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_picard(A, BU, x0, tol, tol_mode, max_iter):
    """The paper's rule, one iteration at a time: a sample stops at its first ``||f(x) - x|| < thr``.

    Column-major like both loops on small problems (``x^T <- relu(A x^T + (B u)^T)``, the same matmul call):
    without compaction the solvers and the reference agree bit for bit, so the test checks the bookkeeping
    exactly."""
    but = BU.t().contiguous()
    n, b = but.shape
    # iterates written with out= into separate (hence 64-byte aligned) (n, batch) tensors, as in the solver
    buf = [x0.t().contiguous().clone(), BU.new_empty(n, b)]  # (clone: never write into x0)
    xt = buf[0].clone()
    iters = torch.zeros(b, dtype=torch.int64)
    res = torch.full((b,), math.inf, dtype=BU.dtype)
    active = torch.ones(b, dtype=torch.bool)
    for _ in range(max_iter):
        fx = torch.addmm(but, A, buf[0], out=buf[1]).relu_()
        r = (fx - buf[0]).abs().amax(dim=0)
        thr = tol if tol_mode == "abs" else tol * fx.abs().amax(dim=0).clamp(min=1.0)
        xt = torch.where(active, fx, xt)
        res = torch.where(active, r, res)
        iters += active
        active &= ~(r < thr)
        if not bool(active.any()):
            break
        buf.reverse()
    return xt.t(), iters, res, ~active


def reference_adjoint(A, d, g, tol, tol_mode, max_iter):
    """``w <- g + (d * w) A`` one iteration at a time (column-major, as the solver)."""
    gt, dt = g.t().contiguous(), d.t().contiguous()
    n, b = gt.shape
    buf = [gt.clone(), g.new_empty(n, b)]
    wt = gt.clone()
    iters = torch.zeros(b, dtype=torch.int64)
    active = torch.ones(b, dtype=torch.bool)
    for _ in range(max_iter):
        w_new = torch.addmm(gt, A.t(), dt * buf[0], out=buf[1])
        r = (w_new - buf[0]).abs().amax(dim=0)
        thr = tol if tol_mode == "abs" else tol * w_new.abs().amax(dim=0).clamp(min=1.0)
        wt = torch.where(active, w_new, wt)
        iters += active
        active &= ~(r < thr)
        if not bool(active.any()):
            break
        buf.reverse()
    return wt.t(), iters, ~active


# ------------------------------------------------------------------------------------------ blocked Picard


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 30),
    batch=st.integers(1, 40),
    dtype=st.sampled_from([torch.float64, torch.float32]),
    log_scale=st.floats(-2, 4),
    block=st.sampled_from([None, 1, 2, 3, 8, 50]),
    tol_mode=st.sampled_from(["abs", "rel"]),
    max_iter=st.sampled_from([1, 3, 7, 40, 2000]),
    warm=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_picard_is_the_step_by_step_rule(n, batch, dtype, log_scale, block, tol_mode, max_iter, warm, seed):
    """Same per-sample iteration counts, convergence flags, residuals and points as the one-at-a-time loop,
    whatever the block size, including samples cut off by ``max_iter``: the blocked Python loop and the fused
    C++ loop (``block`` does not apply there; in float32 its pass runs on blocks of 16 samples)."""
    A, B, u = make_problem(n, 4, 0.9, 10.0**log_scale, batch, seed)
    A, BU = A.to(dtype), (u @ B.t()).to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    x0 = torch.rand(batch, n, generator=g, dtype=dtype) if warm else torch.zeros_like(BU)
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    x_ref, it_ref, r_ref, c_ref = reference_picard(A, BU, x0, tol, tol_mode, max_iter)
    for backend in ("python", "fused"):
        cfg = SolverConfig(
            tol=tol, tol_mode=tol_mode, max_iter=max_iter, check_every=block, warn=False, backend=backend
        )
        x, stats = fixed_point_solve(A, BU, x0, cfg)
        _assert_same_rule(x, stats, x_ref, it_ref, r_ref, c_ref, batch, n)


def _assert_same_rule(x, stats, x_ref, it_ref, r_ref, c_ref, batch, n):
    # small problems: no compaction, so the same arithmetic as the reference, bit for bit
    assert stats.iterations.tolist() == it_ref.tolist()
    assert stats.converged.tolist() == c_ref.tolist()
    assert torch.equal(stats.residual, r_ref)
    assert torch.equal(x, x_ref)
    assert x.is_contiguous() and x.shape == (batch, n)


@pytest.mark.parametrize("backend", ["python", "fused"])
def test_large_problems_compact_and_still_follow_the_rule(monkeypatch, backend):
    """Above ``LARGE_WORK`` finished samples leave the batch (both loops)."""
    monkeypatch.setattr(solvers_mod, "LARGE_WORK", 1)
    A, B, u = make_problem(24, 5, 0.95, 1.0, 40, seed=3)
    u[:8] *= 1e-3  # early finishers
    u[8:16] *= 1e3  # late finishers
    BU = u @ B.t()
    for mode in ("abs", "rel"):
        x_ref, it_ref, _, c_ref = reference_picard(A, BU, torch.zeros_like(BU), 1e-10, mode, 3000)
        x, stats = fixed_point_solve(
            A,
            BU,
            torch.zeros_like(BU),
            SolverConfig(tol=1e-10, tol_mode=mode, max_iter=3000, backend=backend),
        )
        assert stats.iterations.tolist() == it_ref.tolist()
        assert bool(stats.converged.all()) and bool(c_ref.all())
        torch.testing.assert_close(x, x_ref, rtol=1e-11, atol=1e-11)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 24),
    batch=st.integers(1, 40),
    log_scale=st.floats(-3, 4),
    tol_mode=st.sampled_from(["abs", "rel"]),
    max_iter=st.sampled_from([1, 2, 5, 40, 2000]),
    warm=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_compacting_picard_is_the_step_by_step_rule(n, batch, log_scale, tol_mode, max_iter, warm, seed):
    """The large-problem loop (samples leave the batch as they finish, compaction by fractions) records each
    sample's first iterate below the threshold, its count and residual, also when ``max_iter`` cuts it off."""
    A, B, u = make_problem(n, 4, 0.9, 10.0**log_scale, batch, seed)
    order = torch.randperm(batch, generator=torch.Generator().manual_seed(seed))
    u = u * torch.logspace(-3, 3, batch, dtype=u.dtype)[order][:, None]  # early and late finishers
    BU = u @ B.t()
    g = torch.Generator().manual_seed(seed + 1)
    x0 = torch.rand(batch, n, generator=g, dtype=torch.float64) if warm else torch.zeros_like(BU)
    # Compaction may change a column's rounding (~1e-16 of |x|): the abs tolerance stays far above it, so no
    # residual sits within rounding of its threshold and the iteration counts must agree exactly.
    tol = 1e-9 * max(1.0, float(BU.abs().max())) if tol_mode == "abs" else 1e-9
    x_ref, it_ref, r_ref, c_ref = reference_picard(A, BU, x0, tol, tol_mode, max_iter)

    def step(x_in, x_out, cols):
        torch.addmm(cols[0], A, x_in, out=x_out).relu_()

    x, its, res, conv = solvers_mod.compacting_iteration(
        step,
        x0.t().contiguous() if warm else None,
        [BU.t().contiguous()],
        tol=tol,
        tol_mode=tol_mode,
        max_iter=max_iter,
        nonneg=True,
    )
    assert its.tolist() == it_ref.tolist()
    assert conv.tolist() == c_ref.tolist()
    # compaction: a column's matmul rounding can depend on the batch's width (float64 rounding of the iterates)
    scale = 1e-13 * max(1.0, float(x_ref.abs().max()))
    torch.testing.assert_close(res, r_ref, rtol=1e-6, atol=scale)
    torch.testing.assert_close(x, x_ref, rtol=1e-12, atol=scale)
    assert x.is_contiguous() and x.shape == (batch, n)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n, batch", [(20, 16), (17, 9), (7, 3)])
def test_hint_and_block_schedule_do_not_change_results_bit_for_bit(dtype, n, batch):
    """Every iterate sits 64-byte aligned whatever its slot in a block (BLAS may round by alignment)."""
    A, B, u = make_problem(n, 6, 0.95, 3.0, batch, seed=5, dtype=dtype)
    BU = u @ B.t()
    x0 = torch.zeros_like(BU)
    cfg = SolverConfig(warn=False, tol=1e-5 if dtype == torch.float32 else 1e-12, backend="python")
    x_a, s_a = fixed_point_solve(A, BU, x0, cfg)
    for block in (1, 2, 3, 5):
        x_b, s_b = fixed_point_solve(A, BU, x0, cfg.replace(check_every=block))
        assert torch.equal(x_a, x_b) and torch.equal(s_a.iterations, s_b.iterations)
    for hint in ([], [1], [3], [int(s_a.iterations.max())], [200]):
        h = list(hint)
        x_b, s_b = fixed_point_solve(A, BU, x0, cfg, h)
        assert torch.equal(x_a, x_b) and torch.equal(s_a.iterations, s_b.iterations)
        assert h == [int(s_a.iterations.max())]  # updated in place


def test_block_buffer_memory_is_bounded(monkeypatch):
    """A block's iterate buffer never exceeds ``BLOCK_BUFFER_ELEMENTS`` (+ one iterate): memory does not grow with
    the number of iterations."""
    monkeypatch.setattr(solvers_mod, "BLOCK_BUFFER_ELEMENTS", 10 * 8 * 12)
    sizes = []
    real = solvers_mod._aligned_buffer

    def spy(like, k, n, m):
        sizes.append(k * n * m)
        return real(like, k, n, m)

    monkeypatch.setattr(solvers_mod, "_aligned_buffer", spy)
    A, B, u = make_problem(8, 3, 0.99, 1.0, 12, seed=2)
    BU = u @ B.t()
    x, stats = fixed_point_solve(
        A, BU, torch.zeros_like(BU), SolverConfig(tol=1e-300, max_iter=500, warn=False, backend="python")
    )
    assert int(stats.iterations.max()) == 500
    assert sizes and max(sizes) <= 11 * 8 * 12


# ------------------------------------------------------------------------------------------ adjoint


@pytest.mark.parametrize("backend", ["python", "fused"])
@pytest.mark.parametrize("large", [False, True])
@pytest.mark.parametrize("tol_mode", ["abs", "rel"])
def test_adjoint_is_the_step_by_step_rule(monkeypatch, large, tol_mode, backend):
    if large:
        monkeypatch.setattr(solvers_mod, "LARGE_WORK", 1)
    g = torch.Generator().manual_seed(4)
    n, b = 17, 9
    A = project_rows_l1(torch.randn(n, n, generator=g, dtype=torch.float64), 0.9)
    d = (torch.rand(b, n, generator=g) > 0.4).double()
    grad = (
        torch.randn(b, n, generator=g, dtype=torch.float64)
        * torch.logspace(-4, 3, b, dtype=torch.float64)[:, None]
    )
    w_ref, it_ref, c_ref = reference_adjoint(A, d, grad, 1e-11, tol_mode, 2000)
    w, iters, _, conv, mode = solve_adjoint(
        A,
        d,
        grad,
        AdjointConfig(mode="fixed_point", tol=1e-11, tol_mode=tol_mode, max_iter=2000, backend=backend),
    )
    assert mode == "fixed_point"
    assert iters.tolist() == it_ref.tolist() and conv.tolist() == c_ref.tolist()
    if (
        large
    ):  # compaction: a sample's rounding may depend on the batch width (and the fused loop is row-major)
        torch.testing.assert_close(w, w_ref, rtol=1e-11, atol=1e-13)
    else:
        assert torch.equal(w, w_ref)


def test_auto_adjoint_rule_is_the_measured_one():
    cfg = AdjointConfig()
    assert cfg.resolved_mode(8, 64, "cpu") == "direct"  # batch * n^2 = 4096
    assert cfg.resolved_mode(16, 32, "cpu") == "direct"  # 8192
    assert cfg.resolved_mode(4, 512, "cpu") == "direct"
    assert cfg.resolved_mode(16, 64, "cpu") == "fixed_point"  # 16384
    assert cfg.resolved_mode(20, 64, "cpu") == "fixed_point"
    assert cfg.resolved_mode(36, 64, "cpu") == "fixed_point"  # the previous default picked direct here
    assert cfg.resolved_mode(16, 1024, "cpu") == "fixed_point"
    assert cfg.resolved_mode(65, 1, "cpu") == "fixed_point"
    assert cfg.resolved_mode(64, 1024, "cuda") == "direct"  # other devices: previous rule (n <= 64)
    assert cfg.resolved_mode(65, 8, "cuda") == "fixed_point"
    assert AdjointConfig(direct_max_n=64, direct_max_work=10**9).resolved_mode(64, 1024, "cpu") == "direct"
    assert AdjointConfig(mode="direct").resolved_mode(500, 10**6) == "direct"
    # with the fused loop the iteration always wins (unless the user set limits)
    assert cfg.resolved_mode(4, 16, "cpu", fused=True) == "fixed_point"
    assert AdjointConfig(direct_max_n=8).resolved_mode(4, 16, "cpu", fused=True) == "direct"


def test_auto_adjoint_follows_the_loop_that_runs():
    A, B, u = make_problem(8, 3, 0.9, 1.0, 16, seed=1)  # batch * n^2 = 1024: direct for the Python loop
    d = (torch.addmm(u @ B.t(), torch.zeros(16, 8, dtype=A.dtype), A.t()) > 0).to(A.dtype)
    g = torch.randn(16, 8, dtype=A.dtype, generator=torch.Generator().manual_seed(2))
    assert solve_adjoint(A, d, g, AdjointConfig(backend="python"))[-1] == "direct"
    assert solve_adjoint(A, d, g, AdjointConfig())[-1] == "fixed_point"


# ------------------------------------------------------------------------------------------ ImplicitRNN


def _rnn_pair(**kw):
    torch.manual_seed(0)
    warm = ImplicitRNN(1, 12, 5, 2, warm_start=True, **kw).double()
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        warm.layer.A.copy_(torch.randn(12, 12, generator=g, dtype=torch.float64))
    warm.project_()
    cold = ImplicitRNN(1, 12, 5, 2, warm_start=False, **kw).double()
    cold.load_state_dict(warm.state_dict())
    return warm, cold


@pytest.mark.parametrize("feedback", [True, False])
def test_rnn_first_step_starts_at_its_fixed_point(feedback):
    """Scalar inputs: ``x_1 = s^+ x*(e) + s^- x*(-e)`` (positive homogeneity, h_0 = 0) is the first fixed point, so
    the first step needs one iteration; outputs and gradients are those of the cold start."""
    warm, cold = _rnn_pair(kappa=0.95, solver=SolverConfig(tol=1e-10, max_iter=3000), feedback=feedback)
    s = torch.randn(7, 6, 1, generator=torch.Generator().manual_seed(8), dtype=torch.float64) * 3
    s[0, 0, 0] = 0.0
    yw, yc = warm(s), cold(s)
    torch.testing.assert_close(yw, yc, rtol=0, atol=1e-8)
    assert bool((warm.last_stats.iterations[:, 0] == 1).all())
    assert bool((cold.last_stats.iterations[:, 0] > 1).any())
    assert warm.last_stats.extra["reference_iterations"] >= 2
    yw.square().sum().backward()
    yc.square().sum().backward()
    for (k, pw), pc in zip(warm.named_parameters(), cold.parameters(), strict=True):
        torch.testing.assert_close(pw.grad, pc.grad, rtol=1e-6, atol=1e-8, msg=k)


def test_rnn_reference_points_are_reused_only_for_the_same_weights():
    """The first step's reference points are solved again only when ``A`` or ``B`` changed (compared by value:
    fused Adam does not bump the version counter), so outputs depend on the weights and the input only, never on
    earlier calls; a failed (NaN) solve is not kept."""
    warm, cold = _rnn_pair(kappa=0.95, solver=SolverConfig(tol=1e-10, max_iter=3000))
    s = torch.randn(7, 6, 1, generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 3
    y1 = warm(s)
    assert warm.last_stats.extra["reference_iterations"] > 0
    assert torch.equal(warm(s), y1) and warm.last_stats.extra["reference_iterations"] == 0
    good = {k: v.clone() for k, v in warm.state_dict().items()}
    warm.layer.A.grad = torch.ones_like(warm.layer.A)
    torch.optim.Adam([warm.layer.A], lr=0.05, fused=True).step()  # in place, without a version bump
    cold.load_state_dict(warm.state_dict())
    fresh = copy.deepcopy(cold)
    fresh.warm_start = True
    y2 = warm(s)
    assert warm.last_stats.extra["reference_iterations"] > 0
    assert bool((warm.last_stats.iterations[:, 0] == 1).all())
    torch.testing.assert_close(y2, cold(s), rtol=0, atol=1e-8)
    assert torch.equal(y2, fresh(s))  # no memory of the earlier weights
    with torch.no_grad():
        warm.layer.B.fill_(float("nan"))
    with pytest.warns(ConvergenceWarning):
        warm(s)
    warm.load_state_dict(good)
    fresh.load_state_dict(good)
    assert torch.equal(warm(s), fresh(s)) and torch.equal(warm(s), y1)


def test_rnn_first_step_start_gradcheck():
    torch.manual_seed(1)
    rnn = ImplicitRNN(
        1,
        5,
        3,
        2,
        warm_start=True,
        kappa=0.7,
        solver=SolverConfig(tol=1e-13, max_iter=5000),
        adjoint=AdjointConfig(tol=1e-13, max_iter=5000),
    ).double()
    s = torch.randn(3, 4, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: rnn(s), (s,), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("layout", ["COLUMNS", "ROWS", "COLUMNS_DROPPING"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_fused_layout_follows_the_rule(layout, dtype):
    """The fused loop's three layouts (:func:`.solvers.fused_layout` picks one by size) record each sample at its
    first iterate below the threshold: the counts and flags of the step-by-step rule, the points to rounding (bit
    for bit in the columns layout, whose products are the reference's), forward and adjoint; samples finishing
    early, late and never (``max_iter``) so that the dropping layouts drop several times."""
    from lightning_implicit.implicit import fused

    module = fused.fused_module(required=True)
    code = getattr(fused, layout)
    A, B, u = make_problem(24, 5, 0.97, 1.0, 70, seed=3, dtype=dtype)
    u[:20] *= 1e-3  # early finishers
    u[20:30] *= 1e3  # late finishers
    BU = u @ B.t()
    tol = 1e-11 if dtype == torch.float64 else 1e-5
    close = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    for mode in ("abs", "rel"):
        for max_iter in (3000, 40):
            x_ref, it_ref, _, c_ref = reference_picard(A, BU, torch.zeros_like(BU), tol, mode, max_iter)
            x, its, res, conv = fused.picard(module, A, BU, None, tol, mode, max_iter, code)
            assert its.tolist() == it_ref.tolist() and conv.tolist() == c_ref.tolist()
            if code == fused.COLUMNS:
                assert torch.equal(x, x_ref)
            else:
                torch.testing.assert_close(x, x_ref, **close)
    g = torch.Generator().manual_seed(4)
    d = (torch.rand(70, 24, generator=g) > 0.3).to(dtype)
    grad = torch.randn(70, 24, generator=g, dtype=dtype) * torch.logspace(-4, 3, 70, dtype=dtype)[:, None]
    for mode in ("abs", "rel"):
        w_ref, it_ref, c_ref = reference_adjoint(A, d, grad, tol, mode, 2000)
        w, its, _, conv, n_bad = fused.adjoint(module, A, d, grad, tol, mode, 2000, code)
        assert its.tolist() == it_ref.tolist() and conv.tolist() == c_ref.tolist()
        assert n_bad == int((~conv).sum())
        torch.testing.assert_close(w, w_ref, **close)


def test_fused_layout_rule():
    """Rows from n >= 32 at n^2 batch >= 2^19 (and wherever the Python loop compacts), dropping columns from
    n^2 batch >= 2^16, plain columns below (the paper's n = 20, batch 64: bit for bit the Python loop's)."""
    from lightning_implicit.implicit import fused
    from lightning_implicit.implicit.solvers import fused_layout

    assert fused_layout(20, 64) == fused.COLUMNS
    assert fused_layout(20, 256) == fused.COLUMNS_DROPPING
    assert fused_layout(20, 1024) == fused.COLUMNS_DROPPING
    assert fused_layout(20, 8192) == fused.ROWS  # (LARGE_WORK)
    assert fused_layout(36, 256) == fused.COLUMNS_DROPPING
    assert fused_layout(36, 1024) == fused.ROWS
    assert fused_layout(100, 64) == fused.ROWS
    assert fused_layout(8, 16) == fused.COLUMNS


@pytest.mark.parametrize("layout", ["COLUMNS", "ROWS"])
def test_zero_start_skips_the_first_product_only_where_it_adds_zeros(layout):
    """From x = 0 the first iterate is relu(B u) (the fused loop skips that product); with a non-finite entry in
    A the product runs (0 * inf = NaN), so NaN shows up at the same iteration as in the step-by-step rule."""
    from lightning_implicit.implicit import fused

    module = fused.fused_module(required=True)
    A, B, u = make_problem(12, 4, 0.9, 1.0, 20, seed=7)
    BU = u @ B.t()
    zeros = torch.zeros_like(BU)
    x, its, res, conv = fused.picard(module, A, BU, None, 1e-12, "abs", 500, getattr(fused, layout))
    x_ref, it_ref, r_ref, c_ref = reference_picard(A, BU, zeros, 1e-12, "abs", 500)
    assert its.tolist() == it_ref.tolist() and conv.tolist() == c_ref.tolist()
    torch.testing.assert_close(x, x_ref, rtol=0, atol=1e-15)
    A_bad = A.clone()
    A_bad[3, 5] = float("inf")
    for max_iter in (1, 4):  # (1: the first iterate itself has the NaN column)
        x, its, res, conv = fused.picard(
            module, A_bad, BU, None, 1e-12, "abs", max_iter, getattr(fused, layout)
        )
        x_ref, it_ref, r_ref, c_ref = reference_picard(A_bad, BU, zeros, 1e-12, "abs", max_iter)
        assert its.tolist() == it_ref.tolist() and conv.tolist() == c_ref.tolist()
        assert bool(x_ref.isnan().any()) and torch.equal(x.isnan(), x_ref.isnan())
        assert torch.equal(res.isnan(), r_ref.isnan())
