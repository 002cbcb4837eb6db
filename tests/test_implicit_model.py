"""ImplicitModel / ImplicitRNN: implicit gradients (gradcheck), parameter counts, training behaviour."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch.func import functional_call

from lightning_implicit.implicit import (
    AdjointConfig,
    ImplicitFunction,
    ImplicitLayer,
    ImplicitModel,
    ImplicitRNN,
    SolverConfig,
    count_parameters,
    inf_norm,
)

ADJOINTS = ["direct", "fixed_point"]
TIGHT = SolverConfig(tol=1e-13, max_iter=5000)


def tight(adjoint: str = "auto") -> dict:
    """Solver and adjoint settings tight enough for float64 gradchecks."""
    return dict(solver=TIGHT, adjoint=AdjointConfig(mode=adjoint, tol=1e-13, max_iter=5000))


pytestmark = pytest.mark.usefixtures("one_thread")


def _randomise_A(model, seed: int, kappa_scale: float = 1.0):
    """A dense random A (the default init is small), then the model's own projection (feedback or not)."""
    g = torch.Generator().manual_seed(seed)
    A = model.layer.A
    with torch.no_grad():
        A.copy_(torch.randn(A.shape, generator=g, dtype=A.dtype) * kappa_scale)
    model.project_()


def _check_pre_activations(z: torch.Tensor, margin: float = 1e-4):
    """Not all-inactive/all-active (the implicit part matters) and away from the ReLU kinks."""
    active = (z > 0).double().mean()
    assert 0.2 < float(active) < 0.95, float(active)
    assert float(z.abs().min()) > margin, float(z.abs().min())


# ------------------------------------------------------------------------------------------------ gradcheck


