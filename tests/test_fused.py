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


def test_failed_build_warns_once_per_call_site_and_falls_back(monkeypatch):
    """No compiler: ``auto`` warns (naming the error and the fix) and runs the Python loop; ``fused`` raises."""
    monkeypatch.setattr(fused, "_build", lambda: (None, "CalledProcessError: c++: not found"))
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


@pytest.mark.parametrize("n, batch", [(20, 64), (24, 5000)])  # small (rows in place) and large (compaction)
def test_training_steps_match_the_python_loops(n, batch):
    """A few Adam steps with either backend: the same losses, solver statistics and weights (to rounding)."""
    out = {}
    for backend in ("fused", "python"):
        torch.manual_seed(0)
        model = ImplicitModel(7, n, 2, backend=backend, adjoint="fixed_point", warn=False).double()
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


def test_a_stale_build_lock_is_removed_a_fresh_one_kept(monkeypatch, tmp_path):
    """torch waits forever on the lock of a killed build: ours is removed (with a warning) once it is old."""
    import os
    import time

    import torch.utils.cpp_extension as cpp_extension

    monkeypatch.setattr(cpp_extension, "_get_build_directory", lambda name, verbose: str(tmp_path))
    lock = tmp_path / "lock"
    lock.touch()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fused._remove_stale_lock()  # fresh: another process may be building right now
    assert lock.exists()
    old = time.time() - fused.STALE_LOCK_SECONDS - 5
    os.utime(lock, (old, old))
    with pytest.warns(RuntimeWarning, match="stale build lock"):
        fused._remove_stale_lock()
    assert not lock.exists()
