"""Naive forecasters for the volatility task: always-zero and persistence.

They have nothing to learn, yet must drop into the same training loop as every other baseline. Two things
make that work:

* ``trainable = False`` (class attribute): a training module should check it and skip fitting
  (e.g. run only validation/test), which is the intended use.
* a zero-element parameter ``anchor`` that is added (as ``anchor.sum() == 0``) to the output. It makes
  ``torch.optim.SGD(model.parameters())`` and friends accept the model (no "empty parameter list" error)
  and gives the output a ``grad_fn`` so ``loss.backward()`` and ``optimizer.step()`` run as no-ops.
  It holds no numbers, so :func:`~lightning_implicit.baselines.registry.count_parameters` reports 0 and
  the predictions are exactly those of the rule.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_baseline


class _NoParameterModel(nn.Module):
    """Base for rule-based models: ``trainable = False`` and an empty anchor parameter (see module doc)."""

    trainable = False

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(0))

    def _attach(self, y: torch.Tensor) -> torch.Tensor:
        return y + self.anchor.sum().to(y.dtype)


def _prices(x: torch.Tensor) -> torch.Tensor:
    """``(batch, time)`` or ``(batch, time, 1)`` -> ``(batch, time)``."""
    if x.dim() == 3 and x.shape[-1] == 1:
        x = x.squeeze(-1)
    if x.dim() != 2:
        raise ValueError(f"expected prices of shape (batch, time) or (batch, time, 1), got {tuple(x.shape)}")
    return x


@register_baseline("zero", sizes=lambda task, kw: {**kw, "out_features": task.flat_out_features})
class ZeroForecaster(_NoParameterModel):
    """Always predicts 0.

    Shapes: input ``(batch, ...)`` (ignored apart from batch size, dtype, device) -> ``(batch, out_features)``.
    """

    def __init__(self, out_features: int = 1) -> None:
        super().__init__()
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        return self._attach(torch.zeros(x.shape[0], self.out_features, dtype=dtype, device=x.device))


@register_baseline("persistence", sizes=lambda task, kw: dict(kw))
class PersistenceForecaster(_NoParameterModel):
    """Predicts the population variance (``ddof=0``) of the last ``window`` input prices.

    "Tomorrow's volatility equals today's": with raw price inputs the forecast is
    ``mean((p - mean(p))**2)`` over ``p = x[:, -window:]``.

    Shapes: input ``(batch, time)`` or ``(batch, time, 1)`` with ``time >= window``, in raw price units
    (not scaled) -> output ``(batch, 1)``.
    """

    def __init__(self, window: int = 10) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prices = _prices(x)
        if prices.shape[1] < self.window:
            raise ValueError(
                f"PersistenceForecaster(window={self.window}) needs at least {self.window} time steps, "
                f"got {prices.shape[1]}; lower window or feed longer inputs"
            )
        recent = prices[:, -self.window :]
        return self._attach(recent.var(dim=1, correction=0, keepdim=True))
