"""Forward fixed-point solvers (picard / anderson / newton) and the adjoint solve, on random well-posed models."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import make_problem
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_implicit.implicit import (
    SOLVERS,
    AdjointConfig,
    ConvergenceWarning,
    ImplicitModel,
    SolverConfig,
    fixed_point_solve,
    project_rows_l1,
    register_solver,
)
from lightning_implicit.implicit.adjoint import solve_adjoint
from lightning_implicit.implicit.solvers import fixed_point_map

SOLVER_NAMES = ["picard", "anderson", "newton"]


pytestmark = pytest.mark.usefixtures("one_thread")


def solve(A, BU, solver, **cfg):
    cfg.setdefault("max_iter", 5000)
    return fixed_point_solve(A, BU, torch.zeros_like(BU), SolverConfig(method=solver, **cfg))


def true_residual(A, BU, x):
    """``||relu(x A^T + B u) - x||_inf`` per sample, evaluated in float64 (independently of the solver)."""
    A, BU, x = A.double(), BU.double(), x.double()
    return (torch.relu(x @ A.t() + BU) - x).abs().amax(dim=1)


# --------------------------------------------------------------------------------------------- properties


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(2, 40),
    p=st.integers(1, 20),
    kappa=st.floats(0.5, 0.95),
    log_scale=st.floats(-3, 5),
    batch=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
    precision=st.sampled_from(["float64-abs", "float32-rel"]),
)
def test_all_solvers_converge_satisfy_the_equation_and_agree(n, p, kappa, log_scale, batch, seed, precision):
    scale = 10.0**log_scale
    if precision == "float64-abs":
        dtype, tol_mode, tol = torch.float64, "abs", 1e-9
    else:
        dtype, tol_mode, tol = torch.float32, "rel", 1e-5
    A, B, u = make_problem(n, p, kappa, scale, batch, seed, dtype)
    BU = u @ B.t()
    # Rounding of f itself (float64 at |x| ~ 1e6 has an ulp ~ 1e-10; float32 ~ 1e-7 relative).
    x_scale = float(BU.abs().max()) / (1 - kappa) + 1.0
    slack = 4 * n * torch.finfo(dtype).eps * x_scale

    xs = {}
    for name in SOLVER_NAMES:
        x, stats = solve(A, BU, name, tol=tol, tol_mode=tol_mode)
        assert x.dtype == dtype and x.shape == (batch, n)
        assert bool((x >= 0).all())  # a ReLU image (Anderson's mixed iterate can be negative: not returned)
        assert bool(stats.converged.all()), (name, stats.residual, stats.iterations)
        assert bool((stats.iterations >= 1).all()) and bool((stats.iterations <= 5000).all())
        # The returned point satisfies x = relu(A x + B u) to the tolerance (it is f(x_prev), so <= kappa*tol).
        thr = tol if tol_mode == "abs" else tol * x.double().abs().amax(dim=1).clamp(min=1.0)
        r = true_residual(A, BU, x)
        assert bool((r <= thr + slack).all()), (name, r, thr)
        # The reported residual is the one checked against the threshold.
        assert bool((stats.residual.double() < thr + slack).all())
        xs[name] = x.double()

    # Contraction: ||x - x*|| <= ||f(x) - x|| / (1 - kappa), so two solutions differ by <= 2 tol / (1 - kappa).
    ref = xs["picard"]
    thr = tol if tol_mode == "abs" else tol * ref.abs().amax(dim=1).clamp(min=1.0)
    bound = 2 * (thr + slack) / (1 - kappa)
    for name in ("anderson", "newton"):
        diff = (xs[name] - ref).abs().amax(dim=1)
        assert bool((diff <= bound).all()), (name, diff, bound)


@pytest.mark.parametrize("solver", SOLVER_NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_input_converges_at_once(solver, dtype):
    A, B, u = make_problem(15, 4, 0.95, 1.0, 3, seed=1, dtype=dtype)
    BU = torch.zeros(3, 15, dtype=dtype)
    x, stats = solve(A, BU, solver, tol=1e-9)
    assert torch.equal(x, torch.zeros_like(x))
    assert stats.iterations.tolist() == [1, 1, 1]
    assert bool(stats.converged.all())
    assert stats.residual.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("solver", SOLVER_NAMES)
def test_per_sample_iteration_counts(solver):
    """Per-sample stopping: easy samples of a batch stop early, hard ones keep going."""
    A, B, u1 = make_problem(20, 8, 0.9, 1.0, 1, seed=0)
    u = torch.cat([0 * u1, 1e-3 * u1, u1, 1e4 * u1])
    x, stats = solve(A, u @ B.t(), solver, tol=1e-9)
    it = stats.iterations.tolist()
    assert it[0] == 1  # zero input
    assert min(it[1:]) > 1
    if solver != "newton":  # Newton is (nearly) scale-invariant: the ReLU pattern does not depend on |u|
        assert it[3] > it[1], it
    # Each sample equals the solve of that sample alone (frozen samples do not move).
    for i in range(4):
        xi, si = solve(A, u[i : i + 1] @ B.t(), solver, tol=1e-9)
        assert int(si.iterations) == it[i]
        torch.testing.assert_close(xi[0], x[i], rtol=0, atol=1e-12 * (1 + float(x[i].abs().max())))


@pytest.mark.parametrize("solver", SOLVER_NAMES)
def test_check_every_does_not_change_per_sample_results(solver):
    A, B, u = make_problem(12, 5, 0.9, 10.0, 5, seed=3)
    u[0] = 0
    BU = u @ B.t()
    x1, s1 = solve(A, BU, solver, tol=1e-9, check_every=1)
    x7, s7 = solve(A, BU, solver, tol=1e-9, check_every=7)
    assert torch.equal(s1.iterations, s7.iterations)
    assert torch.equal(x1, x7)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 40), magnitude=st.sampled_from([1.0, 10.0, 100.0]), seed=st.integers(0, 2**31 - 1))
def test_strictly_upper_terminates_within_n_iterations(n, magnitude, seed):
    """feedback=False: A strictly upper triangular is nilpotent, so Picard from 0 is exact after n steps
    (one more to observe a zero residual), whatever the size of A's entries (no norm bound needed)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = ImplicitModel(
        6, n, 2, feedback=False, solver=SolverConfig(max_iter=n + 1)
    ).double()  # the paper's 3e-6 abs rule
    with torch.no_grad():
        model.A.copy_(torch.randn(n, n, generator=g, dtype=torch.float64) * magnitude)
    model.project_()
    assert torch.equal(model.A, torch.triu(model.A, 1))
    u = torch.randn(8, 6, generator=g, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # max_iter = n + 1 is enough
        model(u)
    stats = model.last_stats
    assert bool(stats.converged.all())
    assert int(stats.iterations.max()) <= n + 1

    # With a tolerance only an exact zero residual meets, it still stops within n + 1 iterations, on the
    # exact forward pass of the DAG (a float64 reference computed unit by unit from the last one).
    exact = ImplicitModel(6, n, 2, feedback=False, solver=SolverConfig(tol=1e-300, max_iter=n + 1)).double()
    exact.load_state_dict(model.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        x = exact.layer(u).detach()
    assert float(exact.last_stats.residual.max()) == 0.0
    assert int(exact.last_stats.iterations.max()) <= n + 1
    A, B = model.A.detach(), model.B.detach()
    ref = torch.zeros(8, n, dtype=torch.float64)
    for i in reversed(range(n)):
        ref[:, i] = torch.relu(ref @ A[i] + u @ B[i])
    torch.testing.assert_close(x, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("solver", ["anderson", "newton"])
def test_strictly_upper_other_solvers_converge(solver):
    g = torch.Generator().manual_seed(5)
    n = 25
    A = torch.triu(torch.randn(n, n, generator=g, dtype=torch.float64), 1)
    BU = torch.randn(8, n, generator=g, dtype=torch.float64)
    x, stats = solve(A, BU, solver, tol=1e-12, tol_mode="rel", max_iter=500)
    xp, sp = solve(A, BU, "picard", tol=1e-12, tol_mode="rel")
    assert bool(stats.converged.all())
    torch.testing.assert_close(x, xp, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------------------ non-convergence reporting


def _convergence_warnings(record):
    return [w for w in record if issubclass(w.category, ConvergenceWarning)]


@pytest.mark.parametrize("solver", SOLVER_NAMES)
def test_max_iter_too_small_is_reported_once_per_call(solver):
    A, B, u = make_problem(30, 6, 0.95, 100.0, 16, seed=2)
    u[0] = 0  # converges at once even with max_iter=2
    BU = u @ B.t()
    mi = 1 if solver == "newton" else 2  # Newton from the Picard image converges in 2 iterations here
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        x, stats = solve(A, BU, solver, tol=1e-12, max_iter=mi)
        assert len(_convergence_warnings(record)) == 1
        assert "15/16" in str(_convergence_warnings(record)[0].message)
        solve(A, BU, solver, tol=1e-12, max_iter=mi)
        assert len(_convergence_warnings(record)) == 2  # once per call, never per sample
    assert stats.converged.tolist() == [True] + [False] * 15
    assert int(stats.iterations[0]) == 1 and bool((stats.iterations[1:] == mi).all())
    assert bool((stats.residual[1:] >= 1e-12).all())
    assert stats.n_unconverged == 15 and stats.converged_fraction == pytest.approx(1 / 16)

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _, quiet = solve(A, BU, solver, tol=1e-12, max_iter=mi, warn=False)
    assert not _convergence_warnings(record)
    assert quiet.n_unconverged == 15


def test_model_forward_warns_once_per_call():
    model = ImplicitModel(6, 30, 2, solver=SolverConfig(max_iter=3, tol=1e-12)).double()
    with torch.no_grad():
        model.A.copy_(torch.rand(30, 30, dtype=torch.float64))
    model.project_()
    u = torch.randn(32, 6, dtype=torch.float64) * 100
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model(u)
    assert len(_convergence_warnings(record)) == 1
    assert model.last_stats.n_unconverged > 0
    assert not bool(model.last_stats.converged.all())


def test_float32_absolute_tolerance_is_unreachable_at_large_scale_but_relative_is():
    """The paper's rule ``||x_t - x_{t-1}||_inf < 3e-6`` in float32 at inputs of 1e4: |x| ~ 1e5 has an ulp
    of ~8e-3, so the residual plateaus at the float32 resolution of |x| and never reaches 3e-6; ``rel``
    (3e-6 * ||x||) converges. Setup: nonnegative A with ||A||_inf = 0.95 (every row on the ball, a slow
    contraction), n = 40 and a batch of 64. Rounding can occasionally land an iterate on an exact float
    fixed point (residual exactly 0, "converged" by luck; with n <= 20 most samples do), so the test
    asserts that *some* samples are reported as non-converged, never that all are."""
    g = torch.Generator().manual_seed(0)
    n, p = 40, 10
    A = project_rows_l1(torch.rand(n, n, generator=g), 0.95)
    assert float(A.abs().sum(1).min()) == pytest.approx(0.95, abs=1e-5)
    B = torch.randn(n, p, generator=g)
    u = torch.randn(64, p, generator=g) * 1e4
    BU = u @ B.t()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        xa, sa = solve(A, BU, "picard", tol=3e-6, tol_mode="abs", max_iter=300)
    assert sa.n_unconverged > 0
    assert len(_convergence_warnings(record)) == 1
    bad = ~sa.converged
    assert bool((sa.iterations[bad] == 300).all())
    # The stuck residual is rounding noise: above 3e-6, but tiny relative to |x| (a few ulps of float32).
    x_inf = xa.abs().amax(dim=1)
    assert bool((sa.residual[bad] >= 3e-6).all())
    assert bool((sa.residual[bad] <= 64 * torch.finfo(torch.float32).eps * x_inf[bad]).all())
    assert float(x_inf.min()) > 1e3

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        xr, sr = solve(A, BU, "picard", tol=3e-6, tol_mode="rel", max_iter=300)
    assert not _convergence_warnings(record)
    assert bool(sr.converged.all())
    assert int(sr.iterations.max()) < 300
    # Both are the same fixed point to float32 accuracy (checked against a float64 solve).
    x64, s64 = solve(A.double(), BU.double(), "picard", tol=1e-9, tol_mode="rel", max_iter=3000)
    assert bool(s64.converged.all())
    err = (xr.double() - x64).abs().amax(dim=1) / x64.abs().amax(dim=1)
    assert float(err.max()) < 1e-4


# ------------------------------------------------------------------------------------------ adjoint solve


@pytest.mark.parametrize("mode", ["direct", "fixed_point"])
def test_adjoint_solves_the_linear_system(mode):
    g = torch.Generator().manual_seed(4)
    n, b = 17, 6
    A = project_rows_l1(torch.randn(n, n, generator=g, dtype=torch.float64), 0.9)
    d = (torch.rand(b, n, generator=g) > 0.4).double()
    grad = torch.randn(b, n, generator=g, dtype=torch.float64)
    w, iters, residual, converged, used = solve_adjoint(
        A, d, grad, AdjointConfig(mode=mode, tol=1e-13, tol_mode="abs", max_iter=2000)
    )
    assert used == mode and bool(converged.all())
    eye = torch.eye(n, dtype=torch.float64)
    for i in range(b):
        expected = torch.linalg.solve(eye - A.t() @ torch.diag(d[i]), grad[i])
        torch.testing.assert_close(w[i], expected, rtol=0, atol=1e-11)
    if mode == "direct":
        assert bool((iters == 0).all())
    else:
        assert bool((iters > 1).all())
    assert float(residual.max()) < 1e-11


def test_adjoint_auto_mode_and_nonconvergence_warning():
    assert AdjointConfig(mode="auto", direct_max_n=64).resolved_mode(64) == "direct"
    assert AdjointConfig(mode="auto", direct_max_n=64).resolved_mode(65) == "fixed_point"
    model = ImplicitModel(4, 20, 1, adjoint=AdjointConfig(mode="fixed_point", tol=1e-14, max_iter=2)).double()
    with torch.no_grad():
        model.A.copy_(torch.rand(20, 20, dtype=torch.float64))
    model.project_()
    y = model(torch.randn(8, 4, dtype=torch.float64))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        y.sum().backward()
    assert len(_convergence_warnings(record)) == 1
    assert not bool(model.last_stats.backward_converged.all())
    assert int(model.last_stats.backward_iterations.max()) == 2


@pytest.mark.parametrize("n", [160])
def test_batched_linear_solves_are_right_with_several_threads(n):
    """pytorch#142815: batched CPU LU with > 1 thread gives wrong pivots for n >= ~150 (wrong results, a crash
    or a hang). Newton and the direct adjoint go through ``batched_solve``, which avoids it."""
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(6)
    A = project_rows_l1(torch.rand(n, n, generator=g, dtype=torch.float64), 0.9)
    BU = torch.randn(6, n, generator=g, dtype=torch.float64)
    xn, sn = solve(A, BU, "newton", tol=1e-11)
    xp, _ = solve(A, BU, "picard", tol=1e-11)
    assert bool(sn.converged.all()) and int(sn.iterations.max()) < 20
    torch.testing.assert_close(xn, xp, rtol=0, atol=1e-9)
    d = (torch.addmm(BU, xp, A.t()) > 0).double()
    cfg = dict(tol=1e-13, tol_mode="abs", max_iter=3000)
    wd = solve_adjoint(A, d, BU, AdjointConfig(mode="direct", **cfg))[0]
    wf = solve_adjoint(A, d, BU, AdjointConfig(mode="fixed_point", **cfg))[0]
    torch.testing.assert_close(wd, wf, rtol=0, atol=1e-10)
    assert torch.get_num_threads() == 2  # restored


# ------------------------------------------------------------------------------------ config and registry


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "nope"},
        {"tol": 0.0},
        {"tol": -1.0},
        {"tol_mode": "relative"},
        {"max_iter": 0},
        {"max_iter": 2.5},
        {"check_every": 0},
        {"anderson_m": 0},
        {"anderson_beta": 0.0},
        {"anderson_beta": 1.5},
    ],
)
def test_solver_config_validation(kwargs):
    with pytest.raises(ValueError):
        SolverConfig(**kwargs)


def test_adjoint_config_validation():
    with pytest.raises(ValueError):
        AdjointConfig(mode="lu")
    with pytest.raises(ValueError):
        AdjointConfig(tol=0)


def test_registry_has_the_three_solvers_and_accepts_new_ones():
    assert set(SOLVER_NAMES) <= set(SOLVERS)

    @register_solver("_test_one_step")
    def one_step(A, BU, x0, cfg):
        x = fixed_point_map(A, BU, x0)
        b = BU.shape[0]
        return x, torch.ones(b, dtype=torch.int32), (x - x0).abs().amax(1), torch.ones(b, dtype=torch.bool)

    try:
        x, stats = fixed_point_solve(
            torch.zeros(3, 3), torch.ones(2, 3), torch.zeros(2, 3), SolverConfig(method="_test_one_step")
        )
        assert torch.equal(x, torch.ones(2, 3)) and stats.solver == "_test_one_step"
    finally:
        SOLVERS.pop("_test_one_step")
