"""Name -> constructor registry for the baselines, Table 4 presets, and a parameter counter."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

from .linear import LinearRegression
from .lstm import LSTMNet
from .mlp import MLP
from .naive import PersistenceForecaster, ZeroForecaster
from .nalu import NALU
from .transformer import DepthwiseEncoder, EncoderDecoder, MaskedDecoder, SequentialEncoder

BASELINES: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "lstm": LSTMNet,
    "nalu": NALU,
    "nac": partial(NALU, cell="nac"),
    "seq_encoder": SequentialEncoder,
    "depth_encoder": DepthwiseEncoder,
    "encdec": EncoderDecoder,
    "masked_decoder": MaskedDecoder,
    "linear": LinearRegression,
    "zero": ZeroForecaster,
    "persistence": PersistenceForecaster,
}


def build_baseline(name: str, **kwargs: Any) -> nn.Module:
    """Build the baseline registered under ``name`` with constructor ``kwargs``.

    Raises:
        ValueError: for an unknown name; the message lists the valid names.
    """
    try:
        constructor = BASELINES[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; valid names: {', '.join(sorted(BASELINES))}") from None
    return constructor(**kwargs)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable (``requires_grad``) parameter entries of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