@pytest.mark.parametrize("adjoint", ADJOINTS)
@pytest.mark.parametrize("feedback", [True, False])
def test_gradcheck_implicit_model(adjoint, feedback):
    torch.manual_seed(0)
    n, p, q, b = 6, 4, 3, 3
    model = ImplicitModel(p, n, q, kappa=0.8, feedback=feedback, **tight(adjoint)).double()
    _randomise_A(model, seed=1)
    u = torch.randn(b, p, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        A = model.layer.effective_A()
        x = model.layer(u)
        _check_pre_activations(x @ A.t() + u @ model.B.t())
        assert float(x.abs().max()) > 0 and float((x @ A.t()).abs().max()) > 1e-2  # A x matters
    names = ["layer.A", "layer.B", "C", "D"]
    params = [model.get_parameter(k).detach().clone().requires_grad_() for k in names]

    def f(A, B, C, D, u):
        return functional_call(model, dict(zip(names, (A, B, C, D), strict=True)), (u,))

    assert torch.autograd.gradcheck(f, (*params, u), atol=1e-6, rtol=1e-4)
    assert model.last_stats.adjoint_mode == adjoint
    if not feedback:
        # The masked lower triangle of A gets no gradient at all.
        A = params[0].detach().clone().requires_grad_()
        f(A, *params[1:], u).square().sum().backward()
        assert torch.equal(torch.tril(A.grad), torch.zeros_like(A.grad))


@pytest.mark.parametrize("adjoint", ADJOINTS)
def test_gradcheck_function_with_warm_start_x0(adjoint):
    """``ImplicitFunction.apply`` directly: the warm start x0 changes nothing in value or gradient."""
    g = torch.Generator().manual_seed(3)
    n, p, b = 5, 3, 2
    A = torch.randn(n, n, generator=g, dtype=torch.float64)
    A = (A / A.abs().sum(1, keepdim=True) * 0.85).requires_grad_()
    B = torch.randn(n, p, generator=g, dtype=torch.float64).requires_grad_()
    u = torch.randn(b, p, generator=g, dtype=torch.float64).requires_grad_()
    scfg = SolverConfig(tol=1e-13, max_iter=5000)
    acfg = AdjointConfig(mode=adjoint, tol=1e-13, max_iter=5000)
    with torch.no_grad():
        x = ImplicitFunction.apply(A, B, u, torch.zeros(b, n, dtype=torch.float64), scfg, acfg, [])
        _check_pre_activations(x @ A.t() + u @ B.t())
    x0 = x.detach() + 0.3 * torch.randn(b, n, generator=g, dtype=torch.float64)

    def f(A, B, u):
        return ImplicitFunction.apply(A, B, u, x0, scfg, acfg, [])

    assert torch.autograd.gradcheck(f, (A, B, u), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("adjoint", ADJOINTS)
@pytest.mark.parametrize("warm_start", [True, False])
@pytest.mark.parametrize("feedback", [True, False])
def test_gradcheck_implicit_rnn(adjoint, warm_start, feedback):
    torch.manual_seed(0)
    n, s_in, h, out, b, T = 5, 2, 3, 2, 2, 3
    model = ImplicitRNN(
        s_in, n, h, out, warm_start=warm_start, kappa=0.7, feedback=feedback, **tight(adjoint)
    )
    model = model.double()
    _randomise_A(model, seed=2)
    s = torch.randn(b, T, s_in, dtype=torch.float64, requires_grad=True)

    seen = []
    hook = model.layer.register_forward_hook(
        lambda mod, args, out: seen.append((args[0].detach(), out.detach()))
    )
    with torch.no_grad():
        model(s)
    hook.remove()
    assert len(seen) == T
    A, B = model.layer.effective_A().detach(), model.layer.B.detach()
    _check_pre_activations(torch.cat([x @ A.t() + u @ B.t() for u, x in seen]))

    names = ["layer.A", "layer.B", "C", "D", "readout.weight", "readout.bias"]
    params = [model.get_parameter(k).detach().clone().requires_grad_() for k in names]

    def f(*args):
        return functional_call(model, dict(zip(names, args[:-1], strict=True)), (args[-1],))

    assert torch.autograd.gradcheck(f, (*params, s), atol=1e-6, rtol=1e-4)


# ------------------------------------------------------------------------------------- parameter counting


def test_parameter_counts_match_the_paper():
    assert count_parameters(ImplicitModel(30, 190, 4)) == 42_680  # earthquake (Table 4)
    assert count_parameters(ImplicitModel(10, 4, 10)) == 16 + 40 + 40 + 100  # identity
    assert count_parameters(ImplicitModel(50, 20, 1)) == 400 + 1000 + 20 + 50  # arithmetic


def test_argmax_rnn_shapes_and_count():
    rnn = ImplicitRNN(1, 21, 22, 10)
    assert tuple(rnn.layer.A.shape) == (21, 21)
    assert tuple(rnn.layer.B.shape) == (21, 23)
    assert tuple(rnn.C.shape) == (22, 21)
    assert tuple(rnn.D.shape) == (22, 23)
    assert tuple(rnn.readout.weight.shape) == (10, 22)
    assert count_parameters(rnn) == 21 * 21 + 21 * 23 + 22 * 21 + 22 * 23 + 22 * 10 + 10


@pytest.mark.parametrize("n,p,q", [(190, 30, 4), (4, 10, 10), (20, 50, 1)])
def test_no_feedback_count_is_smaller_by_the_masked_triangle(n, p, q):
    full = count_parameters(ImplicitModel(p, n, q))
    ablated = count_parameters(ImplicitModel(p, n, q, feedback=False))
    assert full - ablated == n * (n + 1) // 2
    rnn_full = count_parameters(ImplicitRNN(1, n, 3, 2))
    rnn_ablated = count_parameters(ImplicitRNN(1, n, 3, 2, feedback=False))
    assert rnn_full - rnn_ablated == n * (n + 1) // 2


# --------------------------------------------------------------------------------------- training behaviour


@pytest.mark.parametrize("kappa", [0.5, 0.95])
def test_projection_after_a_big_sgd_step(kappa):
    torch.manual_seed(0)
    model = ImplicitModel(10, 16, 2, kappa=kappa)
    assert model.well_posedness() <= kappa * (1 + 1e-6)  # projected at construction
    opt = torch.optim.SGD(model.parameters(), lr=50.0)
    u, y = torch.randn(32, 10), torch.randn(32, 2)
    torch.nn.functional.mse_loss(model(u), y).backward()
    A_before = model.A.detach().clone()
    opt.step()
    assert float(inf_norm(model.A.detach())) > kappa  # the step left the ball ...
    model.project_()
    norm = float(inf_norm(model.A.detach()))
    assert norm <= kappa * (1 + 1e-5)  # ... and the projection brought it back (float32 rounding: a few ulps)
    assert norm == pytest.approx(kappa, rel=1e-5)
    assert model.well_posedness() == pytest.approx(norm)
    assert not torch.equal(model.A.detach(), A_before)
    # Projecting again changes nothing beyond float32 rounding (the rows sit on the boundary, to a few ulps).
    A_proj = model.A.detach().clone()
    model.project_()
    torch.testing.assert_close(model.A.detach(), A_proj, rtol=0, atol=1e-5 * kappa)


def test_no_feedback_gradient_of_lower_triangle_is_zero():
    torch.manual_seed(0)
    n = 12
    model = ImplicitModel(5, n, 3, feedback=False)
    _randomise_A(model, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=10.0)
    torch.nn.functional.mse_loss(model(torch.randn(16, 5)), torch.randn(16, 3)).backward()
    grad = model.A.grad
    assert torch.equal(torch.tril(grad), torch.zeros_like(grad))  # diagonal included
    assert float(torch.triu(grad, 1).abs().max()) > 0
    opt.step()
    model.project_()
    assert torch.equal(torch.tril(model.A.detach()), torch.zeros(n, n))


def test_forward_backward_leave_parameters_untouched():
    torch.manual_seed(0)
    model = ImplicitModel(5, 9, 2)
    _randomise_A(model, seed=4, kappa_scale=3.0)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model(torch.randn(8, 5) * 10).sum().backward()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_stats_and_config_are_per_instance():
    torch.manual_seed(0)
    m1 = ImplicitModel(4, 8, 2, solver=SolverConfig(method="picard", tol=1e-6))
    m2 = ImplicitModel(
        4,
        8,
        2,
        solver=SolverConfig(method="newton", tol=1e-5, tol_mode="rel"),
        adjoint=AdjointConfig(mode="fixed_point"),
    )
    assert m1.layer.solver_cfg is not m2.layer.solver_cfg
    assert m1.layer.solver_cfg.method == "picard" and m2.layer.solver_cfg.method == "newton"
    assert m1.last_stats is None and m2.last_stats is None
    m1(torch.randn(5, 4))
    s1 = m1.last_stats
    m2(torch.randn(7, 4))
    assert m1.last_stats is s1 and m2.last_stats is not s1
    assert s1.solver == "picard" and m2.last_stats.solver == "newton"
    assert s1.batch_size == 5 and m2.last_stats.batch_size == 7
    assert m1.layer.solver_cfg.tol == 1e-6 and m1.layer.solver_cfg.tol_mode == "abs"  # untouched by m2


@pytest.mark.parametrize("adjoint", ADJOINTS)
def test_backward_fills_backward_statistics(adjoint):
    torch.manual_seed(0)
    model = ImplicitModel(4, 10, 2, adjoint=AdjointConfig(mode=adjoint), kappa=0.9)
    _randomise_A(model, seed=5)
    y = model(torch.randn(6, 4))
    st = model.last_stats
    assert st.backward_iterations is None and st.adjoint_mode == ""
    assert "bwd_iters_mean" not in st.summary()
    y.square().sum().backward()
    assert st.adjoint_mode == adjoint
    assert st.backward_iterations.shape == (6,) and bool(st.backward_converged.all())
    if adjoint == "fixed_point":
        assert bool((st.backward_iterations >= 1).all()) and int(st.backward_iterations.max()) > 1
    else:
        assert bool((st.backward_iterations == 0).all())
    summary = st.summary()
    assert summary["bwd_converged_frac"] == 1.0 and summary["converged_frac"] == 1.0


# ---------------------------------------------------------------------------------------------- ImplicitRNN


def _smooth_sequences(b, T, d, seed):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(b, 1, d, generator=g)
    return base + 0.01 * torch.randn(b, T, d, generator=g).cumsum(dim=1)


def test_rnn_shapes_and_stats():
    torch.manual_seed(0)
    rnn = ImplicitRNN(3, 12, 5, 4)
    s = torch.randn(6, 7, 3)
    y = rnn(s)
    assert y.shape == (6, 7, 4)
    assert rnn.last_stats.iterations.shape == (6, 7)
    assert rnn.last_stats.converged.shape == (6, 7) and bool(rnn.last_stats.converged.all())
    y.square().sum().backward()
    rnn.last_stats.refresh_backward()
    assert rnn.last_stats.backward_iterations.shape == (6, 7)
    with pytest.raises(ValueError):
        rnn(torch.randn(6, 3))


@pytest.mark.parametrize("solver", ["picard", "anderson", "newton"])
def test_rnn_warm_start_same_output_fewer_iterations(solver):
    torch.manual_seed(0)
    kw = dict(kappa=0.95, solver=SolverConfig(method=solver, tol=1e-9, max_iter=2000))
    warm = ImplicitRNN(3, 16, 6, 2, warm_start=True, **kw).double()
    _randomise_A(warm, seed=6)
    cold = ImplicitRNN(3, 16, 6, 2, warm_start=False, **kw).double()
    cold.load_state_dict(warm.state_dict())
    s = _smooth_sequences(8, 10, 3, seed=7).double()
    yw, yc = warm(s), cold(s)
    torch.testing.assert_close(yw, yc, rtol=0, atol=1e-7)
    it_w, it_c = int(warm.last_stats.iterations.sum()), int(cold.last_stats.iterations.sum())
    assert it_w < it_c, (it_w, it_c)
    # The first step starts from 0 either way.
    assert torch.equal(warm.last_stats.iterations[:, 0], cold.last_stats.iterations[:, 0])
    # Same gradients too.
    yw.square().sum().backward()
    yc.square().sum().backward()
    for (k, pw), pc in zip(warm.named_parameters(), cold.parameters(), strict=True):
        torch.testing.assert_close(pw.grad, pc.grad, rtol=1e-6, atol=1e-6, msg=k)


def test_invalid_arguments():
    with pytest.raises(ValueError):
        ImplicitModel(3, 4, 1, kappa=1.0)
    with pytest.raises(ValueError):
        ImplicitModel(3, 4, 1, kappa=0.0)
    with pytest.raises(ValueError):
        ImplicitModel(3, 0, 1)
    with pytest.raises(ValueError):
        ImplicitModel(3, 4, 1)(torch.randn(2, 5))


def test_implicit_rnn_warns_once_per_call_not_per_step():
    import warnings

    from lightning_implicit.implicit import ConvergenceWarning, ImplicitRNN

    torch.manual_seed(0)
    rnn = ImplicitRNN(1, 8, 4, 2, solver=SolverConfig(max_iter=1), warm_start=False)
    with torch.no_grad():
        rnn.layer.A.copy_(torch.full((8, 8), 0.9 / 8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rnn(torch.rand(5, 6, 1) + 1.0)
    hits = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(hits) == 1 and "6 time steps" in str(hits[0].message)
    assert not bool(rnn.last_stats.converged.all())


def test_layer_pickled_with_a_last_stats_attribute_still_runs():
    """A layer pickled when its statistics were the attribute ``last_stats`` (not the list ``_stats``) loads,
    keeps those statistics and records the next forward's."""
    layer = ImplicitLayer(3, 5)
    layer(torch.rand(4, 3))
    state = dict(layer.__dict__)
    stats = state.pop("_stats")[-1]
    state["last_stats"] = stats
    old = ImplicitLayer.__new__(ImplicitLayer)
    old.__setstate__(state)
    assert old.last_stats is stats
    old(torch.rand(2, 3))
    assert old.last_stats is not stats and old.last_stats.iterations.shape == (2,)
    assert pickle.loads(pickle.dumps(old)).last_stats.iterations.shape == (2,)
