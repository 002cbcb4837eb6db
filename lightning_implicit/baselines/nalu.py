"""Neural Accumulator (NAC) and Neural Arithmetic Logic Unit (NALU), Trask et al. 2018.

Table 4 (arithmetic): ``NALU 50×10×10×1``, i.e. three cells 50->10->10->1 stacked with no activation in
between (the cells are their own non-linearity).

    NAC:   W = tanh(Ŵ) ⊙ sigmoid(M̂),        a = x Wᵀ         (weights pushed towards {-1, 0, 1})
    NALU:  g = sigmoid(x Gᵀ)
           a = NAC(x)
           m = exp(NAC(log(|x| + eps)))                        (multiplication / division in log space)
           y = g ⊙ a + (1 - g) ⊙ m

The add and multiply paths share one NAC, as in the paper. ``exp`` is applied to the log-space sum
clamped at ``max_exponent`` (default 30, so m <= e^30 ≈ 1e13): far out-of-distribution inputs give large
but finite outputs instead of ``inf``/``NaN`` (``inf * 0`` in the gate would otherwise produce NaN).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .registry import register_baseline


class NAC(nn.Module):
    """Neural accumulator: a bias-free linear layer with ``W = tanh(Ŵ) ⊙ sigmoid(M̂)``.

    Shapes: input ``(batch, in_features)`` -> output ``(batch, out_features)``.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.W_hat = nn.Parameter(torch.empty(out_features, in_features))
        self.M_hat = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.xavier_uniform_(self.W_hat)
        nn.init.xavier_uniform_(self.M_hat)

    @property
    def weight(self) -> torch.Tensor:
        """The effective weight ``tanh(Ŵ) ⊙ sigmoid(M̂)``, shape ``(out_features, in_features)``."""
        return torch.tanh(self.W_hat) * torch.sigmoid(self.M_hat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T


class NALUCell(nn.Module):
    """One NALU layer: a learned gate between additive and multiplicative NAC paths.

    Args:
        eps: added to ``|x|`` before the log.
        max_exponent: the log-space sum is clamped to at most this before ``exp``.

    Shapes: input ``(batch, in_features)`` -> output ``(batch, out_features)``.
    """

    def __init__(
        self, in_features: int, out_features: int, eps: float = 1e-7, max_exponent: float = 30.0
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.eps = eps
        self.max_exponent = max_exponent
        self.nac = NAC(in_features, out_features)
        self.G = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.xavier_uniform_(self.G)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(x @ self.G.T)
        a = self.nac(x)
        log_m = self.nac(torch.log(x.abs() + self.eps))
        m = torch.exp(log_m.clamp(max=self.max_exponent))
        return g * a + (1 - g) * m


CELLS: dict[str, type[nn.Module]] = {"nalu": NALUCell, "nac": NAC}


@register_baseline("nalu")
@register_baseline("nac", cell="nac")
class NALU(nn.Module):
    """A stack of NALU (or NAC) cells ``in_features × hidden[0] × ... × out_features``.

    ``NALU(50, 1, hidden=(10, 10))`` is Table 4's ``NALU 50×10×10×1`` (1,830 parameters; 1,220 with
    ``cell="nac"``).

    Shapes: input ``(batch, in_features)`` (trailing dims are flattened) -> ``(batch, out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (10, 10),
        cell: str = "nalu",
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; choose one of {sorted(CELLS)}")
        self.in_features = in_features
        self.out_features = out_features
        self.hidden = tuple(int(h) for h in hidden)
        self.cell = cell
        widths = (in_features, *self.hidden, out_features)
        self.cells = nn.Sequential(
            *(CELLS[cell](w_in, w_out) for w_in, w_out in zip(widths[:-1], widths[1:], strict=True))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"NALU expects {self.in_features} features per sample, got {x.shape[1]}; "
                "set in_features to the input width"
            )
        return self.cells(x)
