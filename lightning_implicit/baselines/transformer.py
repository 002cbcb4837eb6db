"""Transformer baselines of Table 4, built from ``torch.nn.TransformerEncoder/DecoderLayer``.

All use dropout 0.1 and layer-norm eps 1e-5 (paper, appendix A.1), ``batch_first=True`` and post-norm
layers (PyTorch's default). Positional encodings are sinusoidal by default (``learned_pe=True`` for a
learned table) and can be switched off with ``positional_encoding=False``; ``max_len`` is Table 4's
"max PE length", and longer inputs are rejected with an error rather than silently wrapped.

Readings of Table 4 (the paper gives only the numbers quoted):

* ``SequentialEncoder`` - "processes each array as a single sequence": the whole array of ``L`` scalars
  is **one token** of width ``d_model = L`` (arithmetic: L = 50 with 10 heads of width 5, feed-forward 50;
  volatility: L = 60, 1 head, feed-forward 2048), followed by the ``L×out`` linear layer ("60x1 linear
  layer"). There is no input embedding. With one token the positional encoding is the fixed position-0
  vector (a constant offset), kept for fidelity to "max PE length 60"; disable it if unwanted.
* ``DepthwiseEncoder`` - "processes each element ... as a single sequence", max PE length 50: every scalar
  is a token, embedded by ``Linear(1, d_model)``; the encoder output is pooled over tokens (mean by default)
  and mapped to the output. ``d_model`` is not given in the paper (default 10).
* ``EncoderDecoder`` ``10×10×5(×10), 5 heads`` (identity, rolling average): sequence length 10 × d_model 10 ×
  feed-forward 5 (× output length 10), 5 heads. Rolling argmax: d_model 10 (not given), 2 heads,
  feed-forward 10, max PE length 10, 10 classes.
* ``MaskedDecoder`` (spiky series): ``Linear(1, 10)`` -> decoder-only stack -> ``Linear(10, 1)``. A decoder
  without an encoder has no cross-attention, so its layer is a ``TransformerEncoderLayer`` run with a causal
  mask (GPT-style).

"Masked" means causal everywhere: with ``causal_mask=True`` the output at step ``t`` depends only on inputs
(and, for the encoder-decoder, teacher-forced targets) at steps ``<= t`` (targets ``< t``). The mask is
applied to encoder self-attention, decoder self-attention and cross-attention, so no path leaks the future.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .registry import register_baseline

DROPOUT = 0.1
LAYER_NORM_EPS = 1e-5


def subsequent_mask(rows: int, cols: int | None = None, device: torch.device | None = None) -> torch.Tensor:
    """Boolean attention mask ``(rows, cols)``; ``True`` where query ``i`` may NOT attend key ``j`` (``j > i``)."""
    cols = rows if cols is None else cols
    return torch.ones(rows, cols, dtype=torch.bool, device=device).triu(diagonal=1)


def shift_right(targets: torch.Tensor, start: float | int | torch.Tensor) -> torch.Tensor:
    """Decoder inputs for teacher forcing: ``[start, y_0, ..., y_{T-2}]``.

    Args:
        targets: ``(batch, T, *)`` (any dtype; class indices stay integers).
        start: the value placed at step 0 (a number, or a tensor broadcastable to ``(batch, 1, *)``).

    Returns:
        tensor of the same shape and dtype as ``targets``.
    """
    if targets.dim() < 2:
        raise ValueError(f"targets must be (batch, T, ...), got shape {tuple(targets.shape)}")
    first = torch.empty_like(targets[:, :1])
    first[...] = start if not torch.is_tensor(start) else start.to(targets.dtype)
    return torch.cat([first, targets[:, :-1]], dim=1)


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose CPU mask is drawn by ``rand_like(x) >= p`` (each element kept with probability
    ``1 - p``, kept ones scaled by ``1 / (1 - p)``): the same distribution as ``F.dropout``'s ``bernoulli_`` mask
    in about half the time (7.3 vs 13.3 ms forward and backward on a 64 x 50 x 500 activation, one thread), which
    matters for the wide feed-forward Transformers (the depth encoder's 500 and the masked decoder's 2,048 units:
    a depth-encoder training step 31.5 -> 28.0 ms). Elsewhere (CUDA: one fused kernel) ``F.dropout``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu" or not x.is_floating_point():
            return super().forward(x)
        if self.p == 1.0:
            return x * 0.0
        keep = torch.rand_like(x).ge_(self.p).mul_(1.0 / (1.0 - self.p))
        return x.mul_(keep) if self.inplace else x * keep


def _fast_dropout(layer: nn.Module) -> nn.Module:
    """``layer`` (a ``TransformerEncoderLayer`` / ``TransformerDecoderLayer``) with its dropouts as :class:`Dropout`
    (the attention weights' dropout stays inside ``scaled_dot_product_attention``)."""
    for name, child in layer.named_children():
        if type(child) is nn.Dropout:
            setattr(layer, name, Dropout(child.p, child.inplace))
    return layer


class PositionalEncoding(nn.Module):
    """Adds a positional encoding to token embeddings, then dropout.

    Sinusoidal (Vaswani et al. 2017) or learned (``learned=True``, a ``(max_len, d_model)`` table).

    Shapes: ``(batch, time, d_model)`` -> same, ``time <= max_len``.
    """

    def __init__(self, d_model: int, max_len: int, learned: bool = False, dropout: float = DROPOUT) -> None:
        super().__init__()
        self.d_model = d_model
        self.max_len = max_len
        self.learned = learned
        self.dropout = Dropout(dropout)
        if learned:
            self.pe = nn.Parameter(torch.randn(max_len, d_model) * 0.02)
        else:
            position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
            div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
            pe = torch.zeros(max_len, d_model)
            pe[:, 0::2] = torch.sin(position * div)
            pe[:, 1::2] = torch.cos(position * div)[:, : d_model // 2]
            self.register_buffer("pe", pe, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        if length > self.max_len:
            raise ValueError(
                f"sequence length {length} exceeds the positional encoding's max_len={self.max_len}; "
                "raise max_len or pass positional_encoding=False"
            )
        return self.dropout(x + self.pe[:length].to(x.dtype))


def _position(d_model: int, max_len: int, enabled: bool, learned: bool, dropout: float) -> nn.Module:
    """A positional encoding, or plain dropout on the embeddings when disabled."""
    return PositionalEncoding(d_model, max_len, learned, dropout) if enabled else Dropout(dropout)


def _check_heads(d_model: int, nhead: int) -> None:
    if nhead < 1 or d_model % nhead:
        raise ValueError(
            f"d_model={d_model} must be a positive multiple of nhead={nhead}; change one of them"
        )


def _encoder(d_model, nhead, dim_feedforward, num_layers, dropout, layer_norm_eps) -> nn.TransformerEncoder:
    _check_heads(d_model, nhead)
    layer = nn.TransformerEncoderLayer(
        d_model, nhead, dim_feedforward, dropout, layer_norm_eps=layer_norm_eps, batch_first=True
    )
    return nn.TransformerEncoder(_fast_dropout(layer), num_layers, enable_nested_tensor=False)


def _as_steps(x: torch.Tensor, features: int, what: str) -> tuple[torch.Tensor, bool]:
    """``(batch, T)`` (when ``features == 1``) or ``(batch, T, features)`` -> ``(batch, T, features)``, was_2d."""
    if x.dim() == 2 and features == 1:
        return x.unsqueeze(-1), True
    if x.dim() != 3 or x.shape[-1] != features:
        raise ValueError(f"{what} expects (batch, time, {features}), got {tuple(x.shape)}")
    return x, False


def _seq_encoder_sizes(task, kwargs: dict) -> dict:
    """The flattened input read as a sequence of its scalars."""
    return {**kwargs, "seq_len": task.in_features, "out_features": task.flat_out_features}


@register_baseline("seq_encoder", sizes=_seq_encoder_sizes)
class SequentialEncoder(nn.Module):
    """Encoder that reads a whole array as one token of width ``d_model = seq_len`` (see module doc).

    ``SequentialEncoder(50, 1, nhead=10, dim_feedforward=50)`` is the arithmetic model;
    ``SequentialEncoder(60, 1, nhead=1, dim_feedforward=2048, max_len=60)`` the volatility one.

    Shapes: input ``(batch, seq_len)`` or ``(batch, seq_len, 1)`` -> output ``(batch, out_features)``.
    """

    def __init__(
        self,
        seq_len: int = 50,
        out_features: int = 1,
        nhead: int = 10,
        dim_feedforward: int = 50,
        num_layers: int = 1,
        positional_encoding: bool = True,
        learned_pe: bool = False,
        max_len: int | None = None,
        dropout: float = DROPOUT,
        layer_norm_eps: float = LAYER_NORM_EPS,
    ) -> None:
        super().__init__()
        self.seq_len = seq_len
        self.out_features = out_features
        self.position = _position(seq_len, max_len or seq_len, positional_encoding, learned_pe, dropout)
        self.encoder = _encoder(seq_len, nhead, dim_feedforward, num_layers, dropout, layer_norm_eps)
        self.head = nn.Linear(seq_len, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3 and x.shape[-1] == 1:
            x = x.squeeze(-1)
        if x.dim() != 2 or x.shape[1] != self.seq_len:
            raise ValueError(f"SequentialEncoder expects (batch, {self.seq_len}), got {tuple(x.shape)}")
        token = self.position(x.unsqueeze(1))  # (batch, 1, seq_len): the array is the only token
        return self.head(self.encoder(token).squeeze(1))


def _depth_encoder_sizes(task, kwargs: dict) -> dict:
    """The flattened output; positions up to the flattened input's length unless the preset says otherwise."""
    out = {**kwargs, "out_features": task.flat_out_features}
    out.setdefault("max_len", task.in_features)
    return out


@register_baseline("depth_encoder", sizes=_depth_encoder_sizes)
class DepthwiseEncoder(nn.Module):
    """Encoder with one token per array element: ``Linear(1, d_model)`` -> encoder -> pool -> linear.

    Args:
        pool: ``"mean"`` over tokens (any length ``<= max_len``) or ``"flatten"`` (length must equal
            ``max_len``; head is ``Linear(max_len * d_model, out)``).

    Shapes: input ``(batch, L)`` or ``(batch, L, 1)`` -> output ``(batch, out_features)``.
    """

    def __init__(
        self,
        out_features: int = 1,
        d_model: int = 10,
        nhead: int = 1,
        dim_feedforward: int = 500,
        num_layers: int = 1,
        max_len: int = 50,
        pool: str = "mean",
        positional_encoding: bool = True,
        learned_pe: bool = False,
        dropout: float = DROPOUT,
        layer_norm_eps: float = LAYER_NORM_EPS,
    ) -> None:
        super().__init__()
        if pool not in ("mean", "flatten"):
            raise ValueError(f"unknown pool {pool!r}; choose 'mean' or 'flatten'")
        self.out_features = out_features
        self.max_len = max_len
        self.pool = pool
        self.embed = nn.Linear(1, d_model)
        self.position = _position(d_model, max_len, positional_encoding, learned_pe, dropout)
        self.encoder = _encoder(d_model, nhead, dim_feedforward, num_layers, dropout, layer_norm_eps)
        self.head = nn.Linear(d_model * (max_len if pool == "flatten" else 1), out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = _as_steps(x, 1, "DepthwiseEncoder")
        if self.pool == "flatten" and x.shape[1] != self.max_len:
            raise ValueError(
                f"pool='flatten' needs exactly max_len={self.max_len} elements, got {x.shape[1]}"
            )
        h = self.encoder(self.position(self.embed(x)))  # (batch, L, d_model)
        h = h.mean(dim=1) if self.pool == "mean" else h.flatten(1)
        return self.head(h)


def _encdec_sizes(task, kwargs: dict) -> dict:
    """A sequence task's steps (a flat task: a sequence of scalars, one output); positions up to its length."""
    out = {
        **kwargs,
        "in_features": task.step_features if task.is_sequence else 1,
        "out_features": task.seq_out_features if task.is_sequence else 1,
        "classification": task.kind == "classification",
    }
    out.setdefault("max_len", task.seq_len if task.is_sequence else task.in_features)
    return out


@register_baseline("encdec", sizes=_encdec_sizes, sequence=True)
class EncoderDecoder(nn.Module):
    """Encoder-decoder transformer for sequence-to-sequence tasks (identity, rolling average / argmax).

    Training uses teacher forcing: ``forward(src, tgt)`` feeds the decoder ``shift_right(tgt, start)``.
    Without targets, ``forward(src)`` is :meth:`generate` (greedy autoregressive decoding).
    ``needs_targets = True`` tells a training module to pass the targets in training.

    Args:
        in_features: features per source step (embedded by ``Linear(in_features, d_model)``).
        out_features: outputs per step (regression) or number of classes (``classification=True``).
        classification: targets are class indices, embedded with ``nn.Embedding(out_features + 1, d_model)``;
            index ``out_features`` is the start token. Otherwise targets are real values embedded by
            ``Linear(out_features, d_model)`` and the start value is ``start_value``.
        causal_mask: mask the future in every attention (see module doc); False gives the "unmasked" model.
        positional_encoding: add positional encodings to source and target embeddings.

    Shapes:
        src ``(batch, S, in_features)``, or ``(batch, S)`` when ``in_features == 1``.
        tgt ``(batch, T, out_features)`` / ``(batch, T)`` floats (regression), ``(batch, T)`` long (classes).
        output ``(batch, T, out_features)`` values or logits; a 2-D ``src`` with one regression output
        gives ``(batch, T)`` (so identity maps ``(batch, 10)`` to ``(batch, 10)``).
        Without ``tgt``, ``T = S`` unless ``steps`` is given to :meth:`generate`.
    """

    needs_targets = True

    def __init__(
        self,
        in_features: int = 1,
        out_features: int = 1,
        d_model: int = 10,
        nhead: int = 5,
        num_encoder_layers: int = 1,
        num_decoder_layers: int = 1,
        dim_feedforward: int = 5,
        max_len: int = 10,
        classification: bool = False,
        causal_mask: bool = True,
        positional_encoding: bool = True,
        learned_pe: bool = False,
        start_value: float = 0.0,
        dropout: float = DROPOUT,
        layer_norm_eps: float = LAYER_NORM_EPS,
    ) -> None:
        super().__init__()
        _check_heads(d_model, nhead)
        self.in_features = in_features
        self.out_features = out_features
        self.classification = classification
        self.causal_mask = causal_mask
        self.start_value = start_value
        self.src_embed = nn.Linear(in_features, d_model)
        self.tgt_embed = (
            nn.Embedding(out_features + 1, d_model) if classification else nn.Linear(out_features, d_model)
        )
        self.src_position = _position(d_model, max_len, positional_encoding, learned_pe, dropout)
        self.tgt_position = _position(d_model, max_len, positional_encoding, learned_pe, dropout)
        self.encoder = _encoder(d_model, nhead, dim_feedforward, num_encoder_layers, dropout, layer_norm_eps)
        layer = nn.TransformerDecoderLayer(
            d_model, nhead, dim_feedforward, dropout, layer_norm_eps=layer_norm_eps, batch_first=True
        )
        self.decoder = nn.TransformerDecoder(_fast_dropout(layer), num_decoder_layers)
        self.head = nn.Linear(d_model, out_features)

    @property
    def start(self) -> float | int:
        """The value ``shift_right`` puts at step 0: the start class index or ``start_value``."""
        return self.out_features if self.classification else self.start_value

    def encode(self, src: torch.Tensor) -> torch.Tensor:
        """``(batch, S, in_features)`` -> memory ``(batch, S, d_model)``."""
        length = src.shape[1]
        mask = subsequent_mask(length, device=src.device) if self.causal_mask else None
        return self.encoder(self.src_position(self.src_embed(src)), mask=mask)

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Decoder inputs ``(batch, T[, out])`` (already shifted) + memory -> outputs ``(batch, T, out)``."""
        h = self.tgt_position(self.tgt_embed(tgt_in))
        t, s = h.shape[1], memory.shape[1]
        tgt_mask = subsequent_mask(t, device=h.device) if self.causal_mask else None
        memory_mask = subsequent_mask(t, s, device=h.device) if self.causal_mask else None
        return self.head(self.decoder(h, memory, tgt_mask=tgt_mask, memory_mask=memory_mask))

    def _targets(self, tgt: torch.Tensor) -> torch.Tensor:
        if self.classification:
            if tgt.dim() == 3 and tgt.shape[-1] == 1:
                tgt = tgt.squeeze(-1)
            if tgt.dim() != 2 or tgt.is_floating_point():
                raise ValueError(
                    f"classification targets must be (batch, T) class indices, got {tuple(tgt.shape)}"
                )
            return tgt.long()
        tgt, _ = _as_steps(tgt, self.out_features, "EncoderDecoder targets")
        return tgt

    def _format(self, y: torch.Tensor, src_was_2d: bool) -> torch.Tensor:
        if src_was_2d and not self.classification and self.out_features == 1:
            return y.squeeze(-1)
        return y

    def forward(self, src: torch.Tensor, tgt: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced outputs when ``tgt`` is given, otherwise :meth:`generate` ``(src)``."""
        if tgt is None:
            return self.generate(src)
        src, was_2d = _as_steps(src, self.in_features, "EncoderDecoder")
        y = self.decode(shift_right(self._targets(tgt), self.start), self.encode(src))
        return self._format(y, was_2d)

    def generate(self, src: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Greedy autoregressive decoding: each step's prediction (argmax class, or value) is fed back.

        Returns the per-step outputs (values or logits) in the same layout as :meth:`forward`.
        """
        src, was_2d = _as_steps(src, self.in_features, "EncoderDecoder")
        steps = src.shape[1] if steps is None else steps
        memory = self.encode(src)
        batch = src.shape[0]
        if self.classification:
            tgt_in = torch.full((batch, 1), self.start, dtype=torch.long, device=src.device)
        else:
            tgt_in = torch.full(
                (batch, 1, self.out_features), self.start, dtype=memory.dtype, device=src.device
            )
        outputs = []
        for _ in range(steps):
            y_t = self.decode(tgt_in, memory)[:, -1:]  # (batch, 1, out)
            outputs.append(y_t)
            next_in = y_t.argmax(-1) if self.classification else y_t
            tgt_in = torch.cat([tgt_in, next_in], dim=1)
        return self._format(torch.cat(outputs, dim=1), was_2d)


def _masked_decoder_sizes(task, kwargs: dict) -> dict:
    """One step's features in, the flattened outputs out."""
    return {
        **kwargs,
        "in_features": task.step_features,
        "out_features": task.flat_out_features,
        "many_to_one": task.many_to_one,
    }


@register_baseline("masked_decoder", sizes=_masked_decoder_sizes, sequence=True)
class MaskedDecoder(nn.Module):
    """Decoder-only (causal) transformer for next-value forecasting (spiky series).

    ``Linear(in_features, d_model)`` ("1x10 expansion") -> positional encoding -> causal self-attention
    stack -> ``Linear(d_model, out_features)`` ("10x1 contraction").

    Shapes: input ``(batch, time, in_features)`` (or ``(batch, time)`` when ``in_features == 1``) ->
    ``(batch, out_features)``, the last position's output (the next value); with ``many_to_one=False``
    every position's output ``(batch, time, out_features)``.
    """

    def __init__(
        self,
        in_features: int = 1,
        out_features: int = 1,
        d_model: int = 10,
        nhead: int = 2,
        num_layers: int = 1,
        dim_feedforward: int = 2048,
        max_len: int = 10,
        many_to_one: bool = True,
        causal_mask: bool = True,
        positional_encoding: bool = True,
        learned_pe: bool = False,
        dropout: float = DROPOUT,
        layer_norm_eps: float = LAYER_NORM_EPS,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.many_to_one = many_to_one
        self.causal_mask = causal_mask
        self.expand = nn.Linear(in_features, d_model)
        self.position = _position(d_model, max_len, positional_encoding, learned_pe, dropout)
        self.blocks = _encoder(d_model, nhead, dim_feedforward, num_layers, dropout, layer_norm_eps)
        self.contract = nn.Linear(d_model, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = _as_steps(x, self.in_features, "MaskedDecoder")
        mask = subsequent_mask(x.shape[1], device=x.device) if self.causal_mask else None
        y = self.contract(self.blocks(self.position(self.expand(x)), mask=mask))
        return y[:, -1] if self.many_to_one else y
