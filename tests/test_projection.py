"""Row-wise L1-ball projection of ``A`` (the well-posedness constraint ``||A||_inf <= kappa``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_implicit.implicit import inf_norm, project_rows_l1
from lightning_implicit.implicit.fused import fused_module
from lightning_implicit.implicit.projection import (
    project_rows_l1_,
    project_rows_l1_sorted,
    project_rows_l1_torch,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _fused_required(A, kappa):
    """The public function, failing (instead of falling back to torch with a warning) if the C++ loop is missing."""
    return project_rows_l1(A, kappa, backend="fused")


def _fused_in_place(A, kappa):
    """The in-place C++ projection, on a copy (the input stays as it was)."""
    B = A.clone()
    assert project_rows_l1_(B, kappa, backend="fused") is B
    return B


def _torch_in_place(A, kappa):
    B = A.clone()
    assert project_rows_l1_(B, kappa, backend="python") is B
    return B


# the public function's fused C++ loop (2-d CPU tensors), the torch version (other devices, batches), both in place
IMPLEMENTATIONS = pytest.mark.parametrize(
    "project",
    [_fused_required, project_rows_l1_torch, _fused_in_place, _torch_in_place],
    ids=["fused", "torch", "fused_inplace", "torch_inplace"],
)


def reference_projection(A: np.ndarray, kappa: float, steps: int = 200) -> np.ndarray:
    """Independent slow reference: per row, bisection in float64 on the threshold theta of
    ``sum_j max(|a_j| - theta, 0) = kappa`` (a decreasing function of theta), then soft-thresholding."""
    A = np.asarray(A, dtype=np.float64)
    out = A.copy()
    for i, row in enumerate(A.reshape(-1, A.shape[-1])):
        a = np.abs(row)
        if a.sum() <= kappa:
            continue
        lo, hi = 0.0, float(a.max())  # l1(lo) > kappa >= l1(hi) = 0
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            if np.maximum(a - mid, 0.0).sum() > kappa:
                lo = mid
            else:
                hi = mid
        theta = 0.5 * (lo + hi)
        out.reshape(-1, A.shape[-1])[i] = np.sign(row) * np.maximum(a - theta, 0.0)
    return out


def _eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 12),
    cols=st.integers(1, 40),
    kappa=st.sampled_from([0.05, 0.5, 0.9, 0.95, 0.99, 3.0]),
    scale=st.sampled_from([1e-3, 0.1, 1.0, 10.0, 1e3]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**31 - 1),
)
@IMPLEMENTATIONS
def test_matches_bisection_reference(project, rows, cols, kappa, scale, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    A = (torch.randn(rows, cols, generator=g, dtype=torch.float64) * scale).to(dtype)
    A[0] = 0.0  # an all-zero row is always inside the ball
    if rows > 2:
        A[1, : cols // 2] = 0.0  # a row with (some) zeros
    P = project(A, kappa)
    assert P.dtype == dtype and P.shape == A.shape and P.device == A.device
    ref = reference_projection(A.double().numpy(), kappa)
    # float32 (sort, cumsum) rounding: a few ulps of the row's L1 mass.
    tol = 8 * cols * _eps(dtype) * max(kappa, float(A.abs().sum(dim=1).max()))
    np.testing.assert_allclose(P.double().numpy(), ref, rtol=0, atol=tol)
    # Rows' L1 norm <= kappa up to rounding (of |a| - theta, i.e. relative to the input's magnitude);
    # rows moved onto the ball sit on its boundary.
    l1 = P.double().abs().sum(dim=1)
    assert bool((l1 <= kappa + tol).all())
    outside = A.double().abs().sum(dim=1) > kappa
    if outside.any():
        np.testing.assert_allclose(l1[outside].numpy(), kappa, rtol=0, atol=tol)
    # Signs are kept (projection shrinks towards 0 entrywise, never flips).
    assert bool((P * A >= 0).all())
    assert bool((P.abs() <= A.abs()).all())


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 10),
    cols=st.integers(1, 30),
    kappa=st.floats(0.1, 2.0),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**31 - 1),
)
@IMPLEMENTATIONS
def test_rows_inside_unchanged_bit_for_bit(project, rows, cols, kappa, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(rows, cols, generator=g, dtype=torch.float64).to(dtype)
    # Half of the rows are scaled strictly inside the ball (with irregular, non-representable values).
    inside = torch.arange(rows) % 2 == 0
    l1 = A.abs().sum(dim=1, keepdim=True)
    A = torch.where(inside[:, None], A / l1 * kappa * 0.7310001, A * (2 * kappa / l1))
    P = project(A, kappa)
    assert torch.equal(P[inside], A[inside])  # bit for bit
    if (~inside).any() and cols > 0:
        assert not torch.equal(P[~inside], A[~inside])


def test_all_zero_matrix_and_row_at_boundary():
    Z = torch.zeros(3, 5)
    assert torch.equal(project_rows_l1(Z, 0.95), Z)
    row = torch.tensor([[0.5, -0.25, 0.25]], dtype=torch.float64)  # L1 exactly 1.0 = kappa
    assert torch.equal(project_rows_l1(row, 1.0), row)


def test_known_values():
    A = torch.tensor([[3.0, -1.0, 0.0], [0.2, 0.1, -0.1], [1.0, 1.0, 1.0]], dtype=torch.float64)
    P = project_rows_l1(A, 1.0)
    # Row 0: theta = 2 -> [1, 0, 0]; row 1 inside; row 2: theta = 2/3 -> [1/3, 1/3, 1/3].
    expected = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.1, -0.1], [1 / 3, 1 / 3, 1 / 3]], dtype=torch.float64)
    torch.testing.assert_close(P, expected, rtol=0, atol=1e-15)
    assert float(inf_norm(P)) == pytest.approx(1.0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stays_on_device_and_dtype_and_batches(device, dtype):
    A = torch.randn(2, 4, 7, dtype=dtype, device=device) * 5
    P = project_rows_l1(A, 0.9)
    assert P.device == A.device and P.dtype == dtype and P.shape == A.shape
    assert float(P.abs().sum(-1).max()) <= 0.9 * (1 + 1e-5)
    ref = reference_projection(A.double().cpu().numpy(), 0.9)
    np.testing.assert_allclose(P.double().cpu().numpy(), ref, atol=1e-5)
    # The input is not modified.
    assert float(A.abs().sum(-1).max()) > 0.9


def test_inf_norm_and_invalid_kappa():
    A = torch.tensor([[1.0, -2.0], [0.5, 0.25]])
    assert float(inf_norm(A)) == 3.0
    with pytest.raises(ValueError):
        project_rows_l1(A, 0.0)
    with pytest.raises(ValueError):
        project_rows_l1(A, -1.0)


def test_fused_and_torch_projections_agree_and_nan_propagates():
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        A = torch.randn(30, 30, generator=g, dtype=dtype) * 0.2
        torch.testing.assert_close(_fused_required(A, 0.95), project_rows_l1_torch(A, 0.95))
    A[3, 4] = float("nan")
    for project in (
        _fused_required,
        project_rows_l1_torch,
    ):  # a NaN row becomes NaN (loud), the others are kept
        P = project(A, 0.95)
        assert bool(P[3].isnan().all()) and not bool(P[torch.arange(30) != 3].isnan().any())
    # inside autograd (a tensor that requires grad, grad mode on) the torch version runs: gradients flow
    B = (torch.randn(4, 5, generator=g) * 2).requires_grad_()
    project_rows_l1(B, 0.5).sum().backward()
    assert B.grad is not None and bool(torch.isfinite(B.grad).all())


def _hard_rows(g: torch.Generator, n: int) -> torch.Tensor:
    """Rows of every kind, float64: random far outside / just outside / exactly on / inside the ball (kappa 0.9),
    zero rows, ties (equal magnitudes, across signs), a one-hot row, geometric magnitudes (Michelot's iteration
    removes one entry per pass: the fallback to Condat's algorithm), and rows with zeros."""
    kappa = 0.9
    rows = []
    for scale in (80.0, 3.0, 1.0001, 1.0, 0.5):
        r = torch.randn(n, generator=g, dtype=torch.float64)
        rows.append(r / r.abs().sum() * kappa * scale)
    rows.append(torch.zeros(n, dtype=torch.float64))
    ties = torch.full((n,), 0.25, dtype=torch.float64)
    ties[::2] *= -1
    rows += [ties, ties * 10, torch.cat([ties[: n // 2], torch.zeros(n - n // 2, dtype=torch.float64)])]
    one_hot = torch.zeros(n, dtype=torch.float64)
    one_hot[n // 3] = -5.0
    rows.append(one_hot)
    geometric = 0.5 ** torch.arange(n, dtype=torch.float64) * 3
    rows += [geometric, geometric.flip(0), -geometric[torch.randperm(n, generator=g)]]
    rounded = torch.randint(-3, 4, (n,), generator=g).to(torch.float64) / 4  # many exact ties, some zeros
    rows.append(rounded)
    return torch.stack(rows)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 300])
@IMPLEMENTATIONS
def test_matches_sort_based_projection_to_1e12(project, n):
    """The linear-time projections against the sort-and-threshold reference (Duchi et al.) in float64."""
    g = torch.Generator().manual_seed(n)
    A = torch.cat([_hard_rows(g, n), torch.randn(40, n, generator=g, dtype=torch.float64) * 2])
    for kappa in (0.9, 0.05, 2.5):
        P = project(A, kappa)
        ref = project_rows_l1_sorted(A, kappa)
        torch.testing.assert_close(P, ref, rtol=0, atol=1e-12)
        inside = A.abs().sum(dim=1) <= kappa
        assert torch.equal(P[inside], A[inside])  # rows inside: untouched, bit for bit


@pytest.mark.parametrize("passes", [0, 1, 2])
def test_condat_loop_alone_is_exact(passes):
    """Condat's loop (which finishes rows that Michelot's passes leave unsettled; with 0 passes it does all the
    work) against the sort-based reference, on the same hard rows."""
    module = fused_module(required=True)
    g = torch.Generator().manual_seed(passes)
    for n in (1, 2, 5, 64, 300):
        A = torch.cat([_hard_rows(g, n), torch.randn(30, n, generator=g, dtype=torch.float64) * 3])
        for kappa in (0.9, 0.05, 2.5):
            P = module.project_rows_l1(A, kappa, False, passes)
            torch.testing.assert_close(P, project_rows_l1_sorted(A, kappa), rtol=0, atol=1e-12)
            B = A.clone()
            module.project_rows_l1(B, kappa, True, passes)
            assert torch.equal(B, P)


def test_in_place_projection_changes_only_rows_outside():
    g = torch.Generator().manual_seed(3)
    A = torch.randn(20, 30, generator=g, dtype=torch.float64)
    A[::2] *= 0.01  # inside the ball
    B = A.clone()
    project_rows_l1_(B, 0.5)
    assert torch.equal(B[::2], A[::2])
    torch.testing.assert_close(B, project_rows_l1_sorted(A, 0.5), rtol=0, atol=1e-12)
    # a non-contiguous A (a transposed view) goes through the torch version, in place all the same
    C = A.t().clone().t()
    project_rows_l1_(C, 0.5)
    torch.testing.assert_close(C, B, rtol=0, atol=1e-12)


def test_in_place_projection_of_a_parameter_bumps_its_version():
    """A parameter projected in place (grad mode on, as after an optimiser step): autograd sees the change (its
    version counter moves, as for an in-place op), and a matrix already inside is left alone (version kept)."""
    A = torch.nn.Parameter(torch.randn(6, 6, dtype=torch.float64) * 3)
    before = A._version
    project_rows_l1_(A, 0.9)
    assert A._version > before and float(inf_norm(A.detach())) <= 0.9 + 1e-12
    with torch.no_grad():
        A.mul_(0.5)  # every row strictly inside
    settled, values = A._version, A.detach().clone()
    project_rows_l1_(A, 0.9)
    assert A._version == settled and torch.equal(A.detach(), values)
