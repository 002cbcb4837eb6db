"""Implicit models (El Ghaoui et al. 2021), as in *The Extrapolation Power of Implicit Models*.

    x = relu(A x + B u)        (state equation, solved for its fixed point x)
    y = C x + D u              (prediction equation)

``A (n, n)``, ``B (n, p)``, ``C (q, n)``, ``D (q, p)``, no biases (the paper's parameter counts only add up
without them). Well-posedness is kept by projecting the rows of ``A`` onto the L1 ball of radius ``kappa``
(:meth:`ImplicitModel.project_`, called after every optimiser step by the training module). With
``feedback=False`` (the paper's ablation, section 4) ``A`` is strictly upper triangular: a feed-forward
network of adaptive depth whose solve ends in at most ``n`` iterations.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .activations import Activation, get_activation
from .config import AdjointConfig, SolverConfig, as_config
from .function import ImplicitFunction, fixed_point_solve
from .projection import inf_norm, project_rows_l1_
from .stats import SolverStats, warn_if_unconverged
from .structures import get_structure

__all__ = ["ImplicitLayer", "ImplicitModel", "ImplicitRNN", "count_parameters"]


# The projection's loop for the solver's backend (a registered backend's projection: the built-in default).
_PROJECTION_BACKEND = {"fused": "fused", "python": "python", "reference": "python"}


class ImplicitLayer(nn.Module):
    """The state equation ``x = phi(A x + B u)`` (``phi`` = ReLU in the paper) with its solver settings.

    Args:
        in_features: p.  hidden_features: n.
        kappa: radius of the row-wise L1 ball for ``A`` (``||A||_inf <= kappa < 1``).
        feedback: ``False`` keeps ``A`` strictly upper triangular (no closed-loop feedback): the structure
            ``strictly_upper``.
        structure: which entries of ``A`` are free and how well-posedness is kept, a name in
            :data:`~lightning_implicit.implicit.structures.STRUCTURES` (``dense``, the paper's; ``strictly_upper``;
            or one added with :func:`~lightning_implicit.implicit.register_structure`, e.g. a banded ``A``).
        solver: the forward solve, a :class:`SolverConfig` (method, tolerance, backend, and the activation
            ``phi``: the paper's ``relu``, ``leaky_relu``, ``tanh``, or one added with
            :func:`~lightning_implicit.implicit.register_activation`); default ``SolverConfig()``, the paper's
            Picard iteration to ``||x_t - x_{t-1}||_inf < 3e-6``, at most 300 iterations.
        adjoint: the implicit backward, an :class:`AdjointConfig` (default ``AdjointConfig()``: the same
            tolerance convention as the forward).
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        kappa: float = 0.95,
        feedback: bool = True,
        structure: str = "dense",
        solver: SolverConfig | None = None,
        adjoint: AdjointConfig | None = None,
    ) -> None:
        super().__init__()
        if not feedback:
            if structure not in ("dense", "strictly_upper"):
                raise ValueError(
                    f"feedback=False is the structure 'strictly_upper'; it cannot be combined with {structure!r}"
                )
            structure = "strictly_upper"
        if not 0 < kappa < 1:
            raise ValueError(f"kappa must be in (0, 1) for a well-posed model, got {kappa}")
        if in_features < 1 or hidden_features < 1:
            raise ValueError(
                f"in_features and hidden_features must be >= 1, got {in_features}, {hidden_features}"
            )
        self.in_features, self.hidden_features = in_features, hidden_features
        self.kappa, self.feedback = kappa, feedback
        self.structure = get_structure(structure)
        mask = None if self.structure.mask is None else self.structure.mask(hidden_features)
        self.register_buffer(
            "_mask", mask, persistent=False
        )  # (follows the layer's device; not in checkpoints)
        self.solver_cfg = as_config(SolverConfig, solver, "solver")
        self.adjoint_cfg = as_config(AdjointConfig, adjoint, "adjoint")
        n, p = hidden_features, in_features
        self.A = nn.Parameter(torch.empty(n, n).uniform_(-1, 1) / n)
        self.B = nn.Parameter(torch.empty(n, p).uniform_(-1, 1) / math.sqrt(p))
        self.project_()
        # The statistics of the last forward (one entry; the solve appends each call's, the older ones are then
        # dropped): a plain list, so that a forward sets no attribute (nn.Module's __setattr__ costs ~5 us a call,
        # as much as a small solve)
        self._stats: list[SolverStats] = []
        # Iterations of the previous forward / adjoint solve: they size the first block of the next blocked
        # solve (a speed-up only; results do not depend on them). Per instance, never shared.
        self._hints: tuple[list[int], list[int]] = ([], [])

    @property
    def activation(self) -> Activation:
        """``phi`` of the state equation."""
        return get_activation(self.solver_cfg.activation)

    def effective_A(self) -> torch.Tensor:
        """``A`` as used in the state equation: its free entries (:attr:`structure`; e.g. strictly upper
        triangular without feedback)."""
        # (the structure says whether there is a mask: a plain attribute, no module lookup of the buffer)
        return self.A if self.structure.mask is None else self.A * self._mask

    def project_(self) -> None:
        """Restore well-posedness after an optimiser step: rows of the (masked) ``A`` onto the L1 ball of radius
        kappa.

        For a nilpotent structure (without feedback: strictly upper triangular) only the mask is applied: the
        state equation is then well posed for any values (as in the paper's ablation).
        """
        if self._mask is not None:
            with torch.no_grad():
                self.A.mul_(self._mask)
        if not self.structure.nilpotent:  # in place, outside autograd: rows inside the ball are only read
            project_rows_l1_(self.A, self.kappa, _PROJECTION_BACKEND.get(self.solver_cfg.backend, "auto"))

    def well_posedness(self) -> float:
        """The certificate ``||A||_inf`` of the effective ``A``."""
        return float(inf_norm(self.effective_A().detach()))

    def forward(
        self,
        u: torch.Tensor,
        x0: torch.Tensor | None = None,
        *,
        warn: bool = True,
        readout: tuple[torch.Tensor, torch.Tensor] | None = None,
        solver_cfg: SolverConfig | None = None,
        adjoint_cfg: AdjointConfig | None = None,
    ) -> torch.Tensor:
        """Fixed point ``x (batch, n)`` for inputs ``u (batch, p)``; statistics go to ``self.last_stats``.

        ``warn=False`` leaves the non-convergence warning to the caller (an ImplicitRNN warns once per sequence).
        ``readout=(C, D)`` returns the prediction ``y = C x + D u (batch, q)`` instead, computed in the same
        autograd node as the solve (fewer autograd nodes per step; see :mod:`.function`). ``solver_cfg``: solve
        with these settings instead of the layer's (e.g. an evaluation's tolerance; the layer is not changed);
        ``adjoint_cfg`` likewise for the backward's solve.
        """
        if u.dim() != 2 or u.shape[1] != self.in_features:
            raise ValueError(f"expected input (batch, {self.in_features}), got {tuple(u.shape)}")
        sink = self._stats
        cfg = self.solver_cfg if solver_cfg is None else solver_cfg
        if not warn and cfg.warn:
            cfg = cfg.replace(warn=False)
        x0 = None if x0 is None else x0.detach()  # None: start at zero (not materialised)
        C, D = (None, None) if readout is None else readout
        out = ImplicitFunction.apply(
            self.effective_A(),
            self.B,
            u,
            x0,
            cfg,
            self.adjoint_cfg if adjoint_cfg is None else adjoint_cfg,
            sink,
            self._hints,
            C,
            D,
        )
        del sink[:-1]  # (this call's statistics only; the previous ones stay where the solve raised)
        return out

    def __setstate__(self, state: dict) -> None:
        # (a layer pickled before its statistics moved to ``_stats`` had a ``last_stats`` attribute)
        state.setdefault("_stats", [] if state.get("last_stats") is None else [state["last_stats"]])
        state.pop("last_stats", None)
        super().__setstate__(state)

    @property
    def last_stats(self) -> SolverStats | None:
        """Per-sample statistics of the last forward (:class:`SolverStats`; its ``backward_*`` fields are filled
        after ``backward``), ``None`` before the first."""
        return self._stats[-1] if self._stats else None


