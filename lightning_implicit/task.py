"""What a task tells the models: shapes, loss, and the Table 4 sizes of each model family.

A :class:`TaskSpec` is static (it does not depend on generated data), so the CLI can pass it from the
datamodule to the model before any data exists. Conventions (batch-first):

* flat tasks: input ``(batch, in_features)``; sequence tasks: ``(batch, time, step_features)``.
* regression targets have ``target_shape`` (e.g. ``(1,)`` or ``(10, 1)``); classification targets are class
  indices of shape ``target_shape`` (e.g. ``(10,)``: one label per step).
* ``loss_steps``: which steps of a per-step sequence target the training loss reads: ``all`` (every step's
  label) or ``last`` (the final step's only: the authors' rolling-argmax objective). Evaluation is set apart
  by ``eval_last_step``.
* a *flat* model sees the input flattened and predicts ``flat_out_features`` values (for a classification
  task evaluated on the last step: the ``num_classes`` logits of the last step only, as in the paper's
  Table 4 implicit model for rolling argmax); a *sequence* model predicts ``seq_out_features`` per step
  (or one vector for many-to-one tasks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch.nn import functional as F

__all__ = ["TaskSpec"]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: Literal["regression", "classification"]
    in_shape: tuple[int, ...]
    target_shape: tuple[int, ...]
    num_classes: int = 0
    eval_last_step: bool = False
    loss_steps: Literal["all", "last"] = "all"
    shift_name: str = "kappa"
    shift_log: bool = False
    metrics: tuple[str, ...] = ("mse",)
    presets: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("regression", "classification"):
            raise ValueError(f"TaskSpec.kind must be 'regression' or 'classification', got {self.kind!r}")
        if self.kind == "classification" and self.num_classes < 2:
            raise ValueError("a classification task needs num_classes >= 2")
        if self.loss_steps not in ("all", "last"):
            raise ValueError(f"TaskSpec.loss_steps must be 'all' or 'last', got {self.loss_steps!r}")

    def to_dict(self) -> dict:
        """Plain-data form (checkpoints load it with ``torch.load(weights_only=True)``)."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict) -> TaskSpec:
        d = dict(d)
        for key in ("in_shape", "target_shape", "metrics"):
            d[key] = tuple(d[key])
        return cls(**d)

    # ---- shapes -------------------------------------------------------------------------------
    @property
    def is_sequence(self) -> bool:
        return len(self.in_shape) == 2

    @property
    def in_features(self) -> int:
        """Input size seen by a flat model."""
        return math.prod(self.in_shape)

    @property
    def step_features(self) -> int:
        return self.in_shape[-1]

    @property
    def seq_len(self) -> int:
        return self.in_shape[0] if self.is_sequence else 1

    @property
    def many_to_one(self) -> bool:
        """Sequence task with one target per sequence (forecasting)."""
        return self.is_sequence and len(self.target_shape) == 1 and self.kind == "regression"

    @property
    def flat_out_features(self) -> int:
        if self.kind == "classification":
            return (
                self.num_classes
                if (self.eval_last_step or len(self.target_shape) == 0)
                else (self.num_classes * math.prod(self.target_shape))
            )
        return math.prod(self.target_shape)

    @property
    def seq_out_features(self) -> int:
        if self.kind == "classification":
            return self.num_classes
        return self.target_shape[-1]

    def preset(self, model: str) -> dict:
        """Table 4 constructor arguments of ``model`` for this task (a copy)."""
        if model not in self.presets:
            raise ValueError(
                f"task {self.name!r} has no preset for model {model!r} (known: {sorted(self.presets)}); "
                f"give its sizes explicitly, e.g. --model.init_args.arch_kwargs '{{...}}'"
            )
        return dict(self.presets[model])

    # ---- loss and evaluation view -------------------------------------------------------------
    def align(self, pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bring a model output and the target to the evaluation view.

        Regression: the prediction reshaped to the target's shape. Classification: ``(batch, classes)``
        logits and ``(batch,)`` labels, of the last step when ``eval_last_step``.
        """
        if self.kind == "regression":
            return pred.reshape(y.shape), y
        if pred.dim() == 3:  # (batch, time, classes)
            pred = pred[:, -1] if self.eval_last_step else pred.reshape(-1, pred.shape[-1])
        if y.dim() == 2:
            y = y[:, -1] if self.eval_last_step else y.reshape(-1)
        return pred, y

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Training loss: MSE, or cross-entropy over the steps ``loss_steps`` selects.

        A per-step classifier's ``(batch, time, classes)`` logits are scored at every step (``all``) or at the
        last step only (``last``); a flat model's ``(batch, classes)`` logits already are the last step's.
        """
        if self.kind == "regression":
            return F.mse_loss(pred.reshape(y.shape), y)
        if pred.dim() == 3:
            if self.loss_steps == "last":
                return F.cross_entropy(pred[:, -1], y[:, -1])
            return F.cross_entropy(pred.reshape(-1, pred.shape[-1]), y.reshape(-1))
        return F.cross_entropy(*self.align(pred, y))
