"""Stacked LSTM baseline (Table 4: rolling average, rolling argmax, spiky series, volatility).

Table 4 writes ``1×18×18×1``: input width 1, two LSTM layers of 18 units, and a linear head to 1 output
per step. ``LSTMNet(in_features=1, hidden=(18, 18), out_features=1)`` builds exactly that:

    rolling average  LSTMNet(1, (18, 18), 1)                       (batch, 10, 1) -> (batch, 10, 1)
    rolling argmax   LSTMNet(1, (21, 21), 10)                      (batch, 10, 1) -> (batch, 10, 10) logits
    spiky series     LSTMNet(1, (20, 20), 1, many_to_one=True)     (batch, W, 1)  -> (batch, 1)
    volatility       LSTMNet(1, (38, 38), 1, many_to_one=True)     (batch, 60, 1) -> (batch, 1)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .registry import register_baseline


def _lstm_sizes(task, kwargs: dict) -> dict:
    """One step's features in; the sequence's (or the last step's: ``many_to_one``) outputs out."""
    return {
        **kwargs,
        "in_features": task.step_features,
        "out_features": task.seq_out_features,
        "many_to_one": task.many_to_one,
    }


@register_baseline("lstm", sizes=_lstm_sizes, sequence=True)
class LSTMNet(nn.Module):
    """Stack of single-layer ``nn.LSTM`` s (widths may differ per layer) and a linear head.

    Args:
        in_features: features per time step.
        hidden: hidden size of each LSTM layer, bottom to top.
        out_features: outputs per step (regression targets, or class logits).
        many_to_one: if True return only the last step's output.

    Shapes:
        input  ``(batch, time, in_features)``; ``(batch, time)`` is accepted when ``in_features == 1``.
        output ``(batch, time, out_features)``, or ``(batch, out_features)`` when ``many_to_one``.
    """

    def __init__(
        self,
        in_features: int = 1,
        hidden: Sequence[int] = (18, 18),
        out_features: int = 1,
        many_to_one: bool = False,
    ) -> None:
        super().__init__()
        self.hidden = tuple(int(h) for h in hidden)
        if not self.hidden:
            raise ValueError("LSTMNet needs at least one hidden layer, e.g. hidden=(18, 18)")
        self.in_features = in_features
        self.out_features = out_features
        self.many_to_one = many_to_one
        widths = (in_features, *self.hidden)
        self.layers = nn.ModuleList(
            nn.LSTM(w_in, w_out, batch_first=True)
            for w_in, w_out in zip(widths[:-1], widths[1:], strict=True)
        )
        self.head = nn.Linear(self.hidden[-1], out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, time, in_features)`` -> ``(batch, time, out)`` or ``(batch, out)`` (many-to-one)."""
        if x.dim() == 2 and self.in_features == 1:
            x = x.unsqueeze(-1)
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise ValueError(f"LSTMNet expects input (batch, time, {self.in_features}), got {tuple(x.shape)}")
        for lstm in self.layers:
            x, _ = lstm(x)
        if self.many_to_one:
            x = x[:, -1]
        return self.head(x)
