"""Linear regression baseline (Table 4, volatility: "SGD linear regression").

This module is only the model, ``y = x Wᵀ + b``. The "SGD" part of the paper's name is the optimiser:
the training module must be configured with ``torch.optim.SGD`` for this baseline (nothing here
enforces that, so the same layer can also be fitted in closed form or with another optimiser).
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_baseline


@register_baseline("linear")
class LinearRegression(nn.Module):
    """Affine map ``y = x Wᵀ + b``.

    Shapes:
        input  ``(batch, in_features)``; trailing dims are flattened, so ``(batch, time, 1)`` with
               ``time == in_features`` works too (volatility: ``(batch, 60)`` or ``(batch, 60, 1)``).
        output ``(batch, out_features)``.
    """

    def __init__(self, in_features: int, out_features: int = 1) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, in_features)`` -> ``(batch, out_features)``."""
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"LinearRegression expects {self.in_features} features per sample, got {x.shape[1]}; "
                "set in_features to the input width"
            )
        return self.linear(x)
