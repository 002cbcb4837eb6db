"""Every configured model of every task builds at its Table 4 size and fits the task's shapes."""

from __future__ import annotations

import pytest
import torch

from lightning_implicit.confpath import builtin_root
from lightning_implicit.implicit import count_parameters
from lightning_implicit.params import build_module, parameter_table, task_spec

TASKS = sorted(p.stem for p in (builtin_root() / "tasks").glob("*.yaml"))
CASES = [
    (t, m)
    for t in TASKS
    for m in [*task_spec(t).presets, "implicit_nofeedback"]
    if m != "implicit_nofeedback" or "implicit" in task_spec(t).presets
]


def _batch(spec, b=3):
    x = torch.rand(b, *spec.in_shape)
    if spec.kind == "classification":
        y = torch.randint(0, spec.num_classes, (b, *spec.target_shape))
    else:
        y = torch.rand(b, *spec.target_shape)
    return x, y


@pytest.mark.parametrize(("task", "model"), CASES)
def test_every_model_fits_its_task(task, model):
    spec = task_spec(task)
    module = build_module(spec, model).eval()
    x, y = _batch(spec)
    with torch.no_grad():
        pred = module.predict_batch(x, y)
    p, t = spec.align(pred, y)
    if spec.kind == "classification":
        assert p.shape == (*t.shape, spec.num_classes)
    else:
        assert p.shape == t.shape
    assert torch.isfinite(spec.loss(pred, y))


def test_paper_parameter_counts():
    eq = dict(parameter_table("earthquake"))
    assert eq["implicit"] == 42_680 and eq["eikonet"] == 42_500  # Table 4
    assert dict(parameter_table("identity"))["implicit"] == 4 * 4 + 4 * 10 + 10 * 4 + 10 * 10
    add = dict(parameter_table("addition"))
    assert add["implicit"] == 20 * 20 + 20 * 50 + 1 * 20 + 1 * 50
    assert add["mlp"] == 50 * 10 + 10 + 10 * 10 + 10 + 10 + 1
    assert dict(parameter_table("volatility"))["implicit"] == 53 * 53 + 53 * 60 + 53 + 60


def test_implicit_rnn_matrices_have_table4_shapes():
    net = build_module(task_spec("rolling_argmax"), "implicit_rnn").net
    assert net.layer.A.shape == (21, 21) and net.layer.B.shape == (21, 23)
    assert net.C.shape == (22, 21) and net.D.shape == (22, 23) and net.readout.out_features == 10
    spiky = build_module(task_spec("spiky"), "implicit_rnn").net
    assert spiky.layer.B.shape == (20, 21) and spiky.C.shape == (20, 20) and spiky.readout.in_features == 20
    vol = build_module(task_spec("volatility"), "implicit_rnn").net
    assert vol.layer.B.shape == (37, 41) and vol.C.shape == (40, 37)


def test_feedback_ablation_counts_only_the_strict_upper_triangle():
    full = build_module(task_spec("addition"), "implicit").net
    ablated = build_module(task_spec("addition"), "implicit_nofeedback").net
    assert count_parameters(full) - count_parameters(ablated) == 20 * 21 // 2


def test_unknown_model_for_a_task_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown baseline"):
        build_module(task_spec("identity"), "lsmt")
