"""Multi-layer perceptron baselines (Table 4: identity, arithmetic, volatility, EikoNet-shaped locator).

Table 4 writes an MLP as ``in × h1 × ... × out``; ``MLP(in, out, hidden=(h1, ...))`` builds exactly that,
one ``nn.Linear`` (with bias) per ``×`` and the activation between consecutive linears (none after the
last one). Examples::

    MLP(10, 10, hidden=(9, 9))                          # identity           10×9×9×10        (289 params)
    MLP(50, 1, hidden=(10, 10))                         # arithmetic         50×10×10×1       (631 params)
    MLP(60, 1, hidden=(50, 27, 27, 27, 10))             # volatility         60×50×27×27×27×10×1
    MLP(30, 4, hidden=(32, 128, 128, 128, 32), activation="elu")   # EikoNet-shaped, 42,500 params
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .registry import register_baseline

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh}


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module for ``name`` (one of :data:`ACTIVATIONS`)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


@register_baseline("mlp")
class MLP(nn.Module):
    """Fully connected network ``in_features × hidden[0] × ... × out_features``.

    Shapes:
        input  ``(batch, in_features)``; any trailing dims are flattened, so ``(batch, time, 1)`` with
               ``time == in_features`` is accepted too.
        output ``(batch, out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        widths = (in_features, *self.hidden, out_features)
        layers: list[nn.Module] = []
        for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            if i > 0:
                layers.append(make_activation(activation))
            layers.append(nn.Linear(w_in, w_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, in_features)`` or ``(batch, *, ...)`` flattening to it -> ``(batch, out_features)``."""
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"MLP expects {self.in_features} features per sample, got {x.shape[1]}; "
                "set in_features to the input width"
            )
        return self.net(x)