class ImplicitModel(nn.Module):
    """``y = C x + D u`` with ``x = relu(A x + B u)``; input ``(batch, p)``, output ``(batch, q)``.

    ``kappa``, ``feedback``, ``structure``, ``solver`` and ``adjoint`` are those of :class:`ImplicitLayer`.
    ``model.last_stats`` holds the per-sample :class:`SolverStats` of the last forward (its ``backward_*``
    fields are filled after ``backward``).

    ``bias=True`` (an ablation; the paper's model has none) adds bias terms, ``x = relu(A x + B u + b)`` and
    ``y = C x + D u + d``, as a constant input 1 appended to ``u``: ``B`` is then ``(n, p + 1)`` and ``D``
    ``(q, p + 1)``, their last columns ``b`` and ``d``. Without biases the model is positively homogeneous
    (``f(c u) = c f(u)`` for ``c > 0``); with them it is not.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int,
        *,
        kappa: float = 0.95,
        feedback: bool = True,
        structure: str = "dense",
        solver: SolverConfig | None = None,
        adjoint: AdjointConfig | None = None,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.bias = bias
        self.layer = ImplicitLayer(
            in_features + int(bias),
            hidden_features,
            kappa=kappa,
            feedback=feedback,
            structure=structure,
            solver=solver,
            adjoint=adjoint,
        )
        n, p, q = hidden_features, in_features, out_features
        self.C = nn.Parameter(torch.empty(q, n).uniform_(-1, 1) / math.sqrt(n))
        self.D = nn.Parameter(torch.empty(q, p + int(bias)).uniform_(-1, 1) / math.sqrt(p))
        self.in_features, self.hidden_features, self.out_features = p, n, q

    @property
    def A(self) -> nn.Parameter:
        return self.layer.A

    @property
    def B(self) -> nn.Parameter:
        return self.layer.B

    @property
    def last_stats(self) -> SolverStats | None:
        return self.layer.last_stats

    def project_(self) -> None:
        self.layer.project_()

    def well_posedness(self) -> float:
        return self.layer.well_posedness()

    def forward(
        self,
        u: torch.Tensor,
        solver_cfg: SolverConfig | None = None,
        adjoint_cfg: AdjointConfig | None = None,
    ) -> torch.Tensor:
        """``y (batch, q)``; ``solver_cfg`` / ``adjoint_cfg``: solve with these settings instead of the layer's."""
        if self.bias:  # u -> [u; 1]: the last columns of B and D are the biases b and d
            if u.dim() != 2 or u.shape[1] != self.in_features:
                raise ValueError(f"expected input (batch, {self.in_features}), got {tuple(u.shape)}")
            u = torch.cat([u, u.new_ones(u.shape[0], 1)], dim=1)
        # y = C x + D u, in the solve's autograd node
        return self.layer(u, readout=(self.C, self.D), solver_cfg=solver_cfg, adjoint_cfg=adjoint_cfg)


