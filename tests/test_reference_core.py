"""The reference core: the paper's iteration as written (``implicit/reference.py``), the backends that must agree
with it, and the activation as one argument of the layer."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import make_problem

from lightning_implicit.implicit import (
    ACTIVATIONS,
    Activation,
    AdjointConfig,
    ImplicitModel,
    ImplicitRNN,
    SolverConfig,
    fixed_point_solve,
    register_activation,
)
from lightning_implicit.implicit.reference import picard as reference_picard
from lightning_implicit.implicit.solvers import BackendFallbackWarning, select_backend

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh"])
@pytest.mark.parametrize("tol_mode", ["abs", "rel"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_backend_agrees_with_the_reference(activation, tol_mode, seed):
    """Same per-sample counts and flags, same points to rounding (the reference is row-major, the loops
    column-major), including samples cut off by ``max_iter``."""
    A, B, u = make_problem(12, 3, 0.9, 10.0 ** (seed - 1), 17, seed)
    BU = u @ B.t()
    phi = ACTIVATIONS[activation].fn
    for max_iter in (3, 500):
        x_ref, it_ref, r_ref, c_ref = reference_picard(
            A, BU, None, phi=phi, tol=1e-10, tol_mode=tol_mode, max_iter=max_iter
        )
        backends = ["reference", "python"] + (["fused"] if activation == "relu" else [])
        for backend in backends:
            cfg = SolverConfig(
                tol=1e-10,
                tol_mode=tol_mode,
                max_iter=max_iter,
                warn=False,
                backend=backend,
                activation=activation,
            )
            x, st = fixed_point_solve(A, BU, None, cfg)
            assert st.iterations.tolist() == it_ref.tolist(), backend
            assert st.converged.tolist() == c_ref.tolist(), backend
            torch.testing.assert_close(x, x_ref, rtol=1e-12, atol=1e-13)
            torch.testing.assert_close(
                st.residual, r_ref, rtol=1e-6, atol=1e-13
            )  # a difference of near-equal iterates
        assert bool(c_ref.all()) == (max_iter == 500)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh"])
def test_reference_point_satisfies_the_state_equation(activation):
    """Independent check of the reference: the converged point solves ``x = phi(A x + B u)``, and a strictly upper
    triangular ``A`` gives the DAG's exact forward pass computed unit by unit from the last one."""
    phi = ACTIVATIONS[activation].fn
    A, B, u = make_problem(10, 4, 0.8, 3.0, 9, 5)
    x, it, r, conv = reference_picard(A, u @ B.t(), phi=phi, tol=1e-13)
    assert bool(conv.all()) and float(r.max()) < 1e-13
    torch.testing.assert_close(x, phi(x @ A.t() + u @ B.t()), rtol=0, atol=1e-12)
    U = (
        torch.triu(torch.randn(10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(3)), 1)
        * 5
    )
    x, it, _, conv = reference_picard(U, u @ B.t(), phi=phi, tol=1e-300, max_iter=11)
    exact = torch.zeros(9, 10, dtype=torch.float64)
    for i in reversed(range(10)):
        exact[:, i] = phi(exact @ U[i] + u @ B[i])
    assert bool(conv.all()) and int(it.max()) <= 11
    torch.testing.assert_close(x, exact, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", ["leaky_relu", "tanh"])
def test_activation_is_one_argument_and_the_gradient_is_exact(activation):
    """``ImplicitModel(..., activation=...)``: the implicit backward (adjoint with ``phi'``) against finite
    differences (torch.autograd.gradcheck, float64)."""
    torch.manual_seed(0)
    model = ImplicitModel(
        3,
        6,
        2,
        solver=SolverConfig(activation=activation, tol=1e-13, max_iter=2000),
        adjoint=AdjointConfig(tol=1e-13, max_iter=2000),
    ).double()
    assert model.layer.activation.name == activation
    u = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    params = (model.A, model.B, model.C, model.D)

    def f(u, A, B, C, D):
        return torch.func.functional_call(model, {"layer.A": A, "layer.B": B, "C": C, "D": D}, (u,))

    assert torch.autograd.gradcheck(f, (u, *params), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_a_backend_without_the_activation_says_so_and_the_reference_runs():
    A, B, u = make_problem(8, 2, 0.9, 1.0, 5, 0)
    cfg = SolverConfig(backend="fused", activation="tanh", tol=1e-10, warn=False)
    with pytest.warns(BackendFallbackWarning, match="relu' only.*reference loop runs"):
        assert select_backend(u @ B.t(), cfg) == "reference"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackendFallbackWarning)
        x, _ = fixed_point_solve(A, u @ B.t(), None, cfg)
    x_ref, *_ = reference_picard(A, u @ B.t(), phi=torch.tanh, tol=1e-10)
    torch.testing.assert_close(x, x_ref)
    auto = SolverConfig(activation="tanh")  # auto never warns: the python loop takes any activation
    assert select_backend(u @ B.t(), auto) == "python"
    assert select_backend(u @ B.t(), SolverConfig()) in ("fused", "python")


def test_unknown_names_are_rejected_with_the_choices():
    with pytest.raises(ValueError, match="unknown activation 'swish'.*leaky_relu"):
        ImplicitModel(2, 4, 1, solver=SolverConfig(activation="swish"))
    with pytest.raises(ValueError, match="newton.*relu"):
        SolverConfig(method="newton", activation="tanh")
    with pytest.raises(ValueError, match="unknown solver"):
        SolverConfig(method="broyden")


def test_a_registered_activation_trains_an_rnn_without_the_homogeneous_warm_start():
    """A new activation is one registration and one argument; a non-homogeneous one skips the implicitRNN's
    first-step warm start (which needs ``phi(c z) = c phi(z)``) and still gives the same outputs as cold
    starts."""
    register_activation(
        Activation("hardtanh_test", torch.nn.functional.hardtanh, lambda z: ((z > -1) & (z < 1)).to(z.dtype))
    )
    try:
        torch.manual_seed(0)
        rnn = ImplicitRNN(1, 8, 4, 3, solver=SolverConfig(activation="hardtanh_test", tol=1e-12)).double()
        s = torch.randn(5, 6, 1, dtype=torch.float64)
        warm = rnn(s)
        assert rnn.last_stats.extra["reference_iterations"] == 0  # no reference points solved
        rnn.warm_start = False
        torch.testing.assert_close(warm, rnn(s), rtol=1e-9, atol=1e-10)
        warm.sum().backward()  # the derivative rebuilt from z (no output_derivative given)
        assert rnn.layer.A.grad is not None and torch.isfinite(rnn.layer.A.grad).all()
    finally:
        ACTIVATIONS.pop("hardtanh_test")


def test_the_forward_iteration_fits_on_one_screen():
    """The issue's reading test: the reference iteration (signature to return) is at most 50 lines."""
    import inspect

    lines = inspect.getsource(reference_picard).splitlines()
    assert len(lines) <= 50, len(lines)


def test_a_registered_backend_is_selected_by_name():
    """A new backend is one registration; ``backend=<name>`` runs it (here: the reference, counting its calls),
    and a backend that cannot run a case says so and the reference runs."""
    from lightning_implicit.implicit import BACKENDS, register_backend

    calls = []

    def unsupported(BU, cfg):
        return None if cfg.activation != "tanh" else "does not do tanh"

    @register_backend("counting_test", unsupported)
    def counting(A, BU, x0, cfg, hint=None):
        calls.append(BU.shape[0])
        return reference_picard(
            A,
            BU,
            x0,
            phi=ACTIVATIONS[cfg.activation].fn,
            tol=cfg.tol,
            tol_mode=cfg.tol_mode,
            max_iter=cfg.max_iter,
        )

    try:
        torch.manual_seed(0)
        model = ImplicitModel(3, 5, 1, solver=SolverConfig(backend="counting_test")).double()
        model(torch.randn(4, 3, dtype=torch.float64)).sum().backward()  # the adjoint: a built-in loop
        assert calls == [4] and model.layer.A.grad is not None
        with pytest.warns(BackendFallbackWarning, match="does not do tanh"):
            ImplicitModel(3, 5, 1, solver=SolverConfig(backend="counting_test", activation="tanh"))(
                torch.randn(2, 3)
            )
        assert calls == [4]
        with pytest.raises(ValueError, match="counting_test"):
            SolverConfig(backend="countin_test")
    finally:
        BACKENDS.pop("counting_test")


def test_a_registered_structure_of_A_is_one_argument_and_keeps_the_model_well_posed():
    """A banded ``A`` (registered from outside): the state equation uses only the band, the projection keeps
    ``||A||_inf <= kappa`` on it, the fixed point is the reference iteration's with the masked ``A``, every
    backend agrees, and the parameter count counts the band."""
    from lightning_implicit.implicit import STRUCTURES, Structure, count_parameters, register_structure

    band = register_structure(
        Structure("banded3_test", lambda n: (torch.arange(n)[:, None] - torch.arange(n)[None, :]).abs() <= 1)
    )
    try:
        n, kappa = 9, 0.8
        outs = {}
        for backend in ("reference", "python", "fused"):
            torch.manual_seed(0)
            model = ImplicitModel(
                4,
                n,
                2,
                kappa=kappa,
                structure="banded3_test",
                solver=SolverConfig(backend=backend, tol=1e-12, max_iter=5000),
            ).double()
            with torch.no_grad():
                model.A.copy_(torch.randn(n, n, dtype=torch.float64))
            model.project_()
            A = model.layer.effective_A().detach()
            mask = band.mask(n)
            assert torch.equal(A[~mask], torch.zeros_like(A[~mask])) and bool((A[mask] != 0).any())
            assert float(A.abs().sum(dim=1).max()) <= kappa + 1e-12
            u = torch.randn(5, 4, dtype=torch.float64)
            x_ref, *_ = reference_picard(A, u @ model.B.detach().t(), tol=1e-12, max_iter=5000)
            x = model.layer(u).detach()
            torch.testing.assert_close(x, x_ref, rtol=1e-10, atol=1e-11)
            outs[backend] = model(u).detach()
        torch.testing.assert_close(outs["python"], outs["reference"], rtol=1e-10, atol=1e-11)
        torch.testing.assert_close(outs["fused"], outs["reference"], rtol=1e-10, atol=1e-11)
        dense = count_parameters(ImplicitModel(4, n, 2))
        assert count_parameters(model) == dense - n * n + (3 * n - 2)  # the band has 3n - 2 entries
        # feedback=False is the structure 'strictly_upper'; combining it with another structure is an error
        assert ImplicitModel(4, n, 2, feedback=False).layer.structure.name == "strictly_upper"
        with pytest.raises(ValueError, match="strictly_upper"):
            ImplicitModel(4, n, 2, feedback=False, structure="banded3_test")
        with pytest.raises(ValueError, match="banded3_test"):  # an unknown name lists the registered ones
            ImplicitModel(4, n, 2, structure="bandd")
    finally:
        STRUCTURES.pop("banded3_test", None)
