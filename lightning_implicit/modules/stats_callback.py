"""The training-time solver statistics of implicit models, held by a callback (not by the module or the layer)."""

from __future__ import annotations

import lightning as L
import torch

__all__ = ["SolverStatsCallback"]

_MEANS = ("train/iters_mean", "train/converged_frac", "train/bwd_iters_mean", "train/bwd_converged_frac")


class SolverStatsCallback(L.Callback):
    """Accumulates the solver statistics of every training step on the device and logs them at the logging
    interval (``trainer.log_every_n_steps`` optimiser steps): means of the per-step means of the forward and adjoint iterations
    and converged fractions, the window's largest iteration count, and the certificate ``train/A_inf``
    (``||A||_inf <= kappa``) now.

    The forward's statistics come with its output (``net.last_stats``); the adjoint's exist once ``backward``
    has run, so they are read after it (``on_after_backward``). No host read happens between two logging
    intervals: one per window. :class:`~lightning_implicit.modules.ImplicitModule` adds this callback itself.
    """

    def __init__(self) -> None:
        self._sum: torch.Tensor | None = None  # per-step means, summed over the window
        self._max: torch.Tensor | None = None  # the window's largest iteration count
        self._steps = 0

    def on_after_backward(self, trainer, pl_module) -> None:
        st = pl_module.net.last_stats
        if st is None:
            return
        st.refresh_backward()  # an implicitRNN's per-step adjoint statistics
        it = st.iterations
        conv = st.converged.float().mean() if st.converged.numel() else it.new_ones((), dtype=torch.float32)
        parts = [it.float().mean(), conv]
        if st.backward_iterations is not None:
            parts += [st.backward_iterations.float().mean(), st.backward_converged.float().mean()]
        step = torch.stack(parts).to(torch.float64)
        top = it.max().to(torch.float64)
        if self._sum is None or self._sum.shape != step.shape:
            self._sum, self._max, self._steps = step, top, 1
        else:
            self._sum += step
            self._max = torch.maximum(self._max, top)
            self._steps += 1

    def on_logging_window_end(self, trainer, pl_module) -> None:
        """Called by the module every ``log_every_n_steps`` optimiser steps (``ShiftModule._end_window``)."""
        if self._sum is None:
            return
        means = dict(zip(_MEANS, (self._sum / self._steps).tolist(), strict=False))  # the window's host read
        # Under DDP every rank solves its own share of the batch: reduced across ranks (means of equal-sized
        # per-rank batches, maxima as maxima). ``A`` is identical on every rank; its max is a check.
        maxima = {"train/A_inf": pl_module.net.well_posedness(), "train/iters_max": float(self._max)}
        self._sum, self._max, self._steps = None, None, 0
        pl_module.log_step_metrics(means, maxima)
