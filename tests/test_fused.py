"""The fused C++ loops (``lightning_implicit/implicit/fused.py``): backend selection, loud failures, fallback,
and the same training results as the Python loops."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import make_problem

from lightning_implicit.implicit import AdjointConfig, ImplicitModel, SolverConfig, fixed_point_solve, fused

pytestmark = pytest.mark.usefixtures("one_thread")


def test_backend_is_validated():
    with pytest.raises(ValueError, match="backend must be one of"):
        SolverConfig(backend="cpp")
    with pytest.raises(ValueError, match="backend must be one of"):
        AdjointConfig(backend="Fused")


def test_fused_backend_refuses_what_it_cannot_run():
    A, B, u = make_problem(6, 3, 0.9, 1.0, 4, seed=0)
    BU = (u @ B.t()).to(torch.bfloat16)
    with pytest.raises(ValueError, match="CPU float32/float64 tensors only"):
        fixed_point_solve(A.to(torch.bfloat16), BU, None, SolverConfig(backend="fused"))
    # auto: other dtypes run the Python loop
    x, stats = fixed_point_solve(A.to(torch.bfloat16), BU, None, SolverConfig(backend="auto", tol=1e-2))
    assert x.dtype == torch.bfloat16 and bool(stats.converged.all())


def test_failed_build_warns_and_falls_back(monkeypatch):
    """No compiler: ``auto`` warns (naming the error and the fix) and runs the Python loop; ``fused`` raises."""
    monkeypatch.setattr(fused, "_build", lambda: (None, "CalledProcessError: c++: not found"))
    monkeypatch.setattr(fused.shutil, "which", lambda name: None)  # this machine has no compiler
    A, B, u = make_problem(6, 3, 0.9, 1.0, 4, seed=0)
    BU = u @ B.t()
    with pytest.warns(fused.FusedUnavailableWarning, match="c\\+\\+: not found.*apt-get install g\\+\\+"):
        x, _ = fixed_point_solve(A, BU, None, SolverConfig())
    x_py, _ = fixed_point_solve(A, BU, None, SolverConfig(backend="python"))
    assert torch.equal(x, x_py)
    with pytest.raises(RuntimeError, match="could not be built"):
        fixed_point_solve(A, BU, None, SolverConfig(backend="fused"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fixed_point_solve(A, BU, None, SolverConfig(backend="python"))  # never builds, never warns
        ImplicitModel(3, 5, 2, solver=SolverConfig(backend="python"))  # (its projection neither)


@pytest.mark.parametrize("n, batch", [(20, 64), (24, 5000)])  # small (rows in place) and large (compaction)
def test_training_steps_match_the_python_loops(n, batch):
    """A few Adam steps with either backend: the same losses, solver statistics and weights (to rounding)."""
    out = {}
    for backend in ("fused", "python"):
        torch.manual_seed(0)
        model = ImplicitModel(
            7,
            n,
            2,
            solver=SolverConfig(backend=backend, warn=False),
            adjoint=AdjointConfig(mode="fixed_point", backend=backend, warn=False),
        ).double()
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        g = torch.Generator().manual_seed(1)
        losses, iters = [], []
        for _ in range(4):
            u = torch.randn(batch, 7, generator=g, dtype=torch.float64)
            opt.zero_grad()
            loss = (model(u) - u[:, :2].sin()).pow(2).mean()
            loss.backward()
            opt.step()
            model.project_()
            losses.append(float(loss.detach()))
            iters.append((model.last_stats.iterations.clone(), model.last_stats.backward_iterations.clone()))
        out[backend] = (losses, iters, [p.detach().clone() for p in model.parameters()])
    (lf, itf, pf), (lp, itp, pp) = out["fused"], out["python"]
    torch.testing.assert_close(torch.tensor(lf), torch.tensor(lp), rtol=1e-10, atol=1e-12)
    for (a, b), (c, d) in zip(itf, itp, strict=True):
        assert torch.equal(a, c) and torch.equal(b, d)
    for a, b in zip(pf, pp, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_a_stale_build_lock_is_removed_under_our_flock(tmp_path):
    """torch waits forever on the lock file of a killed build: under our flock (released by the kernel when a
    process dies) any such file is stale, and is removed with a warning; no file: no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fused._build_lock(tmp_path / "build"):
            pass
    (tmp_path / "build" / "lock").touch()
    with pytest.warns(RuntimeWarning, match="stale build lock"):
        with fused._build_lock(tmp_path / "build"):
            assert not (tmp_path / "build" / "lock").exists()


def test_auto_adjoint_solves_what_the_iteration_left_unconverged():
    """kappa close to 1 and a small adjoint max_iter: ``auto`` finishes the unconverged samples with the exact
    solve (n is small), where the iteration alone would stop short (and warn)."""
    torch.manual_seed(0)
    u = torch.randn(32, 5, dtype=torch.float64)
    grads, modes = {}, {}
    for adjoint in ("auto", "fixed_point", "direct"):
        torch.manual_seed(0)
        model = ImplicitModel(
            5,
            8,
            1,
            kappa=0.999,
            solver=SolverConfig(warn=False),
            adjoint=AdjointConfig(mode=adjoint, max_iter=3, warn=False),
        ).double()
        with torch.no_grad():
            model.A.mul_(10.0)
        model.project_()  # rows on the 0.999 ball: a slow contraction
        model(u).pow(2).sum().backward()
        grads[adjoint] = model.A.grad.clone()
        st = model.last_stats
        modes[adjoint] = (st.adjoint_mode, bool(st.backward_converged.all()))
    assert modes["fixed_point"] == ("fixed_point", False)
    assert modes["auto"] == ("fixed_point+direct", True)
    torch.testing.assert_close(grads["auto"], grads["direct"], rtol=1e-9, atol=1e-12)
