"""The training-time solver statistics of implicit models, held by a callback (not by the module or the layer)."""

from __future__ import annotations

import warnings

import lightning as L
import torch

from lightning_implicit.implicit.stats import ConvergenceWarning, SolverStats

__all__ = ["SolverStatsCallback", "log_step_metrics"]


class SolverStatsCallback(L.Callback):
    """Keeps the solver statistics of every training step and logs them at the logging interval
    (``trainer.log_every_n_steps`` optimiser steps): over the window's solves (samples, and time steps of an
    implicitRNN), the mean forward and adjoint iterations and converged fractions, the largest forward iteration
    count, and the certificate ``train/A_inf`` (``||A||_inf <= kappa``) now.

    The forward's statistics come with its output (``net.last_stats``); the adjoint's exist once ``backward``
    has run, so they are taken after it (``on_after_backward``). A step only keeps a reference to its statistics
    (they are small tensors, fresh at every solve); the window's are reduced on the device when it ends, with one
    host read. The training solves do not check convergence themselves (``ImplicitModule.predict_batch``): where
    the layer's ``solver.warn`` / ``adjoint.warn`` ask for it, a window whose converged fraction is below 1 gets
    one :class:`ConvergenceWarning`. :class:`~lightning_implicit.modules.ImplicitModule` adds this callback itself.
    """

    def __init__(self) -> None:
        self._window: list[SolverStats] = []
        self._window_start = 0  # the global step at which the current window began

    def on_train_start(self, trainer, pl_module) -> None:
        self._window, self._window_start = [], trainer.global_step

    def on_after_backward(self, trainer, pl_module) -> None:
        st = pl_module.net.last_stats
        if st is not None and trainer.log_every_n_steps > 0:  # (a window may span two epochs)
            self._window.append(st)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """A window ends every ``log_every_n_steps`` optimiser steps (``trainer.global_step``; with
        ``accumulate_grad_batches`` the batches in between add their solves to the window)."""
        step, every = trainer.global_step, trainer.log_every_n_steps
        if every > 0 and step // every > self._window_start // every:
            self._log_window(trainer, pl_module)
            self._window_start = step

    def _log_window(self, trainer, pl_module) -> None:
        window, self._window = self._window, []
        if not window:
            return
        for st in window:
            st.refresh_backward()  # an implicitRNN's per-time-step adjoint statistics
        it = torch.cat([st.iterations.flatten() for st in window])
        parts = {
            "train/iters_mean": it,
            "train/converged_frac": torch.cat([st.converged.flatten() for st in window]),
        }
        if all(st.backward_iterations is not None for st in window):
            parts["train/bwd_iters_mean"] = torch.cat([st.backward_iterations.flatten() for st in window])
            parts["train/bwd_converged_frac"] = torch.cat([st.backward_converged.flatten() for st in window])
        values = torch.stack(
            [v.to(torch.float64).mean() for v in parts.values()] + [it.max().to(torch.float64)]
        )
        *means, top = values.tolist()  # the window's host read
        # Under DDP every rank solves its own share of the batch: reduced across ranks (means of equal-sized
        # per-rank batches, maxima as maxima). ``A`` is identical on every rank; its max is a check.
        maxima = {"train/A_inf": pl_module.net.well_posedness(), "train/iters_max": top}
        means = dict(zip(parts, means, strict=True))
        log_step_metrics(trainer, pl_module, means, maxima)
        self._warn(pl_module, means, self._window_start)

    @staticmethod
    def _warn(pl_module, means: dict[str, float], start: int) -> None:
        layer = pl_module.net.layer
        end = pl_module.global_step
        for key, cfg, what in (
            ("train/converged_frac", layer.solver_cfg, "forward"),
            ("train/bwd_converged_frac", layer.adjoint_cfg, "adjoint"),
        ):
            frac = means.get(key)
            if cfg.warn and frac is not None and frac < 1.0:
                warnings.warn(
                    f"training steps {start + 1}-{end}: {1.0 - frac:.2%} of the {what} solves did not "
                    f"converge in max_iter={cfg.max_iter} iterations. Raise --model.init_args."
                    f"{'solver' if what == 'forward' else 'adjoint'}.max_iter, lower kappa or the learning rate, "
                    "or use tol_mode 'rel' for large inputs in float32.",
                    ConvergenceWarning,
                    stacklevel=2,
                )


def log_step_metrics(
    trainer, pl_module, means: dict[str, float], maxima: dict[str, float] | None = None
) -> None:
    """Write step metrics at the optimiser step just taken (step index ``global_step - 1``, as Lightning's
    ``log(on_step=True)`` does), reduced across devices (``means`` averaged, ``maxima`` as maxima), to every
    logger and to ``trainer.callback_metrics`` (where callbacks that monitor a metric read it). One collective
    per kind of reduction, instead of one per ``self.log`` call."""
    out = {}
    for values, op in ((means, "mean"), (maxima or {}, "max")):
        if values:
            t = torch.tensor(list(values.values()), dtype=torch.float64, device=pl_module.device)
            out.update(zip(values, trainer.strategy.reduce(t, reduce_op=op).tolist(), strict=True))
    for lg in trainer.loggers:
        lg.log_metrics(out, step=trainer.global_step - 1)
    trainer.callback_metrics.update({k: torch.tensor(v) for k, v in out.items()})
