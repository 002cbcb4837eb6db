"""LightningModule for implicit models (the regular implicit model and the implicitRNN)."""

from __future__ import annotations

from typing import Literal

import torch

from lightning_implicit.implicit import ImplicitModel, ImplicitRNN
from lightning_implicit.implicit.config import AdjointConfig, SolverConfig, as_config
from lightning_implicit.task import TaskSpec

from .base import ShiftModule
from .optim import OptimConfig
from .stats_callback import SolverStatsCallback

__all__ = ["ImplicitModule"]


class ImplicitModule(ShiftModule):
    """Trains an :class:`ImplicitModel` or :class:`ImplicitRNN`; projects ``A`` after every optimiser step.

    Sizes not given come from the task's Table 4 preset. Logged during training (by its
    :class:`SolverStatsCallback`): the certificate ``train/A_inf`` (``||A||_inf``, always ``<= kappa``) and solver
    statistics (forward and adjoint iterations, converged fraction), accumulated on the device over the steps
    between two logging intervals (``trainer.log_every_n_steps``) and logged as their means (iterations: also the
    maximum). In the shift
    sweep: per-sample iteration counts per shift (mean, median, p95, max, converged fraction) — the paper's
    depth-adaptability analysis.

    Args:
        family: ``implicit`` (flattened input) or ``implicit_rnn`` (one implicit solve per time step).
        hidden_features: n.  state_features: size of the RNN state h (``implicit_rnn`` only).
        kappa, feedback, structure: see :class:`~lightning_implicit.implicit.ImplicitLayer` (``structure``: which
            entries of ``A`` are free, e.g. a registered banded ``A``).
        solver: the forward solve during training, a :class:`SolverConfig` (``--model.init_args.solver.tol
            1e-4``; the activation ``phi`` is ``solver.activation``).
        adjoint: the implicit backward, an :class:`AdjointConfig`.
        warm_start: ``implicit_rnn``: start each step's solve from the previous step's state.
        sweep_tol_mode: tolerance mode of the shift sweep (a setting of the test loop: the sweep solves with
            :meth:`sweep_solver_cfg`; the layer is never changed). ``rel`` by default because the absolute 3e-6
            is unreachable in float32 once ``|x|`` is large; the converged fraction is logged either way.
        depth_other_tol: the sweep also solves every test input under the other tolerance mode and records its
            depth (``iters_mean_<mode>``, ``converged_frac_<mode>`` per shift): separates "deeper for OOD inputs"
            from "an absolute tolerance on larger states" (a bias-free ReLU model's solve is scale-invariant
            under a relative tolerance).
        bias: ``implicit`` only: bias terms in the state and output equations (an ablation: the paper's model has
            none, so its output scales with its input; see :class:`~lightning_implicit.implicit.ImplicitModel`).
        optim, eval_train: see :class:`ShiftModule` (``optim``: an :class:`OptimConfig`).
    """

    def __init__(
        self,
        task: TaskSpec | dict | None = None,
        *,
        family: Literal["implicit", "implicit_rnn"] = "implicit",
        hidden_features: int | None = None,
        state_features: int | None = None,
        kappa: float = 0.95,
        feedback: bool = True,
        structure: str = "dense",
        solver: SolverConfig = SolverConfig(),
        adjoint: AdjointConfig = AdjointConfig(),
        warm_start: bool = True,
        sweep_tol_mode: Literal["abs", "rel"] = "rel",
        depth_other_tol: bool = False,
        optim: OptimConfig = OptimConfig(),
        eval_train: bool = False,
        bias: bool = False,
    ) -> None:
        super().__init__(task, optim=optim, eval_train=eval_train)
        self.save_hyperparameters()
        task = self.task
        preset = task.presets.get(family, {})
        n = hidden_features or preset.get("hidden_features")
        if n is None:
            raise ValueError(
                f"task {task.name!r} has no Table 4 size for {family!r}: give "
                f"--model.init_args.hidden_features (known presets: {sorted(task.presets)})"
            )
        layer_kwargs = dict(
            kappa=kappa,
            feedback=feedback,
            structure=structure,
            solver=as_config(SolverConfig, solver, "solver"),
            adjoint=as_config(AdjointConfig, adjoint, "adjoint"),
        )
        if family == "implicit":
            self.net = ImplicitModel(task.in_features, n, task.flat_out_features, bias=bias, **layer_kwargs)
        elif bias:
            raise ValueError(f"bias=True is an option of the family 'implicit' only, got {family!r}")
        elif family == "implicit_rnn":
            if not task.is_sequence:
                raise ValueError(f"implicit_rnn needs a sequence task; {task.name!r} has flat inputs")
            h = state_features or preset.get("state_features") or n
            self.net = ImplicitRNN(
                task.step_features, n, h, task.seq_out_features, warm_start=warm_start, **layer_kwargs
            )
            self.sequence_model = True
        else:
            raise ValueError(f"family must be 'implicit' or 'implicit_rnn', got {family!r}")
        self.family = family
        self.sweep_tol_mode = sweep_tol_mode
        self.depth_other_tol = depth_other_tol

    def forward(self, x: torch.Tensor, solver_cfg=None, adjoint_cfg=None) -> torch.Tensor:
        if self.task.is_sequence and not self.sequence_model:
            x = x.reshape(x.shape[0], -1)
        if torch.is_autocast_enabled(x.device.type):
            # mixed precision (--trainer.precision bf16-mixed / 16-mixed): the fixed-point solve and its adjoint
            # stay in float32 (a tolerance of 3e-6 is below bf16/fp16 resolution); the loss is Lightning's
            with torch.autocast(x.device.type, enabled=False):
                out = self.net(x.float(), solver_cfg=solver_cfg, adjoint_cfg=adjoint_cfg)
        else:
            out = self.net(x, solver_cfg=solver_cfg, adjoint_cfg=adjoint_cfg)
        if self.family == "implicit_rnn" and self.task.many_to_one:
            out = out[:, -1]
        return out

    def predict_batch(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """In training, the solves do not check convergence themselves (a host read per solve): the converged
        fractions are read and warned about once per logging interval (:class:`SolverStatsCallback`)."""
        if not self.training:
            return self(x)
        return self(x, *self._training_cfgs())

    _quiet: tuple | None = None  # (solver, adjoint) configs of the layer and their warn=False copies

    def _training_cfgs(self):
        layer = self.layer
        if (
            self._quiet is None
            or self._quiet[0] is not layer.solver_cfg
            or self._quiet[1] is not layer.adjoint_cfg
        ):
            quiet = (layer.solver_cfg.replace(warn=False), layer.adjoint_cfg.replace(warn=False))
            self._quiet = (layer.solver_cfg, layer.adjoint_cfg, *quiet)
        return self._quiet[2:]

    def sweep_solver_cfg(self, tol_mode: str | None = None):
        """The solver settings of the shift sweep: the layer's, at ``tol_mode`` (default ``sweep_tol_mode``),
        without convergence warnings (the converged fraction is logged instead)."""
        return self.layer.solver_cfg.replace(tol_mode=tol_mode or self.sweep_tol_mode, warn=False)

    def evaluate_batch(self, x: torch.Tensor, y: torch.Tensor, tol_mode: str | None = None) -> torch.Tensor:
        """The output in the shift sweep, solved with :meth:`sweep_solver_cfg` (``tol_mode``: another one)."""
        return self(x, solver_cfg=self.sweep_solver_cfg(tol_mode))

    @property
    def layer(self):
        return self.net.layer

    # ---- well-posedness after every optimiser step; solver statistics: a callback's -------------------
    def after_optimizer_step(self) -> None:
        self.net.project_()

    def configure_callbacks(self):
        # one per Trainer: the fit's instance is kept by the test run that follows (and one a user passed wins)
        if any(isinstance(cb, SolverStatsCallback) for cb in self.trainer.callbacks):
            return []
        return [SolverStatsCallback()]

    # ---- shift sweep: per-sample depth ------------------------------------------------------------
    @property
    def other_tol_mode(self) -> str:
        return "abs" if self.sweep_tol_mode == "rel" else "rel"

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        super().test_step(batch, batch_idx, dataloader_idx)
        if self.depth_other_tol:  # the same inputs under the other tolerance: depth only
            self.evaluate_batch(batch[0], batch[1], tol_mode=self.other_tol_mode)
            part = self._test_outputs[dataloader_idx][-1]
            part["iters_other"], part["converged_other"] = _per_sample_depth(self.net.last_stats)

    def collect_test(self, pred, y, idx):
        out = super().collect_test(pred, y, idx)
        out["iters"], out["converged"] = _per_sample_depth(self.net.last_stats)
        return out

    def run_artifacts(self) -> dict[str, object]:
        """The learned ``A`` as used in the state equation (the feedback analysis reads it)."""
        return {"A": self.layer.effective_A().detach().cpu().numpy()}

    def sweep_extras(self, out):
        it = out["iters"].float()
        other = {}
        if "iters_other" in out:
            mode = self.other_tol_mode
            other = {
                f"iters_mean_{mode}": float(out["iters_other"].float().mean()),
                f"converged_frac_{mode}": float(out["converged_other"].float().mean()),
            }
        return {
            "iters_mean": float(it.mean()),
            "iters_median": float(it.median()),
            "iters_p95": float(torch.quantile(it, 0.95)),
            "iters_max": float(it.max()),
            "converged_frac": float(out["converged"].float().mean()),
        } | other


def _per_sample_depth(st) -> tuple[torch.Tensor, torch.Tensor]:
    """Iterations and convergence per sample; an implicitRNN's: the mean depth per step, all steps converged."""
    it = st.iterations.float()
    conv = st.converged
    return (it.mean(dim=1) if it.dim() == 2 else it), (conv.all(dim=1) if conv.dim() == 2 else conv)
