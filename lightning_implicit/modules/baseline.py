"""LightningModule for the explicit baselines of the paper's Table 4."""

from __future__ import annotations

import torch
from lightning.pytorch.utilities import rank_zero_warn

from lightning_implicit.baselines import baseline_spec, build_baseline
from lightning_implicit.task import TaskSpec

from .base import ShiftModule
from .optim import OptimConfig

__all__ = ["BaselineModule", "baseline_kwargs"]


def baseline_kwargs(task: TaskSpec, arch: str, kwargs: dict) -> dict:
    """Constructor arguments: the preset's sizes plus the input/output sizes the task dictates (what the
    baseline registered for ``arch`` takes from the task: :func:`~lightning_implicit.baselines.register_baseline`)."""
    return baseline_spec(arch).sizes(task, dict(kwargs))


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
        self.sequence_model = baseline_spec(arch).sequence
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
