"""Validated, per-instance solver settings (no class-level or global state)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from .activations import get_activation
from .registry import AUTO, BUILTIN_BACKENDS, SOLVERS, backend_names

__all__ = ["SolverConfig", "AdjointConfig", "as_config"]

TolMode = Literal["abs", "rel"]


def _check_backend(name: str, backend: str, choices: list[str], hint: str = "") -> None:
    if backend not in choices:
        raise ValueError(f"{name}.backend must be one of {choices}, got {backend!r}{hint}")


def _check_common(name: str, tol: float, tol_mode: str, max_iter: int) -> None:
    if not tol > 0:
        raise ValueError(f"{name}.tol must be > 0, got {tol}")
    if tol_mode not in ("abs", "rel"):
        raise ValueError(f"{name}.tol_mode must be 'abs' or 'rel', got {tol_mode!r}")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"{name}.max_iter must be an integer >= 1, got {max_iter!r}")


@dataclass(frozen=True)
class SolverConfig:
    """Forward fixed-point solve of ``x = relu(A x + B u)``.

    A sample stops when its residual ``||f(x) - x||_inf`` (``f(x) = relu(A x + B u)``; for Picard this is the
    paper's ``||x_t - x_{t-1}||_inf``) falls below ``tol`` (``abs``, the paper: 3e-6) or below
    ``tol * max(1, ||x||_inf)`` (``rel``: scale-aware, reachable in float32 at large input scales).

    Attributes:
        method: name in :data:`lightning_implicit.implicit.solvers.SOLVERS` (``picard``, ``anderson``, ``newton``).
        tol, tol_mode, max_iter: stopping rule (paper: 3e-6, ``abs``, 300; start at x = 0).
        check_every: iterations per block, i.e. between host-side checks (``None``, the default: adaptive, 8
            then the iterations the residuals' linear rate predicts for the slowest sample). Per-sample stopping
            is exact whatever its value (each sample gets its first iterate below the threshold); it only bounds
            the idle iterations after the last sample stops. Used by ``picard``'s Python loop (and the fixed-point
            adjoint's; the fused loop checks every iteration at no cost); ``anderson`` checks every
            ``check_every`` iterations (1 when ``None``); ``newton`` every iteration.
        anderson_m, anderson_beta, anderson_lam: Anderson memory, mixing and Tikhonov regularisation.
        warn: emit a :class:`ConvergenceWarning` (once per call) when some sample did not converge.
        backend: where ``picard`` runs its loop (:data:`~lightning_implicit.implicit.solvers.BACKENDS`):
            ``auto`` (the default) the fused C++ loop (:mod:`~lightning_implicit.implicit.fused`) for CPU
            float32/float64 tensors and ReLU when it builds, else the Python loop (after one warning if the
            build failed); ``fused`` requires the C++ loop; ``python`` the blocked Python loop (any device,
            dtype and activation; the only one that uses ``check_every`` and the block-size hint);
            ``reference`` the paper's iteration as written (:mod:`~lightning_implicit.implicit.reference`).
            Same stopping rule and per-sample results either way (up to the rounding of the products); a
            backend that does not support the activation says so and the reference runs. Any name of
            :func:`~lightning_implicit.implicit.registry.backend_names` (one added with ``register_backend``
            too: ``--model.init_args.solver.backend mine``), checked when the config is built.
        activation: ``phi`` of ``x = phi(A x + B u)``, a name in
            :data:`~lightning_implicit.implicit.activations.ACTIVATIONS` (the paper: ``relu``).
    """

    method: str = "picard"
    tol: float = 3e-6
    tol_mode: TolMode = "abs"
    max_iter: int = 300
    check_every: int | None = None
    anderson_m: int = 5
    anderson_beta: float = 1.0
    anderson_lam: float = 1e-6
    warn: bool = True
    backend: str = "auto"
    activation: str = "relu"

    def __post_init__(self) -> None:
        _check_backend(  # the built-in loops and any registered one
            "solver",
            self.backend,
            backend_names(),
            " (a backend of your own: register it with lightning_implicit.implicit.register_backend in a "
            "module that is imported first, e.g. one in your CONF_PATH directory)",
        )
        get_activation(self.activation)  # an unknown name lists the registered ones
        if self.method not in SOLVERS:
            raise ValueError(f"unknown solver method {self.method!r}; choose one of {sorted(SOLVERS)}")
        if self.method == "newton" and self.activation != "relu":
            raise ValueError(
                f"solver 'newton' solves ReLU's linear pieces exactly and supports activation 'relu' "
                f"only, got {self.activation!r}: use solver 'picard' or 'anderson'"
            )
        _check_common("solver", self.tol, self.tol_mode, self.max_iter)
        if self.check_every is not None and not (isinstance(self.check_every, int) and self.check_every >= 1):
            raise ValueError(f"solver.check_every must be an integer >= 1, got {self.check_every!r}")
        if not (isinstance(self.anderson_m, int) and self.anderson_m >= 1):
            raise ValueError(f"solver.anderson_m must be an integer >= 1, got {self.anderson_m!r}")
        if not 0 < self.anderson_beta <= 1:
            raise ValueError(f"solver.anderson_beta must be in (0, 1], got {self.anderson_beta}")

    def replace(self, **changes) -> SolverConfig:
        return replace(self, **changes)


# Where ``auto`` picks the direct (batched LU) adjoint, measured by ``make bench`` (benchmarks/bench_perf.py,
# [4]) on CPU (torch 2.13, 1 thread). With the fused C++ fixed-point loop (the CPU default) an iteration costs
# ~1-3 us at n <= 32, batch <= 1024, and the direct solve lost at all but one point of the grid (n = 4, batch
# 1024, 25 iterations): ``auto`` then always iterates. For the Python loop (``backend='python'``): a batched
# LU costs ~2 us per 20 x 20 matrix and grows quickly with n, while a fixed-point iteration costs a few us for
# the whole batch (plus ~2 n^2 flops per sample), so the direct solve only wins for small n *and* small
# batches. The crossover lies near batch * n^2 = 4k-8k at 10 iterations and 16k at 25 (trained models need
# ~5-25; e.g. batch 64: direct up to n = 8-16); at n = 36, batch 64 the LU takes ~0.6 ms against ~0.35 ms for
# the iteration, at n = 190, batch 1024 0.6 s against 6 ms. Other devices keep the previous default (n <= 64,
# any batch): not measured here (a batched LU on a GPU is far cheaper relative to an iteration).
CPU_DIRECT_MAX_N = 64
CPU_DIRECT_MAX_WORK = 8192  # batch * n * n
OTHER_DIRECT_MAX_N = 64


@dataclass(frozen=True)
class AdjointConfig:
    """Backward (adjoint) solve ``w = g + A^T (Phi w)``, i.e. ``w = (I - A^T Phi)^{-1} g``.

    Attributes:
        mode: ``fixed_point`` (iteration, memory O(batch x n)), ``direct`` (exact batched LU solve,
            O(batch x n^2) memory) or ``auto``: the iteration where it runs in the fused C++ loop (CPU), else
            ``direct`` when ``n <= direct_max_n`` and ``batch * n * n <= direct_max_work``; samples the iteration
            leaves unconverged are then solved directly where ``n <= direct_max_n``.
        tol, tol_mode, max_iter: stopping rule of the fixed-point iteration, per sample, with the forward's
            convention and defaults (3e-6, ``abs``, 300; ``rel``: ``tol * max(1, ||w||_inf)``).
        direct_max_n, direct_max_work: limits of ``auto``'s direct solve; ``None``: the measured defaults of the
            device (CPU: ``CPU_DIRECT_MAX_N``, ``CPU_DIRECT_MAX_WORK``; others: ``OTHER_DIRECT_MAX_N``, no cap).
        check_every: iterations per block of the fixed-point iteration (``None``: adaptive), as in
            :class:`SolverConfig`.
        backend: ``auto`` / ``fused`` / ``python`` for the fixed-point iteration, as in :class:`SolverConfig`
            (``reference``: the Python loop).
    """

    mode: Literal["fixed_point", "direct", "auto"] = "auto"
    tol: float = 3e-6
    tol_mode: TolMode = "abs"
    max_iter: int = 300
    direct_max_n: int | None = None
    warn: bool = True
    check_every: int | None = None
    direct_max_work: int | None = None
    backend: str = "auto"

    def __post_init__(self) -> None:
        _check_backend(
            "adjoint", self.backend, [AUTO, *BUILTIN_BACKENDS]
        )  # (the adjoint's loops are built in)
        if self.mode not in ("fixed_point", "direct", "auto"):
            raise ValueError(f"adjoint.mode must be 'fixed_point', 'direct' or 'auto', got {self.mode!r}")
        _check_common("adjoint", self.tol, self.tol_mode, self.max_iter)
        if self.check_every is not None and not (isinstance(self.check_every, int) and self.check_every >= 1):
            raise ValueError(f"adjoint.check_every must be an integer >= 1, got {self.check_every!r}")

    def replace(self, **changes) -> AdjointConfig:
        return replace(self, **changes)

    def direct_limit_n(self, device_type: str = "cpu") -> int:
        """The largest ``n`` for which ``auto`` may solve directly (also the fallback for unconverged samples)."""
        if self.direct_max_n is not None:
            return self.direct_max_n
        return CPU_DIRECT_MAX_N if device_type == "cpu" else OTHER_DIRECT_MAX_N

    def direct_limit_work(self, device_type: str = "cpu") -> int | None:
        """The largest ``batch * n * n`` for which ``auto`` may solve directly (``None``: no cap)."""
        if self.direct_max_work is not None:
            return self.direct_max_work
        return CPU_DIRECT_MAX_WORK if device_type == "cpu" else None

    def resolved_mode(
        self, n: int, batch: int | None = None, device_type: str = "cpu", fused: bool = False
    ) -> str:
        """The mode used for hidden size ``n`` and (if given) ``batch`` samples on ``device_type``; ``fused``:
        the fixed-point iteration would run in the fused C++ loop (then, without explicit limits, never direct:
        it beats the batched LU at every measured size, see ``make bench`` [4])."""
        if self.mode != "auto":
            return self.mode
        if fused and self.direct_max_n is None and self.direct_max_work is None:
            return "fixed_point"
        max_n, max_work = self.direct_limit_n(device_type), self.direct_limit_work(device_type)
        if n > max_n or (batch is not None and max_work is not None and batch * n * n > max_work):
            return "fixed_point"
        return "direct"


def as_config(cls, value, name: str):
    """``value`` as a ``cls`` config object: ``None`` gives the defaults, a dict its fields (as a checkpoint
    stores them); anything else is a :class:`TypeError` that names the argument."""
    if value is None:
        return cls()
    if isinstance(value, dict):
        return cls(**value)
    if not isinstance(value, cls):
        raise TypeError(
            f"{name} must be a {cls.__name__} (or a dict of its fields), got {type(value).__name__}"
        )
    return value
