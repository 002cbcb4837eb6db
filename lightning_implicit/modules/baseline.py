"""LightningModule for the explicit baselines of the paper's Table 4."""

from __future__ import annotations

import torch
from lightning.pytorch.utilities import rank_zero_warn

from lightning_implicit.baselines import build_baseline
from lightning_implicit.task import TaskSpec

from .base import ShiftModule
from .optim import OptimConfig

__all__ = ["BaselineModule", "SEQUENCE_ARCHS"]

# Baselines that read (batch, time, features); the others read the flattened input.
SEQUENCE_ARCHS = frozenset({"lstm", "encdec", "masked_decoder"})


def baseline_kwargs(task: TaskSpec, arch: str, kwargs: dict) -> dict:
    """Constructor arguments: the preset's sizes plus the input/output sizes the task dictates."""
    kw = dict(kwargs)
    if arch == "lstm":
        kw.update(
            in_features=task.step_features, out_features=task.seq_out_features, many_to_one=task.many_to_one
        )
    elif arch == "encdec":
        step = task.step_features if task.is_sequence else 1
        kw.update(
            in_features=step,
            out_features=task.seq_out_features if task.is_sequence else 1,
            classification=task.kind == "classification",
        )
        kw.setdefault("max_len", task.seq_len if task.is_sequence else task.in_features)
    elif arch == "masked_decoder":
        kw.update(
            in_features=task.step_features, out_features=task.flat_out_features, many_to_one=task.many_to_one
        )
    elif arch == "seq_encoder":
        kw.update(seq_len=task.in_features, out_features=task.flat_out_features)
    elif arch == "depth_encoder":
        kw.update(out_features=task.flat_out_features)
        kw.setdefault("max_len", task.in_features)
    elif arch in ("zero",):
        kw.update(out_features=task.flat_out_features)
    elif arch == "persistence":
        pass
    else:  # mlp, nalu, nac, linear
        kw.update(in_features=task.in_features, out_features=task.flat_out_features)
    return kw


class BaselineModule(ShiftModule):
    """Trains any registered baseline (``lightning_implicit.baselines.BASELINES``) through the shared loop.

    Args:
        model: a preset name of the task (e.g. ``mlp``, ``lstm``, ``nalu``, ``eikonet``, ``encdec_masked``),
            whose Table 4 sizes come from the task; or a registry name with ``arch_kwargs``.
        arch_kwargs: constructor arguments overriding the preset's (input/output sizes come from the task).
        teacher_forcing_eval: encoder-decoders decode from the right-shifted true targets at evaluation, as in
            the paper (which it notes gives them an inherent advantage on rolling argmax); ``False`` decodes
            autoregressively from their own predictions.
        optim, eval_train: see :class:`ShiftModule` (``optim``: an :class:`OptimConfig`).
    """

    def __init__(
        self,
        task: TaskSpec | dict | None = None,
        *,
        model: str = "mlp",
        arch_kwargs: dict | None = None,
        teacher_forcing_eval: bool = True,
        optim: OptimConfig = OptimConfig(),
        eval_train: bool = False,
    ) -> None:
        super().__init__(task, optim=optim, eval_train=eval_train)
        self.save_hyperparameters()
        task = self.task
        preset = task.preset(model) if model in task.presets else {"arch": model}
        arch = preset.pop("arch", model)
        self.arch = arch
        kwargs = baseline_kwargs(task, arch, {**preset, **(arch_kwargs or {})})
        self.net = build_baseline(arch, **kwargs)
        if model not in task.presets and not arch_kwargs:
            rank_zero_warn(
                f"task {task.name!r} has no Table 4 size for model {model!r}: built with the defaults "
                f"of {arch!r} ({kwargs}); give sizes with --model.init_args.arch_kwargs '{{...}}' or add "
                f"a preset to the task's TaskSpec(presets=...)",
                category=UserWarning,
            )
        self.sequence_model = arch in SEQUENCE_ARCHS
        self.needs_targets = bool(getattr(self.net, "needs_targets", False))
        self.teacher_forcing_eval = teacher_forcing_eval

    def _seq_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.sequence_model and not self.task.is_sequence:
            return x.reshape(x.shape[0], -1, 1)  # a flat array read as a sequence of scalars
        if not self.sequence_model and self.task.is_sequence:
            return x.reshape(x.shape[0], -1)
        return x

    def _decoder_targets(self, y: torch.Tensor) -> torch.Tensor:
        if self.task.kind == "classification":
            return y
        return y.reshape(y.shape[0], -1, 1) if not self.task.is_sequence else y

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x = self._seq_input(x)
        if self.needs_targets:
            return self.net(x, self._decoder_targets(y) if y is not None else None)
        return self.net(x)

    def predict_batch(self, x, y):
        use_targets = self.needs_targets and (self.training or self.teacher_forcing_eval)
        return self(x, y if use_targets else None)
