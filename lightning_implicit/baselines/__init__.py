"""Explicit baseline models of Table 4 ("The Extrapolation Power of Implicit Models").

Plain ``torch.nn.Module`` s (no Lightning), batch-first. Build them directly or by name::

    from lightning_implicit.baselines import build_baseline, count_parameters
    mlp = build_baseline("mlp", in_features=50, out_features=1, hidden=(10, 10))
    eikonet = build_table4("earthquake/mlp")          # 42,500 parameters
"""

from .linear import LinearRegression
from .lstm import LSTMNet
from .mlp import MLP
from .naive import PersistenceForecaster, ZeroForecaster
from .nalu import NAC, NALU, NALUCell
from .registry import BASELINES, build_baseline, count_parameters
from .transformer import (
    DepthwiseEncoder,
    EncoderDecoder,
    MaskedDecoder,
    PositionalEncoding,
    SequentialEncoder,
    shift_right,
    subsequent_mask,
)

__all__ = [
    "BASELINES",
    "MLP",
    "NAC",
    "NALU",
    "DepthwiseEncoder",
    "EncoderDecoder",
    "LSTMNet",
    "LinearRegression",
    "MaskedDecoder",
    "NALUCell",
    "PersistenceForecaster",
    "PositionalEncoding",
    "SequentialEncoder",
    "ZeroForecaster",
    "build_baseline",
    "count_parameters",
    "shift_right",
    "subsequent_mask",
]
