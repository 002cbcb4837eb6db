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

# Table 4 of the paper: "<task>/<model>" -> (registry name, constructor kwargs).
TABLE4: dict[str, tuple[str, dict[str, Any]]] = {
    "identity/mlp": ("mlp", dict(in_features=10, out_features=10, hidden=(9, 9))),
    "identity/encdec": ("encdec", dict(d_model=10, nhead=5, dim_feedforward=5, max_len=10)),
    "arithmetic/mlp": ("mlp", dict(in_features=50, out_features=1, hidden=(10, 10))),
    "arithmetic/nalu": ("nalu", dict(in_features=50, out_features=1, hidden=(10, 10))),
    "arithmetic/nac": ("nac", dict(in_features=50, out_features=1, hidden=(10, 10))),
    "arithmetic/seq_encoder": ("seq_encoder", dict(seq_len=50, nhead=10, dim_feedforward=50)),
    "arithmetic/depth_encoder": ("depth_encoder", dict(d_model=10, nhead=1, dim_feedforward=500, max_len=50)),
    "rolling_average/lstm": ("lstm", dict(in_features=1, hidden=(18, 18), out_features=1)),
    "rolling_average/encdec": ("encdec", dict(d_model=10, nhead=5, dim_feedforward=5, max_len=10)),
    "rolling_argmax/lstm": ("lstm", dict(in_features=1, hidden=(21, 21), out_features=10)),
    "rolling_argmax/encdec_masked": (
        "encdec",
        dict(out_features=10, classification=True, d_model=10, nhead=2, dim_feedforward=10, max_len=10),
    ),
    "rolling_argmax/encdec_unmasked": (
        "encdec",
        dict(
            out_features=10,
            classification=True,
            d_model=10,
            nhead=2,
            dim_feedforward=10,
            max_len=10,
            causal_mask=False,
        ),
    ),
    "rolling_argmax/encdec_unmasked_nope": (
        "encdec",
        dict(
            out_features=10,
            classification=True,
            d_model=10,
            nhead=2,
            dim_feedforward=10,
            max_len=10,
            causal_mask=False,
            positional_encoding=False,
        ),
    ),
    "spiky/lstm": ("lstm", dict(in_features=1, hidden=(20, 20), out_features=1, many_to_one=True)),
    "spiky/masked_decoder": ("masked_decoder", dict(d_model=10, nhead=2, dim_feedforward=2048, max_len=10)),
    "volatility/lstm": ("lstm", dict(in_features=1, hidden=(38, 38), out_features=1, many_to_one=True)),
    "volatility/linear": ("linear", dict(in_features=60, out_features=1)),
    "volatility/mlp": ("mlp", dict(in_features=60, out_features=1, hidden=(50, 27, 27, 27, 10))),
    "volatility/seq_encoder": ("seq_encoder", dict(seq_len=60, nhead=1, dim_feedforward=2048, max_len=60)),
    "volatility/zero": ("zero", dict()),
    "volatility/persistence": ("persistence", dict(window=10)),
    "earthquake/mlp": (
        "mlp",
        dict(in_features=30, out_features=4, hidden=(32, 128, 128, 128, 32), activation="elu"),
    ),
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


def build_table4(key: str, **overrides: Any) -> nn.Module:
    """Build a Table 4 preset such as ``"arithmetic/nalu"``; ``overrides`` replace preset kwargs."""
    try:
        name, kwargs = TABLE4[key]
    except KeyError:
        raise ValueError(f"unknown Table 4 preset {key!r}; valid keys: {', '.join(sorted(TABLE4))}") from None
    return build_baseline(name, **{**kwargs, **overrides})


def count_parameters(module: nn.Module) -> int:
    """Number of trainable (``requires_grad``) parameter entries of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
