"""The modules' training loop: several optimiser steps per Lightning step give the same training as one."""

from __future__ import annotations

import lightning as L
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


class HookLog(L.Callback):
    """Every per-optimiser-step hook Lightning calls on a callback, with what the hook sees."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.calls.append(
            ("before_backward", pl_module.global_step, pl_module._current_fx_name, float(loss.detach()))
        )

    def on_after_backward(self, trainer, pl_module) -> None:
        grads = [p.grad is not None for p in pl_module.parameters()]
        self.calls.append(("after_backward", pl_module.global_step, pl_module._current_fx_name, all(grads)))
        pl_module.log("probe/after_backward", float(pl_module.global_step))  # logging from a hook works

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.calls.append(
            ("before_step", pl_module.global_step, pl_module._current_fx_name, type(optimizer).__name__)
        )


def _train_logged(monkeypatch, direct: bool):
    from lightning_implicit.modules import step_hooks

    seen = []
    original = step_hooks.StepHooks.__init__

    def init(self, trainer, module):
        original(self, trainer, module)
        seen.append(self.direct)
        self.direct = self.direct and direct  # False: through Lightning's manual_backward / optimizer.step

    monkeypatch.setattr(step_hooks.StepHooks, "__init__", init)
    log = HookLog()
    args = tiny_args("addition", "implicit", epochs=2, n_train=500, shifts=[10]) + [
        "--tracking.enabled",
        "false",
    ]
    res = run_training(args, extra_callbacks=[log], test=False)
    monkeypatch.undo()
    return res, log, seen


def test_direct_hooks_call_what_lightning_calls(monkeypatch):
    """On one device at full precision the module calls the step hooks itself: the same hooks, in the same order,
    seeing the same state, and the same training, as through Lightning's manual_backward / optimizer.step."""
    direct, log_d, seen_d = _train_logged(monkeypatch, True)
    lightning, log_l, seen_l = _train_logged(monkeypatch, False)
    assert seen_d == seen_l == [True]  # the direct path applies here (and was switched off in the second run)
    assert len(log_d.calls) == 3 * 14  # 400 training samples, batch 64: 7 steps per epoch, 2 epochs
    assert log_d.calls == log_l.calls
    assert [c[0] for c in log_d.calls[:3]] == ["before_backward", "after_backward", "before_step"]
    assert {c[2] for c in log_d.calls} == {
        "on_before_backward",
        "on_after_backward",
        "on_before_optimizer_step",
    }
    a, b = direct.module.state_dict(), lightning.module.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert direct.module.trainer.callback_metrics["probe/after_backward"] == 13.0


def test_a_profiler_goes_through_lightning():
    from lightning_implicit.modules.step_hooks import StepHooks

    res = _train("implicit", 16, "--trainer.profiler", "simple")
    assert res.module.global_step == 21
    assert not StepHooks(res.module.trainer, res.module).direct
