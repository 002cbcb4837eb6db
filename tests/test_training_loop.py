"""The modules' training loop: several optimiser steps per Lightning step give the same training as one."""

from __future__ import annotations

import pytest
import torch

from lightning_implicit.runner import run_training
from tests.conftest import tiny_args

pytestmark = pytest.mark.usefixtures("one_thread")


def _train(model: str, steps_per_call: int, *extra: str):
    args = tiny_args("addition", model, epochs=3, n_train=500, shifts=[10]) + [
        "--data.init_args.steps_per_call",
        str(steps_per_call),
        "--tracking.enabled",
        "false",
        *extra,
    ]
    return run_training(args, test=False)


@pytest.mark.parametrize(
    "model, extra",
    [
        # the implicit model with A's projection after every step and a per-step exponential schedule
        (
            "implicit",
            ["--model.init_args.optim.lr_gamma", "0.99", "--model.init_args.optim.lr_interval", "step"],
        ),
        # an MLP with gradient clipping and a cosine schedule over epochs
        (
            "mlp",
            [
                "--model.init_args.optim.lr_schedule",
                "cosine",
                "--model.init_args.optim.grad_clip",
                "0.05",
                "--model.init_args.optim.lr",
                "0.05",
            ],
        ),
    ],
)
def test_several_steps_per_call_train_exactly_like_one(model, extra):
    one = _train(model, 1, *extra)
    many = _train(model, 16, *extra)
    # 400 training samples in batches of 64: 7 steps per epoch (the last of 16 samples), 3 epochs
    assert one.module.global_step == many.module.global_step == 21
    a, b = one.module.state_dict(), many.module.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert one.val == many.val
    lr_one = one.module.optimizers().param_groups[0]["lr"]
    assert lr_one == many.module.optimizers().param_groups[0]["lr"] and lr_one < 0.05


def test_max_steps_stops_inside_a_call():
    res = _train("implicit", 16, "--trainer.max_steps", "10")
    assert res.module.global_step == 10  # not a multiple of the 7 steps per call
