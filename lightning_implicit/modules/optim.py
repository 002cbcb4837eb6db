"""The training recipe's optimiser and learning-rate schedule, as one validated config object."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["OptimConfig"]


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and schedule (``--model.init_args.optim.lr 0.02`` on the command line).

    Attributes:
        lr: learning rate.  optimizer: ``adam`` or ``sgd``.  weight_decay: L2 penalty.
        lr_schedule: ``none``, ``exponential`` (``lr * lr_gamma ** t``; the authors' notebooks: 0.995 per
            optimiser step) or ``cosine`` (to 0 over the run). ``none`` ignores ``lr_gamma``.
        lr_gamma: the exponential schedule's factor per ``lr_interval``.
        lr_interval: the schedule's unit of time ``t``: an optimiser ``step`` or an ``epoch``.
        grad_clip: clip the gradients' total 2-norm to this value before each step (0, the default: no clipping).
            ``--trainer.gradient_clip_val`` (Lightning's clipping, by norm or value), when given, wins over it;
            the run logs which applied as the parameter ``optim.grad_clip_from`` (``trainer``, ``optim`` or ``none``).

    These are the recipe's; the Trainer's options act on top of them as in any Lightning project
    (``accumulate_grad_batches``: one optimiser step, and one step of a per-step schedule, per that many
    mini-batches; the cosine schedule's length counts optimiser steps).
    """

    lr: float = 1e-2
    optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: float = 0.0
    lr_schedule: Literal["none", "exponential", "cosine"] = "none"
    lr_gamma: float = 1.0
    lr_interval: Literal["step", "epoch"] = "epoch"
    grad_clip: float = 0.0

    def __post_init__(self) -> None:
        if not self.grad_clip >= 0:
            raise ValueError(f"optim.grad_clip must be >= 0 (0: no clipping), got {self.grad_clip}")
        if not self.lr > 0 or not 0 < self.lr_gamma <= 1 or not self.weight_decay >= 0:
            raise ValueError(
                f"optim: need lr > 0, 0 < lr_gamma <= 1, weight_decay >= 0; got {self.lr}, {self.lr_gamma}, "
                f"{self.weight_decay}"
            )
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optim.optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.lr_schedule not in ("none", "exponential", "cosine") or self.lr_interval not in (
            "step",
            "epoch",
        ):
            raise ValueError(
                f"optim.lr_schedule must be none|exponential|cosine and optim.lr_interval step|epoch, got "
                f"{self.lr_schedule!r}, {self.lr_interval!r}"
            )

    def build(self, params: Iterable[torch.nn.Parameter], total: Callable[[], int]):
        """The optimiser, or Lightning's ``{"optimizer", "lr_scheduler"}`` dict when there is a schedule.

        ``total()``: the run's length in ``lr_interval`` units (read only by the cosine schedule)."""
        cls = torch.optim.Adam if self.optimizer == "adam" else torch.optim.SGD
        opt = cls(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.lr_schedule == "none" or (self.lr_schedule == "exponential" and self.lr_gamma == 1.0):
            return opt
        if self.lr_schedule == "exponential":
            sched = torch.optim.lr_scheduler.ExponentialLR(opt, self.lr_gamma)
        else:  # cosine to 0 over the whole run
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(int(total()), 1))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": self.lr_interval}}
