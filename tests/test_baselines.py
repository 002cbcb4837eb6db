"""Tests for the explicit baselines of Table 4 (lightning_implicit.baselines)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_implicit.baselines import (
    BASELINES,
    MLP,
    NAC,
    NALU,
    EncoderDecoder,
    LSTMNet,
    MaskedDecoder,
    PersistenceForecaster,
    PositionalEncoding,
    SequentialEncoder,
    ZeroForecaster,
    build_baseline,
    count_parameters,
    shift_right,
)
from lightning_implicit.modules.baseline import baseline_kwargs
from lightning_implicit.params import task_spec


# Table 4 sizes of the raw nn.Modules, read from the task configs (conf/tasks/<task>.yaml, ``sizes``: the one
# place they live) with the input/output sizes the task dictates; test_parameter_counts checks them against
# hand-computed counts.
def _from_conf(task: str, model: str) -> tuple[str, dict]:
    spec = task_spec(task)
    preset = spec.preset(model)
    arch = preset.pop("arch")
    return arch, baseline_kwargs(spec, arch, preset)


_CONF_KEYS = {
    "identity/mlp": ("identity", "mlp"),
    "identity/encdec": ("identity", "encdec"),
    "arithmetic/mlp": ("addition", "mlp"),
    "arithmetic/nalu": ("addition", "nalu"),
    "arithmetic/nac": ("addition", "nac"),
    "arithmetic/seq_encoder": ("addition", "seq_encoder"),
    "arithmetic/depth_encoder": ("addition", "depth_encoder"),
    "rolling_average/lstm": ("rolling_average", "lstm"),
    "rolling_average/encdec": ("rolling_average", "encdec"),
    "rolling_argmax/lstm": ("rolling_argmax", "lstm"),
    "rolling_argmax/encdec_masked": ("rolling_argmax", "encdec_masked"),
    "rolling_argmax/encdec_unmasked": ("rolling_argmax", "encdec_unmasked"),
    "rolling_argmax/encdec_unmasked_nope": ("rolling_argmax", "encdec_nope"),
    "spiky/lstm": ("spiky", "lstm"),
    "spiky/masked_decoder": ("spiky", "masked_decoder"),
    "volatility/lstm": ("volatility", "lstm"),
    "volatility/linear": ("volatility", "linear"),
    "volatility/mlp": ("volatility", "mlp"),
    "volatility/seq_encoder": ("volatility", "seq_encoder"),
    "earthquake/mlp": ("earthquake", "eikonet"),
}
TABLE4 = {key: _from_conf(*where) for key, where in _CONF_KEYS.items()}
TABLE4["volatility/zero"] = ("zero", dict(out_features=1))
TABLE4["volatility/persistence"] = ("persistence", dict(window=10))


def build_table4(key: str, **overrides):
    """Build a Table 4 preset such as ``"arithmetic/nalu"``; ``overrides`` replace preset kwargs."""
    try:
        name, kwargs = TABLE4[key]
    except KeyError:
        raise ValueError(f"unknown Table 4 preset {key!r}; valid keys: {', '.join(sorted(TABLE4))}") from None
    return build_baseline(name, **{**kwargs, **overrides})


B = 4

# preset -> (input shape, expected output shape)
SHAPES = {
    "identity/mlp": ((B, 10), (B, 10)),
    "identity/encdec": ((B, 10), (B, 10)),
    "arithmetic/mlp": ((B, 50), (B, 1)),
    "arithmetic/nalu": ((B, 50), (B, 1)),
    "arithmetic/nac": ((B, 50), (B, 1)),
    "arithmetic/seq_encoder": ((B, 50), (B, 1)),
    "arithmetic/depth_encoder": ((B, 50), (B, 1)),
    "rolling_average/lstm": ((B, 10, 1), (B, 10, 1)),
    "rolling_average/encdec": ((B, 10, 1), (B, 10, 1)),
    "rolling_argmax/lstm": ((B, 10, 1), (B, 10, 10)),
    "rolling_argmax/encdec_masked": ((B, 10, 1), (B, 10, 10)),
    "rolling_argmax/encdec_unmasked": ((B, 10, 1), (B, 10, 10)),
    "rolling_argmax/encdec_unmasked_nope": ((B, 10, 1), (B, 10, 10)),
    "spiky/lstm": ((B, 10, 1), (B, 1)),
    "spiky/masked_decoder": ((B, 10, 1), (B, 1)),
    "volatility/lstm": ((B, 60, 1), (B, 1)),
    "volatility/linear": ((B, 60, 1), (B, 1)),
    "volatility/mlp": ((B, 60), (B, 1)),
    "volatility/seq_encoder": ((B, 60, 1), (B, 1)),
    "volatility/zero": ((B, 60), (B, 1)),
    "volatility/persistence": ((B, 60, 1), (B, 1)),
    "earthquake/mlp": ((B, 30), (B, 4)),
}


def test_every_preset_has_a_shape_check():
    assert set(SHAPES) == set(TABLE4)


@pytest.mark.parametrize("key", sorted(SHAPES))
def test_table4_output_shapes(key):
    torch.manual_seed(0)
    in_shape, out_shape = SHAPES[key]
    model = build_table4(key).eval()
    x = torch.rand(in_shape) + 0.5
    with torch.no_grad():
        y = model(x)
    assert y.shape == out_shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize(
    "key", ["volatility/lstm", "volatility/seq_encoder", "volatility/mlp", "volatility/linear"]
)
def test_volatility_models_accept_2d_and_3d_inputs_alike(key):
    torch.manual_seed(0)
    model = build_table4(key).eval()
    x = torch.randn(B, 60)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x.unsqueeze(-1)))


@pytest.mark.parametrize(
    "key, expected",
    [
        ("earthquake/mlp", 42_500),  # EikoNet-shaped 30x32x128x128x128x32x4
        ("identity/mlp", 10 * 9 + 9 + 9 * 9 + 9 + 9 * 10 + 10),
        ("arithmetic/mlp", 50 * 10 + 10 + 10 * 10 + 10 + 10 + 1),
        ("arithmetic/nalu", 3 * (50 * 10 + 10 * 10 + 10 * 1)),
        ("arithmetic/nac", 2 * (50 * 10 + 10 * 10 + 10 * 1)),
        # nn.LSTM layer: 4h(in + h) weights + 2 * 4h biases; then an h x out head
        ("rolling_average/lstm", 4 * 18 * (1 + 18) + 8 * 18 + 4 * 18 * 36 + 8 * 18 + 18 + 1),
        ("volatility/linear", 61),
        ("volatility/zero", 0),
        ("volatility/persistence", 0),
    ],
)
def test_parameter_counts(key, expected):
    assert count_parameters(build_table4(key)) == expected


def test_count_parameters_ignores_frozen():
    model = MLP(3, 2, hidden=(4,))
    model.net[0].weight.requires_grad_(False)
    assert count_parameters(model) == 4 + 4 * 2 + 2


def test_mlp_activation_and_validation():
    assert isinstance(MLP(30, 4, hidden=(32,), activation="elu").net[1], torch.nn.ELU)
    assert len(MLP(2, 1).net) == 1  # no hidden layer, no activation
    with pytest.raises(ValueError, match="activation"):
        MLP(2, 1, hidden=(3,), activation="gelu")
    with pytest.raises(ValueError, match="in_features"):
        MLP(5, 1)(torch.zeros(2, 4))


def test_nac_learns_addition_and_extrapolates():
    torch.manual_seed(0)
    nac = NAC(2, 1)
    opt = torch.optim.Adam(nac.parameters(), lr=0.1, betas=(0.9, 0.9))
    x = torch.rand(256, 2) * 2 - 1
    y = x.sum(dim=1, keepdim=True)
    for _ in range(400):
        opt.zero_grad()
        loss = torch.mean((nac(x) - y) ** 2)
        loss.backward()
        opt.step()
    x_test = torch.rand(1000, 2) * 2 - 1
    with torch.no_grad():
        assert torch.mean((nac(x_test) - x_test.sum(1, keepdim=True)) ** 2) < 1e-3
        big = 100 * x_test
        assert torch.mean((nac(big) - big.sum(1, keepdim=True)) ** 2) < 1e-3


def test_nac_weight_is_tanh_times_sigmoid():
    nac = NAC(3, 2)
    expected = torch.tanh(nac.W_hat) * torch.sigmoid(nac.M_hat)
    torch.testing.assert_close(nac.weight, expected)
    x = torch.randn(5, 3)
    torch.testing.assert_close(nac(x), x @ expected.T)
    assert nac.weight.abs().max() < 1


def test_nalu_cell_can_multiply():
    # gate closed (g -> 0) and NAC weights -> 1: y = exp(log|x1| + log|x2|) = |x1 * x2|
    nalu = NALU(2, 1, hidden=())
    cell = nalu.cells[0]
    with torch.no_grad():
        cell.nac.W_hat.fill_(20.0)
        cell.nac.M_hat.fill_(20.0)
        cell.G.fill_(-1e4)
    x = torch.tensor([[2.0, 3.0], [0.5, 8.0]])
    torch.testing.assert_close(nalu(x), torch.tensor([[6.0], [4.0]]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("clamped", [True, False])
def test_nalu_stays_finite_far_out_of_distribution(clamped):
    torch.manual_seed(0)
    model = build_table4("arithmetic/nalu")
    with torch.no_grad():
        for cell in model.cells:  # a purely multiplicative network: products of 50 huge numbers
            cell.nac.W_hat.fill_(5.0)
            cell.nac.M_hat.fill_(5.0)
            cell.G.fill_(-1e4)
            if not clamped:
                cell.max_exponent = float("inf")
    x = torch.rand(8, 50) * 1e5 + 1e4
    y = model(x)
    if not clamped:  # the guard is what prevents this
        assert torch.isnan(y).any()
        return
    assert torch.isfinite(y).all()
    assert (y > 1e12).all()  # clearly large, not inf or NaN
    y.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_lstm_many_to_one_is_the_last_step():
    torch.manual_seed(0)
    model = LSTMNet(1, (7, 5), 3).eval()
    x = torch.randn(B, 6, 1)
    with torch.no_grad():
        seq = model(x)
        model.many_to_one = True
        last = model(x)
    assert seq.shape == (B, 6, 3)
    torch.testing.assert_close(last, seq[:, -1])


# --- transformers -------------------------------------------------------------------------------


def test_shift_right():
    y = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    out = shift_right(y, 0.5)
    torch.testing.assert_close(out, torch.tensor([[0.5, 1.0, 2.0], [0.5, 4.0, 5.0]]))
    assert y[0, 0] == 1.0  # input untouched
    labels = torch.tensor([[3, 1, 4, 1]])
    out = shift_right(labels, 10)
    assert out.dtype == torch.long and out.tolist() == [[10, 3, 1, 4]]
    y3 = torch.arange(6.0).reshape(1, 3, 2)
    out = shift_right(y3, torch.tensor([-1.0, -2.0]))
    assert out.tolist() == [[[-1.0, -2.0], [0.0, 1.0], [2.0, 3.0]]]


def _encdec(causal, classification=False):
    kwargs = dict(d_model=10, nhead=2, dim_feedforward=10, max_len=10, causal_mask=causal)
    if classification:
        kwargs.update(out_features=10, classification=True)
    return EncoderDecoder(**kwargs).eval()


@pytest.mark.parametrize("classification", [False, True])
def test_masked_encoder_decoder_cannot_see_the_future(classification):
    torch.manual_seed(0)
    model = _encdec(causal=True, classification=classification)
    src = torch.rand(B, 10, 1)
    tgt = torch.randint(0, 10, (B, 10)) if classification else torch.rand(B, 10)
    k = 6
    src2 = src.clone()
    src2[:, k] += 5.0
    tgt2 = tgt.clone()
    tgt2[:, k] = (tgt[:, k] + 3) % 10 if classification else tgt[:, k] + 5.0
    with torch.no_grad():
        out = model(src, tgt)
        out_src = model(src2, tgt)
        out_tgt = model(src, tgt2)
    torch.testing.assert_close(out_src[:, :k], out[:, :k], rtol=0, atol=1e-6)
    assert not torch.allclose(out_src[:, k], out[:, k])  # the input itself is seen
    # target k is the decoder input at step k + 1
    torch.testing.assert_close(out_tgt[:, : k + 1], out[:, : k + 1], rtol=0, atol=1e-6)
    assert not torch.allclose(out_tgt[:, k + 1], out[:, k + 1])


@pytest.mark.parametrize("positional_encoding", [True, False])
def test_unmasked_encoder_decoder_sees_the_future(positional_encoding):
    torch.manual_seed(0)
    model = EncoderDecoder(
        out_features=10,
        classification=True,
        d_model=10,
        nhead=2,
        dim_feedforward=10,
        causal_mask=False,
        positional_encoding=positional_encoding,
    ).eval()
    src = torch.rand(B, 10, 1)
    tgt = torch.randint(0, 10, (B, 10))
    src2 = src.clone()
    src2[:, -1] += 5.0
    with torch.no_grad():
        assert not torch.allclose(model(src2, tgt)[:, 0], model(src, tgt)[:, 0])


def test_masked_decoder_cannot_see_the_future_and_unmasked_can():
    torch.manual_seed(0)
    masked = MaskedDecoder(many_to_one=False).eval()
    unmasked = MaskedDecoder(many_to_one=False, causal_mask=False).eval()
    unmasked.load_state_dict(masked.state_dict())
    x = torch.randn(B, 10, 1)
    x2 = x.clone()
    x2[:, 7] += 5.0
    with torch.no_grad():
        full = masked(x)
        torch.testing.assert_close(masked(x2)[:, :7], full[:, :7], rtol=0, atol=1e-6)
        assert not torch.allclose(masked(x2)[:, 7], full[:, 7])
        assert not torch.allclose(unmasked(x2)[:, 0], unmasked(x)[:, 0])
        # the next-value forecast from a prefix equals that position's output on the full series
        masked.many_to_one = True
        torch.testing.assert_close(masked(x), full[:, -1])
        torch.testing.assert_close(masked(x[:, :5]), full[:, 4], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("classification", [False, True])
def test_generate_is_consistent_with_teacher_forcing(classification):
    torch.manual_seed(0)
    model = _encdec(causal=True, classification=classification)
    src = torch.rand(B, 10, 1)
    with torch.no_grad():
        generated = model.generate(src)
        assert generated.shape == ((B, 10, 10) if classification else (B, 10, 1))
        fed_back = generated.argmax(-1) if classification else generated
        torch.testing.assert_close(model(src, fed_back), generated, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model(src), generated)  # forward without targets generates
        assert model.generate(src, steps=4).shape[1] == 4


def test_encoder_decoder_is_trainable_with_teacher_forcing():
    torch.manual_seed(0)
    model = _encdec(causal=True, classification=True).train()
    src = torch.rand(8, 10, 1)
    tgt = torch.randint(0, 10, (8, 10))
    loss = torch.nn.functional.cross_entropy(model(src, tgt).transpose(1, 2), tgt)
    loss.backward()
    assert model.tgt_embed.weight.grad is not None and model.src_embed.weight.grad.abs().sum() > 0
    assert EncoderDecoder.needs_targets


def test_positional_encoding_limits_and_values():
    pe = PositionalEncoding(4, max_len=10, dropout=0.0)
    x = torch.zeros(1, 3, 4)
    out = pe(x)
    torch.testing.assert_close(out[0, 0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    torch.testing.assert_close(out[0, 1, :2], torch.tensor([np.sin(1.0), np.cos(1.0)], dtype=torch.float32))
    with pytest.raises(ValueError, match="max_len"):
        pe(torch.zeros(1, 11, 4))
    assert PositionalEncoding(5, max_len=3, dropout=0.0)(torch.zeros(1, 3, 5)).shape == (1, 3, 5)  # odd width
    assert count_parameters(PositionalEncoding(4, 10, learned=True)) == 40


def test_sequential_encoder_validates_heads():
    with pytest.raises(ValueError, match="nhead"):
        SequentialEncoder(seq_len=50, nhead=3)


# --- naive forecasters ----------------------------------------------------------------------------


def test_persistence_equals_numpy_population_variance():
    rng = np.random.default_rng(0)
    prices = rng.normal(100, 5, size=(6, 60))
    expected = prices[:, -10:].var(axis=1, ddof=0)
    model = PersistenceForecaster(window=10)
    for x in (torch.tensor(prices), torch.tensor(prices).unsqueeze(-1)):
        out = model(x)
        assert out.shape == (6, 1)
        np.testing.assert_allclose(out.detach().numpy()[:, 0], expected, rtol=1e-10)
    with pytest.raises(ValueError, match="window"):
        model(torch.zeros(2, 5))


@pytest.mark.parametrize("model", [ZeroForecaster(), PersistenceForecaster(window=10)])
def test_naive_forecasters_survive_an_optimizer(model):
    assert model.trainable is False and count_parameters(model) == 0
    x = torch.rand(B, 60) * 10
    before = model(x).detach().clone()
    for opt in (torch.optim.SGD(model.parameters(), lr=0.1), torch.optim.Adam(model.parameters())):
        opt.zero_grad()
        torch.mean((model(x) - 1.0) ** 2).backward()
        opt.step()
    torch.testing.assert_close(model(x), before)
    if isinstance(model, ZeroForecaster):
        assert (before == 0).all()


# --- registry ---------------------------------------------------------------------------------------


def test_registry_names():
    assert set(BASELINES) == {
        "mlp",
        "lstm",
        "nalu",
        "nac",
        "seq_encoder",
        "depth_encoder",
        "encdec",
        "masked_decoder",
        "linear",
        "zero",
        "persistence",
    }
    nac = build_baseline("nac", in_features=50, out_features=1)
    assert isinstance(nac, NALU) and nac.cell == "nac"
    assert isinstance(build_baseline("mlp", in_features=3, out_features=1, hidden=(2,)), MLP)


def test_registry_typo_lists_valid_names():
    with pytest.raises(ValueError) as err:
        build_baseline("mpl", in_features=3, out_features=1)
    message = str(err.value)
    assert "'mpl'" in message
    for name in BASELINES:
        assert name in message
    with pytest.raises(ValueError, match="earthquake/mlp"):
        build_table4("earthquake/mpl")


def test_cpu_dropout_keeps_each_element_with_probability_one_minus_p():
    from lightning_implicit.baselines.transformer import Dropout

    torch.manual_seed(0)
    drop = Dropout(0.1)
    x = torch.full((200, 1000), 2.0, requires_grad=True)
    out = drop(x)
    kept = out != 0
    # 200,000 Bernoulli(0.9) draws: the kept fraction is within 5 standard deviations (0.00067) of 0.9
    assert abs(kept.float().mean().item() - 0.9) < 5 * (0.9 * 0.1 / kept.numel()) ** 0.5
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 2.0 / 0.9))  # inverted dropout
    out.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / 0.9)  # the gradient goes through the same mask
    drop.eval()
    assert drop(x) is x
    assert torch.equal(Dropout(0.0).train()(x), x) and torch.equal(
        Dropout(1.0).train()(x), torch.zeros_like(x)
    )


def test_transformer_layers_use_the_cpu_dropout():
    from lightning_implicit.baselines.transformer import (
        DepthwiseEncoder,
        Dropout,
        EncoderDecoder,
        MaskedDecoder,
    )

    for net in (DepthwiseEncoder(), EncoderDecoder(), MaskedDecoder()):
        drops = [m for m in net.modules() if isinstance(m, torch.nn.Dropout)]
        assert drops and all(type(m) is Dropout for m in drops), type(net).__name__


def test_a_baseline_registered_from_its_own_module_is_built_with_its_sizes_and_layout():
    """register_baseline: the name, the sizes the task dictates and the input layout come from the module that
    defines the model (nothing else names it); a second registration of a name is an error."""
    import warnings

    from torch import nn

    from lightning_implicit.baselines import BASELINE_SPECS, register_baseline
    from lightning_implicit.modules import BaselineModule

    class StepSum(nn.Module):
        def __init__(self, in_features: int, out_features: int, scale: float = 1.0) -> None:
            super().__init__()
            self.in_features, self.scale = in_features, scale
            self.proj = nn.Linear(in_features, out_features)

        def forward(self, x):  # (batch, time, in_features) -> (batch, time, out_features)
            return self.proj(x) * self.scale

    def sizes(task, kw):
        return {**kw, "in_features": task.step_features, "out_features": task.seq_out_features}

    register_baseline("step_sum_test", sizes=sizes, sequence=True, scale=2.0)(StepSum)
    try:
        spec = task_spec("rolling_average")
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            module = BaselineModule(spec, model="step_sum_test")
        assert any("no Table 4 size" in str(w.message) for w in seen)  # no sizes: the constructor's defaults
        assert isinstance(module.net, StepSum) and module.net.scale == 2.0
        assert module.net.in_features == spec.step_features and module.sequence_model
        assert baseline_kwargs(spec, "step_sum_test", {"scale": 3.0}) == {
            "scale": 3.0,
            "in_features": spec.step_features,
            "out_features": spec.seq_out_features,
        }
        with pytest.raises(ValueError, match="registered twice"):
            register_baseline("step_sum_test")(StepSum)
    finally:
        BASELINE_SPECS.pop("step_sum_test", None)
        BASELINES.pop("step_sum_test", None)
    assert BaselineModule(task_spec("addition"), model="mlp").sequence_model is False