class ImplicitRNN(nn.Module):
    """The paper's implicitRNN: an implicit cell unrolled over time, then a linear readout.

    For each step ``i``: ``u_i = [s_i ; h_{i-1}]``, ``x_i = relu(A x_i + B u_i)``, ``h_i = C x_i + D u_i``
    (``h_0 = 0``, no nonlinearity on ``h``), ``y_i = W h_i + b``.

    Args:
        in_features: features per time step (``s_i``).  hidden_features: n.
        state_features: size of ``h`` (so ``B`` is ``n x (in_features + state_features)``).
        out_features: readout size per step.
        kappa, feedback, structure, solver, adjoint: those of :class:`ImplicitLayer`.
        warm_start: start each step's solve from the previous step's ``x`` (same fixed point, fewer iterations).
            With a scalar input per step (``in_features == 1``, the paper's rolling tasks) the first step is
            warm-started too: since ``h_0 = 0`` and ReLU is positively homogeneous (no biases), the first fixed
            point is ``x_1 = max(s_1, 0) x*(e) + max(-s_1, 0) x*(-e)`` with ``e = [1; 0]``; the two reference
            points ``x*(+-e)`` are solved (Picard, float64) whenever ``A`` or ``B e`` changed since they were last
            solved, and the first step then needs ~1 iteration instead of the ~10-40 of a start from 0
            (``last_stats.extra["reference_iterations"]``). Outputs depend only on the weights and the input.

    Input ``(batch, time, in_features)``; output ``(batch, time, out_features)`` (``[:, -1]`` is the last step).
    ``last_stats.iterations`` has shape ``(batch, time)``.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        state_features: int,
        out_features: int,
        *,
        warm_start: bool = True,
        kappa: float = 0.95,
        feedback: bool = True,
        structure: str = "dense",
        solver: SolverConfig | None = None,
        adjoint: AdjointConfig | None = None,
    ) -> None:
        super().__init__()
        p = in_features + state_features
        self.layer = ImplicitLayer(
            p,
            hidden_features,
            kappa=kappa,
            feedback=feedback,
            structure=structure,
            solver=solver,
            adjoint=adjoint,
        )
        n, h = hidden_features, state_features
        self.C = nn.Parameter(torch.empty(h, n).uniform_(-1, 1) / math.sqrt(n))
        self.D = nn.Parameter(torch.empty(h, p).uniform_(-1, 1) / math.sqrt(p))
        self.readout = nn.Linear(h, out_features)
        self.in_features, self.hidden_features, self.state_features = in_features, n, h
        self.out_features, self.warm_start = out_features, warm_start
        self.last_stats: SolverStats | None = None
        # (A, B e, tol, x*(+-e)) of the last reference solve (float64), reused while A and B e are unchanged
        self._reference: tuple[torch.Tensor, torch.Tensor, float, torch.Tensor] | None = None

    def project_(self) -> None:
        self.layer.project_()

    def well_posedness(self) -> float:
        return self.layer.well_posedness()

    def forward(
        self,
        s: torch.Tensor,
        solver_cfg: SolverConfig | None = None,
        adjoint_cfg: AdjointConfig | None = None,
    ) -> torch.Tensor:
        """``(batch, time, out_features)``; ``solver_cfg`` / ``adjoint_cfg``: solve with these settings instead of
        the layer's."""
        if s.dim() != 3 or s.shape[2] != self.in_features:
            raise ValueError(f"expected input (batch, time, {self.in_features}), got {tuple(s.shape)}")
        b, T, _ = s.shape
        h = s.new_zeros(b, self.state_features)
        x, ref_iters = None, 0
        if self.warm_start and self.in_features == 1 and T > 0 and self.layer.activation.homogeneous:
            x, ref_iters = self._first_step_start(s[:, 0])
        hs, steps = [], []
        for i in range(T):
            u = torch.cat([s[:, i], h], dim=1)
            x = self.layer(
                u,
                x0=x if self.warm_start else None,
                warn=False,
                solver_cfg=solver_cfg,
                adjoint_cfg=adjoint_cfg,
            )
            steps.append(self.layer.last_stats)
            h = x @ self.C.t() + u @ self.D.t()
            hs.append(h)
        self.last_stats = SolverStats.stack(steps)
        self.last_stats.extra["reference_iterations"] = ref_iters
        cfg = self.layer.solver_cfg if solver_cfg is None else solver_cfg
        if cfg.warn:  # once per call, not once per time step
            warn_if_unconverged(
                self.last_stats.converged,
                self.last_stats.residual,
                f"forward solve ({cfg.method}, {T} time steps)",
                cfg.max_iter,
            )
        return self.readout(torch.stack(hs, dim=1))

    @torch.no_grad()
    def _first_step_start(self, s0: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Start of the first step's solve (``s0 (batch, 1)``): ``x*([s; 0]) = s^+ x*(e) + s^- x*(-e)``.

        Exact by positive homogeneity of ``x -> relu(A x + B u)`` (``x*(c u) = c x*(u)`` for ``c >= 0``) and
        ``h_0 = 0``. The two reference fixed points are solved by Picard in float64 (the fused loop on CPU), from
        zero, to a relative tolerance of ``max(1e-6 * tol, 1e-14)``: the start then typically meets the layer's
        tolerance and the first step needs one iteration (more for a contraction close to 1 or very large
        ``|s|``: only iterations, never other fixed points). They are kept with the ``A`` and ``B e`` they were
        solved for and reused while those are unchanged (compared by value: an evaluation over many batches
        solves them once), so the start depends only on the weights. Returns the start and the reference
        solve's iterations (for 2 samples, not per sequence; 0 when reused)."""
        layer = self.layer
        A = layer.effective_A().detach().double()
        Be = layer.B.detach()[:, 0].double()  # B e
        tol = max(1e-6 * layer.solver_cfg.tol, 1e-14)
        kept = self._reference
        if (
            kept is not None
            and kept[0].device == A.device
            and kept[2] == tol
            and torch.equal(kept[0], A)
            and (torch.equal(kept[1], Be))
        ):
            x_ref, iterations = kept[3], 0
        else:
            cfg = layer.solver_cfg.replace(
                method="picard", tol=tol, tol_mode="rel", max_iter=2000, warn=False, check_every=None
            )
            x_ref, st = fixed_point_solve(A, torch.stack([Be, -Be]), None, cfg)
            iterations = int(st.iterations.sum())
            # (copies: in float64, A and Be may be views of the parameters; a non-finite point, e.g. from NaN
            # weights, is not kept)
            self._reference = (A.clone(), Be.clone(), tol, x_ref) if bool(x_ref.isfinite().all()) else None
        x_ref = x_ref.to(s0.dtype)
        x0 = s0.clamp(min=0) * x_ref[0] + (-s0).clamp(min=0) * x_ref[1]
        return x0, iterations


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters as the paper counts them: a structured ``A`` counts its free entries (without
    feedback: its strict upper triangle)."""
    total = 0
    for mod in model.modules():
        if isinstance(mod, ImplicitLayer):
            n = mod.hidden_features
            total += mod.structure.free_entries(n) - n * n  # the masked part of A is not a free parameter
    return total + sum(p.numel() for p in model.parameters() if p.requires_grad)
