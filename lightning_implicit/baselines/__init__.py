"""Explicit baseline models of Table 4 ("The Extrapolation Power of Implicit Models").

Plain ``torch.nn.Module`` s (no Lightning), batch-first. Each module registers its models by name
(:func:`register_baseline`); importing the package imports every module below. Build them directly or by name::

    from lightning_implicit.baselines import build_baseline, count_parameters
    mlp = build_baseline("mlp", in_features=50, out_features=1, hidden=(10, 10))
    eikonet = build_table4("earthquake/mlp")          # 42,500 parameters
"""

from .linear import LinearRegression
from .lstm import LSTMNet
from .mlp import MLP
from .naive import PersistenceForecaster, ZeroForecaster
from .nalu import NAC, NALU, NALUCell
from .registry import (
    BASELINE_SPECS,
    BASELINES,
    BaselineSpec,
    baseline_spec,
    build_baseline,
    count_parameters,
    register_baseline,
)
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
    "BASELINE_SPECS",
    "BaselineSpec",
    "baseline_spec",
    "register_baseline",
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
